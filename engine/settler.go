package engine

import (
	"time"

	"github.com/heraldmail/herald/queue"
)

// pendingOutcomes are one campaign's outcomes not yet committed.
type pendingOutcomes struct {
	batch    []queue.Settlement
	releases []queue.Job
	acks     []*ack
}

// settle records outcomes in batches, one transaction per campaign, and
// keeps the progress counters. It commits every Timing.SettleEvery or settleBatch
// outcomes (with the outcome journal and nobody waiting: every
// journaledSettleEvery or journaledSettleBatch), and at once when a sender
// waits for its acknowledgement (a
// group commit: what arrived meanwhile goes in the same batch). A batch the
// queue cannot take is kept and tried again with backoff: dropping it would
// send those messages twice.
func (r *run) settle() {
	var (
		byCampaign = map[*campaign]*pendingOutcomes{}
		size       int
		waiting    int // acknowledgements senders wait for
		tick       = time.NewTicker(r.e.t.SettleEvery)
		outage     queueOutageClock
		retryAt    time.Time        // while the queue is out of reach: next attempt
		flushed    = time.Now()     // the last commit
		spare      *pendingOutcomes // a campaign's, committed: for the next
	)
	defer tick.Stop()
	flush := func(final bool) {
		for {
			if !final && time.Now().Before(retryAt) {
				return
			}
			var err error
			for c, p := range byCampaign {
				if err = r.commit(c, p); err != nil {
					if r.vanished(c.id, err) {
						// Nowhere to record them: the run stops, and no
						// sender waiting on them sends more.
						for _, a := range p.acks {
							a.resolve(false)
						}
						delete(byCampaign, c)
						err = nil
						continue
					}
					break
				}
				delete(byCampaign, c)
				spare = p // emptied by commit; its room serves the next
			}
			if err == nil {
				size, waiting, retryAt, flushed = 0, 0, time.Time{}, time.Now()
				outage.ok()
				break
			}
			if outage.failed(r, "settle", err) || r.hard.Err() != nil {
				r.e.log.Error("cannot record outcomes; the jobs will be delivered again once their leases expire", "error", err)
				for c, p := range byCampaign {
					for _, s := range p.batch {
						c.unhold(s.Seq, s.Lease) // no longer renewed: they expire
					}
					for _, j := range p.releases {
						c.unhold(j.Seq, j.Lease)
					}
					for _, a := range p.acks {
						a.resolve(false)
					}
				}
				clear(byCampaign)
				size, waiting = 0, 0
				break
			}
			retryAt = time.Now().Add(outage.delay())
			if !final {
				return // try again at a later tick
			}
			time.Sleep(time.Until(retryAt))
		}
		select {
		case r.settled <- struct{}{}:
		default:
		}
	}
	add := func(res result) {
		p := byCampaign[res.c]
		if p == nil {
			if p = spare; p != nil {
				spare = nil
			} else {
				p = &pendingOutcomes{}
			}
			byCampaign[res.c] = p
		}
		size++
		if res.kind == released {
			p.releases = append(p.releases, res.job)
			return
		}
		r.count(res)
		p.batch = append(p.batch, res.s)
		if res.ack != nil {
			p.acks = append(p.acks, res.ack)
			waiting++
		}
	}
	// gather adds res and what else has arrived, so that one commit serves
	// every sender waiting now; false once the results are closed.
	gather := func(res result) bool {
		add(res)
		for size < r.settleLimit(waiting) {
			select {
			case res, ok := <-r.results:
				if !ok {
					return false
				}
				add(res)
			default:
				return true
			}
		}
		return true
	}
	// A commit costs the queue and this process CPU whatever it carries:
	// while fewer than half the senders with a connection wait, it waits a
	// little (Timing.AckDelay) for more of them; their gates hold back only their
	// next bytes on the wire, so they go on rendering and buffering
	// meanwhile.
	var soon <-chan time.Time
	for {
		select {
		case res, ok := <-r.results:
			if !ok || !gather(res) {
				r.lastFlush(flush)
				return
			}
			switch {
			case size >= r.settleLimit(waiting) || waiting >= max(1, int(r.connected.Load())/2):
				flush(false)
				soon = nil
			case waiting > 0 && soon == nil:
				soon = time.After(r.e.t.AckDelay)
			}
		case <-soon:
			soon = nil
			if size > 0 {
				flush(false)
			}
		case <-tick.C:
			if size > 0 && (waiting > 0 || !r.journaled() || time.Since(flushed) >= journaledSettleEvery) {
				flush(false)
				soon = nil
			}
		}
		if waiting == 0 && r.journaled() {
			// Nobody waits for a commit (the journal keeps each outcome):
			// let results gather in the channel a moment, rather than be
			// woken by nearly every one.
			time.Sleep(settleNap)
		}
	}
}

// With the outcome journal, nobody waits for a commit: the journal holds
// each outcome from the moment it is noted, and a commit only moves them
// into the store. Commits then carry up to journaledSettleBatch outcomes,
// at least journaledSettleEvery apart: a transaction costs the store two
// syncs and the rewrite of every page it touches, whatever it carries.
const (
	journaledSettleBatch = 2048
	journaledSettleEvery = 50 * time.Millisecond
)

// journaled reports whether the outcomes of this run go to the journal
// first (no sender waits for a commit).
func (r *run) journaled() bool { return r.journal != nil && !r.journalFailed.Load() }

// settleLimit is how many outcomes wait for a commit at most.
func (r *run) settleLimit(waiting int) int {
	if waiting == 0 && r.journaled() {
		return journaledSettleBatch
	}
	return settleBatch
}

// settleNap is how long the settler lets results gather while no sender
// waits for a commit.
const settleNap = time.Millisecond

// lastFlush commits what is left and tells the mode the run's outcomes
// are all recorded.
func (r *run) lastFlush(flush func(final bool)) {
	flush(true)
	ctx, cancel := r.recordCtx()
	defer cancel()
	r.mode.settled(ctx, r, nil, true)
}

// commit records one campaign's pending outcomes and tells the senders
// waiting for them.
func (r *run) commit(c *campaign, p *pendingOutcomes) error {
	ctx, cancel := r.recordCtx()
	defer cancel()
	seqs := make([]uint64, 0, len(p.batch)+len(p.releases))
	for _, s := range p.batch {
		seqs = append(seqs, s.Seq)
	}
	for _, j := range p.releases {
		seqs = append(seqs, j.Seq)
	}
	c.committing(seqs, true)
	defer c.committing(seqs, false)
	if len(p.batch) > 0 {
		lost, err := r.e.q.Settle(ctx, c.id, p.batch)
		if err != nil {
			return err
		}
		if len(lost) > 0 {
			r.e.log.Warn("outcomes for jobs whose lease had expired were dropped", "campaign", c.id, "jobs", len(lost))
		}
		c.unholdSettled(p.batch)
		p.batch = p.batch[:0]
		for _, a := range p.acks {
			a.resolve(true)
		}
		p.acks = p.acks[:0]
	}
	if len(p.releases) > 0 {
		if err := r.e.q.Release(ctx, c.id, p.releases); err != nil {
			return err
		}
		for _, j := range p.releases {
			c.unhold(j.Seq, j.Lease)
		}
		p.releases = p.releases[:0]
	}
	r.mode.settled(ctx, r, c, false)
	return nil
}

// count updates the progress counters.
func (r *run) count(res result) {
	pr := &r.e.progress
	switch res.s.State {
	case queue.Sent:
		pr.sent.Add(1)
	case queue.Failed:
		pr.failed.Add(1)
		if res.s.Suppress {
			pr.suppressed.Add(1)
		}
	case queue.Retry:
		pr.retried.Add(1)
	case queue.Suppressed:
		pr.skipped.Add(1)
	}
	if res.dup {
		pr.ambiguous.Add(1)
	}
}
