package config

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/mail"
	"net/url"
	"os"
	"strings"

	"github.com/heraldmail/herald/unsubscribe"
	"github.com/heraldmail/herald/verp"
)

// Unsubscribe configures one-click unsubscribe links (RFC 8058). The
// secret signs the links; it is read from the environment variable
// SecretEnv by Load, by every process that sends (herald send, each herald
// worker), and is never stored in the queue nor printed.
type Unsubscribe struct {
	URL       string `toml:"url"`    // base of the https link; the token goes in its query
	Mailto    string `toml:"mailto"` // optional mailto: address of the header
	SecretEnv string `toml:"secret_env"`
	// Page is an html/template file for the pages herald serve answers
	// with (unsubscribe.Page); "": the built-in one.
	Page string `toml:"page"`
	// Language of the built-in pages: "en", "zh", or "auto" (default: the
	// reader's Accept-Language).
	Language string `toml:"language"`

	Secret []byte `toml:"-"`
}

// String describes the section without its secret.
func (u Unsubscribe) String() string {
	return fmt.Sprintf("unsubscribe %s mailto:%s (secret in $%s)", u.URL, u.Mailto, u.SecretEnv)
}

// DKIM configures DKIM signing (RFC 6376). The private key is read from
// the file PrivateKey by Load, by every process that sends; only the
// domain and selector travel with a campaign in the queue.
type DKIM struct {
	Domain     string `toml:"domain"`
	Selector   string `toml:"selector"`
	PrivateKey string `toml:"private_key"` // path to a PEM file

	// Key is the parsed private key (*rsa.PrivateKey or
	// ed25519.PrivateKey); never printed.
	Key crypto.Signer `toml:"-"`
}

// String describes the section without its key.
func (d DKIM) String() string {
	return fmt.Sprintf("dkim d=%s s=%s (key %s)", d.Domain, d.Selector, d.PrivateKey)
}

// validateHeaders checks the campaign's list and bounce keys.
func (c *Config) validateHeaders(bad func(key, format string, args ...any)) {
	cp := c.Campaign
	if cp.ListID != "" {
		if err := checkListID(cp.ListID); err != nil {
			bad("campaign.list_id", "%q: %v", cp.ListID, err)
		}
	}
	if cp.BounceAddress != "" {
		a, err := mail.ParseAddress(cp.BounceAddress)
		switch {
		case err != nil || strings.ContainsAny(cp.BounceAddress, "\r\n<>"):
			bad("campaign.bounce_address", "%q is not an address (write it bare: bounces@example.com)", cp.BounceAddress)
		case a.Name != "" || a.Address != strings.TrimSpace(cp.BounceAddress):
			bad("campaign.bounce_address", "%q: write the address bare, without a name", cp.BounceAddress)
		case cp.VERP && validID(cp.ID) && cp.ID != "":
			if _, err := verp.Encode(a.Address, cp.ID, "test@example.org"); err != nil {
				bad("campaign.bounce_address", "cannot carry VERP: %v", err)
			}
		}
	} else if cp.VERP {
		bad("campaign.verp", "needs campaign.bounce_address, the address bounces go to (e.g. \"bounces@example.com\")")
	}
}

// checkListID checks a List-Id value (RFC 2919): an optional phrase and
// <label.namespace>, a dot-atom with at least one dot.
func checkListID(v string) error {
	if strings.ContainsAny(v, "\r\n") {
		return fmt.Errorf("contains a line break")
	}
	open := strings.LastIndexByte(v, '<')
	if open < 0 || !strings.HasSuffix(v, ">") {
		return fmt.Errorf("write it as \"Name <list.example.com>\" or \"<list.example.com>\"")
	}
	phrase, id := strings.TrimSpace(v[:open]), v[open+1:len(v)-1]
	for i := 0; i < len(phrase); i++ {
		if c := phrase[i]; c < ' ' || c > '~' || c == '<' || c == '>' {
			return fmt.Errorf("the name before <…> must be printable ASCII without '<' or '>'")
		}
	}
	if !strings.Contains(id, ".") || !DotAtom(id) || len(id) > 255 {
		return fmt.Errorf("the id %q must be like list.example.com (letters, digits, dots and -_)", id)
	}
	return nil
}

// DotAtom reports whether s is an RFC 5322 dot-atom of ASCII characters
// (a List-Id's id, a Message-ID's halves).
func DotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0) {
			return false
		}
	}
	return true
}

// validateSigning checks [unsubscribe] and [dkim] and reads their secrets.
// A worker (no campaign) needs only the secrets: the links' base and the
// signing domain come with each campaign from the queue.
func (c *Config) validateSigning(getenv func(string) string, campaign bool, bad func(key, format string, args ...any)) {
	if u := c.Unsubscribe; u != nil {
		if u.URL == "" && campaign {
			bad("unsubscribe.url", "required: the https address of the one-click unsubscribe endpoint (herald serve)")
		} else if u.URL != "" {
			p, err := url.Parse(u.URL)
			if err != nil || p.Scheme != "https" || p.Host == "" || p.Fragment != "" || strings.ContainsAny(u.URL, " \r\n<>,") {
				bad("unsubscribe.url", "%q: an absolute https:// address is required (RFC 8058)", u.URL)
			}
		}
		switch u.Language {
		case "", "auto", "en", "zh":
		default:
			bad("unsubscribe.language", "%q: use \"en\", \"zh\" or \"auto\" (the reader's browser language)", u.Language)
		}
		if u.Page != "" {
			if err := readable(u.Page); err != nil {
				bad("unsubscribe.page", "%v", err)
			}
		}
		if u.Mailto != "" {
			a, err := mail.ParseAddress(u.Mailto)
			if err != nil || a.Name != "" || a.Address != u.Mailto || strings.ContainsAny(u.Mailto, "?&<>, ") {
				bad("unsubscribe.mailto", "%q: a bare address such as unsubscribe@example.com", u.Mailto)
			}
		}
		if u.SecretEnv == "" {
			bad("unsubscribe.secret_env", "required: the name of the environment variable holding the secret that signs the links")
		} else if v := getenv(u.SecretEnv); v == "" {
			if c.need.unsubscribe { // otherwise a stand-in key signs what the command renders
				bad("unsubscribe.secret_env", "environment variable %s is empty or not set", u.SecretEnv)
			}
		} else if len(v) < unsubscribe.MinSecret {
			bad("unsubscribe.secret_env", "the secret in %s is shorter than %d bytes (make one with: head -c 32 /dev/urandom | base64)", u.SecretEnv, unsubscribe.MinSecret)
		} else {
			u.Secret = []byte(v)
		}
	}
	if d := c.DKIM; d != nil {
		if d.Domain == "" {
			bad("dkim.domain", "required: the signing domain (d=), normally the domain of campaign.from")
		} else if !hostname(d.Domain) || !strings.Contains(d.Domain, ".") {
			bad("dkim.domain", "%q is not a domain name", d.Domain)
		}
		if d.Selector == "" {
			bad("dkim.selector", "required: the selector (s=) whose TXT record at <selector>._domainkey.<domain> holds the public key")
		} else if !hostname(d.Selector) {
			bad("dkim.selector", "%q: letters, digits, '-' and dots only", d.Selector)
		}
		if d.PrivateKey == "" {
			bad("dkim.private_key", "required: the path of the PEM private key (RSA or Ed25519)")
		} else if key, err := readKey(d.PrivateKey); err != nil {
			bad("dkim.private_key", "%v", err)
		} else {
			d.Key = key
		}
	}
}

// hostname reports whether s is dot-separated labels of letters, digits
// and '-' (no label starting or ending with '-').
func hostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// readKey reads a DKIM private key: RSA (PKCS#1 or PKCS#8, at least 1024
// bits) or Ed25519 (PKCS#8). Errors name the file, never its content.
func readKey(path string) (crypto.Signer, error) {
	if err := readable(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block (want \"-----BEGIN PRIVATE KEY-----\" or \"-----BEGIN RSA PRIVATE KEY-----\")", path)
	}
	var key any
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s: a %q PEM block; want an RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8) private key", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: cannot parse the private key (corrupt, or encrypted)", path)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < 1024 {
			return nil, fmt.Errorf("%s: a %d-bit RSA key; DKIM needs at least 1024 bits (2048 recommended, RFC 8301)", path, bits)
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("%s: a %T key; want RSA or Ed25519", path, key)
}
