package ratelimit

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter paces one provider's messages: a token bucket (rate, burst) that
// slows down when the provider throttles us and recovers slowly. It is safe
// for concurrent use.
type Limiter struct {
	mu          sync.Mutex
	bucket      *rate.Limiter // nil: unlimited
	base        rate.Limit    // configured rate
	cur         rate.Limit    // effective rate
	cooldown    time.Duration
	pausedUntil time.Time
	lastChange  time.Time // last decrease or increase
	now         func() time.Time
}

// NewLimiter returns a limiter of perSecond messages a second (0: unlimited)
// with the given burst. After a throttle reply, sends pause for cooldown.
func NewLimiter(perSecond float64, burst int, cooldown time.Duration) *Limiter {
	l := &Limiter{base: rate.Limit(perSecond), cur: rate.Limit(perSecond), cooldown: cooldown, now: time.Now}
	if perSecond > 0 {
		l.bucket = rate.NewLimiter(rate.Limit(perSecond), max(burst, 1))
	}
	return l
}

// Wait blocks until one message may be sent or ctx is done.
func (l *Limiter) Wait(ctx context.Context) error {
	for {
		l.mu.Lock()
		pause := l.pausedUntil.Sub(l.now())
		l.mu.Unlock()
		if pause <= 0 {
			break
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	if l.bucket == nil {
		return ctx.Err()
	}
	return l.bucket.Wait(ctx)
}

// TryTake takes one message's token if it is available now, without
// waiting; undo gives it back when the message is not sent after all.
func (l *Limiter) TryTake() (ok bool, undo func()) {
	l.mu.Lock()
	paused := l.now().Before(l.pausedUntil)
	l.mu.Unlock()
	if paused {
		return false, func() {}
	}
	if l.bucket == nil {
		return true, func() {}
	}
	res := l.bucket.Reserve()
	if !res.OK() || res.Delay() > 0 {
		res.Cancel()
		return false, func() {}
	}
	return true, res.Cancel
}

// Throttled records a throttle reply: the effective rate halves (down to a
// 64th of the configured rate) and new sends pause for the cool-down.
func (l *Limiter) Throttled() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.pausedUntil = now.Add(l.cooldown)
	if l.bucket != nil && now.Sub(l.lastChange) >= l.cooldown/2 {
		// One decrease per burst of throttle replies, not one per reply.
		l.cur = max(l.cur/2, l.base/64)
		l.bucket.SetLimitAt(now, l.cur)
	}
	l.lastChange = now
}

// Sent records a delivered message: after a quiet cool-down period the rate
// climbs back by a tenth of the configured rate per period.
func (l *Limiter) Sent() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bucket == nil || l.cur >= l.base {
		return
	}
	now := l.now()
	if now.Sub(l.lastChange) < l.cooldown {
		return
	}
	l.cur = min(l.cur+l.base/10, l.base)
	l.bucket.SetLimitAt(now, l.cur)
	l.lastChange = now
}

// Rate is the effective rate in messages a second (0: unlimited).
func (l *Limiter) Rate() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return float64(l.cur)
}

// PausedUntil is the end of the current cool-down, if any.
func (l *Limiter) PausedUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pausedUntil
}
