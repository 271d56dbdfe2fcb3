package recipients

import (
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// ASCIIDomain returns addr (a plain local@domain) with its domain written
// in A-labels, as SMTP carries it: "user@例子.测试" becomes
// "user@xn--fsqu00a.xn--0zwm56d" (IDNA 2008, RFC 5890, with the UTS #46
// lookup mapping: full-width letters and the ideographic full stop are
// mapped, upper case is folded). A domain that is all ASCII and has no
// "xn--" label comes back as it is, so that ordinary addresses cost
// nothing; an "xn--" label is checked to decode to a valid label. The
// local part is never changed: it may need SMTPUTF8 (see NeedsSMTPUTF8).
func ASCIIDomain(addr string) (string, error) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr, nil
	}
	domain := addr[at+1:]
	if ascii(domain) && !strings.Contains(strings.ToLower(domain), "xn--") {
		return addr, nil
	}
	a, err := idna.Lookup.ToASCII(domain)
	if err != nil {
		return addr, err
	}
	return addr[:at+1] + a, nil
}

// NeedsSMTPUTF8 reports whether addr has a local part that is not ASCII:
// such an address can be sent only through a server that offers SMTPUTF8
// (RFC 6531). A non-ASCII domain does not need it: it goes as A-labels.
func NeedsSMTPUTF8(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return !ascii(addr)
	}
	return !ascii(addr[:at])
}

// checkDomain returns why the domain of the plain address s cannot be
// written in A-labels, or "".
func checkDomain(s string) string {
	if _, err := ASCIIDomain(s); err != nil {
		return fmt.Sprintf("%q: the domain is not a valid internationalized domain name (%v)", s, err)
	}
	return ""
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
