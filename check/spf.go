package check

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// maxLookups is RFC 7208 §4.6.4's limit on the terms that cause DNS
// queries (include, a, mx, ptr, exists, redirect), counted through every
// include and redirect: past it, receivers answer permerror, as if the
// domain had no SPF record.
const maxLookups = 10

// spfTerm is one directive or modifier of an SPF record.
type spfTerm struct {
	qual     byte   // '+', '-', '~' or '?' for a mechanism (explicit or not); 0 for a modifier
	name     string // lower case: "include", "ip4", ... or the modifier's name
	value    string // the domain-spec, address or modifier value ("" when absent)
	modifier bool
}

// spfRecord is a parsed SPF record.
type spfRecord struct {
	text  string
	terms []spfTerm
}

// isSPF reports whether a TXT record is an SPF record (RFC 7208 §4.5):
// "v=spf1" alone or followed by a space.
func isSPF(txt string) bool {
	return len(txt) >= 6 && strings.EqualFold(txt[:6], "v=spf1") && (len(txt) == 6 || txt[6] == ' ')
}

// parseSPF parses an SPF record (RFC 7208 §4.6.1, §12): an unknown
// mechanism, a malformed address or a repeated redirect or exp is the
// permerror it would be for a receiver.
func parseSPF(txt string) (*spfRecord, error) {
	if !isSPF(txt) {
		return nil, fmt.Errorf("does not begin with \"v=spf1\"")
	}
	rec := &spfRecord{text: txt}
	seen := map[string]bool{}
	for _, f := range strings.Fields(txt)[1:] {
		t, err := parseTerm(f)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", f, err)
		}
		if t.modifier && (t.name == "redirect" || t.name == "exp") {
			if seen[t.name] {
				return nil, fmt.Errorf("%s= appears twice", t.name)
			}
			seen[t.name] = true
		}
		rec.terms = append(rec.terms, t)
	}
	return rec, nil
}

func parseTerm(f string) (spfTerm, error) {
	// A modifier is name=value, name starting with a letter (§12).
	if eq := strings.IndexByte(f, '='); eq > 0 && !strings.ContainsAny(f[:eq], ":/") {
		name := strings.ToLower(f[:eq])
		if !modifierName(name) {
			return spfTerm{}, fmt.Errorf("not a valid modifier name")
		}
		t := spfTerm{name: name, value: f[eq+1:], modifier: true}
		if (name == "redirect" || name == "exp") && !domainSpec(t.value) {
			return spfTerm{}, fmt.Errorf("%s= needs a domain", name)
		}
		return t, nil
	}
	t := spfTerm{qual: '+'}
	if strings.IndexByte("+-~?", f[0]) >= 0 {
		t.qual, f = f[0], f[1:]
	}
	name, value := f, ""
	if i := strings.IndexAny(f, ":/"); i >= 0 {
		name, value = f[:i], f[i:]
	}
	t.name = strings.ToLower(name)
	arg := strings.TrimPrefix(value, ":")
	switch t.name {
	case "all":
		if value != "" {
			return t, fmt.Errorf("all takes no argument")
		}
	case "include", "exists":
		if !strings.HasPrefix(value, ":") || !domainSpec(arg) {
			return t, fmt.Errorf("%s needs a domain: %s:example.com", t.name, t.name)
		}
		t.value = arg
	case "a", "mx", "ptr":
		dom, cidr, _ := strings.Cut(arg, "/")
		if strings.HasPrefix(value, "/") {
			dom, cidr = "", value[1:]
		}
		if strings.HasPrefix(value, ":") && !domainSpec(dom) {
			return t, fmt.Errorf("%s: needs a domain after ':'", t.name)
		}
		if value != "" && strings.Contains(value, "/") && (t.name == "ptr" || !dualCIDR(cidr)) {
			return t, fmt.Errorf("not a valid prefix length")
		}
		t.value = dom
	case "ip4", "ip6":
		if !strings.HasPrefix(value, ":") {
			return t, fmt.Errorf("%s needs an address", t.name)
		}
		addr, bits, hasBits := strings.Cut(arg, "/")
		ip, err := netip.ParseAddr(addr)
		max := 32
		if t.name == "ip6" {
			max = 128
		}
		if err != nil || ip.Is4() != (t.name == "ip4") || ip.Zone() != "" {
			return t, fmt.Errorf("not an IPv%c address", t.name[2])
		}
		if n, err := strconv.Atoi(bits); hasBits && (err != nil || n < 0 || n > max) {
			return t, fmt.Errorf("prefix length must be 0 to %d", max)
		}
		t.value = arg
	default:
		return t, fmt.Errorf("unknown mechanism %q (known: all, include, a, mx, ptr, ip4, ip6, exists; modifiers redirect=, exp=)", t.name)
	}
	return t, nil
}

func modifierName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'a' && c <= 'z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.')) {
			return false
		}
	}
	return s != ""
}

// domainSpec accepts a domain, or a macro-string (which herald does not
// expand) of printable characters.
func domainSpec(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t") {
		return false
	}
	return strings.Contains(s, "%") || strings.Contains(strings.Trim(s, "."), ".")
}

// dualCIDR checks "n", "n//m" or "//m" after a or mx.
func dualCIDR(s string) bool {
	v4, v6, dual := strings.Cut(s, "//")
	if v4 == "" && !dual {
		return false
	}
	ok := func(p string, max int) bool {
		n, err := strconv.Atoi(p)
		return err == nil && n >= 0 && n <= max
	}
	return (v4 == "" || ok(v4, 32)) && (!dual || ok(v6, 128))
}

// lookups are the terms of r that cost a DNS query, and its all
// mechanism ("" when none).
func (r *spfRecord) lookups() (n int, all string) {
	for _, t := range r.terms {
		switch {
		case !t.modifier && t.name == "all":
			all = string(t.qual) + "all"
		case !t.modifier && (t.name == "include" || t.name == "a" || t.name == "mx" || t.name == "ptr" || t.name == "exists"):
			n++
		}
	}
	if all == "" && r.redirect() != "" {
		n++
	}
	return n, all
}

// redirect is the target of r's redirect= ("" when none).
func (r *spfRecord) redirect() string {
	for _, t := range r.terms {
		if t.modifier && t.name == "redirect" {
			return t.value
		}
	}
	return ""
}

// spfTree is an SPF record with every include and redirect followed: the
// DNS queries it costs, the domains it reaches, the problems met.
type spfTree struct {
	lookups int
	reached map[string]string // domain (lower case) of an include or redirect → how it was reached
	broken  []Result
	// chain is what costs the queries, for the fix of a record past the
	// limit: "include:a.example (3)".
	chain []string
}

// maxDepth bounds how deep includes are followed (a loop of includes is
// past the lookup limit long before).
const maxDepth = 10

// walk follows rec's includes and redirect.
func (c *checker) walk(t *spfTree, rec *spfRecord, via string, depth int) {
	n, all := rec.lookups()
	t.lookups += n
	for _, term := range rec.terms {
		var target, how string
		switch {
		case !term.modifier && term.name == "include":
			target, how = term.value, "include:"+term.value
		case term.modifier && term.name == "redirect" && all == "":
			target, how = term.value, "redirect="+term.value
		default:
			continue
		}
		path := how
		if via != "" {
			path = via + " → " + how
		}
		if strings.Contains(target, "%") {
			continue // a macro: known only for a given sender
		}
		target = strings.ToLower(strings.TrimSuffix(target, "."))
		if _, ok := t.reached[target]; !ok {
			t.reached[target] = path
		}
		if depth >= maxDepth || t.lookups > 5*maxLookups {
			continue
		}
		before := t.lookups
		look := lookupTXT(c.ctx, c.r, target)
		var recs []string
		for _, txt := range look.txt {
			if isSPF(txt) {
				recs = append(recs, txt)
			}
		}
		switch {
		case look.err != nil:
			t.broken = append(t.broken, Result{Check: "spf", Status: Fail, Text: fmt.Sprintf("%s: %v", path, look.err),
				Fix: "the SPF record could not be followed; check the resolver (--resolver) and run herald check again"})
		case len(recs) == 0:
			t.broken = append(t.broken, Result{Check: "spf", Status: Fail,
				Text: fmt.Sprintf("%s: %s has no SPF record; receivers answer permerror for every message (RFC 7208 §5.2)", path, target),
				Fix:  fmt.Sprintf("remove %s from the record, or correct the domain", how)})
		case len(recs) > 1:
			t.broken = append(t.broken, Result{Check: "spf", Status: Fail,
				Text: fmt.Sprintf("%s: %s has %d SPF records; receivers answer permerror (RFC 7208 §4.5)", path, target, len(recs)),
				Fix:  fmt.Sprintf("remove %s, or ask its owner to keep one record", how)})
		default:
			sub, err := parseSPF(recs[0])
			if err != nil {
				t.broken = append(t.broken, Result{Check: "spf", Status: Fail,
					Text: fmt.Sprintf("%s: the SPF record of %s does not parse: %v; receivers answer permerror", path, target, err),
					Fix:  fmt.Sprintf("remove %s, or correct its record", how)})
				continue
			}
			c.walk(t, sub, path, depth+1)
		}
		if via == "" {
			t.chain = append(t.chain, fmt.Sprintf("%s (%d)", how, 1+t.lookups-before))
		}
	}
}

// spf checks the envelope domain's SPF record and that it authorises each
// provider.
func (c *checker) spf() {
	dom := c.envelope
	look := lookupTXT(c.ctx, c.r, dom)
	var recs []string
	for _, txt := range look.txt {
		if isSPF(txt) {
			recs = append(recs, txt)
		}
	}
	suggest := fmt.Sprintf("publish one TXT record at %s: %q", dom, c.suggestSPF())
	switch {
	case look.err != nil:
		c.add("spf", Fail, "check the resolver (--resolver HOST:PORT) and run herald check again", "%s: %v", dom, look.err)
		return
	case len(recs) == 0:
		c.add("spf", Fail, suggest, "%s has no SPF record (a TXT record \"v=spf1 ...\"): receivers cannot tell which servers may send its mail", dom)
		return
	case len(recs) > 1:
		c.add("spf", Fail, "merge them into one record: "+fmt.Sprintf("%q", c.suggestSPF()),
			"%s has %d SPF records (%s): receivers answer permerror, as if there were none (RFC 7208 §4.5)", dom, len(recs), quoteAll(recs))
		return
	}
	rec, err := parseSPF(recs[0])
	if err != nil {
		c.add("spf", Fail, "correct it; for example "+fmt.Sprintf("%q", c.suggestSPF()), "%s: the SPF record %q does not parse: %v; receivers answer permerror", dom, recs[0], err)
		return
	}
	t := &spfTree{reached: map[string]string{}}
	c.walk(t, rec, "", 0)
	_, all := rec.lookups()
	c.spfOK = true
	switch {
	case t.lookups > maxLookups:
		c.spfOK = false
		c.add("spf", Fail, "remove the includes and a/mx/ptr terms you do not need, or replace an include by the ip4:/ip6: ranges it lists: "+strings.Join(t.chain, ", "),
			"%s: %q needs %d DNS lookups counted through its includes, over the limit of %d (RFC 7208 §4.6.4): receivers answer permerror, as if there were no SPF", dom, recs[0], t.lookups, maxLookups)
	case all == "+all":
		c.spfOK = false
		c.add("spf", Fail, "end the record with -all or ~all", "%s: %q ends with +all: it authorises every server on the Internet, and spam filters distrust it", dom, recs[0])
	case all == "" && rec.redirect() == "":
		c.add("spf", Warn, "end the record with ~all (or -all)", "%s: %q has no all mechanism: mail from servers it does not list is neutral, neither passed nor failed", dom, recs[0])
	default:
		c.add("spf", Pass, "", "%s: %q (%d of %d DNS lookups)", dom, recs[0], t.lookups, maxLookups)
	}
	for _, b := range t.broken {
		c.spfOK = false
		c.results = append(c.results, b)
	}
	c.spfProviders(rec, t)
}

// spfProviders checks that the record authorises each provider's servers.
func (c *checker) spfProviders(rec *spfRecord, t *spfTree) {
	dom := c.envelope
	for _, p := range c.cfg.Provider {
		prof, known := profileOf(p)
		if !known {
			c.add("spf", Warn, fmt.Sprintf("make sure the SPF record of %s lists the address this relay sends from (ip4:… or ip6:…) or its operator's include:…", dom),
				"provider %s: herald cannot tell which address this relay sends from, so whether %s's SPF authorises it", p, dom)
			continue
		}
		note := ""
		if prof.spfNote != "" {
			note = "; " + prof.spfNote
		}
		if path, ok := t.reached[prof.include]; ok {
			how := ""
			if path != "include:"+prof.include {
				how = " (" + path + ")"
			}
			c.add("spf", Pass, "", "provider %s: %s authorises %s's servers%s%s", p, "include:"+prof.include, prof.name, how, note)
			continue
		}
		c.spfOK = false
		c.add("spf", Fail, fmt.Sprintf("add include:%s to the record of %s, before its all: %q", prof.include, dom, withInclude(rec, prof.include)),
			"provider %s: the SPF record of %s does not authorise %s's servers (include:%s)%s", p, dom, prof.name, prof.include, note)
	}
}

// suggestSPF is a record for the envelope domain authorising every
// provider herald knows.
func (c *checker) suggestSPF() string {
	terms := []string{"v=spf1"}
	seen := map[string]bool{}
	for _, p := range c.cfg.Provider {
		prof, known := profileOf(p)
		term := "ip4:<the relay's address>"
		if known {
			term = "include:" + prof.include
		}
		if !seen[term] {
			seen[term] = true
			terms = append(terms, term)
		}
	}
	if len(terms) == 1 {
		terms = append(terms, "ip4:<your sending servers' address>")
	}
	return strings.Join(append(terms, "~all"), " ")
}

// withInclude is rec with include:domain before its all (or at its end).
func withInclude(rec *spfRecord, domain string) string {
	f := strings.Fields(rec.text)
	at := len(f)
	for i, term := range f {
		if t := strings.ToLower(strings.TrimLeft(term, "+-~?")); t == "all" || strings.HasPrefix(t, "redirect=") {
			at = i
			break
		}
	}
	out := append(append(append([]string{}, f[:at]...), "include:"+domain), f[at:]...)
	return strings.Join(out, " ")
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, ", ")
}
