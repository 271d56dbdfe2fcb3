package check

import (
	"fmt"
	"strings"

	"github.com/heraldmail/herald/config"
	"github.com/heraldmail/herald/engine"
)

// profile is what herald knows of a provider's sending: the SPF include
// its servers are listed in, the mailbox domains it signs for on its own,
// and what it does about DKIM without [dkim]. From the providers'
// documentation (2025).
type profile struct {
	name    string
	include string   // the SPF include that lists its sending servers
	own     []string // its mailbox domains, which it signs as (DKIM d=)
	signs   string   // whether it signs with the customer's domain
	spfNote string   // a caveat of the SPF check
}

var profiles = map[string]profile{
	"163": {name: "163 Mail", include: "spf.163.com", own: []string{"163.com"},
		signs: "163 Mail signs with its own domain (d=163.com), which aligns only with a From address at 163.com"},
	"qq": {name: "QQ Mail", include: "spf.mail.qq.com", own: []string{"qq.com", "foxmail.com"},
		signs: "QQ Mail signs with its own domain (d=qq.com), which aligns only with a From address at qq.com"},
	"gmail": {name: "Gmail", include: "_spf.google.com", own: []string{"gmail.com", "googlemail.com"},
		signs: "Gmail signs with your domain only for a Google Workspace domain whose DKIM is set up in the Admin console (Apps, Google Workspace, Gmail, Authenticate email); otherwise its signature does not align"},
	"office365": {name: "Office 365", include: "spf.protection.outlook.com",
		signs: "Office 365 signs with your domain only once DKIM is enabled for it in Microsoft Defender (Email authentication settings, DKIM); otherwise it signs as <tenant>.onmicrosoft.com, which does not align"},
	"ses": {name: "Amazon SES", include: "amazonses.com",
		signs:   "Amazon SES signs with your domain only when the domain identity is verified with Easy DKIM (or BYODKIM); otherwise it signs as amazonses.com, which does not align",
		spfNote: "SES sends with this envelope domain only when it is the identity's custom MAIL FROM domain (set up in SES, with its MX record); otherwise it uses its own amazonses.com, and SPF does not align with the From domain"},
}

// profileOf is p's profile: its preset's, or the one of its host.
func profileOf(p config.Provider) (profile, bool) {
	kind := strings.ToLower(p.Preset)
	if kind == "" {
		switch h := strings.ToLower(strings.TrimSuffix(p.Host, ".")); {
		case h == "smtp.163.com":
			kind = "163"
		case h == "smtp.qq.com":
			kind = "qq"
		case h == "smtp.gmail.com" || h == "smtp-relay.gmail.com":
			kind = "gmail"
		case h == "smtp.office365.com":
			kind = "office365"
		case strings.HasPrefix(h, "email-smtp.") && strings.HasSuffix(h, ".amazonaws.com"):
			kind = "ses"
		}
	}
	prof, ok := profiles[kind]
	return prof, ok
}

// signsAs reports whether p signs every message with domain on its own.
func signsAs(p config.Provider, domain string) bool {
	prof, ok := profileOf(p)
	if !ok {
		return false
	}
	for _, d := range prof.own {
		if d == domain {
			return true
		}
	}
	return false
}

// probe turns what each provider answered into results.
func (c *checker) probe(res []engine.ProbeResult) {
	for _, r := range res {
		if r.Problem != "" {
			fix := r.Fix
			if fix == "" {
				fix = "correct the provider's section ([[provider]]) as said, and run herald check again"
			}
			c.add("provider", Fail, fix, "%s: %s", r.Provider, r.Problem)
			continue
		}
		var did []string
		did = append(did, "answered")
		if r.TLS != "" {
			did = append(did, "encrypted with "+r.TLS)
		}
		if r.Login {
			did = append(did, "took the login")
		}
		if r.Sender != "" {
			did = append(did, fmt.Sprintf("took MAIL FROM:<%s>", r.Sender))
		}
		c.add("provider", Pass, "", "%s: %s", r.Provider, strings.Join(did, ", "))
		if r.TLS == "" {
			fix := "a relay on another machine: set tls = \"starttls\" (or \"tls\" on port 465); tls = \"none\" only suits a relay on this machine"
			what := "and the server does not offer STARTTLS"
			if r.OffersSTARTTLS {
				what = "though the server offers STARTTLS"
				fix = "set tls = \"starttls\""
			}
			c.add("provider", Warn, fix, "%s: messages go in clear text (tls = \"none\"), %s", r.Provider, what)
		}
	}
}
