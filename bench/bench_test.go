package bench

import (
	"context"
	"fmt"
	"io"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/config"
	"github.com/heraldmail/herald/engine"
	"github.com/heraldmail/herald/outcome"
	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/queue/boltq"
	"github.com/heraldmail/herald/templates"
)

// newEngine prepares a campaign like bench/campaign.sh's: a ~2 KB text
// message with two fields, plus an HTML part when html is set.
func newEngine(b *testing.B, html bool) (*engine.Engine, *boltq.Queue) {
	b.Helper()
	dir := b.TempDir()
	body := "Hello {{.name}} from {{.city}},\n\n" + strings.Repeat("herald load test line of text, seventy characters long, more or less.\n", 26)
	os.WriteFile(filepath.Join(dir, "body.txt"), []byte(body), 0o644)
	os.WriteFile(filepath.Join(dir, "body.html"), []byte("<p>Hello {{.name}} from {{.city}}</p>"+strings.Repeat("<p>herald load test paragraph</p>\n", 20)), 0o644)
	os.WriteFile(filepath.Join(dir, "r.csv"), []byte("email,name,city\nu@example.com,U,C\n"), 0o644)
	htmlKey := ""
	if html {
		htmlKey = `html = "body.html"`
	}
	cfg, err := config.Parse(fmt.Sprintf(`
[campaign]
id = "bench"
from = "Bench <bench@example.com>"
subject = "Bench {{.name}}"
text = "body.txt"
%s
recipients = "r.csv"
[[provider]]
host = "127.0.0.1"
port = 2525
tls = "none"
`, htmlKey), dir, func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	q, err := boltq.Open(filepath.Join(dir, "q.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { q.Close() })
	e, err := engine.New(cfg, q, engine.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return e, q
}

// BenchmarkRender is the CPU cost of rendering and encoding one message.
func BenchmarkRender(b *testing.B) {
	for _, html := range []bool{false, true} {
		b.Run(fmt.Sprintf("html=%v", html), func(b *testing.B) {
			e, _ := newEngine(b, html)
			header := []string{"email", "name", "city"}
			var r templates.Renderer
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if err := e.WriteMessage(&r, header, []string{fmt.Sprintf("u%d@example.com", i), "User", "City"}, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEnqueue is the cost per job of planning into the embedded queue
// in batches of 1,000 (the planner's batch).
func BenchmarkEnqueue(b *testing.B) {
	_, q := newEngine(b, false)
	ctx := context.Background()
	q.CreateCampaign(ctx, queue.Campaign{ID: "bench", Header: []string{"email", "name", "city"}})
	batch := make([]queue.Job, 1000)
	seq := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		for i := range batch {
			seq++
			e := fmt.Sprintf("user%d@example.com", seq)
			batch[i] = queue.Job{Seq: seq, Key: e, Email: e, Fields: []string{e, "User", "City"}}
		}
		if _, err := q.Enqueue(ctx, "bench", batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(seq), "ns/job")
}

// BenchmarkLeaseSettle is the queue's cost per message during delivery: a
// lease of 256 and a settlement of 256 (the engine's batches).
func BenchmarkLeaseSettle(b *testing.B) {
	_, q := newEngine(b, false)
	ctx := context.Background()
	q.CreateCampaign(ctx, queue.Campaign{ID: "bench", Header: []string{"email", "name", "city"}})
	seq := uint64(0)
	jobs := 0
	now := time.Now()
	var s []queue.Settlement
	for b.Loop() {
		b.StopTimer()
		batch := make([]queue.Job, 256)
		for i := range batch {
			seq++
			e := fmt.Sprintf("user%d@example.com", seq)
			batch[i] = queue.Job{Seq: seq, Key: e, Email: e, Fields: []string{e, "User", "City"}}
		}
		if _, err := q.Enqueue(ctx, "bench", batch); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		leased, err := q.Lease(ctx, "bench", now, 256, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		s = s[:0]
		for _, j := range leased {
			s = append(s, queue.Settlement{Seq: j.Seq, Lease: j.Lease, State: queue.Sent, Reply: "250 2.0.0 Ok: queued as 4ABC", Provider: "p", SentAt: now})
		}
		if _, err := q.Settle(ctx, "bench", s); err != nil {
			b.Fatal(err)
		}
		jobs += len(leased)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(jobs), "ns/job")
}

// BenchmarkClassify is the cost of classifying a server reply.
func BenchmarkClassify(b *testing.B) {
	err := &textproto.Error{Code: 550, Msg: "5.1.1 The email account that you tried to reach does not exist."}
	b.ReportAllocs()
	for b.Loop() {
		if outcome.Classify(outcome.StageRcpt, err).Class != outcome.ClassPermanent {
			b.Fatal("misclassified")
		}
	}
}
