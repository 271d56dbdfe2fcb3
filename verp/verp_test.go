package verp

import (
	"errors"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	const bounce = "bounces@example.com"
	for _, tc := range []struct {
		campaign, rcpt, want string
	}{
		{"nov-2026", "ann@example.org", "bounces+nov-2026+ann=example.org@example.com"},
		{"nov-2026", "ann+news@example.org", "bounces+nov-2026+ann+news=example.org@example.com"},
		{"c", "a=b@example.org", "bounces+c+a=b=example.org@example.com"},
		{"c", "a+b=c+d=@example.org", "bounces+c+a+b=c+d==example.org@example.com"},
		{"c", "first.last@sub.example.org", "bounces+c+first.last=sub.example.org@example.com"},
		{"Spring_2026.v2", "Ann.Lee@Example.ORG", "bounces+Spring_2026.v2+Ann.Lee=Example.ORG@example.com"},
		{"c", "o'brien@example.ie", "bounces+c+o'brien=example.ie@example.com"},
		{"c", "josé@exämple.org", "bounces+c+josé=exämple.org@example.com"},
	} {
		got, err := Encode(bounce, tc.campaign, tc.rcpt)
		if err != nil || got != tc.want {
			t.Errorf("Encode(%q, %q) = %q, %v; want %q", tc.campaign, tc.rcpt, got, err, tc.want)
			continue
		}
		c, r, err := Decode(got, bounce)
		if err != nil || c != tc.campaign || r != tc.rcpt {
			t.Errorf("Decode(%q) = %q, %q, %v; want %q, %q", got, c, r, err, tc.campaign, tc.rcpt)
		}
		// Mail systems may change the case of the bounce part.
		upper := strings.Replace(got, "bounces+", "BOUNCES+", 1)
		upper = upper[:strings.LastIndexByte(upper, '@')] + "@EXAMPLE.COM"
		if c, r, err := Decode(upper, bounce); err != nil || c != tc.campaign || r != tc.rcpt {
			t.Errorf("Decode(%q) = %q, %q, %v", upper, c, r, err)
		}
	}
}

func TestBounceWithPlus(t *testing.T) {
	const bounce = "mail+bounces@example.com"
	a, err := Encode(bounce, "c1", "x+y@example.org")
	if err != nil || a != "mail+bounces+c1+x+y=example.org@example.com" {
		t.Fatalf("Encode = %q, %v", a, err)
	}
	if c, r, err := Decode(a, bounce); err != nil || c != "c1" || r != "x+y@example.org" {
		t.Fatalf("Decode = %q, %q, %v", c, r, err)
	}
}

func TestEncodeRefuses(t *testing.T) {
	for _, tc := range []struct{ bounce, campaign, rcpt string }{
		{"bounces", "c", "a@example.org"},
		{"bounces@example.com", "", "a@example.org"},
		{"bounces@example.com", "a+b", "a@example.org"},
		{"bounces@example.com", "a b", "a@example.org"},
		{"bounces@example.com", "c", "\"a b\"@example.org"},
		{"bounces@example.com", "c", "a@"},
		{"bounces@example.com", "c", "a..b@example.org"},
		{"bounces@example.com", "c", "a\r\n@example.org"},
		{"bounces@example.com", "c", "a@exa=mple.org"},
		{"bounces@example.com", "c", "user@[192.0.2.1]"},
		// A local part of 68 octets, more than RFC 5321 lets a server refuse beyond.
		{"bounces@example.com", "newsletter-2026-11", "a-rather-long-local-part-1234@example.org"},
	} {
		if got, err := Encode(tc.bounce, tc.campaign, tc.rcpt); err == nil {
			t.Errorf("Encode(%q, %q, %q) = %q, want an error", tc.bounce, tc.campaign, tc.rcpt, got)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	const bounce = "bounces@example.com"
	for _, addr := range []string{
		"bounces@example.com",                       // the plain bounce address
		"bounces+nov+ann=example.org@example.net",   // another domain
		"bouncer+nov+ann=example.org@example.com",   // another local part
		"bouncesx+nov+ann=example.org@example.com",  // a longer local part
		"bounces+nov@example.com",                   // no recipient
		"bounces++ann=example.org@example.com",      // no campaign
		"bounces+nov+annexample.org@example.com",    // no '='
		"bounces+nov+ann=@example.com",              // no recipient domain
		"bounces+nov+=example.org@example.com",      // no recipient local part
		"bounces+n!v+ann=example.org@example.com",   // not a campaign id
		"bounces+nov+an..n=example.org@example.com", // not a dot-atom
		"bounces+nov+ann=example.org",               // no domain
		"",
	} {
		if c, r, err := Decode(addr, bounce); err == nil {
			t.Errorf("Decode(%q) = %q, %q; want an error", addr, c, r)
		} else if addr != "" && !errors.Is(err, ErrNotVERP) {
			t.Errorf("Decode(%q): %v does not wrap ErrNotVERP", addr, err)
		}
	}
	if _, _, err := Decode("bounces+c+a=b.org@example.com", "nobody"); err == nil {
		t.Error("a bounce address without a domain was accepted")
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add("c", "a+b=c@example.org")
	f.Fuzz(func(t *testing.T, campaign, rcpt string) {
		a, err := Encode("bounces@example.com", campaign, rcpt)
		if err != nil {
			return
		}
		c, r, err := Decode(a, "bounces@example.com")
		if err != nil || c != campaign || r != rcpt {
			t.Fatalf("Encode(%q, %q) = %q decodes to %q, %q, %v", campaign, rcpt, a, c, r, err)
		}
	})
}
