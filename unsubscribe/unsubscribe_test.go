package unsubscribe

import (
	"net/url"
	"strings"
	"testing"
)

func TestTokenRoundTrip(t *testing.T) {
	s, err := NewSigner([]byte("0123456789abcdef-secret"))
	if err != nil {
		t.Fatal(err)
	}
	sub := Subject{List: "example.com", Key: "ann@example.org", Campaign: "nov-2026"}
	got, err := s.Verify(s.Token(sub))
	if err != nil || got != sub {
		t.Fatalf("Verify = %+v, %v; want %+v", got, err, sub)
	}
	base, _ := url.Parse("https://news.example.com/unsubscribe?lang=en")
	link := s.Link(base, sub)
	u, _ := url.Parse(link)
	if u.Query().Get("lang") != "en" || u.Path != "/unsubscribe" {
		t.Errorf("link %s lost the base's path or query", link)
	}
	if got, err := s.Verify(u.Query().Get(Param)); err != nil || got != sub {
		t.Errorf("token from the link: %+v, %v", got, err)
	}
}

func TestTokenRefused(t *testing.T) {
	s, _ := NewSigner([]byte("0123456789abcdef-secret"))
	other, _ := NewSigner([]byte("another secret, 16+ bytes"))
	tok := s.Token(Subject{List: "example.com", Key: "ann@example.org", Campaign: "c"})
	p, m, _ := strings.Cut(tok, ".")
	forged := enc.EncodeToString([]byte("example.com\nbob@example.org\nc")) + "." + m
	for name, bad := range map[string]string{
		"other secret": other.Token(Subject{List: "example.com", Key: "ann@example.org", Campaign: "c"}),
		"altered":      forged,
		"no mac":       p,
		"empty":        "",
		"garbage":      "!!!.???",
		"cut mac":      p + "." + m[:len(m)-2],
	} {
		if sub, err := s.Verify(bad); err == nil {
			t.Errorf("%s: accepted as %+v", name, sub)
		}
	}
	if _, err := NewSigner([]byte("short")); err == nil {
		t.Error("a 5-byte secret was accepted")
	}
}
