package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/heraldmail/herald/queue"
)

// A campaign vanishes when the queue loses its data (queue.ErrVanished: a
// Redis without persistence restarted and came back empty). Every job of
// it is gone: the run cannot lease, settle or renew, and retrying as for
// an outage would only go on for Timing.QueueOutage and then advise running
// again, which would plan the campaign afresh and send every message a
// second time (the queue refuses that now). So the run stops at once and
// says what it had sent: Run, and Work too, for every campaign it
// delivers (a Redis that lost one campaign lost the others).
//
// vanished is called where queue errors about a campaign arrive: the
// leaser (Lease), the modes' idle and poll (Counts, Campaign), the renewer
// (Extend) and the settler (Settle, Release); Work's poll calls lost.

// vanished stops the run with a *StoppedError when err says campaign id
// vanished, and reports whether it did. Safe for concurrent use: the
// first stop's reason is the one returned.
func (r *run) vanished(id string, err error) bool {
	if !errors.Is(err, queue.ErrVanished) {
		return false
	}
	var stopped *StoppedError
	if errors.As(context.Cause(r.stop), &stopped) && errors.Is(stopped.Err, queue.ErrVanished) {
		return true // stopped already; said once
	}
	p := r.e.Progress()
	who, log := "this run", r.e.log // New's logger names the campaign
	if _, one := r.mode.(*oneCampaign); !one {
		who, log = "this worker (all campaigns)", log.With("campaign", id)
	}
	reason := fmt.Sprintf("%v; when that was noticed %s had sent %d (%d failed, %d to retry); sends in flight finish, nothing more is taken, and the campaign is not planned again",
		err, who, p.Sent, p.Failed, p.Retried)
	r.halt(&StoppedError{Reason: reason, Err: err})
	log.Error("campaign vanished from the queue; stopping", "error", err)
	return true
}

// lost handles an error of Work's look at campaign id: a campaign this
// run delivers that vanished stops it (vanished); one it never delivered,
// found lost (a tombstone another process left), is skipped, logged once.
// It reports whether the run stopped.
func (m *allCampaigns) lost(r *run, id string, err error) bool {
	if !errors.Is(err, queue.ErrVanished) {
		return false
	}
	if r.activeCampaign(id) != nil {
		return r.vanished(id, err)
	}
	if m.broken[id] != err.Error() {
		m.broken[id] = err.Error()
		r.e.log.Warn("campaign lost from the queue; not delivered", "campaign", id, "error", err)
	}
	return false
}

// Unwrap returns the error that stopped the run, if one did (a vanished
// campaign: queue.ErrVanished).
func (e *StoppedError) Unwrap() error { return e.Err }
