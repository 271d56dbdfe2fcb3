package check

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/heraldmail/herald/config"
	"github.com/heraldmail/herald/internal/dnstest"
)

// TestDKIMRSA compares RSA keys with what DNS publishes: the SPKI form
// (what herald prints) and the PKCS#1 form both hold the key; another
// key, a revoked one, a key of another type, a short key and testing
// mode say so.
func TestDKIMRSA(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	short, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	spki := func(k *rsa.PrivateKey) string {
		der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(der)
	}
	want, err := publicRecord(key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := base64.StdEncoding.EncodeToString(x509.MarshalPKCS1PublicKey(&key.PublicKey))
	p := spki(key)
	folded := p[:100] + " " + p[100:] // whitespace inside p= is folding
	zone := dnstest.Zone{
		"spki._domainkey.example.com":    {want},
		"pkcs1._domainkey.example.com":   {"v=DKIM1; k=rsa; p=" + pkcs1},
		"folded._domainkey.example.com":  {"p=" + folded},
		"other._domainkey.example.com":   {"v=DKIM1; k=rsa; p=" + spki(other)},
		"revoked._domainkey.example.com": {"v=DKIM1; k=rsa; p="},
		"ed._domainkey.example.com":      {"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(make([]byte, 32))},
		"short._domainkey.example.com":   {"v=DKIM1; p=" + spki(short)},
		"testing._domainkey.example.com": {"v=DKIM1; t=y; p=" + p},
		"twice._domainkey.example.com":   {want, "v=DKIM1; p=" + spki(other)},
		"late._domainkey.example.com":    {"k=rsa; v=DKIM1; p=" + p},
	}
	dns := dnstest.Start(t, zone)
	r, err := NewResolver(dns.Addr())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		selector string
		status   Status
		text     string
	}{
		{"spki", Pass, "holds the public key of dkim.private_key (rsa, 2048 bits)"},
		{"pkcs1", Pass, "holds the public key of dkim.private_key (rsa, 2048 bits)"},
		{"folded", Pass, "holds the public key"},
		{"other", Fail, "is not the one of dkim.private_key"},
		{"revoked", Fail, "the key is revoked (p= is empty)"},
		{"ed", Fail, "is not the one of dkim.private_key"},
		{"short", Warn, "it has 1024 bits"},
		{"testing", Warn, "in testing mode (t=y)"},
		{"twice", Fail, "has 2 TXT records"},
		{"late", Fail, "v= must come first"},
		{"absent", Fail, "no DKIM record at absent._domainkey.example.com"},
	} {
		k := key
		if tc.selector == "short" {
			k = short
		}
		c := &checker{ctx: context.Background(), r: r, from: "example.com",
			cfg: &config.Config{DKIM: &config.DKIM{Domain: "example.com", Selector: tc.selector, PrivateKey: "dkim.pem", Key: k}}}
		c.dkim()
		if len(c.results) != 1 || c.results[0].Status != tc.status || !strings.Contains(c.results[0].Text, tc.text) || c.dkimOK != (tc.status != Fail) {
			t.Errorf("%s: %+v (dkimOK %v)", tc.selector, c.results, c.dkimOK)
			continue
		}
		if tc.status == Fail && !strings.Contains(c.results[0].Fix, want) {
			t.Errorf("%s: the fix does not give the record to publish: %s", tc.selector, c.results[0].Fix)
		}
	}
}
