package ratelimit

import (
	"context"
	"sync"
	"time"
)

// Quota is a provider's quota of messages per rolling 24 hours (Window),
// counted per minute. LocalQuota keeps it in this process (seeded from the
// store at start); RedisQuota shares it between every process sending
// through the provider. Both are safe for concurrent use.
type Quota interface {
	// Take reserves one message at now. When the quota is spent it returns
	// false and the time at which the oldest minute leaves the window.
	Take(ctx context.Context, now time.Time) (ok bool, retryAt time.Time, err error)
	// Undo gives back a message taken at t that was not sent.
	Undo(ctx context.Context, t time.Time) error
	// Used is the number of messages in the window ending at now.
	Used(ctx context.Context, now time.Time) (int64, error)
	// Seed records n messages sent in the minute starting at t (what the
	// store says was sent before this process started). A shared quota
	// takes a seed only while it holds nothing yet.
	Seed(ctx context.Context, t time.Time, n int64) error
	// Limit is the quota (0: unlimited).
	Limit() int64
}

// LocalQuota is a Quota kept in this process.
type LocalQuota struct{ d *Daily }

var _ Quota = LocalQuota{}

// NewLocalQuota returns a quota of limit messages a day; 0 means unlimited.
func NewLocalQuota(limit int) LocalQuota { return LocalQuota{NewDaily(limit)} }

func (q LocalQuota) Take(_ context.Context, now time.Time) (bool, time.Time, error) {
	ok, at := q.d.Take(now)
	return ok, at, nil
}

func (q LocalQuota) Undo(_ context.Context, t time.Time) error { q.d.Undo(t); return nil }

func (q LocalQuota) Used(_ context.Context, now time.Time) (int64, error) { return q.d.Used(now), nil }

func (q LocalQuota) Seed(_ context.Context, t time.Time, n int64) error { q.d.Seed(t, n); return nil }

func (q LocalQuota) Limit() int64 { return q.d.Limit() }

// Slots caps a provider's concurrent connections. A holder is one
// connection of one process. LocalSlots counts this process's connections;
// RedisSlots counts every process's, and a slot whose process died (it
// stopped renewing) frees itself. Both are safe for concurrent use.
type Slots interface {
	// Acquire takes a slot for holder at now; false when all are taken.
	// A holder that already has one keeps it.
	Acquire(ctx context.Context, holder string, now time.Time) (bool, error)
	// Release frees holder's slot.
	Release(ctx context.Context, holder string) error
	// Renew keeps this process's slots at now (RedisSlots: call it more
	// often than SlotTTL).
	Renew(ctx context.Context, now time.Time) error
	// Limit is the number of slots.
	Limit() int
	// Contended reports whether, at the last Acquire or Renew, holders
	// were waiting for a slot.
	Contended() bool
}

// SlotTTL is how long a shared slot outlives the last renewal of its
// process.
const SlotTTL = 6 * time.Second

// LocalSlots is Slots kept in this process.
type LocalSlots struct {
	mu    sync.Mutex
	limit int
	held  map[string]bool
}

var _ Slots = (*LocalSlots)(nil)

// NewLocalSlots returns limit slots.
func NewLocalSlots(limit int) *LocalSlots {
	return &LocalSlots{limit: limit, held: map[string]bool{}}
}

func (s *LocalSlots) Acquire(_ context.Context, holder string, _ time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held[holder] {
		return true, nil
	}
	if len(s.held) >= s.limit {
		return false, nil
	}
	s.held[holder] = true
	return true, nil
}

func (s *LocalSlots) Release(_ context.Context, holder string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.held, holder)
	return nil
}

func (s *LocalSlots) Renew(context.Context, time.Time) error { return nil }

func (s *LocalSlots) Limit() int { return s.limit }

// Contended is false: the engine starts no more senders than slots.
func (s *LocalSlots) Contended() bool { return false }
