package engine

import "time"

// Timing is how often a run looks at things and how long it waits for
// them. A zero field takes its default (DefaultTiming); tests shorten
// them so that they need not sleep through production intervals.
type Timing struct {
	// StatusPoll is how soon a pause, a cancel or a newly planned
	// campaign is seen.
	StatusPoll time.Duration
	// FinishedPoll is how soon a worker sees a finished campaign reopened
	// by retry-failed.
	FinishedPoll time.Duration
	// CircuitPoll is how often a provider reads its shared circuit.
	CircuitPoll time.Duration
	// SettleEvery bounds the wait before a batch of settlements is
	// committed; AckDelay is how long a commit that a few senders wait on
	// waits for more of them.
	SettleEvery, AckDelay time.Duration
	// DialBase and DialCeiling bound the backoff between failed dials.
	DialBase, DialCeiling time.Duration
	// StoreTimeout bounds one call to the queue.
	StoreTimeout time.Duration
	// QueueOutage is how long the queue may stay out of reach before a
	// run gives up.
	QueueOutage time.Duration
	// QuotaPause is how long a quota reply that names no reset time stops
	// the provider; AuthPause how long a temporary login refusal ("454
	// 4.7.0 too many login attempts") does.
	QuotaPause, AuthPause time.Duration
}

// DefaultTiming is the production timing.
var DefaultTiming = Timing{
	StatusPoll:   500 * time.Millisecond,
	FinishedPoll: 10 * time.Second,
	CircuitPoll:  time.Second,
	SettleEvery:  25 * time.Millisecond,
	AckDelay:     time.Millisecond,
	DialBase:     250 * time.Millisecond,
	DialCeiling:  30 * time.Second,
	StoreTimeout: 30 * time.Second,
	QueueOutage:  2 * time.Minute,
	QuotaPause:   time.Hour,
	AuthPause:    5 * time.Minute,
}

// withDefaults fills t's zero fields from DefaultTiming.
func (t Timing) withDefaults() Timing {
	d := DefaultTiming
	for _, f := range []struct{ v, def *time.Duration }{
		{&t.StatusPoll, &d.StatusPoll}, {&t.FinishedPoll, &d.FinishedPoll}, {&t.CircuitPoll, &d.CircuitPoll},
		{&t.SettleEvery, &d.SettleEvery}, {&t.AckDelay, &d.AckDelay}, {&t.DialBase, &d.DialBase},
		{&t.DialCeiling, &d.DialCeiling}, {&t.StoreTimeout, &d.StoreTimeout}, {&t.QueueOutage, &d.QueueOutage},
		{&t.QuotaPause, &d.QuotaPause}, {&t.AuthPause, &d.AuthPause},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	return t
}
