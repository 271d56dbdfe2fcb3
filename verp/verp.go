package verp

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNotVERP is wrapped by Decode's errors: the address was not made by
// Encode for this bounce address.
var ErrNotVERP = errors.New("not a VERP address")

// Encode returns the envelope sender that carries campaign and rcpt back to
// the bounce address. rcpt's local part must be a dot-atom (an address that
// needs quotes cannot be carried) and campaign a herald campaign id.
func Encode(bounce, campaign, rcpt string) (string, error) {
	bl, bd, err := split(bounce)
	if err != nil {
		return "", fmt.Errorf("verp: bounce address %q: %w", bounce, err)
	}
	if !validCampaign(campaign) {
		return "", fmt.Errorf("verp: campaign id %q: use letters, digits, '-', '_' and '.' only", campaign)
	}
	rl, rd, err := split(rcpt)
	if err != nil {
		return "", fmt.Errorf("verp: recipient %q: %w", rcpt, err)
	}
	local := bl + "+" + campaign + "+" + rl + "=" + rd
	if len(local) > MaxLocal {
		return "", fmt.Errorf("verp: %s+%s+%s=%s is %d octets, more than a local part may hold (%d, RFC 5321)", bl, campaign, rl, rd, len(local), MaxLocal)
	}
	return local + "@" + bd, nil
}

// MaxLocal is the longest local part RFC 5321 (4.5.3.1.1) lets a server
// refuse beyond: a VERP address longer than that is not made.
const MaxLocal = 64

// Decode returns the campaign and the recipient address that Encode put
// into addr for bounce. The bounce address's local part and domain are
// compared without regard to case (mail systems may change it); the
// recipient comes back as it was encoded.
func Decode(addr, bounce string) (campaign, rcpt string, err error) {
	bl, bd, err := split(bounce)
	if err != nil {
		return "", "", fmt.Errorf("verp: bounce address %q: %w", bounce, err)
	}
	local, domain, err := split(addr)
	if err != nil {
		return "", "", fmt.Errorf("verp: %q: %w: %w", addr, ErrNotVERP, err)
	}
	if !strings.EqualFold(domain, bd) {
		return "", "", fmt.Errorf("verp: %q: %w: the domain is not %s", addr, ErrNotVERP, bd)
	}
	if len(local) <= len(bl)+1 || !strings.EqualFold(local[:len(bl)], bl) || local[len(bl)] != '+' {
		return "", "", fmt.Errorf("verp: %q: %w: it does not start with %s+", addr, ErrNotVERP, bl)
	}
	campaign, rest, ok := strings.Cut(local[len(bl)+1:], "+")
	if !ok || !validCampaign(campaign) {
		return "", "", fmt.Errorf("verp: %q: %w: no campaign id followed by '+'", addr, ErrNotVERP)
	}
	eq := strings.LastIndexByte(rest, '=')
	if eq <= 0 || eq == len(rest)-1 {
		return "", "", fmt.Errorf("verp: %q: %w: no recipient local=domain", addr, ErrNotVERP)
	}
	rl, rd := rest[:eq], rest[eq+1:]
	if !dotAtom(rl) || !validDomain(rd) {
		return "", "", fmt.Errorf("verp: %q: %w: the recipient %s@%s is not an address", addr, ErrNotVERP, rl, rd)
	}
	return campaign, rl + "@" + rd, nil
}

// split cuts an address at its last '@' and checks both parts.
func split(addr string) (local, domain string, err error) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", "", errors.New("not local@domain")
	}
	local, domain = addr[:at], addr[at+1:]
	if !dotAtom(local) {
		return "", "", errors.New("the local part is not a dot-atom (quoted local parts cannot be carried)")
	}
	if !validDomain(domain) {
		return "", "", errors.New("not a domain name")
	}
	return local, domain, nil
}

func validCampaign(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// dotAtom reports whether s is an RFC 5322 dot-atom-text (atext, dots
// between them), allowing UTF-8 (RFC 6531).
func dotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 0x80, c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validDomain accepts a domain name (UTF-8 allowed): a dot-atom without
// '=' or '+', so that it can follow the last '=' of a local part. An
// address literal such as [192.0.2.1] cannot be carried in a local part.
func validDomain(s string) bool {
	return dotAtom(s) && !strings.ContainsAny(s, "=+")
}
