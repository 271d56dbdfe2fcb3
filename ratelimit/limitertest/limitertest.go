// Package limitertest is the conformance suite of the ratelimit package:
// the local limits and the ones shared through Redis must behave the same.
// The clock is passed in, so the suite runs in no time.
package limitertest

import (
	"context"
	"testing"
	"time"

	"github.com/heraldmail/herald/ratelimit"
)

// Makers open fresh, independent limits for one test.
type Makers struct {
	Pacer func(t *testing.T, p ratelimit.Policy) ratelimit.Pacer
	Quota func(t *testing.T, limit int) ratelimit.Quota
	Slots func(t *testing.T, limit int) ratelimit.Slots
}

// Run exercises the makers' limits.
func Run(t *testing.T, m Makers) {
	tests := map[string]func(*testing.T, Makers){
		"PacerRateAndBurst": testRateAndBurst,
		"PacerThrottle":     testThrottle,
		"PacerUndo":         testUndo,
		"PacerUnlimited":    testUnlimited,
		"PacerLateness":     testLateness,
		"QuotaRolling":      testQuota,
		"Slots":             testSlots,
	}
	for name, fn := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, m)
		})
	}
}

var t0 = time.Date(2026, 11, 24, 10, 0, 30, 0, time.UTC)

func take(t *testing.T, p ratelimit.Pacer, at time.Time) time.Duration {
	t.Helper()
	d, err := p.Take(context.Background(), at)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// sendFor takes slots as fast as they are given for d of simulated time
// from start and returns how many were given.
func sendFor(t *testing.T, p ratelimit.Pacer, start time.Time, d time.Duration) int {
	t.Helper()
	n, now := 0, start
	for now.Before(start.Add(d)) {
		w := take(t, p, now)
		if w == 0 {
			n++
			continue
		}
		now = now.Add(w)
	}
	return n
}

func testRateAndBurst(t *testing.T, m Makers) {
	p := m.Pacer(t, ratelimit.Policy{Rate: 10, Burst: 3, Cooldown: time.Second})
	for i := range 3 {
		if w := take(t, p, t0); w != 0 {
			t.Fatalf("burst message %d waits %v", i, w)
		}
	}
	w := take(t, p, t0)
	if w < 99*time.Millisecond || w > 101*time.Millisecond {
		t.Fatalf("fourth message waits %v, want 100ms", w)
	}
	if w := take(t, p, t0.Add(w)); w != 0 {
		t.Fatalf("after the wait: %v", w)
	}
	// A long run: rate × time, plus the burst at most.
	q := m.Pacer(t, ratelimit.Policy{Rate: 500, Burst: 5, Cooldown: time.Second})
	if n := sendFor(t, q, t0, 10*time.Second); n < 5000 || n > 5005 {
		t.Fatalf("500/s for 10 s gave %d", n)
	}
	if r, err := q.Rate(context.Background(), t0); err != nil || r != 500 {
		t.Fatalf("Rate %v %v", r, err)
	}
}

func testThrottle(t *testing.T, m Makers) {
	ctx := context.Background()
	cool := 10 * time.Second
	p := m.Pacer(t, ratelimit.Policy{Rate: 100, Burst: 1, Cooldown: cool})
	if err := p.Throttled(ctx, t0); err != nil {
		t.Fatal(err)
	}
	if w := take(t, p, t0.Add(time.Second)); w < 9*time.Second || w > 9*time.Second+time.Millisecond {
		t.Fatalf("during the cool-down: wait %v, want 9s", w)
	}
	if until, _ := p.PausedUntil(ctx, t0.Add(time.Second)); !until.Equal(t0.Add(cool)) {
		t.Fatalf("PausedUntil %v", until)
	}
	if r, _ := p.Rate(ctx, t0.Add(time.Second)); r != 50 {
		t.Fatalf("rate after a throttle: %v, want 50", r)
	}
	// A second throttle reply within half the cool-down pauses again but
	// does not halve the rate again.
	p.Throttled(ctx, t0.Add(2*time.Second))
	if r, _ := p.Rate(ctx, t0.Add(2*time.Second)); r != 50 {
		t.Fatalf("rate after a second reply in the same burst: %v", r)
	}
	after := t0.Add(2*time.Second + cool)
	if w := take(t, p, after); w != 0 {
		t.Fatalf("after the cool-down: wait %v", w)
	}
	// Sending resumes one message at a time, not in a burst.
	burst := m.Pacer(t, ratelimit.Policy{Rate: 100, Burst: 10, Cooldown: cool})
	burst.Throttled(ctx, t0)
	if w := take(t, burst, t0.Add(cool)); w != 0 {
		t.Fatalf("first message after the cool-down waits %v", w)
	}
	if w := take(t, burst, t0.Add(cool)); w < 19*time.Millisecond || w > 21*time.Millisecond {
		t.Fatalf("second message right after the cool-down waits %v, want 1/50 s (no burst)", w)
	}
	if until, _ := p.PausedUntil(ctx, after); !until.IsZero() {
		t.Fatalf("PausedUntil after the cool-down: %v", until)
	}
	// The rate climbs back by a tenth per quiet cool-down after the pause.
	if n := sendFor(t, p, after, time.Second); n < 49 || n > 51 {
		t.Fatalf("50/s for a second gave %d", n)
	}
	// In tenths of the rate that met the throttle (100).
	later := after.Add(cool)
	if r, _ := p.Rate(ctx, later); r != 60 {
		t.Fatalf("rate one quiet cool-down after the pause: %v, want 60", r)
	}
	// Throttled again at 60: down to 30, and back in steps of 6.
	p.Throttled(ctx, later)
	if r, _ := p.Rate(ctx, later.Add(2*cool)); r != 36 {
		t.Fatalf("rate one quiet cool-down after a throttle at 60: %v, want 36", r)
	}
	later = later.Add(2 * cool)
	if r, _ := p.Rate(ctx, later.Add(20*cool)); r != 100 {
		t.Fatalf("rate much later: %v, want back to 100", r)
	}
	// Never below a 64th.
	slow := m.Pacer(t, ratelimit.Policy{Rate: 64, Burst: 1, Cooldown: time.Second})
	for i := range 10 {
		slow.Throttled(ctx, t0.Add(time.Duration(i)*600*time.Millisecond))
	}
	if r, _ := slow.Rate(ctx, t0.Add(5400*time.Millisecond)); r != 1 {
		t.Fatalf("floor: %v, want 1", r)
	}
}

func testUndo(t *testing.T, m Makers) {
	p := m.Pacer(t, ratelimit.Policy{Rate: 1, Burst: 1, Cooldown: time.Second})
	if w := take(t, p, t0); w != 0 {
		t.Fatal(w)
	}
	if w := take(t, p, t0); w == 0 {
		t.Fatal("a second message at 1/s went at once")
	}
	if err := p.Undo(context.Background(), t0); err != nil {
		t.Fatal(err)
	}
	if w := take(t, p, t0); w != 0 {
		t.Fatalf("the slot given back is not there: %v", w)
	}
}

func testUnlimited(t *testing.T, m Makers) {
	ctx := context.Background()
	p := m.Pacer(t, ratelimit.Policy{Cooldown: time.Second})
	for i := range 1000 {
		if w := take(t, p, t0); w != 0 {
			t.Fatalf("unlimited message %d waits %v", i, w)
		}
	}
	if r, _ := p.Rate(ctx, t0); r != 0 {
		t.Fatalf("unlimited rate %v", r)
	}
	p.Throttled(ctx, t0)
	if w := take(t, p, t0.Add(500*time.Millisecond)); w < 499*time.Millisecond || w > 501*time.Millisecond {
		t.Fatalf("a throttle reply pauses even an unlimited provider: %v", w)
	}
	if w := take(t, p, t0.Add(time.Second)); w != 0 {
		t.Fatalf("after the cool-down: %v", w)
	}
}

// testLateness: a sender that comes back a little after its turn (its
// timer, a round trip to Redis) keeps the rate, even with a burst of 1; it
// never gets more than rate × time + burst.
func testLateness(t *testing.T, m Makers) {
	p := m.Pacer(t, ratelimit.Policy{Rate: 100, Burst: 1, Cooldown: time.Second})
	n, now := 0, t0
	for now.Before(t0.Add(10 * time.Second)) {
		w := take(t, p, now)
		if w == 0 {
			n++
			continue
		}
		now = now.Add(w + 2*time.Millisecond)
	}
	if n < 995 || n > 1001 {
		t.Fatalf("100/s for 10 s, 2 ms late each time: %d, want 1000", n)
	}
	// An idle pacer earns nothing: after a pause, one message, then 1/rate.
	idle := t0.Add(time.Minute)
	if w := take(t, p, idle); w != 0 {
		t.Fatalf("after idling: %v", w)
	}
	if w := take(t, p, idle); w < 9*time.Millisecond || w > 10*time.Millisecond {
		t.Fatalf("the second message after idling waits %v, want 10ms", w)
	}
}

func testQuota(t *testing.T, m Makers) {
	ctx := context.Background()
	q := m.Quota(t, 3)
	if q.Limit() != 3 {
		t.Fatalf("Limit %d", q.Limit())
	}
	for i := range 3 {
		if ok, _, err := q.Take(ctx, t0.Add(time.Duration(i)*time.Minute)); !ok || err != nil {
			t.Fatalf("take %d refused: %v", i, err)
		}
	}
	ok, at, err := q.Take(ctx, t0.Add(time.Hour))
	if ok || err != nil {
		t.Fatalf("fourth message within the day: %v %v", ok, err)
	}
	// The first message's minute (10:00) leaves the window at 10:01 the
	// next day.
	if want := time.Date(2026, 11, 25, 10, 1, 0, 0, time.UTC); !at.Equal(want) {
		t.Fatalf("retry at %v, want %v", at, want)
	}
	if ok, _, _ := q.Take(ctx, at.Add(-time.Second)); ok {
		t.Fatal("allowed before the window moved")
	}
	if ok, _, _ := q.Take(ctx, at); !ok {
		t.Fatal("refused after the oldest minute left the window")
	}
	if n, _ := q.Used(ctx, at); n != 3 {
		t.Fatalf("used %d", n)
	}
	q.Undo(ctx, at)
	if n, _ := q.Used(ctx, at); n != 2 {
		t.Fatalf("undo: used %d", n)
	}

	seeded := m.Quota(t, 10)
	seeded.Seed(ctx, t0.Add(-2*time.Hour), 9)
	if ok, _, _ := seeded.Take(ctx, t0); !ok {
		t.Fatal("tenth refused")
	}
	if ok, _, _ := seeded.Take(ctx, t0); ok {
		t.Fatal("eleventh allowed: the seed was ignored")
	}
	if ok, _, _ := m.Quota(t, 0).Take(ctx, t0); !ok {
		t.Fatal("unlimited refused")
	}
}

func testSlots(t *testing.T, m Makers) {
	ctx := context.Background()
	s := m.Slots(t, 2)
	acquire := func(h string) bool {
		t.Helper()
		ok, err := s.Acquire(ctx, h, t0)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !acquire("a") || !acquire("b") {
		t.Fatal("two slots of two refused")
	}
	if acquire("c") {
		t.Fatal("a third slot of two given")
	}
	if !acquire("a") {
		t.Fatal("a holder lost its own slot")
	}
	if err := s.Release(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if !acquire("c") {
		t.Fatal("a released slot was not given")
	}
	if err := s.Renew(ctx, t0); err != nil || s.Limit() != 2 {
		t.Fatalf("Renew %v, Limit %d", err, s.Limit())
	}
}
