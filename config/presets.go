package config

import (
	"fmt"
	"net/mail"
	"sort"
	"strings"
)

// A preset is what `preset = "..."` on a [[provider]] fills in: the
// submission server and conservative limits. Facts are from the providers'
// documentation as collected in the project's SMTP reply reference; where a
// provider publishes no limit, the value is a cautious guess, said so below.
// Herald sends one recipient per message, so a per-recipient limit is a
// per-message limit here.
type preset struct {
	host string // "" for ses: built from region
	// endpoints are the documented submission ports and their TLS mode; the
	// first is the default.
	endpoints     []endpoint
	rate          float64 // messages per second
	burst         int
	connections   int
	perConnection int // 0: the generic default
	daily         int
}

type endpoint struct {
	port int
	tls  string
}

var presets = map[string]preset{
	// 163 (NetEase) publishes no limits; its replies show a per-15-minute
	// limit (MI:SFQ), a daily count (MI:STC), and per-connection and per-IP
	// concurrency limits (HL:ICC). So: one connection, a fresh one every 20
	// messages, one message every 20 seconds (45 per 15 minutes) and 200 a
	// day, the same as the strictest documented quota below (SES sandbox).
	// Port 25 is plain text only, and 163 requires a login, so it is not
	// offered.
	"163": {
		host:      "smtp.163.com",
		endpoints: []endpoint{{465, "tls"}, {994, "tls"}},
		rate:      0.05, burst: 1, connections: 1, perConnection: 20, daily: 200,
	},
	// QQ Mail has per-minute, per-hour and per-day limits whose values are
	// not published: the same cautious values as 163.
	"qq": {
		host:      "smtp.qq.com",
		endpoints: []endpoint{{465, "tls"}, {587, "starttls"}},
		rate:      0.05, burst: 1, connections: 1, perConnection: 20, daily: 200,
	},
	// Gmail documents 500 messages a day for a free account (2,000 for
	// Workspace: set daily = 2000). It publishes no SMTP rate or connection
	// limit but throttles "an unusual rate" (421 4.7.28): one message every
	// 5 seconds sends the 500 in about 42 minutes, and two connections keep
	// up with that even when replies are slow.
	"gmail": {
		host:      "smtp.gmail.com",
		endpoints: []endpoint{{587, "starttls"}, {465, "tls"}},
		rate:      0.2, burst: 1, connections: 2, daily: 500,
	},
	// Office 365 documents 30 messages a minute, 10,000 recipients a day and
	// 3 concurrent connections per mailbox. A rate of 0.4/s with a burst of
	// 1 sends at most 25 in any minute, safely under 30 (0.5/s would allow
	// 31 with the burst).
	"office365": {
		host:      "smtp.office365.com",
		endpoints: []endpoint{{587, "starttls"}},
		rate:      0.4, burst: 1, connections: 3, daily: 10000,
	},
	// Amazon SES limits are per account; a new account is in the sandbox:
	// 1 message a second and 200 a day. Raise rate and daily to the account's
	// quota once out of the sandbox. No SMTP connection limit is documented;
	// at 1/s two connections are plenty.
	"ses": {
		endpoints: []endpoint{{587, "starttls"}, {2587, "starttls"}, {465, "tls"}, {2465, "tls"}},
		rate:      1, burst: 1, connections: 2, daily: 200,
	},
}

// presetNames lists the valid presets, sorted, for error messages.
func presetNames() string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, fmt.Sprintf("%q", n))
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// sesHost is the SMTP endpoint of Amazon SES in region.
func sesHost(region string) string { return "email-smtp." + region + ".amazonaws.com" }

// applyPresets fills each provider's keys left unset from its preset, before
// the generic defaults. zeros holds the keys the file set to 0 (see
// explicitZeros): for rate and daily, 0 means unlimited, so an explicit 0
// wins over a preset (for the other keys 0 means "the default", and a
// preset is the default). It reports unknown presets and the keys a preset
// cannot fill.
func (c *Config) applyPresets(zeros map[string]bool) Problems {
	var probs Problems
	bad := func(key, format string, args ...any) {
		probs = append(probs, key+": "+fmt.Sprintf(format, args...))
	}
	for i := range c.Provider {
		p := &c.Provider[i]
		k := fmt.Sprintf("provider[%d]", i)
		if p.Preset == "" {
			if p.Region != "" {
				bad(k+".region", "only used with preset = \"ses\"")
			}
			continue
		}
		p.Preset = strings.ToLower(p.Preset)
		ps, ok := presets[p.Preset]
		if !ok {
			bad(k+".preset", "unknown preset %q: use one of %s, or leave it out and set host", p.Preset, presetNames())
			continue
		}
		if p.Region != "" && p.Preset != "ses" {
			bad(k+".region", "only used with preset = \"ses\"")
		}
		if p.Name == "" {
			p.Name = p.Preset
		}
		if p.Host == "" {
			switch {
			case ps.host != "":
				p.Host = ps.host
			case p.Region == "":
				bad(k+".region", "required with preset = %q (e.g. \"us-east-1\"), or set host", p.Preset)
			case !validRegion(p.Region):
				bad(k+".region", "%q is not an AWS region name such as \"us-east-1\"", p.Region)
			default:
				p.Host = sesHost(p.Region)
			}
		} else if p.Region != "" && p.Preset == "ses" && !strings.EqualFold(p.Host, sesHost(p.Region)) {
			bad(k+".region", "%q does not match host %q; set one of them", p.Region, p.Host)
		}
		switch {
		case p.Port == 0 && p.TLS == "":
			p.Port, p.TLS = ps.endpoints[0].port, ps.endpoints[0].tls
		case p.Port == 0:
			for _, e := range ps.endpoints {
				if e.tls == p.TLS {
					p.Port = e.port
					break
				}
			}
			if p.Port == 0 {
				bad(k+".port", "preset %q documents no port for tls = %q; set port", p.Preset, p.TLS)
			}
		case p.TLS == "":
			for _, e := range ps.endpoints {
				if e.port == p.Port {
					p.TLS = e.tls
					break
				}
			}
			if p.TLS == "" {
				bad(k+".tls", "preset %q documents no port %d; set tls", p.Preset, p.Port)
			}
		}
		if p.Username == "" {
			// Every preset's provider refuses mail without a login: say so
			// now rather than at the first connection.
			bad(k+".username", "required with preset = %q: the account's login (with password_env naming the variable that holds its password%s)", p.Preset, presetSecretNote(p.Preset))
		}
		if p.Rate == 0 && !zeros[k+".rate"] {
			p.Rate = ps.rate
		}
		if p.Burst == 0 {
			p.Burst = ps.burst
		}
		if p.Connections == 0 {
			p.Connections = ps.connections
		}
		if p.PerConnection == 0 {
			p.PerConnection = ps.perConnection
		}
		if p.Daily == 0 && !zeros[k+".daily"] {
			p.Daily = ps.daily
		}
	}
	return probs
}

// presetSecretNote says what the password is for providers where it is
// not the account's password.
func presetSecretNote(preset string) string {
	switch preset {
	case "163", "qq":
		return ": the client authorization code (授权码), not the mailbox password"
	case "gmail":
		return ": an app password"
	case "ses":
		return ": the SMTP credentials made in the SES console, not the AWS keys"
	}
	return ""
}

// validRegion accepts AWS region names: lower-case words and a number joined
// by '-', such as "us-east-1" or "us-gov-west-1".
func validRegion(r string) bool {
	parts := strings.Split(r, "-")
	if len(parts) < 3 {
		return false
	}
	for i, part := range parts {
		if part == "" {
			return false
		}
		for _, ch := range part {
			digit := ch >= '0' && ch <= '9'
			if i == len(parts)-1 && !digit || i < len(parts)-1 && !(ch >= 'a' && ch <= 'z') {
				return false
			}
		}
	}
	return true
}

// kind is the preset this provider is, or whose host it uses.
func (p Provider) kind() string {
	if p.Preset != "" {
		return strings.ToLower(p.Preset)
	}
	switch strings.ToLower(strings.TrimSuffix(p.Host, ".")) {
	case "smtp.163.com":
		return "163"
	case "smtp.qq.com":
		return "qq"
	case "smtp.gmail.com":
		return "gmail"
	case "smtp.office365.com":
		return "office365"
	}
	return ""
}

// LoginHint is a sentence to show when this provider refuses the login, for
// providers whose login needs more than the account's password; "" for the
// others. It names the password_env variable, never the password.
func (p Provider) LoginHint() string {
	env := "password_env"
	if p.PasswordEnv != "" {
		env = "password_env (" + p.PasswordEnv + ")"
	}
	switch p.kind() {
	case "163":
		return "163 Mail accepts the login only when SMTP is switched on in the mailbox's web settings, and " +
			env + " must hold the client authorization code (授权码) made there, not the web password."
	case "qq":
		return "QQ Mail accepts the login only when SMTP is switched on in the mailbox's web settings, and " +
			env + " must hold the 16-character authorization code (授权码) made there, not the web password; " +
			"campaign.from must also be the login address."
	case "gmail":
		return "Gmail needs an app password (Google Account, Security, App passwords, with 2-Step Verification on) in " +
			env + ", not the account password."
	case "office365":
		return "Office 365 accepts the login only when SMTP AUTH (authenticated client submission) is enabled for this mailbox, " +
			"and not disabled for the whole tenant, in the Microsoft 365 admin center."
	}
	return ""
}

// validateSenders checks campaign.from against providers that only accept
// their login as the sender: QQ Mail answers 501 to any other MAIL FROM.
func (c *Config) validateSenders(bad func(key, format string, args ...any)) {
	from, err := mail.ParseAddress(c.Campaign.From)
	if err != nil {
		return // reported by validateCampaign
	}
	for i, p := range c.Provider {
		if p.kind() != "qq" || p.Username == "" {
			continue
		}
		if !strings.EqualFold(from.Address, p.Username) {
			bad("campaign.from", "%q must be provider[%d].username %q: QQ Mail refuses any other sender (501)",
				from.Address, i, p.Username)
		}
	}
}
