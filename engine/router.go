package engine

import (
	"time"
)

// domainTurn takes the pace of t's recipient domain. When the domain
// wants a wait of more than domainWaitMax (or any wait, unless mayWait),
// the job is settled as a retry when the domain's pace allows it, no
// attempt counted, and domainTurn returns false: a sender does not sit on
// one slow domain while jobs for others wait.
func (r *run) domainTurn(t task, mayWait bool) bool {
	d := domainOf(t.job.Key)
	pacer := r.e.domains.pacer(d)
	if pacer == nil {
		return true
	}
	for {
		now := time.Now()
		w, err := pacer.Take(r.stop, now)
		if err != nil {
			if r.stop.Err() == nil {
				r.e.log.Warn("domain rate limit out of reach; sending without it", "domain", d, "error", err)
			}
			return true
		}
		if w == 0 {
			return true
		}
		if !mayWait || w > domainWaitMax {
			// Spread by the pace the domain allows: the configured one, or
			// the one its pacer learned from throttle replies.
			rate := r.e.cfg.DomainPolicy(d).Rate
			if rate == 0 {
				rate, _ = pacer.Rate(r.stop, now)
			}
			r.putOff(t, r.e.domains.later(d, now.Add(w), rate), "waiting for the pace of "+d)
			return false
		}
		sleepCtx(r.stop, w)
	}
}

// waitsOut reports whether p's senders wait for its circuit to close
// rather than stop: a worker (Work) waits out a circuit that closes at a
// set time (a spent quota); herald send (Run) stops and says when to run
// again.
func (r *run) waitsOut(p *provider) bool {
	return r.mode.waitsOut() && p.temporary()
}

// outranked reports whether a usable provider has a smaller priority.
func (r *run) outranked(p *provider) bool {
	now := time.Now()
	for _, q := range r.e.providers {
		if q.cfg.Priority < p.cfg.Priority && q.state(now) == "" && q.senders.Load() > 0 {
			return true
		}
	}
	return false
}

// waitTurn waits while a provider of a smaller priority can send (p is
// their backup); false when the run stops first.
func (r *run) waitTurn(p *provider) bool {
	for !r.turn(p) {
		if r.stop.Err() != nil {
			return false
		}
		wait := 250 * time.Millisecond
		if !r.outranked(p) {
			wait = 5 * time.Millisecond // behind its weight: soon its turn
		}
		sleepCtx(r.stop, wait)
	}
	return r.stop.Err() == nil
}

// turn reports whether p may take jobs: no provider of a smaller priority
// is usable, and p is not ahead of its weight among the usable providers
// of its priority (messages taken ÷ weight, with a little slack so that
// providers need not take turns message by message).
func (r *run) turn(p *provider) bool {
	now := time.Now()
	r.rollWeights(now)
	mine := float64(p.taken.Load()) / float64(p.cfg.Weight)
	for _, q := range r.e.providers {
		if q == p || q.state(now) != "" || q.senders.Load() == 0 {
			continue
		}
		if q.cfg.Priority < p.cfg.Priority {
			return false
		}
		qt := q.taken.Load()
		if q.cfg.Priority != p.cfg.Priority || qt == 0 && q.prevTaken.Load() == 0 {
			continue // not of p's priority, or stalled (dialling, waiting): no share to keep
		}
		if mine > float64(qt)/float64(q.cfg.Weight)+weightSlack {
			return false
		}
	}
	return true
}

// rollWeights starts a new weight period: the weights hold within each, so a
// provider that stalls for a while neither holds the others back for
// long nor, when it comes back, stops them while it catches up.
func (r *run) rollWeights(now time.Time) {
	start := r.weightEpoch.Load()
	if now.UnixNano()-start < int64(weightPeriod) || !r.weightEpoch.CompareAndSwap(start, now.UnixNano()) {
		return
	}
	for _, q := range r.e.providers {
		q.prevTaken.Store(q.taken.Swap(0))
	}
}
