package bounce

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
)

// CampaignHeader names the campaign in every message herald sends.
const CampaignHeader = "X-Herald-Campaign"

// Match is a report's campaign and recipient.
type Match struct {
	Campaign  string
	Recipient string // as found; the store key is its lower-case form
	// By says how it was matched: "verp" or "header".
	By string
}

// decodeVERP reads a VERP address of the form
// <bounce-local>+<campaign>+<rcpt-local>=<rcpt-domain>@<bounce-domain>
// made for the bounce address bounce.
//
// TODO(merge): replace with verp.Decode from package verp (same signature)
// once that package is on main.
func decodeVERP(addr, bounce string) (campaign, rcpt string, err error) {
	bl, bd, ok := splitAddr(bounce)
	if !ok {
		return "", "", fmt.Errorf("bounce address %q has no domain", bounce)
	}
	al, ad, ok := splitAddr(addr)
	if !ok || !strings.EqualFold(ad, bd) {
		return "", "", fmt.Errorf("%q is not at the bounce domain %s", addr, bd)
	}
	prefix := bl + "+"
	if len(al) <= len(prefix) || !strings.EqualFold(al[:len(prefix)], prefix) {
		return "", "", fmt.Errorf("%q is not a VERP address of %s", addr, bounce)
	}
	rest := al[len(prefix):]
	i := strings.IndexByte(rest, '+')
	if i <= 0 {
		return "", "", fmt.Errorf("%q has no campaign", addr)
	}
	campaign, enc := rest[:i], rest[i+1:]
	j := strings.LastIndexByte(enc, '=')
	if j <= 0 || j == len(enc)-1 {
		return "", "", fmt.Errorf("%q has no recipient", addr)
	}
	return campaign, enc[:j] + "@" + enc[j+1:], nil
}

func splitAddr(a string) (local, domain string, ok bool) {
	a = strings.Trim(strings.TrimSpace(a), "<>")
	i := strings.LastIndexByte(a, '@')
	if i <= 0 || i == len(a)-1 {
		return "", "", false
	}
	return a[:i], a[i+1:], true
}

// errNoMatch: the report names no campaign herald knows of.
var errNoMatch = errors.New("no VERP address and no " + CampaignHeader + " header")

// match finds the campaign and the recipients of a report: first a VERP
// address it was delivered to (or the Return-Path of the returned
// message), for exactly one recipient; else the X-Herald-Campaign header of
// the returned message, for each failed recipient of the report (or the
// returned message's To).
func match(r *Report, bounceAddr string) ([]Match, error) {
	cands := append([]string{}, r.Envelope...)
	if r.Original != nil {
		if rp := strings.Trim(strings.TrimSpace(r.Original.Get("Return-Path")), "<>"); rp != "" {
			cands = append(cands, rp)
		}
	}
	if bounceAddr != "" {
		for _, a := range cands {
			if c, rcpt, err := decodeVERP(a, bounceAddr); err == nil {
				return []Match{{Campaign: c, Recipient: rcpt, By: "verp"}}, nil
			}
		}
	}
	var campaign string
	if r.Original != nil {
		campaign = strings.TrimSpace(r.Original.Get(CampaignHeader))
	}
	if campaign == "" {
		return nil, errNoMatch
	}
	var out []Match
	for _, rc := range r.Recipients {
		out = append(out, Match{Campaign: campaign, Recipient: rc.Address, By: "header"})
	}
	if len(out) == 0 {
		if list, err := mail.ParseAddressList(r.Original.Get("To")); err == nil && len(list) > 0 {
			out = append(out, Match{Campaign: campaign, Recipient: list[0].Address, By: "header"})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s %q but no recipient", CampaignHeader, campaign)
	}
	return out, nil
}

// recipientFor picks the report's line for a matched recipient: the one
// with its address, else the strongest.
func recipientFor(r *Report, addr string) Recipient {
	best := -1
	for i, rc := range r.Recipients {
		if strings.EqualFold(rc.Address, addr) {
			return rc
		}
		if best < 0 || rc.Kind > r.Recipients[best].Kind {
			best = i
		}
	}
	if best < 0 {
		return Recipient{Address: addr}
	}
	return r.Recipients[best]
}
