package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/heraldmail/herald/config"
	"github.com/heraldmail/herald/outcome"
	"github.com/heraldmail/herald/queue"
)

// mode is what differs between delivering one campaign (Run, herald send)
// and every active campaign in the queue (Work, herald worker).
type mode interface {
	// start loads the campaigns delivered first.
	start(ctx context.Context, r *run)
	// poll follows the campaigns' status; the tracker calls it every
	// Timing.StatusPoll.
	poll(ctx context.Context, r *run)
	// idle is asked when a lease round found nothing: finished when
	// nothing is left to deliver, else how long to wait at most.
	idle(ctx context.Context, r *run) (finished bool, wait time.Duration, err error)
	// settled is told that c's outcomes were committed; final (c nil)
	// once the run's last outcome is.
	settled(ctx context.Context, r *run, c *campaign, final bool)
	// waitsOut reports whether a provider whose circuit closes at a set
	// time (a spent quota) is waited for rather than a reason to stop.
	waitsOut() bool
	// pause stops delivering c, whose policy rejections passed the
	// threshold; false when the run is stopping anyway.
	pause(r *run, c *campaign, reason string) bool
}

// oneCampaign is herald send's mode: the configured campaign until every
// job is final; a pause or cancel stops the run.
type oneCampaign struct {
	c *campaign
	// lastCounts is when the counts were last read after a commit.
	lastCounts time.Time
	// planning is open while the campaign's file is still being planned
	// (RunPlanning): the run waits for more jobs rather than ending.
	planning <-chan struct{}
}

// planningPoll is how often a run that has caught up with planning looks
// for the jobs planned since.
const planningPoll = 5 * time.Millisecond

func (m *oneCampaign) start(ctx context.Context, r *run) {
	if c, err := r.e.q.Counts(ctx, m.c.id); err == nil {
		m.c.counts.Store(&c)
		r.e.counts.Store(&c)
	}
	r.add(m.c)
}

func (m *oneCampaign) poll(ctx context.Context, r *run) {
	c, err := r.e.q.Campaign(ctx, m.c.id)
	if r.vanished(m.c.id, err) {
		return
	}
	if err == nil && c.Status != queue.Active {
		reason := fmt.Sprintf("campaign %s", c.Status)
		if c.Reason != "" {
			reason += ": " + c.Reason
		}
		r.halt(&StoppedError{Reason: reason})
	}
}

func (m *oneCampaign) idle(ctx context.Context, r *run) (bool, time.Duration, error) {
	counts, err := r.e.q.Counts(ctx, m.c.id)
	if r.vanished(m.c.id, err) {
		return false, time.Second, nil // the run stops
	}
	if err != nil {
		return false, time.Second, err
	}
	if m.planning != nil {
		select {
		case <-m.planning:
			m.planning = nil
			return false, 0, nil // look once more: the last jobs may be new
		default:
			return false, planningPoll, nil
		}
	}
	if counts.Open() == 0 {
		return true, 0, nil // every job is final
	}
	wait := time.Second
	if t, ok, err := r.e.q.NextDue(ctx, m.c.id); err == nil && ok && counts.Leased == 0 {
		wait = max(min(wait, time.Until(t)), time.Millisecond)
		note := fmt.Sprintf("%d retries wait, next at %s", counts.Retry, t.Format("15:04:05"))
		if w, now := m.c.content.window, time.Now(); !w.Always() {
			if next := w.Next(now, nil); next.After(now) && m.c.content.zoneColumn == "" {
				note = "outside the sending window; " + w.Describe(next, nil)
			} else if m.c.content.zoneColumn != "" {
				note = fmt.Sprintf("%d wait for a retry or their sending window, next at %s", counts.Retry, t.Format("15:04:05"))
			}
		}
		r.e.setNote(note)
	}
	return false, wait, nil
}

// settled reads the counts again, at most every Timing.SettleEvery (a group
// commit may come every few hundred microseconds).
func (m *oneCampaign) settled(ctx context.Context, r *run, _ *campaign, final bool) {
	if !final && time.Since(m.lastCounts) < r.e.t.SettleEvery {
		return
	}
	c := m.c
	m.lastCounts = time.Now()
	if counts, err := r.e.q.Counts(ctx, c.id); err == nil {
		c.counts.Store(&counts)
		r.e.counts.Store(&counts)
		r.e.obs.Depth(c.id, counts)
	}
}

func (m *oneCampaign) waitsOut() bool { return false }

func (m *oneCampaign) pause(r *run, c *campaign, reason string) bool {
	if r.stop.Err() != nil {
		return false
	}
	r.halt(&StoppedError{Reason: "campaign paused: " + reason}) // first: no sender takes another job
	return true
}

// allCampaigns is herald worker's mode: every active campaign in the
// queue, picked up and dropped as their status changes.
type allCampaigns struct {
	broken map[string]string    // campaigns that cannot be loaded, and why
	quiet  map[string]time.Time // finished or cancelled campaigns, looked at again from then
}

func (m *allCampaigns) start(_ context.Context, r *run) {
	ctx, cancel := r.storeCtx()
	defer cancel()
	m.poll(ctx, r)
}

// poll brings the set of campaigns up to date: active campaigns with jobs
// to deliver are loaded, paused, cancelled and finished ones dropped.
func (m *allCampaigns) poll(ctx context.Context, r *run) {
	ids, err := r.e.q.Campaigns(ctx)
	if err != nil {
		r.e.log.Warn("cannot list campaigns", "error", err)
		return
	}
	var total queue.Counts
	now := time.Now()
	for _, id := range ids {
		if now.Before(m.quiet[id]) {
			continue
		}
		delete(m.quiet, id)
		rec, err := r.e.q.Campaign(ctx, id)
		if err != nil {
			if m.lost(r, id, err) {
				return
			}
			continue
		}
		c := r.activeCampaign(id)
		if rec.Status != queue.Active {
			if c != nil {
				r.e.log.Info("campaign no longer active; its buffered jobs go back", "campaign", id, "status", rec.Status)
				r.drop(c)
			}
			if rec.Status == queue.CampaignCancelled {
				m.quiet[id] = now.Add(24 * time.Hour) // final
			}
			continue
		}
		counts, err := r.e.q.Counts(ctx, id)
		if err != nil {
			if m.lost(r, id, err) {
				return
			}
			continue
		}
		r.e.obs.Depth(id, counts)
		if counts.Open() == 0 {
			if c != nil {
				r.drop(c) // finished: free its content
			}
			if rec.Planned {
				// Only retry-failed reopens it: look less often.
				m.quiet[id] = now.Add(r.e.t.FinishedPoll)
			}
			continue
		}
		total = addCounts(total, counts)
		if c == nil {
			if c = m.load(ctx, r, id, rec.Header); c == nil {
				continue
			}
			r.add(c)
		}
		c.counts.Store(&counts)
	}
	r.e.counts.Store(&total)
}

// load prepares a campaign's content from its stored spec; a campaign that
// cannot be loaded is logged once per reason and skipped.
func (m *allCampaigns) load(ctx context.Context, r *run, id string, header []string) *campaign {
	b, err := r.e.q.Spec(ctx, id)
	var spec Spec
	if err == nil {
		spec, err = DecodeSpec(b)
	}
	var c *content
	if err == nil {
		c, err = newContent(id, spec, r.e.keys)
	}
	if err == nil {
		err = c.set.Check(header, nil)
	}
	if err != nil {
		if m.broken[id] != err.Error() {
			m.broken[id] = err.Error()
			r.e.log.Error("cannot deliver campaign", "campaign", id, "error", err)
		}
		return nil
	}
	delete(m.broken, id)
	r.e.log.Info("delivering campaign", "campaign", id)
	return newCampaign(id, header, c)
}

func (m *allCampaigns) idle(context.Context, *run) (bool, time.Duration, error) {
	return false, time.Second, nil
}

func (m *allCampaigns) settled(context.Context, *run, *campaign, bool) {}

func (m *allCampaigns) waitsOut() bool { return true }

func (m *allCampaigns) pause(r *run, c *campaign, _ string) bool {
	r.drop(c)
	return true
}

// track follows the campaigns' status every Timing.StatusPoll until done is
// closed; nothing once the run stops.
func (r *run) track(done <-chan struct{}) {
	every(r.e.t.StatusPoll, done, func() {
		if r.stop.Err() != nil {
			return
		}
		ctx, cancel := r.storeCtx()
		defer cancel()
		r.mode.poll(ctx, r)
	})
}

// notePolicy counts an attempted message of c and pauses the campaign when
// too many meet a policy rejection, or bounce hard (the bounce brake).
// Senders call it as each reply arrives, so the pause is not late by a
// settle batch.
func (r *run) notePolicy(c *campaign, d outcome.Decision, reply string) {
	tried := c.attempted.Load()
	if d.Attempted {
		tried = c.attempted.Add(1)
	}
	spec := &c.content.spec
	var reason string
	switch {
	case d.Policy:
		n := c.policy.Add(1)
		if tried < int64(spec.PolicyMinimum) || float64(n)/float64(max(tried, 1)) < spec.PolicyThreshold {
			return
		}
		reason = fmt.Sprintf("%d of %d messages were rejected for policy reasons (last: %s); fix the cause, then herald resume", n, tried, reply)
	case d.Suppress && d.Class == outcome.ClassPermanent:
		n := c.bounced.Add(1)
		threshold, minimum := spec.BounceThreshold, spec.BounceMinimum
		if threshold == 0 {
			threshold, minimum = config.DefaultBounceThreshold, config.DefaultBounceMinimum
		}
		if tried < int64(minimum) || float64(n)/float64(max(tried, 1)) <= threshold {
			return
		}
		reason = fmt.Sprintf("%d of %d messages (%.1f%%) bounced hard, above bounce_threshold %.1f%% (last: %s): the list is stale. "+
			"Clean it (remove or verify old addresses; those that bounced are on the suppression list already), then herald resume",
			n, tried, 100*float64(n)/float64(tried), 100*threshold, reply)
	default:
		return
	}
	r.pauseFor(c, reason)
}

// pauseFor pauses delivering c, and the campaign in the queue, for
// reason (which herald resume shows).
func (r *run) pauseFor(c *campaign, reason string) {
	if c.gone.Load() {
		return
	}
	if !r.mode.pause(r, c, reason) {
		return
	}
	r.e.log.Error("pausing the campaign", "campaign", c.id, "reason", reason)
	ctx, cancel := r.recordCtx()
	defer cancel()
	if err := r.e.q.SetStatus(ctx, c.id, queue.Paused, reason); err != nil {
		r.e.log.Error("cannot pause the campaign", "campaign", c.id, "error", err)
	}
}
