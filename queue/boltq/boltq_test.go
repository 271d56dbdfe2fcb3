package boltq

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/queue/queuetest"
)

func TestConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T) queue.Queue {
		q, err := Open(filepath.Join(t.TempDir(), "q.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	})
}

func TestReopenKeepsDataAndRecoversLeases(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "q.db")
	ctx := context.Background()
	q, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.CreateCampaign(ctx, queue.Campaign{ID: "c", Header: []string{"email"}}); err != nil {
		t.Fatal(err)
	}
	var jobs []queue.Job
	for i := uint64(1); i <= 5; i++ {
		jobs = append(jobs, queue.Job{Seq: i, Key: string(rune('a'+i)) + "@x.y", Email: "x", Fields: []string{"x"}})
	}
	if _, err := q.Enqueue(ctx, "c", jobs); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	l, err := q.Lease(ctx, "c", now, 3, time.Hour)
	if err != nil || len(l) != 3 {
		t.Fatal(l, err)
	}
	if _, err := q.Settle(ctx, "c", []queue.Settlement{{Seq: l[0].Seq, Lease: l[0].Lease, State: queue.Sent}}); err != nil {
		t.Fatal(err)
	}
	// A second process cannot open the store while the first holds it.
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "in use by another herald process") {
		t.Fatalf("second open: %v", err)
	}
	q.Close() // the process dies with two jobs leased

	q, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.Recovered() != 2 {
		t.Fatalf("recovered %d leases, want 2", q.Recovered())
	}
	c, _ := q.Counts(ctx, "c")
	if c.Sent != 1 || c.Pending != 4 || c.Leased != 0 {
		t.Fatalf("after reopen: %+v", c)
	}
	// The recovered jobs go out first, in Seq order, at once (no lease wait).
	l, _ = q.Lease(ctx, "c", now, 2, time.Hour)
	if len(l) != 2 || l[0].Seq != 2 || l[1].Seq != 3 {
		t.Fatalf("leased %+v", l)
	}
}

func BenchmarkEnqueue(b *testing.B) {
	q, err := Open(filepath.Join(b.TempDir(), "q.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	q.CreateCampaign(ctx, queue.Campaign{ID: "b"})
	batch := make([]queue.Job, 1000)
	seq := uint64(0)
	b.ResetTimer()
	for b.Loop() {
		for i := range batch {
			seq++
			e := "user" + string(rune(seq)) + "@example.com"
			batch[i] = queue.Job{Seq: seq, Key: e + string(rune(seq>>20)), Email: e, Fields: []string{e, "Name", "City"}}
		}
		if _, err := q.Enqueue(ctx, "b", batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "jobs/s")
}

func BenchmarkLeaseSettle(b *testing.B) {
	q, err := Open(filepath.Join(b.TempDir(), "q.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	q.CreateCampaign(ctx, queue.Campaign{ID: "b"})
	var total int
	now := time.Now()
	settle := make([]queue.Settlement, 0, 256)
	seq := uint64(0)
	for b.Loop() {
		b.StopTimer()
		batch := make([]queue.Job, 256)
		for i := range batch {
			seq++
			e := "user" + strings.Repeat("x", int(seq%7)) + string(rune(seq)) + "@example.com"
			batch[i] = queue.Job{Seq: seq, Key: e, Email: e, Fields: []string{e, "Name", "City"}}
		}
		if _, err := q.Enqueue(ctx, "b", batch); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		jobs, err := q.Lease(ctx, "b", now, 256, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		settle = settle[:0]
		for _, j := range jobs {
			settle = append(settle, queue.Settlement{Seq: j.Seq, Lease: j.Lease, State: queue.Sent, Provider: "p", SentAt: now})
		}
		if _, err := q.Settle(ctx, "b", settle); err != nil {
			b.Fatal(err)
		}
		total += len(jobs)
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "jobs/s")
}

// The single suppression list of an earlier herald moves onto a domain's
// list (queuetest.RunMigration).
func TestMigrateSuppressions(t *testing.T) {
	q, err := Open(filepath.Join(t.TempDir(), "q.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	queuetest.RunMigration(t, q, func(entries map[string]string) {
		err := q.db.Update(func(tx *bolt.Tx) error {
			for k, v := range entries {
				if err := tx.Bucket(bucketSuppression).Put([]byte(k), []byte(v)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
