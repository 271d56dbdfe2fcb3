package ratelimit

import (
	"sort"
	"sync"
	"time"
)

// Window is the length of the rolling quota window.
const Window = 24 * time.Hour

// Daily enforces a quota of messages per rolling 24 hours, counted per
// minute. It is safe for concurrent use. Seed it from the store at start so
// that a restart does not reset the day.
type Daily struct {
	mu      sync.Mutex
	limit   int64
	used    int64
	minutes []minute // oldest first
}

type minute struct {
	unix int64 // unix minute
	n    int64
}

// NewDaily returns a quota of limit messages a day; 0 means unlimited.
func NewDaily(limit int) *Daily {
	return &Daily{limit: int64(limit)}
}

// Seed records n messages sent in the minute starting at t.
func (d *Daily) Seed(t time.Time, n int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := t.Unix() / 60
	i := sort.Search(len(d.minutes), func(i int) bool { return d.minutes[i].unix >= m })
	if i < len(d.minutes) && d.minutes[i].unix == m {
		d.minutes[i].n += n
	} else {
		d.minutes = append(d.minutes, minute{})
		copy(d.minutes[i+1:], d.minutes[i:])
		d.minutes[i] = minute{m, n}
	}
	d.used += n
}

// Take reserves one message at now. When the quota is spent it returns false
// and the time at which the oldest minute leaves the window.
func (d *Daily) Take(now time.Time) (ok bool, retryAt time.Time) {
	if d.limit == 0 {
		return true, time.Time{}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expire(now)
	if d.used >= d.limit {
		return false, time.Unix((d.minutes[0].unix+1)*60, 0).Add(Window)
	}
	m := now.Unix() / 60
	if k := len(d.minutes); k > 0 && d.minutes[k-1].unix >= m {
		d.minutes[k-1].n++ // the clock never goes back a minute in practice
	} else {
		d.minutes = append(d.minutes, minute{m, 1})
	}
	d.used++
	return true, time.Time{}
}

// Undo gives back a message taken at t that was not sent.
func (d *Daily) Undo(t time.Time) {
	if d.limit == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	m := t.Unix() / 60
	for i := len(d.minutes) - 1; i >= 0; i-- {
		if d.minutes[i].unix <= m && d.minutes[i].n > 0 {
			d.minutes[i].n--
			d.used--
			return
		}
	}
}

// Used is the number of messages in the window ending at now.
func (d *Daily) Used(now time.Time) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expire(now)
	return d.used
}

// Limit is the quota (0: unlimited).
func (d *Daily) Limit() int64 { return d.limit }

func (d *Daily) expire(now time.Time) {
	// A minute leaves the window when all of it is older than 24 hours.
	first := now.Add(-Window).Unix() / 60
	i := 0
	for i < len(d.minutes) && d.minutes[i].unix < first {
		d.used -= d.minutes[i].n
		i++
	}
	if i > 0 {
		d.minutes = append(d.minutes[:0], d.minutes[i:]...)
	}
}
