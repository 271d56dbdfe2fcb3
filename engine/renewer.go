package engine

import (
	"time"

	"github.com/heraldmail/herald/ratelimit"
)

// renew extends the leases the run holds every third of the lease TTL,
// until done is closed.
func (r *run) renew(done <-chan struct{}) {
	every(r.e.leaseTTL/3, done, func() {
		for _, c := range r.campaigns() {
			jobs := c.holding()
			if len(jobs) == 0 {
				continue
			}
			ctx, cancel := r.recordCtx() // leases are kept while the last outcomes are recorded, after a hard stop too
			lost, err := r.e.q.Extend(ctx, c.id, jobs, time.Now().Add(r.e.leaseTTL))
			cancel()
			if err != nil {
				if !r.vanished(c.id, err) {
					r.e.log.Warn("cannot renew leases; retrying", "campaign", c.id, "error", err)
				}
				continue
			}
			// A job settled while Extend was on its way is not held any
			// more; one still held was taken by another worker after our
			// lease ran out: it is not sent (senders look), and an outcome
			// for it is refused.
			tokens := make(map[uint64]uint64, len(jobs))
			for _, j := range jobs {
				tokens[j.Seq] = j.Lease
			}
			n := 0
			for _, seq := range lost {
				if c.lostLease(seq, tokens[seq]) {
					n++
				}
			}
			if n > 0 {
				r.e.log.Warn("leases lost to another worker", "campaign", c.id, "jobs", n)
			}
		}
	})
}

// every calls fn every d until done is closed.
func every(d time.Duration, done <-chan struct{}, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			fn()
		}
	}
}

// renewSlots keeps the connection slots this process holds until done
// is closed (shared slots expire when their process stops renewing them).
func (r *run) renewSlots(done <-chan struct{}) {
	every(ratelimit.SlotTTL/3, done, func() {
		for _, p := range r.e.providers {
			ctx, cancel := r.recordCtx() // leases are kept while the last outcomes are recorded, after a hard stop too
			if err := p.slots.Renew(ctx, time.Now()); err != nil {
				r.e.log.Warn("cannot renew connection slots", "provider", p.cfg.Name, "error", err)
			}
			cancel()
		}
	})
}
