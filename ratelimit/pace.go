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
// with a burst tolerance). A throttle reply halves the effective rate (down
// to a 64th of the configured one, at most once per half cool-down),
// pauses sending for the cool-down and empties the burst, so that sending
// resumes one message at a time; each quiet cool-down after the pause the
// rate climbs back by a tenth of the rate that met the throttle (so it
// settles near the provider's real limit), up to the configured rate. Time is passed in, so that tests
// drive the clock; LocalPacer keeps the state in this process, RedisPacer
// shares it between every process sending through the provider. Both are
// safe for concurrent use and pass the same suite (ratelimit/limitertest).
type Pacer interface {
	// Take asks for one message's slot at now. It returns 0 when the
	// message may go (the slot is taken); otherwise how long to wait
	// before asking again (nothing is taken).
	Take(ctx context.Context, now time.Time) (time.Duration, error)
	// Undo gives back a slot taken at now that was not used.
	Undo(ctx context.Context, now time.Time) error
	// Throttled records a throttle reply at now.
	Throttled(ctx context.Context, now time.Time) error
	// Rate is the effective rate at now in messages a second (0: unlimited).
	Rate(ctx context.Context, now time.Time) (float64, error)
	// PausedUntil is the end of the cool-down, if one is running at now.
	PausedUntil(ctx context.Context, now time.Time) (time.Time, error)
}

// pace is the state both pacers keep, in milliseconds. The Lua script of
// RedisPacer (scriptPace) is this code, line for line.
type pace struct {
	tat, cur, paused, changed float64
	cut                       float64 // the last decrease
	// ceil is the rate at which the provider last throttled us: the rate
	// climbs back in tenths of it, so that it nears the provider's real
	// limit in small steps (0: never throttled; steps of the configured
	// rate).
	ceil float64
}

func ms(t time.Time) float64 { return float64(t.UnixMicro()) / 1000 }

// recover applies the additive increase due at now.
func (s *pace) recover(now float64, p Policy) {
	base := p.Rate
	if s.cur <= 0 || math.IsNaN(s.cur) {
		s.cur = base // stored by a process configured without a rate
	}
	if s.cur > base {
		s.cur = base // the configured rate went down
	}
	// Quiet since the last change and the end of the last pause.
	cool, quiet := msOf(p.Cooldown), math.Max(s.changed, s.paused)
	if s.cur < base && now-quiet >= cool {
		step := base / 10
		if s.ceil > 0 {
			step = math.Max(s.ceil/10, base/64)
		}
		s.cur = math.Min(s.cur+math.Floor((now-quiet)/math.Max(cool, 1))*step, base)
		s.changed = now
	}
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (s *pace) take(now float64, p Policy) (wait float64) {
	s.recover(now, p)
	if now < s.paused {
		return s.paused - now
	}
	if p.Rate == 0 {
		return 0
	}
	t := 1000 / s.cur
	// A sender that asks again a little after its turn (its timer, a
	// round trip to Redis) keeps its turn: up to half an interval late,
	// the slot counts from where it was due, not from now; with a burst
	// of 1 the late part would be lost every time (100/s gave 92). A
	// longer gap (an idle pacer) earns nothing.
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
	return 0
}

func (s *pace) undo(now float64, p Policy) {
	s.recover(now, p)
	if p.Rate > 0 {
		s.tat -= 1000 / s.cur
	}
}

func (s *pace) throttled(now float64, p Policy) {
	s.recover(now, p)
	cool := msOf(p.Cooldown)
	s.paused = now + cool
	if p.Rate > 0 && now-s.cut >= cool/2 {
		s.ceil, s.cur, s.cut = s.cur, math.Max(s.cur/2, p.Rate/64), now
	}
	s.changed = now
	if p.Rate > 0 {
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
