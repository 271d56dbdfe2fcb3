package redisq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/internal/redistest"
	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/queue/queuetest"
)

// usedMemory is INFO memory's used_memory.
func usedMemory(t *testing.T, q *Queue) int64 {
	t.Helper()
	info, err := q.rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	v, ok := infoField(info, "used_memory")
	n, err := strconv.ParseInt(v, 10, 64)
	if !ok || err != nil {
		t.Fatalf("used_memory %q %v", v, err)
	}
	return n
}

// TestBytesPerRecipient plans 50,000 recipients of three columns (as
// bench/lib.sh makes them) into a Redis of its own and bounds what they
// cost it. Layout 1 took about 260 bytes a recipient (the address three
// times, two large hash tables); layout 2 about 113 at this size (the
// dedup index's 16,384 hashes weigh more on a small campaign).
func TestBytesPerRecipient(t *testing.T) {
	const n, bound = 50_000, 150
	srv := redistest.Start(t, "--appendonly", "no", "--save", "")
	ctx := context.Background()
	q, err := Open(ctx, srv.URL(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	// As the planner does: the jobs' Enqueued is the campaign's Created.
	now := time.Now()
	if _, err := q.CreateCampaign(ctx, queue.Campaign{ID: "mem", Header: []string{"email", "name", "city"}, Created: now, Status: queue.Active}); err != nil {
		t.Fatal(err)
	}
	before := usedMemory(t, q)
	var batch []queue.Job
	for i := range n {
		e := fmt.Sprintf("user%d@example.com", i)
		batch = append(batch, queue.Job{Seq: uint64(i + 2), Key: e, Email: e, Fields: []string{e, fmt.Sprint("User ", i), fmt.Sprint("City ", i%97)}, Enqueued: now})
		if len(batch) == 1000 || i == n-1 {
			if r, err := q.Enqueue(ctx, "mem", batch); err != nil || r.Added != len(batch) {
				t.Fatalf("%+v %v", r, err)
			}
			batch = batch[:0]
		}
	}
	per := (usedMemory(t, q) - before) / n
	t.Logf("%d bytes a recipient", per)
	if per > bound {
		t.Errorf("%d recipients take %d bytes each in Redis, more than %d", n, per, bound)
	}
	// What was stored reads back.
	seen := 0
	err = q.Walk(ctx, "mem", func(j queue.Job) error {
		if j.Seq != uint64(seen+2) || j.Email != fmt.Sprintf("user%d@example.com", seen) || j.Fields[1] != fmt.Sprint("User ", seen) || !j.Enqueued.Equal(now) {
			return fmt.Errorf("job %d: %+v", seen, j)
		}
		seen++
		return nil
	})
	if err != nil || seen != n {
		t.Fatalf("walked %d: %v", seen, err)
	}
}

// TestCollisions runs the queue's suite with a hash under which every
// key collides in the dedup index: each key is then told apart by the
// address in the record its k field names, or found in kx.
func TestCollisions(t *testing.T) {
	old := keyHash
	keyHash = func(string) uint64 { return 42 }
	t.Cleanup(func() { keyHash = old })
	srv := redistest.Start(t)
	queuetest.Run(t, func(t *testing.T) queue.Queue {
		q, err := Open(context.Background(), srv.URL(), Options{Prefix: fmt.Sprintf("x%d:", prefixes.Add(1))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	})
}

// TestOldLayoutRefused: a campaign stored by an earlier herald (layout
// 1: no layout field, its jobs in the data and keys hashes) is refused
// with ErrLayout by everything that reads its jobs, never read as layout
// 2; its record, counts and cancel still work.
func TestOldLayoutRefused(t *testing.T) {
	q := openTest(t)
	ctx := context.Background()
	k := q.keys("old")
	rec := `{"ID":"old","Header":["email"],"Created":"2026-01-01T00:00:00Z","List":"example.com"}`
	if err := q.rdb.HSet(ctx, k.meta, "rec", rec, "status", "1", "reason", "", "planned", "1", "lease", "0", "maxseq", "3",
		"c1", 2, "c2", 0, "c3", 0, "c4", 0, "c5", 0, "c6", 0, "c7", 0).Err(); err != nil {
		t.Fatal(err)
	}
	q.rdb.HSet(ctx, k.prefix+"data", "2", "\x00\x0ba@b.example\x0ba@b.example\x01\x0ba@b.example")
	q.rdb.HSet(ctx, k.prefix+"keys", "a@b.example", "2")
	q.rdb.RPush(ctx, k.pendlist, "2", "3")
	q.rdb.RPush(ctx, k.orderlist, "2", "3")
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrLayout) || !strings.Contains(err.Error(), "campaign old") || !strings.Contains(err.Error(), "herald cancel") {
			t.Errorf("%s: %v, want ErrLayout", what, err)
		}
	}
	_, err := q.Lease(ctx, "old", time.Now(), 10, time.Minute)
	check("Lease", err)
	_, err = q.Spec(ctx, "old")
	check("Spec", err)
	_, err = q.Enqueue(ctx, "old", jobsFor(4))
	check("Enqueue", err)
	check("Walk", q.Walk(ctx, "old", func(queue.Job) error { return nil }))
	_, err = q.Recipient(ctx, "old", "a@b.example")
	check("Recipient", err)
	_, err = q.RetryFailed(ctx, "old", time.Now())
	check("RetryFailed", err)
	if n, _ := q.rdb.LLen(ctx, k.pendlist).Result(); n != 2 {
		t.Errorf("a refused Lease took jobs: pendlist holds %d", n)
	}
	if c, err := q.Campaign(ctx, "old"); err != nil || c.Status != queue.Active {
		t.Fatalf("Campaign %+v %v", c, err)
	}
	if c, err := q.Counts(ctx, "old"); err != nil || c.Pending != 2 {
		t.Fatalf("Counts %+v %v", c, err)
	}
	if err := q.SetStatus(ctx, "old", queue.CampaignCancelled, "old layout"); err != nil {
		t.Fatal(err)
	}
	if c, err := q.Counts(ctx, "old"); err != nil || c.Cancelled != 2 || c.Pending != 0 {
		t.Fatalf("Counts after cancel %+v %v", c, err)
	}
}
