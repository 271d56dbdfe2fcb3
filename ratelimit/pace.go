package ratelimit

import (
	"context"
	"math"
	"sync"
	"time"
)

// Policy is a provider's pace: messages per second (0: unlimited), how
// many may go at once, and how long sending pauses after a throttle reply.
type Policy struct {
	Rate     float64
	Burst    int
	Cooldown time.Duration
}

// Pacer paces one provider's messages with GCRA (the generic cell rate
// algorithm: a theoretical arrival time advanced by 1/rate per message,
// with a burst tolerance), under a controller that learns the provider's
// real limit from its throttle replies, whether or not a rate is
// configured:
//
//   - The pacer counts the messages it lets go (Take returning 0, less
//     Undo) over a window one cool-down long (at least a second), in ten
//     buckets, and notes when that sending began.
//   - A throttle reply pauses sending for the cool-down and empties the
//     burst, so that sending resumes one message at a time, then paces at
//     the learned rate. When the window covers at least half its length
//     of sending, the rate it measured (what went, less the message that
//     met the throttle; no more than the pace, which it exceeds only by
//     the burst) is the provider's ceiling, and the pace drops to 0.85 of
//     it. A throttle after less sending than that (the first contact at
//     full speed, a throttle right after a pause) measures nothing
//     reliable: the pace restarts from what got through, taken as the
//     provider's burst of 250 ms (and at most half the pace it had), with
//     no ceiling known. The window then starts again. A throttle with
//     nothing counted in the window (a pacer made at the throttle) only
//     pauses.
//   - Each quiet cool-down (no throttle) the pace climbs: by a twentieth of
//     the ceiling up to 0.9 of it, then by a hundredth, so that it settles
//     just under the provider's limit and finds it again if it rises. With
//     no ceiling known it doubles each quiet cool-down until a throttle
//     measures one (that throttle's ceiling is the pace that met it: the
//     window's mean is mostly the half it doubled from).
//   - Decreases come at most once per half cool-down (the replies of the
//     messages in flight when the first one came teach nothing more), and
//     never below a floor: a 64th of the configured rate, or one message
//     per cool-down without one.
//   - With a configured rate the pace never exceeds it. Without one (0,
//     unlimited), after 100 quiet cool-downs (the pace is then about twice
//     the ceiling) the controller forgets what it learned and sends
//     unlimited again, until the next throttle teaches it again.
//
// Time is passed in, so that tests drive the clock; LocalPacer keeps the
// state in this process, RedisPacer shares it between every process
// sending through the provider. Both are safe for concurrent use and pass
// the same suite (ratelimit/limitertest).
type Pacer interface {
	// Take asks for one message's slot at now. It returns 0 when the
	// message may go (the slot is taken and counted); otherwise how long
	// to wait before asking again (nothing is taken).
	Take(ctx context.Context, now time.Time) (time.Duration, error)
	// Undo gives back a slot taken at now that was not used.
	Undo(ctx context.Context, now time.Time) error
	// Throttled records a throttle reply at now.
	Throttled(ctx context.Context, now time.Time) error
	// Rate is the effective rate at now in messages a second: the
	// configured one, or the one the controller learned (0: unlimited).
	Rate(ctx context.Context, now time.Time) (float64, error)
	// PausedUntil is the end of the cool-down, if one is running at now.
	PausedUntil(ctx context.Context, now time.Time) (time.Time, error)
}

// The controller's constants (scriptPace has the same numbers).
const (
	// windowBuckets is the number of buckets of the window that counts the
	// messages let go; the window is a cool-down long, at least minWindow
	// (ms).
	windowBuckets = 10
	minWindow     = 1000
	// backoff is the share of the measured rate the pace drops to.
	backoff = 0.85
	// After a throttle the pace climbs, each quiet cool-down, by the
	// ceiling divided by climbSteps up to knee times the ceiling, then by
	// the ceiling divided by creepSteps: quickly back to just under the
	// provider's limit, then slowly past it.
	climbSteps = 20
	knee       = 0.9
	creepSteps = 100
	// guessSpan (ms): what got through in a sending too short to measure
	// is taken as the provider's burst of this long.
	guessSpan = 250
	// forgetAfter: quiet cool-downs after which a pace learned without a
	// configured rate is forgotten (it has climbed to about twice the
	// ceiling by then).
	forgetAfter = 100
	// rateFloor: the pace never drops below the configured rate divided by
	// this.
	rateFloor = 64
)

// pace is the state both pacers keep, times in ms, rates in messages a
// second. The Lua script of RedisPacer (scriptPace) is this code, line for
// line.
type pace struct {
	tat     float64 // GCRA's theoretical arrival time
	cur     float64 // the pace (0: unlimited)
	paused  float64 // the end of the cool-down
	changed float64 // the last change of the pace
	cut     float64 // the last decrease
	// ceil is the rate measured at the last throttle reply, which the pace
	// climbs back to in steps of it (0: none measured; the pace doubles).
	ceil float64
	// The window: messages let go per bucket (a ring indexed by bucket
	// number modulo windowBuckets), the newest bucket's number, and when
	// the sending counted in it began (the window was empty before).
	win  [windowBuckets]float64
	head float64
	from float64
}

func ms(t time.Time) float64 { return float64(t.UnixMicro()) / 1000 }

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// window is the window's length and its buckets' (ms) under policy p.
func window(p Policy) (length, bucket float64) {
	length = math.Max(msOf(p.Cooldown), minWindow)
	return length, length / windowBuckets
}

// slot is bucket i's place in the ring: i modulo windowBuckets, as Lua's
// % computes it (math.Mod is slow on numbers this large).
func slot(i float64) int { return int(i - math.Floor(i/windowBuckets)*windowBuckets) }

// advance moves the window on to now's bucket, emptying the buckets it
// passes (all of them after a window's time of silence).
func (s *pace) advance(now float64, p Policy) {
	_, bucket := window(p)
	h := math.Floor(now / bucket)
	if h <= s.head {
		return // the same bucket (or a clock a little behind another's)
	}
	for i := math.Max(s.head+1, h-windowBuckets+1); i <= h; i++ {
		s.win[slot(i)] = 0
	}
	s.head = h
}

// count adds, at now, n messages (negative: given back) let go since
// first.
func (s *pace) count(now float64, p Policy, n, first float64) {
	s.advance(now, p)
	total := 0.0
	for _, c := range s.win {
		total += c
	}
	if total <= 0 {
		s.from = first // sending begins (again)
	}
	s.win[slot(s.head)] += n
}

// sent is the messages the window holds at now and the time they were
// sent over (ms): since the sending began, within the window.
func (s *pace) sent(now float64, p Policy) (n, span float64) {
	s.advance(now, p)
	for _, c := range s.win {
		n += c
	}
	_, bucket := window(p)
	start := math.Max(s.from, (s.head-windowBuckets+1)*bucket)
	return math.Max(n, 0), now - start
}

// recover applies the climb due at now.
func (s *pace) recover(now float64, p Policy) {
	base := p.Rate
	if s.cur < 0 || math.IsNaN(s.cur) {
		s.cur = 0
	}
	if base > 0 && (s.cur == 0 || s.cur > base) {
		s.cur = base // stored by a process without a rate, or the configured rate went down
	}
	period := math.Max(msOf(p.Cooldown), 1)
	if base == 0 && s.cur > 0 && now-s.paused >= forgetAfter*period {
		s.cur, s.ceil = 0, 0 // unlimited again
		return
	}
	// Quiet since the last change and the end of the last pause.
	quiet := math.Max(s.changed, s.paused)
	if s.cur > 0 && (base == 0 || s.cur < base) && now-quiet >= period {
		k := math.Floor((now - quiet) / period)
		if s.ceil > 0 {
			// Quickly to just under the ceiling, then slowly past it (a
			// thousandth of a step spared: a pace read back from Redis
			// is rounded).
			fast := math.Max(0, math.Min(k, math.Ceil((knee*s.ceil-s.cur)*climbSteps/s.ceil-0.001)))
			s.cur = s.cur + fast*s.ceil/climbSteps + (k-fast)*s.ceil/creepSteps
		} else {
			s.cur = s.cur * math.Pow(2, math.Min(k, 30))
		}
		if base > 0 {
			s.cur = math.Min(s.cur, base)
		}
		s.changed = quiet + k*period
	}
}

func (s *pace) take(now float64, p Policy) (wait float64) {
	s.recover(now, p)
	if now < s.paused {
		return s.paused - now
	}
	if s.cur > 0 {
		t := 1000 / s.cur
		// A sender that asks again a little after its turn (its timer, a
		// round trip to Redis) keeps its turn: up to half an interval
		// late, the slot counts from where it was due, not from now; with
		// a burst of 1 the late part would be lost every time (100/s gave
		// 92). A longer gap (an idle pacer) earns nothing.
		start := s.tat
		if start < now-t/2 {
			start = now
		}
		next := start + t
		// 1 µs of slack: times are ms since 1970 in float64, whose last
		// digits round.
		if limit := float64(max(p.Burst, 1)) * t; next-now > limit+0.001 {
			return next - now - limit
		}
		s.tat = next
	}
	s.count(now, p, 1, now)
	return 0
}

func (s *pace) undo(now float64, p Policy) {
	s.recover(now, p)
	if s.cur > 0 {
		s.tat -= 1000 / s.cur
	}
	s.count(now, p, -1, now)
}

func (s *pace) throttled(now float64, p Policy) {
	s.recover(now, p)
	base, cool := p.Rate, msOf(p.Cooldown)
	s.paused = now + cool
	if now-s.cut >= cool/2 {
		n, span := s.sent(now, p)
		n-- // the message that met the throttle was not accepted
		length, _ := window(p)
		if n > 0 && span >= length/2 {
			// Measured: what the provider took, no more than the pace
			// (above it only by the burst).
			r := 1000 * n / span
			if s.cur > 0 {
				r = math.Min(r, s.cur)
			}
			if s.ceil == 0 && s.cur > 0 && (base == 0 || s.cur < base) {
				// Doubling: the pace met the throttle within a cool-down
				// of its last doubling, and the window's mean is mostly
				// the half it doubled from, which went through.
				s.ceil, s.cur = s.cur, math.Max(r*backoff, s.cur/2)
			} else {
				s.ceil, s.cur = r, r*backoff
			}
		} else if n > 0 {
			// Too short to measure: what got through was the provider's
			// burst, taken as guessSpan's worth; at most half the pace.
			r := 1000 * n / math.Max(span, guessSpan)
			if s.cur > 0 {
				r = math.Min(r, s.cur/2)
			}
			s.ceil, s.cur = 0, r
		}
		if n > 0 {
			floor := 1000 / math.Max(cool, 1) // one message per cool-down
			if base > 0 {
				floor = base / rateFloor
			}
			s.cur = math.Max(s.cur, floor)
			if base > 0 {
				s.cur = math.Min(s.cur, base)
			}
		}
		s.cut = now
		s.win = [windowBuckets]float64{} // counted again from the end of the pause
	}
	s.changed = now
	if s.cur > 0 {
		// No burst when sending resumes: the senders waiting for the end
		// of the pause go one 1/rate apart, or they would all meet the
		// server's limit again at once. The burst builds up again.
		s.tat = s.paused + float64(max(p.Burst, 1)-1)*1000/s.cur
	}
}

// LocalPacer is a Pacer whose state lives in this process.
type LocalPacer struct {
	mu sync.Mutex
	p  Policy
	s  pace
}

var _ Pacer = (*LocalPacer)(nil)

// NewLocalPacer returns a pacer of policy p.
func NewLocalPacer(p Policy) *LocalPacer {
	return &LocalPacer{p: p, s: pace{cur: p.Rate}}
}

func (l *LocalPacer) Take(_ context.Context, now time.Time) (time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fromMs(l.s.take(ms(now), l.p)), nil
}

func (l *LocalPacer) Undo(_ context.Context, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.s.undo(ms(now), l.p)
	return nil
}

func (l *LocalPacer) Throttled(_ context.Context, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.s.throttled(ms(now), l.p)
	return nil
}

func (l *LocalPacer) Rate(_ context.Context, now time.Time) (float64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.s.recover(ms(now), l.p)
	return l.s.cur, nil
}

func (l *LocalPacer) PausedUntil(_ context.Context, now time.Time) (time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.s.recover(ms(now), l.p)
	if l.s.paused > ms(now) {
		return fromMsTime(l.s.paused), nil
	}
	return time.Time{}, nil
}

// fromMs is a wait of v ms, rounded up to the microsecond: the times the
// pacers take are microseconds (ms with three decimals in Redis), so a
// caller that asks again after the wait asks at the time it was told, not
// a fraction of a microsecond before it.
func fromMs(v float64) time.Duration {
	if v <= 0 || math.IsNaN(v) {
		return 0
	}
	if v > float64(24*time.Hour/time.Millisecond) {
		return 24 * time.Hour
	}
	// Never 0 (that would mean the slot is taken); the last digits of v
	// are rounding, not a microsecond more.
	return time.Duration(math.Max(1, math.Ceil(v*1000-1e-6))) * time.Microsecond
}

// fromMsTime is the time v ms after 1970, to the nearest microsecond (v
// times 1000 may fall a little short of a whole number).
func fromMsTime(v float64) time.Time { return time.UnixMicro(int64(math.Round(v * 1000))) }

// Wait blocks until p lets one message go or ctx is done; now is the
// clock (time.Now outside tests).
func Wait(ctx context.Context, p Pacer, now func() time.Time) error {
	for {
		d, err := p.Take(ctx, now())
		if err != nil {
			return err
		}
		if d == 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
