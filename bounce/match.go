package bounce

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"

	"github.com/heraldmail/herald/verp"
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

// decodeVERP is the VERP decoder: package verp's, which the engine's
// encoder (verp.Encode) matches.
var decodeVERP = verp.Decode

// errNoMatch: the report names no campaign herald knows of.
var errNoMatch = errors.New("no VERP address and no " + CampaignHeader + " header")

// match finds the campaign and the recipients of a report: first a VERP
// address of one of bounceAddrs that it was delivered to (or the
// Return-Path of the returned message), for exactly one recipient; else the X-Herald-Campaign header of
// the returned message, for each failed recipient of the report (or the
// returned message's To).
func match(r *Report, bounceAddrs ...string) ([]Match, error) {
	cands := append([]string{}, r.Envelope...)
	if r.Original != nil {
		if rp := strings.Trim(strings.TrimSpace(r.Original.Get("Return-Path")), "<>"); rp != "" {
			cands = append(cands, rp)
		}
	}
	for _, base := range bounceAddrs {
		if base == "" {
			continue
		}
		for _, a := range cands {
			if c, rcpt, err := decodeVERP(a, base); err == nil {
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
