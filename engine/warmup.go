package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/heraldmail/herald/ratelimit"
)

// warmup is a provider's daily quota during its warm-up (provider.warmup):
// on day d, counted in 24-hour days from the provider's first message as
// the store recorded it (shared on Redis), at most caps[d-1] messages,
// besides the rolling daily quota; past the list only the daily quota
// holds. What the cap holds back goes to a backup provider, or waits for
// the next day, as with a spent daily quota.
type warmup struct {
	ratelimit.Quota // the daily quota
	name            string
	caps            []int
	q               Queue
	newDay          func(day int, limit int) ratelimit.Quota

	mu    sync.Mutex
	first time.Time // the first message (zero: not known yet)
	day   int       // the day dq counts (0: none yet)
	dq    ratelimit.Quota
}

func newWarmup(daily ratelimit.Quota, name string, caps []int, q Queue, newDay func(int, int) ratelimit.Quota) *warmup {
	if newDay == nil {
		newDay = func(_ int, limit int) ratelimit.Quota { return ratelimit.NewLocalQuota(limit) }
	}
	return &warmup{Quota: daily, name: name, caps: caps, q: q, newDay: newDay}
}

// today is the quota of the warm-up day at now and when that day ends;
// nil past the warm-up.
func (w *warmup) today(ctx context.Context, now time.Time) (ratelimit.Quota, int, time.Time, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.first.IsZero() {
		first, err := w.q.FirstUsage(ctx, w.name)
		if err != nil {
			return nil, 0, time.Time{}, fmt.Errorf("warm-up: %w", err)
		}
		if first.IsZero() {
			first = now.Truncate(time.Minute) // this message starts day 1
		}
		w.first = first
	}
	d := int(now.Sub(w.first)/(24*time.Hour)) + 1
	if d > len(w.caps) {
		return nil, d, time.Time{}, nil
	}
	start := w.first.Add(time.Duration(d-1) * 24 * time.Hour)
	if d != w.day {
		dq := w.newDay(d, w.caps[d-1])
		// What was sent since the day began (by any process, as the store
		// recorded it); a shared day quota that counts already keeps its own.
		n, err := w.q.Usage(ctx, w.name, start)
		if err != nil {
			return nil, d, time.Time{}, fmt.Errorf("warm-up: %w", err)
		}
		if err := dq.Seed(ctx, start, n); err != nil {
			return nil, d, time.Time{}, fmt.Errorf("warm-up: %w", err)
		}
		w.day, w.dq = d, dq
	}
	return w.dq, d, start.Add(24 * time.Hour), nil
}

// Take reserves one message under the day's cap and the daily quota.
func (w *warmup) Take(ctx context.Context, now time.Time) (bool, time.Time, error) {
	dq, _, end, err := w.today(ctx, now)
	if err != nil {
		return false, time.Time{}, err
	}
	if dq != nil {
		ok, _, err := dq.Take(ctx, now)
		if err != nil || !ok {
			return false, end, err
		}
	}
	ok, at, err := w.Quota.Take(ctx, now)
	if (err != nil || !ok) && dq != nil {
		_ = dq.Undo(ctx, now)
	}
	return ok, at, err
}

// Undo gives back a message taken at t.
func (w *warmup) Undo(ctx context.Context, t time.Time) error {
	w.mu.Lock()
	dq := w.dq
	w.mu.Unlock()
	if dq != nil {
		_ = dq.Undo(ctx, t)
	}
	return w.Quota.Undo(ctx, t)
}

// Limit is the cap that binds today: the warm-up day's, or the daily one.
func (w *warmup) Limit() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.day >= 1 && w.day <= len(w.caps) {
		return int64(w.caps[w.day-1])
	}
	return w.Quota.Limit()
}

// Spent says why the provider stopped when Take refused at now.
func (w *warmup) Spent(now, until time.Time) string {
	w.mu.Lock()
	day := w.day
	w.mu.Unlock()
	if day < 1 || day > len(w.caps) || now.Sub(w.first) >= time.Duration(day)*24*time.Hour {
		return fmt.Sprintf("daily quota of %d messages spent; it frees up from %s", w.Quota.Limit(), until.Format(time.DateTime))
	}
	next := "the daily quota"
	if day < len(w.caps) {
		next = fmt.Sprintf("a cap of %d", w.caps[day])
	}
	return fmt.Sprintf("warm-up day %d: its cap of %d messages is spent; day %d (%s) begins %s", day, w.caps[day-1], day+1, next, until.Format(time.DateTime))
}
