package check

import (
	"context"
	"strings"
	"testing"

	"github.com/heraldmail/herald/config"
	"github.com/heraldmail/herald/internal/dnstest"
)

func TestParseSPF(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		rec     string
		lookups int
		all     string
		err     string // "" for a record that parses
	}{
		{rec: "v=spf1 -all", all: "-all"},
		{rec: "V=SPF1 include:_spf.google.com ~all", lookups: 1, all: "~all"},
		{rec: "v=spf1 a mx/24 a:mail.example.com/28//64 ptr exists:%{i}.spf.example.com ip4:192.0.2.0/24 ip6:2001:db8::/32 ?all", lookups: 5, all: "?all"},
		{rec: "v=spf1 redirect=_spf.example.com", lookups: 1},
		{rec: "v=spf1 all redirect=_spf.example.com", all: "+all"}, // redirect is ignored with all
		{rec: "v=spf1 include:a.example.com exp=explain.example.com unknown-mod=x -all", lookups: 1, all: "-all"},
		{rec: "v=spf1 inclde:spf.163.com -all", err: `unknown mechanism "inclde"`},
		{rec: "v=spf1 ip4:300.1.1.1 -all", err: "not an IPv4 address"},
		{rec: "v=spf1 ip4:2001:db8::1 -all", err: "not an IPv4 address"},
		{rec: "v=spf1 ip6:2001:db8::/129 -all", err: "prefix length must be 0 to 128"},
		{rec: "v=spf1 include: -all", err: "include needs a domain"},
		{rec: "v=spf1 redirect=a.example.com redirect=b.example.com", err: "redirect= appears twice"},
		{rec: "v=spf1 -all:x", err: "all takes no argument"},
		{rec: "v=spf10 -all", err: `does not begin with "v=spf1"`},
	} {
		rec, err := parseSPF(tc.rec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.rec, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.rec, err)
			continue
		}
		if n, all := rec.lookups(); n != tc.lookups || all != tc.all {
			t.Errorf("%q: %d lookups, all %q; want %d, %q", tc.rec, n, all, tc.lookups, tc.all)
		}
	}
}

func TestOrgDomain(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"example.com":              "example.com",
		"news.mail.example.com":    "example.com",
		"Example.COM.":             "example.com",
		"mail.example.co.uk":       "example.co.uk",
		"example.co.uk":            "example.co.uk",
		"a.b.example.com.cn":       "example.com.cn",
		"com.cn":                   "com.cn",
		"bounce.example.github.io": "github.io", // the approximation: not on its list
	} {
		if got := orgDomain(in); got != want {
			t.Errorf("orgDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSPFLoop: includes that include each other end past the lookup
// limit, as a receiver would count them, without following forever.
func TestSPFLoop(t *testing.T) {
	t.Parallel()
	dns := dnstest.Start(t, dnstest.Zone{
		"loop.example":   {"v=spf1 include:a.loop.example -all"},
		"a.loop.example": {"v=spf1 include:b.loop.example -all"},
		"b.loop.example": {"v=spf1 include:a.loop.example -all"},
	})
	r, err := NewResolver(dns.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c := &checker{ctx: context.Background(), r: r, cfg: &config.Config{}, envelope: "loop.example"}
	c.spf()
	if len(c.results) != 1 || c.results[0].Status != Fail || !strings.Contains(c.results[0].Text, "over the limit of 10") || c.spfOK {
		t.Fatalf("%+v", c.results)
	}
}
