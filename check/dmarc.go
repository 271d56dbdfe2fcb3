package check

import (
	"fmt"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
)

// twoLevelSuffixes are public suffixes of two labels under which domains
// are registered (example.co.uk, example.com.cn): the organisational
// domain under them has three labels. An approximation of the Public
// Suffix List that RFC 7489 §3.2 uses, for the suffixes senders meet most.
var twoLevelSuffixes = map[string]bool{
	"co.uk": true, "org.uk": true, "ac.uk": true, "gov.uk": true, "me.uk": true, "ltd.uk": true, "plc.uk": true,
	"com.cn": true, "net.cn": true, "org.cn": true, "gov.cn": true, "edu.cn": true, "ac.cn": true,
	"com.hk": true, "org.hk": true, "net.hk": true, "edu.hk": true, "com.tw": true, "org.tw": true, "net.tw": true, "edu.tw": true,
	"com.au": true, "net.au": true, "org.au": true, "edu.au": true, "gov.au": true,
	"co.jp": true, "ne.jp": true, "or.jp": true, "ac.jp": true, "go.jp": true,
	"co.kr": true, "or.kr": true, "co.nz": true, "org.nz": true, "co.in": true, "org.in": true, "co.za": true, "org.za": true,
	"com.br": true, "net.br": true, "org.br": true, "com.mx": true, "com.ar": true, "com.sg": true, "edu.sg": true,
	"com.my": true, "com.tr": true, "com.ua": true, "co.id": true, "co.th": true, "com.vn": true, "co.il": true,
}

// orgDomain approximates a domain's organisational domain (RFC 7489
// §3.2): its last two labels, or three under a suffix of
// twoLevelSuffixes. A domain under another multi-label public suffix is
// taken for its registrable part wrongly (too short); herald check then
// looks for the DMARC record one level too high.
func orgDomain(d string) string {
	labels := strings.Split(strings.ToLower(strings.TrimSuffix(d, ".")), ".")
	n := 2
	if len(labels) >= 3 && twoLevelSuffixes[strings.Join(labels[len(labels)-2:], ".")] {
		n = 3
	}
	if len(labels) <= n {
		return strings.Join(labels, ".")
	}
	return strings.Join(labels[len(labels)-n:], ".")
}

// aligned reports whether domain aligns with the From domain under mode
// (RFC 7489 §3.1): the same domain (strict), or the same organisational
// domain (relaxed).
func aligned(domain, from string, mode dmarc.AlignmentMode) bool {
	if mode == dmarc.AlignmentStrict {
		return domain == from
	}
	return orgDomain(domain) == orgDomain(from)
}

// dmarc checks the From domain's DMARC record and its alignment.
func (c *checker) dmarc() {
	from := c.from
	org := orgDomain(from)
	suggest := fmt.Sprintf("publish a TXT record at _dmarc.%s: \"v=DMARC1; p=none; rua=mailto:dmarc-reports@%s\" to begin (reports come to that address), then p=quarantine once they show all your mail aligned", org, org)
	name := "_dmarc." + from
	look := lookupTXT(c.ctx, c.r, name)
	if look.err == nil && len(dmarcRecords(look.txt)) == 0 && org != from {
		name = "_dmarc." + org
		look = lookupTXT(c.ctx, c.r, name)
	}
	recs := dmarcRecords(look.txt)
	var rec *dmarc.Record
	switch {
	case look.err != nil:
		c.add("dmarc", Fail, "check the resolver (--resolver HOST:PORT) and run herald check again", "%v", look.err)
	case len(recs) == 0:
		where := "_dmarc." + from
		if org != from {
			where += " nor at _dmarc." + org
		}
		c.add("dmarc", Fail, suggest, "no DMARC record at %s: Gmail, Yahoo and Outlook.com require one of bulk senders", where)
	case len(recs) > 1:
		c.add("dmarc", Fail, "keep one record", "%s has %d DMARC records (%s): receivers then apply none (RFC 7489 §6.6.3)", name, len(recs), quoteAll(recs))
	default:
		r, err := dmarc.Parse(recs[0])
		if err != nil {
			c.add("dmarc", Fail, "correct it; for example \"v=DMARC1; p=none; rua=mailto:dmarc-reports@"+org+"\"",
				"the DMARC record at %s, %q, does not parse: %v", name, recs[0], strings.TrimPrefix(err.Error(), "dmarc: "))
			break
		}
		rec = r
		policy, which := r.Policy, "p"
		if name != "_dmarc."+from && r.SubdomainPolicy != "" {
			policy, which = r.SubdomainPolicy, "sp" // a subdomain's policy (RFC 7489 §6.3)
		}
		modes := fmt.Sprintf("adkim=%s, aspf=%s", r.DKIMAlignment, r.SPFAlignment)
		if policy == dmarc.PolicyNone {
			c.add("dmarc", Warn, fmt.Sprintf("once the aggregate reports show all your mail aligned, move to %s=quarantine (then reject) at %s", which, name),
				"%s: %q: %s=none is monitoring only: receivers act on nothing that fails (%s)", name, recs[0], which, modes)
		} else {
			c.add("dmarc", Pass, "", "%s: %q: %s=%s (%s)", name, recs[0], which, policy, modes)
		}
	}
	c.alignment(rec)
}

// dmarcRecords are the TXT records that are DMARC records.
func dmarcRecords(txt []string) []string {
	var recs []string
	for _, t := range txt {
		if v, _, _ := strings.Cut(t, ";"); strings.EqualFold(strings.ReplaceAll(v, " ", ""), "v=DMARC1") {
			recs = append(recs, t)
		}
	}
	return recs
}

// alignment checks that the From domain aligns with the DKIM or the SPF
// domain (RFC 7489 §3.1) and that what aligns passes; without a record,
// under relaxed alignment (what Gmail asks of bulk senders).
func (c *checker) alignment(rec *dmarc.Record) {
	adkim, aspf := dmarc.AlignmentMode(dmarc.AlignmentRelaxed), dmarc.AlignmentMode(dmarc.AlignmentRelaxed)
	if rec != nil {
		adkim, aspf = rec.DKIMAlignment, rec.SPFAlignment
	}
	mode := func(m dmarc.AlignmentMode) string {
		if m == dmarc.AlignmentStrict {
			return "strict"
		}
		return "relaxed"
	}
	from := c.from

	var dkimWhy string
	dkimAligned := false
	switch d := c.cfg.DKIM; {
	case d != nil:
		dkimAligned = aligned(strings.ToLower(d.Domain), from, adkim)
		dkimWhy = fmt.Sprintf("DKIM d=%s (adkim %s)", strings.ToLower(d.Domain), mode(adkim))
	case c.dkimOK && len(c.cfg.Provider) > 0:
		dkimAligned = true
		dkimWhy = "the provider's DKIM signature as " + from
	default:
		dkimWhy = "DKIM (herald does not sign: no [dkim])"
	}
	spfAligned := aligned(c.envelope, from, aspf)
	spfWhy := fmt.Sprintf("SPF envelope domain %s (aspf %s)", c.envelope, mode(aspf))

	dkimPass, spfPass := dkimAligned && c.dkimOK, spfAligned && c.spfOK
	var good, bad []string
	for _, m := range []struct {
		why              string
		aligned, passing bool
		check            string
	}{{dkimWhy, dkimAligned, c.dkimOK, "DKIM"}, {spfWhy, spfAligned, c.spfOK, "SPF"}} {
		switch {
		case m.aligned && m.passing:
			good = append(good, m.why)
		case m.aligned:
			bad = append(bad, m.why+" aligns, but "+m.check+" fails above")
		default:
			bad = append(bad, m.why+" does not align")
		}
	}
	if dkimPass || spfPass {
		text := fmt.Sprintf("From domain %s aligns with %s", from, strings.Join(good, " and "))
		if len(bad) > 0 {
			text += "; " + strings.Join(bad, "; ")
		}
		c.add("dmarc", Pass, "", "%s", text)
		return
	}
	var fix []string
	if c.cfg.DKIM != nil && !dkimAligned {
		if adkim == dmarc.AlignmentStrict && aligned(strings.ToLower(c.cfg.DKIM.Domain), from, dmarc.AlignmentRelaxed) {
			fix = append(fix, fmt.Sprintf("sign with dkim.domain = %q, or relax the record to adkim=r", from))
		} else {
			fix = append(fix, fmt.Sprintf("sign with dkim.domain = %q", from))
		}
	}
	if c.cfg.DKIM == nil {
		fix = append(fix, fmt.Sprintf("add a [dkim] section with domain = %q", from))
	}
	if !spfAligned {
		if aspf == dmarc.AlignmentStrict && aligned(c.envelope, from, dmarc.AlignmentRelaxed) {
			fix = append(fix, fmt.Sprintf("set campaign.bounce_address at %s, or relax the record to aspf=r", from))
		} else {
			fix = append(fix, fmt.Sprintf("set campaign.bounce_address at %s (or a subdomain of it)", from))
		}
	}
	if dkimAligned || spfAligned {
		fix = append(fix, "correct the failing check above")
	}
	c.add("dmarc", Fail, strings.Join(fix, "; "),
		"From domain %s aligns with neither: %s: DMARC fails for every message, and Gmail, Yahoo and Outlook.com reject or junk it", from, strings.Join(bad, "; "))
}
