package engine

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/config"
	"github.com/heraldmail/herald/templates"
	"github.com/heraldmail/herald/unsubscribe"
)

// BenchmarkSign is the cost of DKIM-signing one ~2.5 KB message (relaxed/
// relaxed, SHA-256), the message already rendered; parallel over
// GOMAXPROCS as the senders sign.
func BenchmarkSign(b *testing.B) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	for _, k := range []struct {
		name string
		key  crypto.Signer
	}{{"rsa2048", rsaKey}, {"ed25519", edKey}} {
		b.Run(k.name, func(b *testing.B) {
			c, raw := signingComposer(b, k.key)
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.sign(raw); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func signingComposer(b *testing.B, key crypto.Signer) (*composer, []byte) {
	body := "Hello {{.name}},\n\n" + strings.Repeat("herald load test line of text, seventy characters long, more or less.\n", 30)
	spec := Spec{From: "Bench <bench@example.com>", Subject: "Bench {{.name}}", Text: body, ListID: "Bench <bench.example.com>",
		UnsubscribeURL: "https://news.example.com/unsubscribe", UnsubscribeMailto: "unsubscribe@example.com",
		DKIMDomain: "example.com", DKIMSelector: "bench"}
	set, err := templates.Parse(templates.Sources{Subject: spec.Subject, Text: spec.Text})
	if err != nil {
		b.Fatal(err)
	}
	us, _ := unsubscribe.NewSigner([]byte("bench-secret-0123456789"))
	c, err := newComposer("bench", spec, set, keys{unsub: us, dkim: &config.DKIM{Domain: "example.com", Selector: "bench", Key: key}})
	if err != nil {
		b.Fatal(err)
	}
	var r templates.Renderer
	m, err := c.compose(&r, map[string]string{"name": "Ann"}, "ann@example.org", "ann@example.org", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	m.WriteTo(&buf)
	return c, buf.Bytes()
}
