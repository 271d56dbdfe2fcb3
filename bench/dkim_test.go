package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/config"
	"github.com/heraldmail/herald/engine"
	"github.com/heraldmail/herald/queue/boltq"
	"github.com/heraldmail/herald/sink"
)

// BenchmarkCampaignDKIM is the throughput of a whole campaign (plan into
// the embedded queue, render, sign, send over 8 connections to an
// in-process sink, settle) of 2,000 ~2 KB messages with List-Unsubscribe,
// List-Id and VERP, unsigned and DKIM-signed. msgs/s is what to compare.
func BenchmarkCampaignDKIM(b *testing.B) {
	const n = 2000
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	keyDir := b.TempDir()
	for name, k := range map[string]any{"rsa2048": rsaKey, "ed25519": edKey} {
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		os.WriteFile(filepath.Join(keyDir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	}
	s, err := sink.Start(sink.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	host, port, _ := strings.Cut(s.Addr(), ":")

	var csv strings.Builder
	csv.WriteString("email,name,city\n")
	for i := range n {
		fmt.Fprintf(&csv, "user%d@example.org,User %d,City\n", i, i)
	}
	body := "Hello {{.name}} from {{.city}},\n\n" + strings.Repeat("herald load test line of text, seventy characters long, more or less.\n", 26) +
		"Unsubscribe: {{unsubscribe_url}}\n"
	for _, signing := range []string{"none", "rsa2048", "ed25519"} {
		b.Run("dkim="+signing, func(b *testing.B) {
			sent := 0
			var took time.Duration
			run := 0
			for b.Loop() {
				run++
				dir := b.TempDir()
				os.WriteFile(filepath.Join(dir, "body.txt"), []byte(body), 0o644)
				os.WriteFile(filepath.Join(dir, "r.csv"), []byte(csv.String()), 0o644)
				dkim := ""
				if signing != "none" {
					dkim = fmt.Sprintf("[dkim]\ndomain = \"example.com\"\nselector = \"bench\"\nprivate_key = %q\n", filepath.Join(keyDir, signing+".pem"))
				}
				cfg, err := config.Parse(fmt.Sprintf(`
[campaign]
id = "bench-%d"
from = "Bench <bench@example.com>"
subject = "Bench {{.name}}"
text = "body.txt"
recipients = "r.csv"
list_id = "Bench <bench.example.com>"
verp = true
bounce_address = "bounces@example.com"
[unsubscribe]
url = "https://news.example.com/unsubscribe"
mailto = "unsubscribe@example.com"
secret_env = "S"
%s
[[provider]]
host = %q
port = %s
tls = "none"
connections = 8
per_connection = 1000
`, run, dkim, host, port), dir, func(string) string { return "bench-secret-0123456789" })
				if err != nil {
					b.Fatal(err)
				}
				q, err := boltq.Open(filepath.Join(dir, "q.db"))
				if err != nil {
					b.Fatal(err)
				}
				e, err := engine.New(cfg, q, engine.Options{})
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				start := time.Now()
				if _, err := e.Plan(ctx, func(engine.Problem) {}); err != nil {
					b.Fatal(err)
				}
				sum, err := e.Run(ctx, ctx)
				if err != nil || sum.Sent != n {
					b.Fatalf("run: %+v %v", sum, err)
				}
				took += time.Since(start)
				sent += n
				q.Close()
			}
			b.ReportMetric(float64(sent)/took.Seconds(), "msgs/s")
		})
	}
}
