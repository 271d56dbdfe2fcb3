package check

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
)

// dkim checks the record of [dkim]'s selector against its private key or,
// without [dkim], whether the providers sign for the From domain.
func (c *checker) dkim() {
	d := c.cfg.DKIM
	if d == nil {
		c.dkimUnsigned()
		return
	}
	name := strings.ToLower(d.Selector + "._domainkey." + d.Domain)
	want, err := publicRecord(d.Key)
	if err != nil {
		c.add("dkim", Fail, "use an RSA or Ed25519 key", "dkim.private_key %s: %v", d.PrivateKey, err)
		return
	}
	publish := fmt.Sprintf("publish one TXT record at %s: %q", name, want)
	look := lookupTXT(c.ctx, c.r, name)
	switch {
	case look.err != nil:
		c.add("dkim", Fail, "check the resolver (--resolver HOST:PORT) and run herald check again", "%v", look.err)
		return
	case len(look.txt) == 0:
		c.add("dkim", Fail, publish, "no DKIM record at %s: receivers cannot verify herald's signature (d=%s s=%s), and DKIM fails", name, d.Domain, d.Selector)
		return
	case len(look.txt) > 1:
		c.add("dkim", Fail, "keep one: "+publish, "%s has %d TXT records (%s): a receiver may take any of them", name, len(look.txt), quoteAll(look.txt))
		return
	}
	tags, err := dkimTags(look.txt[0])
	if err != nil {
		c.add("dkim", Fail, publish, "the DKIM record at %s does not parse: %v", name, err)
		return
	}
	key, err := dkimKey(tags)
	if err != nil {
		c.add("dkim", Fail, publish, "the DKIM record at %s: %v", name, err)
		return
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if pub, ok := d.Key.Public().(equaler); !ok || !pub.Equal(key) {
		c.add("dkim", Fail, publish+" (or set dkim.private_key to the key whose public half is published there)",
			"the public key at %s is not the one of dkim.private_key (%s): every signature herald makes fails to verify", name, d.PrivateKey)
		return
	}
	c.dkimOK = true
	kind := "ed25519"
	if k, ok := d.Key.Public().(*rsa.PublicKey); ok {
		kind = fmt.Sprintf("rsa, %d bits", k.N.BitLen())
		if k.N.BitLen() < 2048 {
			c.add("dkim", Warn, "make a 2048-bit key (openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048), publish it under a new selector, then switch dkim.selector and dkim.private_key",
				"%s holds the key of dkim.private_key, but it has %d bits: Gmail and Yahoo ask bulk senders for at least 2048", name, k.N.BitLen())
			return
		}
	}
	if slices.Contains(strings.Split(strings.ReplaceAll(tags["t"], " ", ""), ":"), "y") {
		c.add("dkim", Warn, fmt.Sprintf("remove t=y from the record at %s once its signatures verify", name),
			"%s holds the key of dkim.private_key (%s), but in testing mode (t=y): receivers may treat its signatures as absent", name, kind)
		return
	}
	c.add("dkim", Pass, "", "%s holds the public key of dkim.private_key (%s): herald signs d=%s s=%s", name, kind, d.Domain, d.Selector)
}

// dkimUnsigned says, without [dkim], who signs the messages.
func (c *checker) dkimUnsigned() {
	fix := fmt.Sprintf("add a [dkim] section (domain = %q, selector, private_key) and publish its public key at <selector>._domainkey.%s; herald check prints the record to publish", c.from, c.from)
	if len(c.cfg.Provider) == 0 {
		c.add("dkim", Warn, fix, "no [dkim]: herald does not sign, and no provider is configured to tell whether one signs with %s", c.from)
		return
	}
	all := true
	for _, p := range c.cfg.Provider {
		if signsAs(p, c.from) {
			c.add("dkim", Pass, "", "no [dkim]; provider %s signs every message as %s, the From domain", p, c.from)
			continue
		}
		all = false
		if prof, ok := profileOf(p); ok {
			c.add("dkim", Warn, fix, "no [dkim]: herald does not sign, so DMARC alignment through DKIM depends on provider %s signing with %s: %s", p, c.from, prof.signs)
		} else {
			c.add("dkim", Warn, fix, "no [dkim]: herald does not sign, so DMARC alignment through DKIM depends on provider %s signing with %s, which herald cannot tell", p, c.from)
		}
	}
	c.dkimOK = all
}

// publicRecord is the DKIM record holding key's public half.
func publicRecord(key crypto.Signer) (string, error) {
	switch k := key.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", err
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k), nil
	}
	return "", fmt.Errorf("a %T key", key.Public())
}

// dkimTags parses a DKIM key record's tag=value list (RFC 6376 §3.2,
// §3.6.1): whitespace around tags and values is folding, and goes.
func dkimTags(txt string) (map[string]string, error) {
	tags := map[string]string{}
	for i, part := range strings.Split(txt, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not tag=value", part)
		}
		if _, dup := tags[k]; dup {
			return nil, fmt.Errorf("the tag %s= appears twice", k)
		}
		if k == "v" && i != 0 {
			return nil, fmt.Errorf("v= must come first")
		}
		tags[k] = strings.TrimSpace(v)
	}
	if v, ok := tags["v"]; ok && v != "DKIM1" {
		return nil, fmt.Errorf("v=%s: want v=DKIM1", v)
	}
	if _, ok := tags["p"]; !ok {
		return nil, fmt.Errorf("no p= (the public key)")
	}
	return tags, nil
}

// dkimKey is the public key of a DKIM record's tags.
func dkimKey(tags map[string]string) (crypto.PublicKey, error) {
	p := strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, tags["p"])
	if p == "" {
		return nil, fmt.Errorf("the key is revoked (p= is empty)")
	}
	b, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("p= is not base64")
	}
	k := tags["k"]
	if k == "" {
		k = "rsa"
	}
	switch k {
	case "rsa":
		if pub, err := x509.ParsePKIXPublicKey(b); err == nil {
			if rk, ok := pub.(*rsa.PublicKey); ok {
				return rk, nil
			}
			return nil, fmt.Errorf("k=rsa, but p= holds a %T key", pub)
		}
		if rk, err := x509.ParsePKCS1PublicKey(b); err == nil {
			return rk, nil
		}
		return nil, fmt.Errorf("p= is not an RSA public key")
	case "ed25519":
		if len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("p= is %d bytes; an Ed25519 key is %d (RFC 8463)", len(b), ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(b), nil
	}
	return nil, fmt.Errorf("k=%s: herald signs with rsa or ed25519", k)
}
