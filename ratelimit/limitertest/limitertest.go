// Package limitertest is the conformance suite of the ratelimit package:
// the local limits and the ones shared through Redis must behave the same.
// The clock is passed in, so the suite runs in no time.
package limitertest

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/heraldmail/herald/ratelimit"
)

// Makers open fresh, independent limits for one test.
type Makers struct {
	Pacer func(t *testing.T, p ratelimit.Policy) ratelimit.Pacer
	// SharedPacer opens n handles on one fresh pacer, as n processes
	// sending through one provider would hold (with their own
	// connections to Redis); nil skips the tests of sharing.
	SharedPacer func(t *testing.T, p ratelimit.Policy, n int) []ratelimit.Pacer
	Quota       func(t *testing.T, limit int) ratelimit.Quota
	Slots       func(t *testing.T, limit int) ratelimit.Slots
}

// Run exercises the makers' limits.
func Run(t *testing.T, m Makers) {
	tests := map[string]func(*testing.T, Makers){
		"PacerRateAndBurst":    testRateAndBurst,
		"PacerThrottle":        testThrottle,
		"PacerUndo":            testUndo,
		"PacerUnlimited":       testUnlimited,
		"PacerLearnUnlimited":  testLearnUnlimited,
		"PacerLearnConfigured": testLearnConfigured,
		"PacerUndoWindow":      testUndoWindow,
		"PacerLateness":        testLateness,
		"PacerConverge":        testConverge,
		"PacerConvergeShared":  testConvergeShared,
		"QuotaRolling":         testQuota,
		"Slots":                testSlots,
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

// near reports whether got is within tol (a share) of want.
func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol*math.Abs(want) }

func rate(t *testing.T, p ratelimit.Pacer, at time.Time) float64 {
	t.Helper()
	r, err := p.Rate(context.Background(), at)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func throttled(t *testing.T, p ratelimit.Pacer, at time.Time) {
	t.Helper()
	if err := p.Throttled(context.Background(), at); err != nil {
		t.Fatal(err)
	}
}

// sendEvery takes a slot every gap from start until end (exclusive), each
// one at its time (the pacer must give it), and returns how many went.
func sendEvery(t *testing.T, p ratelimit.Pacer, start, end time.Time, gap time.Duration) int {
	t.Helper()
	n := 0
	for at := start; at.Before(end); at = at.Add(gap) {
		if w := take(t, p, at); w != 0 {
			t.Fatalf("message %d at %v waits %v", n, at.Sub(start), w)
		}
		n++
	}
	return n
}

func testThrottle(t *testing.T, m Makers) {
	ctx := context.Background()
	cool := 10 * time.Second
	p := m.Pacer(t, ratelimit.Policy{Rate: 100, Burst: 1, Cooldown: cool})
	// 100/s for 10 s, then a throttle reply: the window (one cool-down, in
	// buckets of a tenth) holds the 900 messages of the last 9 s, of which
	// one met the throttle: the provider took 899 in 9 s, and the pace
	// drops to 0.85 of that.
	start := t0.Add(-10 * time.Second)
	sendEvery(t, p, start, t0, 10*time.Millisecond)
	throttled(t, p, t0)
	ceil := 899.0 / 9
	if r := rate(t, p, t0.Add(time.Second)); !near(r, 0.85*ceil, 1e-4) {
		t.Fatalf("rate after a throttle: %v, want %.3f", r, 0.85*ceil)
	}
	if w := take(t, p, t0.Add(time.Second)); w < 9*time.Second || w > 9*time.Second+time.Millisecond {
		t.Fatalf("during the cool-down: wait %v, want 9s", w)
	}
	if until, _ := p.PausedUntil(ctx, t0.Add(time.Second)); !until.Equal(t0.Add(cool)) {
		t.Fatalf("PausedUntil %v", until)
	}
	// A second throttle reply within half the cool-down pauses again but
	// does not lower the rate again.
	throttled(t, p, t0.Add(2*time.Second))
	if r := rate(t, p, t0.Add(2*time.Second)); !near(r, 0.85*ceil, 1e-4) {
		t.Fatalf("rate after a second reply in the same burst: %v", r)
	}
	after := t0.Add(2*time.Second + cool)
	if w := take(t, p, after.Add(-time.Millisecond)); w != time.Millisecond {
		t.Fatalf("the second reply did not restart the cool-down: wait %v", w)
	}
	if w := take(t, p, after); w != 0 {
		t.Fatalf("after the cool-down: wait %v", w)
	}
	if until, _ := p.PausedUntil(ctx, after); !until.IsZero() {
		t.Fatalf("PausedUntil after the cool-down: %v", until)
	}
	// Sending resumes one message at a time, not in a burst.
	burst := m.Pacer(t, ratelimit.Policy{Rate: 100, Burst: 10, Cooldown: cool})
	throttled(t, burst, t0)
	if w := take(t, burst, t0.Add(cool)); w != 0 {
		t.Fatalf("first message after the cool-down waits %v", w)
	}
	if w := take(t, burst, t0.Add(cool)); w < 9*time.Millisecond || w > 11*time.Millisecond {
		t.Fatalf("second message right after the cool-down waits %v, want 1/100 s (no burst)", w)
	}
	// Quiet cool-downs after the pause: a twentieth of the ceiling each up
	// to 0.9 of it, then a hundredth each, up to the configured rate.
	for _, c := range []struct {
		k    int
		want float64
	}{{0, 0.85}, {1, 0.9}, {2, 0.91}, {5, 0.94}} {
		if r := rate(t, p, after.Add(time.Duration(c.k)*cool)); !near(r, c.want*ceil, 1e-4) {
			t.Errorf("rate %d quiet cool-downs after the pause: %v, want %.3f", c.k, r, c.want*ceil)
		}
	}
	if r := rate(t, p, after.Add(100*cool)); r != 100 {
		t.Fatalf("rate much later: %v, want back to the configured 100", r)
	}
	// Never below a 64th of the configured rate: two messages, then a
	// throttle reply, too soon to measure anything, ten times over: each
	// one at most halves the pace.
	slow := m.Pacer(t, ratelimit.Policy{Rate: 64, Burst: 1, Cooldown: time.Second})
	at, low := t0, 64.0
	for range 10 {
		at = twoThenThrottle(t, slow, at)
		low = min(low, rate(t, slow, at))
	}
	// At the floor a round lasts a cool-down (one message a second), long
	// enough to climb a little.
	if low != 1 {
		t.Fatalf("floor: %v, want 1", low)
	}
}

// twoThenThrottle takes two slots from at (waiting as told), records a
// throttle reply after the second, and returns the end of the pause.
func twoThenThrottle(t *testing.T, p ratelimit.Pacer, at time.Time) time.Time {
	t.Helper()
	for range 2 {
		if w := take(t, p, at); w > 0 {
			at = at.Add(w)
			if w := take(t, p, at); w != 0 {
				t.Fatalf("no slot after the wait: %v", w)
			}
		}
	}
	throttled(t, p, at)
	until, err := p.PausedUntil(context.Background(), at)
	if err != nil || until.IsZero() {
		t.Fatalf("no pause after a throttle reply: %v", err)
	}
	return until
}

// testLearnUnlimited: without a configured rate, the first throttle reply
// (after a burst far too short to measure) sets a pace from what got
// through; the pace doubles each quiet cool-down until a throttle measures
// a ceiling (the pace that met it); then it climbs by twentieths of the
// ceiling to 0.9 of it, by hundredths past it, and is forgotten after 100
// quiet cool-downs. It never drops below one message per cool-down.
func testLearnUnlimited(t *testing.T, m Makers) {
	cool := 10 * time.Second
	p := m.Pacer(t, ratelimit.Policy{Cooldown: cool})
	for i := range 20 {
		if w := take(t, p, t0); w != 0 {
			t.Fatalf("unlimited message %d waits %v", i, w)
		}
	}
	// 19 went through in 5 ms: taken as the provider's burst of 250 ms.
	throttled(t, p, t0.Add(5*time.Millisecond))
	end := t0.Add(5*time.Millisecond + cool)
	if r := rate(t, p, end); !near(r, 76, 1e-6) {
		t.Fatalf("rate after the first throttle: %v, want 76 (19 per 250 ms)", r)
	}
	if w := take(t, p, end); w != 0 {
		t.Fatalf("after the pause: %v", w)
	}
	if w := take(t, p, end); w < 13*time.Millisecond || w > 14*time.Millisecond {
		t.Fatalf("the second message after the pause waits %v, want 1/76 s", w)
	}
	// As fast as it lets us for 15 s: 76/s for a cool-down, then 152/s.
	n := sendFor(t, p, end, 15*time.Second)
	if n < 760+760-5 || n > 760+760+5 {
		t.Fatalf("15 s of sending gave %d, want 760 at 76/s and 760 at 152/s", n)
	}
	at := end.Add(15 * time.Second)
	throttled(t, p, at)
	end = at.Add(cool)
	// The window's mean is mostly the 76/s it doubled from; the ceiling is
	// the 152/s that met the throttle, the steps are twentieths of it.
	r0 := rate(t, p, end)
	if r0 < 76 || r0 > 0.85*152 {
		t.Fatalf("rate after a throttle at 152/s: %v", r0)
	}
	if r1 := rate(t, p, end.Add(cool)); !near(r1-r0, 152.0/20, 1e-3) {
		t.Fatalf("one quiet cool-down later: %v, want %v + 7.6", r1, r0)
	}

	// A throttle after a long sending at 50/s: measured, 0.85 of it.
	q := m.Pacer(t, ratelimit.Policy{Cooldown: cool})
	sendEvery(t, q, t0, t0.Add(12*time.Second), 20*time.Millisecond)
	at = t0.Add(12 * time.Second)
	throttled(t, q, at)
	// The window: the last 9 s of sending (buckets of a tenth of the
	// cool-down), less the message that met the throttle. RedisPacer adds
	// what it counted without asking every 100 ms, so up to 100 ms of
	// messages may land in the bucket after theirs: 2% tolerance.
	ceil := 449.0 / 9
	end = at.Add(cool)
	if r := rate(t, q, end); !near(r, 0.85*ceil, 0.02) {
		t.Fatalf("rate after a throttle at 50/s: %v, want %.2f", r, 0.85*ceil)
	}
	prev := rate(t, q, end)
	for k, step := range []float64{0.05, 0.01, 0.01} {
		r := rate(t, q, end.Add(time.Duration(k+1)*cool))
		// The first step goes from 0.85 to 0.9 of the ceiling.
		if !near(r-prev, step*ceil, 0.03) {
			t.Fatalf("quiet cool-down %d: %v after %v, want a step of %.2f", k+1, r, prev, step*ceil)
		}
		prev = r
	}
	if r := rate(t, q, end.Add(99*cool)); !near(r, 1.88*ceil, 0.03) {
		t.Fatalf("99 quiet cool-downs later: %v, want about %.1f", r, 1.88*ceil)
	}
	if r := rate(t, q, end.Add(100*cool)); r != 0 {
		t.Fatalf("100 quiet cool-downs later: %v, want unlimited again", r)
	}
	for i := range 100 {
		if w := take(t, q, end.Add(100*cool)); w != 0 {
			t.Fatalf("message %d once unlimited again waits %v", i, w)
		}
	}

	// The floor: one message per cool-down.
	f := m.Pacer(t, ratelimit.Policy{Cooldown: cool})
	at, low := t0, 1e9
	for range 12 {
		at = twoThenThrottle(t, f, at)
		low = min(low, rate(t, f, at))
	}
	if !near(low, 0.1, 1e-6) {
		t.Fatalf("floor: %v, want 0.1 (one message per 10 s cool-down)", low)
	}
}

// testLearnConfigured: with a configured rate the measured pace is the
// same as without, and the climb stops at the configured rate.
func testLearnConfigured(t *testing.T, m Makers) {
	cool := 10 * time.Second
	p := m.Pacer(t, ratelimit.Policy{Rate: 60, Burst: 6, Cooldown: cool})
	sendEvery(t, p, t0, t0.Add(12*time.Second), 20*time.Millisecond)
	at := t0.Add(12 * time.Second)
	throttled(t, p, at)
	ceil := 449.0 / 9
	end := at.Add(cool)
	if r := rate(t, p, end); !near(r, 0.85*ceil, 1e-4) {
		t.Fatalf("rate after a throttle at 50/s: %v, want %.2f", r, 0.85*ceil)
	}
	for k := range 200 {
		if r := rate(t, p, end.Add(time.Duration(k)*cool)); r > 60 {
			t.Fatalf("%d quiet cool-downs later: %v, above the configured 60", k, r)
		}
	}
	if r := rate(t, p, end.Add(200*cool)); r != 60 {
		t.Fatalf("200 quiet cool-downs later: %v, want the configured 60", r)
	}
	// Sending faster than the pace only by its burst: the measure is the
	// pace. 60/s with a burst of 6, throttled after 9 s: not 66.
	q := m.Pacer(t, ratelimit.Policy{Rate: 60, Burst: 6, Cooldown: cool})
	sendFor(t, q, t0, 9*time.Second)
	throttled(t, q, t0.Add(9*time.Second))
	if r := rate(t, q, t0.Add(9*time.Second)); !near(r, 0.85*60, 1e-4) {
		t.Fatalf("rate after a throttle at the configured pace: %v, want 51", r)
	}
}

// testUndoWindow: a slot given back is not counted as sent.
func testUndoWindow(t *testing.T, m Makers) {
	cool := 10 * time.Second
	pol := ratelimit.Policy{Cooldown: cool}
	p, all := m.Pacer(t, pol), m.Pacer(t, pol)
	start, at := t0.Add(time.Second), t0.Add(7*time.Second)
	sendEvery(t, p, start, at, 10*time.Millisecond)
	sendEvery(t, all, start, at, 10*time.Millisecond)
	for range 300 {
		if err := p.Undo(context.Background(), at.Add(-time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	throttled(t, p, at)
	throttled(t, all, at)
	// 600 in 6 s, 300 of them given back.
	if r := rate(t, p, at); !near(r, 0.85*299/6, 1e-4) {
		t.Fatalf("rate with half the slots given back: %v, want %.2f", r, 0.85*299/6)
	}
	if r := rate(t, all, at); !near(r, 0.85*599/6, 1e-4) {
		t.Fatalf("rate with every slot used: %v, want %.2f", r, 0.85*599/6)
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

// testConverge: a provider that takes 50 messages a second (bursts of 5)
// and throttles the rest, and four senders that send as fast as the pacer
// lets them: with no rate configured, and with four times the provider's
// rate, the pacer settles just under 50/s within a few cool-downs, and
// few messages meet a throttle.
func testConverge(t *testing.T, m Makers) {
	for _, configured := range []float64{0, 200} {
		t.Run(fmt.Sprintf("rate=%v", configured), func(t *testing.T) {
			const limit, burst = 50, 5
			p := m.Pacer(t, ratelimit.Policy{Rate: configured, Burst: int(configured / 10), Cooldown: time.Second})
			run := simulate(t, []ratelimit.Pacer{p}, &provider{rate: limit, burst: burst}, 4, 60*time.Second)
			late := run.delivered(30*time.Second, 60*time.Second) / 30
			first := run.delivered(0, 30*time.Second)
			r := rate(t, p, t0.Add(60*time.Second))
			t.Logf("rate %v against %d/s: %.1f msgs/s over the last 30 s, %.0f in the first 30 s, %d throttled of %d (%.2f%%), pace at the end %.1f",
				configured, limit, late, first, run.throttled, len(run.sent), 100*float64(run.throttled)/float64(len(run.sent)), r)
			if late < 0.85*limit || late > limit {
				t.Errorf("%.1f msgs/s over the last 30 s, want within 15%% under %d", late, limit)
			}
			if first < 0.7*30*limit {
				t.Errorf("%.0f messages in the first 30 s: too slow to learn", first)
			}
			if run.throttled > len(run.sent)/100 {
				t.Errorf("%d throttled of %d messages", run.throttled, len(run.sent))
			}
			if r < 0.75*limit || r > 1.1*limit {
				t.Errorf("pace at the end %.1f, want near %d", r, limit)
			}
		})
	}
}

// testConvergeShared: three processes, two connections each, share one
// pacer and learn one limit: the same as one process with six.
func testConvergeShared(t *testing.T, m Makers) {
	if m.SharedPacer == nil {
		t.Skip("no shared pacers")
	}
	const limit, burst = 50, 5
	ps := m.SharedPacer(t, ratelimit.Policy{Cooldown: time.Second}, 3)
	run := simulate(t, ps, &provider{rate: limit, burst: burst}, 6, 60*time.Second)
	late := run.delivered(30*time.Second, 60*time.Second) / 30
	t.Logf("3 processes against %d/s: %.1f msgs/s over the last 30 s, %d throttled of %d (%.2f%%)",
		limit, late, run.throttled, len(run.sent), 100*float64(run.throttled)/float64(len(run.sent)))
	if late < 0.85*limit || late > limit {
		t.Errorf("%.1f msgs/s over the last 30 s, want within 15%% under %d", late, limit)
	}
	if run.throttled > len(run.sent)/100 {
		t.Errorf("%d throttled of %d messages", run.throttled, len(run.sent))
	}
	for i, p := range ps {
		if r := rate(t, p, t0.Add(60*time.Second)); r < 0.75*limit || r > 1.1*limit {
			t.Errorf("process %d's pace at the end %.1f, want near %d", i, r, limit)
		}
	}
}

// provider is a simulated server: it takes rate messages a second in
// bursts of up to burst (a token bucket) and throttles the rest.
type provider struct {
	rate, burst, tokens float64
	last                time.Time
}

func (s *provider) accept(at time.Time) bool {
	if s.last.IsZero() {
		s.tokens = s.burst
	} else {
		s.tokens = min(s.burst, s.tokens+at.Sub(s.last).Seconds()*s.rate)
	}
	s.last = at
	if s.tokens >= 1 {
		s.tokens--
		return true
	}
	return false
}

// simRun is what a simulation saw: when each message went through, and
// how many met a throttle.
type simRun struct {
	sent      []time.Time
	throttled int
}

func (r simRun) delivered(from, to time.Duration) float64 {
	n := 0
	for _, at := range r.sent {
		if d := at.Sub(t0); d >= from && d < to {
			n++
		}
	}
	return float64(n)
}

// Simulated round trips: a message's reply comes simRTT after it goes; a
// throttled connection is closed, and the next one is ready simRedial
// after the reply.
const simRTT, simRedial = 2 * time.Millisecond, 5 * time.Millisecond

// simulate runs senders (connections) against srv for d from t0, each
// sending as fast as its pacer lets it, in simulated time; sender i uses
// ps[i%len(ps)].
func simulate(t *testing.T, ps []ratelimit.Pacer, srv *provider, senders int, d time.Duration) simRun {
	t.Helper()
	type event struct {
		at       time.Time
		throttle bool // the reply of a throttled message, else the sender is ready
	}
	var run simRun
	events := make([]event, senders)
	for i := range events {
		events[i] = event{at: t0}
	}
	for {
		// The earliest event (a handful of senders: a scan is enough).
		i := 0
		for j := range events {
			if events[j].at.Before(events[i].at) {
				i = j
			}
		}
		e, p := events[i], ps[i%len(ps)]
		if !e.at.Before(t0.Add(d)) {
			return run
		}
		if e.throttle {
			throttled(t, p, e.at)
			events[i] = event{at: e.at.Add(simRedial)}
			continue
		}
		if w := take(t, p, e.at); w > 0 {
			events[i] = event{at: e.at.Add(w)}
			continue
		}
		if srv.accept(e.at) {
			run.sent = append(run.sent, e.at)
			events[i] = event{at: e.at.Add(simRTT)}
		} else {
			run.throttled++
			events[i] = event{at: e.at.Add(simRTT), throttle: true}
		}
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
