package config

import (
	"net/mail"

	"github.com/heraldmail/herald/recipients"
)

// validateAddresses checks the campaign's own addresses for what SMTP can
// carry: a domain that can be written in A-labels (it is sent so), and a
// local part in ASCII. A non-ASCII local part in the sender or the
// Reply-To would need SMTPUTF8 (RFC 6531) for every message, which many
// servers do not offer; herald does not send from such an address.
// Syntax is validateCampaign's.
func (c *Config) validateAddresses(bad func(key, format string, args ...any)) {
	cp := c.Campaign
	for _, a := range []struct{ key, v string }{
		{"campaign.from", cp.From}, {"campaign.reply_to", cp.ReplyTo}, {"campaign.bounce_address", cp.BounceAddress},
	} {
		if a.v == "" {
			continue
		}
		addr, err := mail.ParseAddress(a.v)
		if err != nil {
			continue // reported with the syntax
		}
		if recipients.NeedsSMTPUTF8(addr.Address) {
			bad(a.key, "%q: the part before @ is not ASCII; every message would need SMTPUTF8 (RFC 6531), which many servers do not offer: use an ASCII address", addr.Address)
		}
		if _, err := recipients.ASCIIDomain(addr.Address); err != nil {
			bad(a.key, "%q: the domain is not a valid internationalized domain name (%v)", addr.Address, err)
		}
	}
}
