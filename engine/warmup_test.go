package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/queue/boltq"
	"github.com/heraldmail/herald/ratelimit"
)

// TestWarmupDays: the warm-up's days count from the provider's first
// message as the store recorded it; each day's cap counts what was sent
// since the day began (by any process: the store's usage), and past the
// list only the daily quota holds.
func TestWarmupDays(t *testing.T) {
	ctx := context.Background()
	q, err := boltq.Open(filepath.Join(t.TempDir(), "w.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	first := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	// Three messages on day 1, two on day 2, recorded as a run records them.
	if _, err := q.CreateCampaign(ctx, queue.Campaign{ID: "c", Header: []string{"email"}, Status: queue.Active}); err != nil {
		t.Fatal(err)
	}
	sentAt := []time.Time{first, first.Add(time.Hour), first.Add(2 * time.Hour), first.Add(25 * time.Hour), first.Add(26 * time.Hour)}
	var jobs []queue.Job
	for i := range sentAt {
		a := fmt.Sprintf("u%d@example.com", i)
		jobs = append(jobs, queue.Job{Seq: uint64(i + 2), Key: a, Email: a, Fields: []string{a}})
	}
	if _, err := q.Enqueue(ctx, "c", jobs); err != nil {
		t.Fatal(err)
	}
	leased, err := q.Lease(ctx, "c", time.Now(), len(jobs), time.Hour)
	if err != nil || len(leased) != len(jobs) {
		t.Fatalf("lease: %d %v", len(leased), err)
	}
	var ss []queue.Settlement
	for i, j := range leased {
		ss = append(ss, queue.Settlement{Seq: j.Seq, Lease: j.Lease, State: queue.Sent, Provider: "p", SentAt: sentAt[i]})
	}
	if _, err := q.Settle(ctx, "c", ss); err != nil {
		t.Fatal(err)
	}

	w := newWarmup(ratelimit.NewLocalQuota(0), "p", []int{4, 3}, q, nil)
	take := func(at time.Time) bool {
		ok, _, err := w.Take(ctx, at)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	// Day 2 (25 h after the first message): 2 of its 3 already sent.
	day2 := first.Add(30 * time.Hour)
	if !take(day2) || take(day2) {
		t.Fatalf("day 2 (cap 3, 2 sent): want exactly one more")
	}
	ok, until, _ := w.Take(ctx, day2)
	if ok || !until.Equal(first.Add(48*time.Hour)) {
		t.Fatalf("day 2 spent: want it to end at %v, got %v %v", first.Add(48*time.Hour), ok, until)
	}
	if why := w.Spent(day2, until); !strings.Contains(why, "warm-up day 2: its cap of 3 messages is spent; day 3 (the daily quota) begins") {
		t.Fatalf("Spent: %q", why)
	}
	if w.Limit() != 3 {
		t.Fatalf("Limit on day 2: %d", w.Limit())
	}
	// Day 3: past the list, only the daily quota (unlimited here).
	for range 10 {
		if !take(first.Add(50 * time.Hour)) {
			t.Fatal("past the warm-up the daily quota alone holds")
		}
	}
	// A provider that never sent starts day 1 at its first message.
	fresh := newWarmup(ratelimit.NewLocalQuota(0), "new", []int{2}, q, nil)
	now := time.Now()
	for i, want := range []bool{true, true, false} {
		if ok, _, _ := fresh.Take(ctx, now); ok != want {
			t.Fatalf("fresh provider, message %d: %v", i+1, ok)
		}
	}
}
