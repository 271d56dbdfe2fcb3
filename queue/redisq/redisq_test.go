package redisq

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldmail/herald/internal/redistest"
	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/queue/queuetest"
)

var prefixes atomic.Int64

func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	queuetest.Run(t, func(t *testing.T) queue.Queue {
		q, err := Open(context.Background(), srv.URL(), Options{Prefix: fmt.Sprintf("t%d:", prefixes.Add(1))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	})
}

// TestConformanceCluster runs the suite on a Redis Cluster of three
// masters, each with a replica: every campaign's keys share one hash slot,
// the suppression lists and usage counts live in others, and every write
// that records an outcome waits for the replica of its master.
func TestConformanceCluster(t *testing.T) {
	c := redistest.StartReplicatedCluster(t, 3)
	queuetest.Run(t, func(t *testing.T) queue.Queue {
		q, err := Open(context.Background(), c.URL(), Options{Prefix: fmt.Sprintf("t%d:", prefixes.Add(1))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	})
}

// TestConformanceSentinel runs the suite on the master that three
// Sentinels name, which has a replica.
func TestConformanceSentinel(t *testing.T) {
	set := redistest.StartSentinelSet(t, "herald-q")
	queuetest.Run(t, func(t *testing.T) queue.Queue {
		q, err := Open(context.Background(), set.URL(), Options{Prefix: fmt.Sprintf("t%d:", prefixes.Add(1))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	})
}

func fill(t testing.TB, q *Queue, id string, n int) {
	t.Helper()
	ctx := context.Background()
	if _, err := q.CreateCampaign(ctx, queue.Campaign{ID: id, Header: []string{"email"}}); err != nil {
		t.Fatal(err)
	}
	batch := make([]queue.Job, 0, 1000)
	for i := 1; i <= n; i++ {
		e := fmt.Sprintf("u%d@example.com", i)
		batch = append(batch, queue.Job{Seq: uint64(i), Key: e, Email: e, Fields: []string{e}})
		if len(batch) == cap(batch) || i == n {
			if _, err := q.Enqueue(ctx, id, batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// TestRestartWithAppendOnlyLosesNothing restarts redis-server between a
// lease and its settlement: the job states and the lease survive.
func TestRestartWithAppendOnlyLosesNothing(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	ctx := context.Background()
	q, err := Open(ctx, srv.URL(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	fill(t, q, "r", 100)
	leased, err := q.Lease(ctx, "r", time.Now(), 60, time.Hour)
	if err != nil || len(leased) != 60 {
		t.Fatal(len(leased), err)
	}
	var s []queue.Settlement
	for _, j := range leased[:30] {
		s = append(s, queue.Settlement{Seq: j.Seq, Lease: j.Lease, State: queue.Sent})
	}
	if _, err := q.Settle(ctx, "r", s); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	// The client reconnects by itself; the other 30 leases still settle.
	s = s[:0]
	for _, j := range leased[30:] {
		s = append(s, queue.Settlement{Seq: j.Seq, Lease: j.Lease, State: queue.Sent})
	}
	lost, err := q.Settle(ctx, "r", s)
	if err != nil || len(lost) != 0 {
		t.Fatalf("after restart: lost %v err %v", lost, err)
	}
	c, err := q.Counts(ctx, "r")
	if err != nil || c.Sent != 60 || c.Pending != 40 || c.Total() != 100 {
		t.Fatalf("counts %+v %v", c, err)
	}
}

func BenchmarkEnqueue(b *testing.B) {
	// No persistence: the queue's own cost, as earlier results measured it.
	srv := redistest.Start(b, "--appendonly", "no")
	q, err := Open(context.Background(), srv.URL(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	q.CreateCampaign(ctx, queue.Campaign{ID: "b", Header: []string{"email", "name", "city"}})
	batch := make([]queue.Job, 1000)
	seq := uint64(0)
	for b.Loop() {
		for i := range batch {
			seq++
			e := fmt.Sprintf("user%d@example.com", seq)
			batch[i] = queue.Job{Seq: seq, Key: e, Email: e, Fields: []string{e, "User", "City"}}
		}
		if _, err := q.Enqueue(ctx, "b", batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "jobs/s")
}

func BenchmarkLeaseSettle(b *testing.B) {
	// No persistence: the queue's own cost, as earlier results measured it.
	srv := redistest.Start(b, "--appendonly", "no")
	q, err := Open(context.Background(), srv.URL(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	fill(b, q, "b", 1000000)
	now := time.Now()
	total := 0
	var s []queue.Settlement
	for b.Loop() {
		jobs, err := q.Lease(ctx, "b", now, 256, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		if len(jobs) == 0 {
			b.Fatal("ran out of jobs: raise fill")
		}
		s = s[:0]
		for _, j := range jobs {
			s = append(s, queue.Settlement{Seq: j.Seq, Lease: j.Lease, State: queue.Sent, Provider: "p", SentAt: now})
		}
		if _, err := q.Settle(ctx, "b", s); err != nil {
			b.Fatal(err)
		}
		total += len(jobs)
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "jobs/s")
}

// The single suppression list of an earlier herald moves onto a domain's
// list (queuetest.RunMigration).
func TestMigrateSuppressions(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	q, err := Open(ctx, srv.URL(), Options{Prefix: "m:"})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	queuetest.RunMigration(t, q, func(entries map[string]string) {
		for k, v := range entries {
			if err := q.Client().HSet(ctx, "m:suppression", k, v).Err(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestPrepareEnqueueInOrder prepares a batch before the one before it is
// stored, as Plan does: the later batch still sees the earlier one's keys
// (a duplicate names the earlier line), and a batch with a duplicate or a
// suppressed key stores the same as one without.
func TestPrepareEnqueueInOrder(t *testing.T) {
	srv := redistest.Start(t)
	q, err := Open(context.Background(), srv.URL(), Options{Prefix: fmt.Sprintf("t%d:", prefixes.Add(1))})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	if _, err := q.CreateCampaign(ctx, queue.Campaign{ID: "p", Header: []string{"email"}, List: "l"}); err != nil {
		t.Fatal(err)
	}
	if err := q.Suppress(ctx, "l", "bounced", "s@x.org"); err != nil {
		t.Fatal(err)
	}
	job := func(seq uint64, e string) queue.Job {
		return queue.Job{Seq: seq, Key: e, Email: e, Fields: []string{e}}
	}
	var a, b []queue.Job
	for i := range 300 { // more than a chunk: the common case, every job new
		a = append(a, job(uint64(2+i), fmt.Sprintf("a%d@x.org", i)))
	}
	b = append(b, job(400, "b@x.org"), job(401, "a7@x.org"), job(402, "s@x.org"), job(403, "c@x.org"))
	runA, err := q.PrepareEnqueue(ctx, "p", a)
	if err != nil {
		t.Fatal(err)
	}
	runB, err := q.PrepareEnqueue(ctx, "p", b)
	if err != nil {
		t.Fatal(err)
	}
	ra, err := runA(ctx)
	if err != nil || ra.Added != 300 || len(ra.Duplicates) != 0 {
		t.Fatalf("first batch: %+v %v", ra, err)
	}
	rb, err := runB(ctx)
	if err != nil || rb.Added != 3 || rb.Suppressed != 1 || len(rb.Duplicates) != 1 || rb.Duplicates[0] != (queue.Duplicate{Seq: 401, FirstSeq: 9}) {
		t.Fatalf("second batch: %+v %v", rb, err)
	}
	c, err := q.Counts(ctx, "p")
	if err != nil || c.Pending != 302 || c.Suppressed != 1 {
		t.Fatalf("counts %+v %v", c, err)
	}
	// Again, as a re-plan: nothing new.
	r, err := q.Enqueue(ctx, "p", append(a, b...))
	if err != nil || r.Added != 0 || r.Existing != 303 || len(r.Duplicates) != 1 {
		t.Fatalf("re-plan: %+v %v", r, err)
	}
	want := map[uint64]string{}
	for _, j := range append(a, b...) {
		want[j.Seq] = j.Email
	}
	delete(want, 401)
	var seqs []uint64
	err = q.Walk(ctx, "p", func(j queue.Job) error {
		seqs = append(seqs, j.Seq)
		if j.Email != want[j.Seq] || j.Key != want[j.Seq] {
			t.Errorf("job %d: %q %q, want %q", j.Seq, j.Email, j.Key, want[j.Seq])
		}
		return nil
	})
	if err != nil || len(seqs) != 303 || seqs[0] != 2 || seqs[302] != 403 {
		t.Fatalf("walk: %d jobs (%v) %v", len(seqs), seqs[:min(3, len(seqs))], err)
	}
}
