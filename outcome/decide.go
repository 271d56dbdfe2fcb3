package outcome

import (
	"fmt"
	"time"

	"github.com/heraldmail/herald/queue"
)

// Action is what becomes of the job after an attempt.
type Action uint8

const (
	// Ack: the server took the message (250 after DATA). Final.
	Ack Action = iota + 1
	// Retry: the job is due again at Decision.At.
	Retry
	// Again: try the job at once on a fresh connection; nothing is
	// settled (the connection failed before the message could be judged).
	Again
	// Fail: the job will not be tried again. Final.
	Fail
	// Release: nothing about the job was judged and the fault is the
	// provider's (a refused login, a connection that cannot be made): it
	// goes back to pending untouched, for another provider or a later run.
	Release
)

var actionNames = [...]string{"", "ack", "retry", "again", "fail", "release"}

func (a Action) String() string {
	if int(a) < len(actionNames) && a != 0 {
		return actionNames[a]
	}
	return "unknown"
}

// Effect is what an attempt does to its provider.
type Effect uint8

const (
	// Keep: nothing changes.
	Keep Effect = iota
	// SlowDown: the provider throttled us: its controller backs off below
	// the rate it accepted and pauses for the cool-down.
	SlowDown
	// SlowDomain: the recipient's domain throttled us, not the provider:
	// that domain pauses for its cool-down, the provider's pace is left
	// alone.
	SlowDomain
	// Pause: the provider's sending quota is spent: it stops until
	// Decision.Until.
	Pause
	// Stop: the provider refuses us (login, certificate, no TLS): its
	// circuit opens for the run and an operator must act.
	Stop
	// BackOff: connections to the provider keep failing: wait before the
	// next one (with backoff), do not blame the recipient.
	BackOff
	// Fewer: the provider refused one connection more than it takes at
	// once while others are open: this connection is given up for the
	// run, the pace is left alone.
	Fewer
)

var effectNames = [...]string{"keep", "slow-down", "slow-domain", "pause", "stop", "back-off", "fewer"}

func (e Effect) String() string {
	if int(e) < len(effectNames) {
		return effectNames[e]
	}
	return "unknown"
}

// Policy is what Decide needs to know of the campaign's retry policy and
// the provider's configuration.
type Policy struct {
	MaxAttempts int           // counted attempts before a job fails
	MaxAge      time.Duration // a job is given up this long after it was planned
	Backoff     time.Duration // first retry delay, doubling per counted attempt
	MaxBackoff  time.Duration
	// Cooldown is the provider's pause after a throttle reply: a throttled
	// job is due again after it.
	Cooldown time.Duration
	// DomainCooldown is the recipient domain's pause after it throttled us.
	DomainCooldown time.Duration
	// QuotaPause is how long a quota reply stops the provider when the
	// reply does not say when the quota resets.
	QuotaPause time.Duration
	// AuthPause is how long a temporary login refusal (454) stops the
	// provider.
	AuthPause time.Duration
	// ReconnectTries is how many fresh connections a job may meet in a row
	// (lost before its data) before it goes back to the queue.
	ReconnectTries int
	// Jitter, if set, spreads a retry delay (full jitter in its upper half
	// is the engine's choice); nil: the delay as computed.
	Jitter func(time.Duration) time.Duration
}

// Attempt is what happened when a job was tried.
type Attempt struct {
	Err   *DeliveryError // nil: the server accepted the message
	Reply string         // the server's reply to the end of DATA, when accepted
	At    time.Time      // when the attempt started (its send slot)
	// Tries counts the connections this job met in a row in this process,
	// this one included (1: the first).
	Tries int
	// LastThrottle is when the provider last answered with a throttle
	// (zero: never). A connection that closes at MAIL or RCPT within a
	// cool-down of it is the same throttle, said by hanging up.
	LastThrottle time.Time
	// LostReplies counts the provider's replies to the end of the data
	// lost in a row before this attempt (in this process): from the second
	// in a row, a lost reply is the provider's fault.
	LostReplies int
	// Open counts the connections to the provider this process has open
	// (for a refused connection: the others).
	Open int
}

// Decision is what an attempt does to the job, the provider and the
// campaign.
type Decision struct {
	Action       Action
	At           time.Time // Retry: when the job is due again
	CountAttempt bool      // the attempt counts toward retry.max_attempts
	Suppress     bool      // the address goes on the suppression list (hard bounce)
	Reply        string    // what is stored with the job
	// Class is the class acted on: the error's, or throttle for a
	// connection that closed right after one.
	Class    Class
	Provider Effect
	Until    time.Time // Pause: when the provider may send again
	// Attempted: the message reached the point where the server judged
	// it; it counts in the campaign's policy share.
	Attempted bool
	// Policy: a campaign-level rejection, counted toward the pause.
	Policy bool
	// Duplicate: the message may have been delivered although no reply
	// said so; sending it again may duplicate it.
	Duplicate bool
}

// Decide is the one place that says what an attempt's outcome does. It is
// pure: the same attempt, job and policy give the same decision.
func Decide(a Attempt, job queue.Job, p Policy) Decision {
	if a.Err == nil {
		return Decision{Action: Ack, Class: ClassSent, Reply: a.Reply, Attempted: true, CountAttempt: true}
	}
	e := a.Err
	d := Decision{Class: e.Class, Reply: e.Reply()}
	if e.Class == ClassReconnect && (e.Stage == StageMail || e.Stage == StageRcpt) &&
		!a.LastThrottle.IsZero() && a.At.Sub(a.LastThrottle) < p.Cooldown {
		// Closed at MAIL or RCPT right after a throttle reply: the server
		// hangs up on the same limit (163, QQ and Outlook do).
		d.Class = ClassThrottle
	}
	switch d.Class {
	case ClassAuth:
		// The provider refuses us; the recipient was never judged.
		d.Action, d.Provider = Release, Stop
		if e.Code >= 400 && e.Code < 500 {
			// "454 4.7.0 Too many login attempts": refused for now; the
			// provider pauses rather than stops for good.
			d.Provider, d.Until = Pause, a.At.Add(p.AuthPause)
		}
		return d
	case ClassThrottle:
		switch {
		case e.Quota:
			// The job may go through another provider before the quota
			// of this one resets.
			d.Action, d.At, d.Provider, d.Until = Retry, a.At.Add(p.Cooldown), Pause, a.At.Add(p.QuotaPause)
		case e.Domain:
			d.Action, d.At, d.Provider = Retry, a.At.Add(p.DomainCooldown), SlowDomain
		case e.Connections && a.Open > 0:
			// Fewer connections is the cure, not a slower pace.
			d.Provider = Fewer
		default:
			d.Action, d.At, d.Provider = Retry, a.At.Add(p.Cooldown), SlowDown
		}
		if e.Stage == StageConnect {
			// A throttled greeting: the job never reached the server.
			d.Action, d.At = Release, time.Time{}
			return d
		}
		return giveUpOld(d, job, p)
	case ClassReconnect:
		if e.Stage == StageConnect || e.Stage == StageAuth {
			// No connection could be made (the dialler retried with
			// backoff before it said so): the provider stops for the run,
			// the job goes back for another provider or the next run.
			d.Action, d.Provider = Release, Stop
			return d
		}
		if a.Tries < p.ReconnectTries {
			d.Action = Again
			return d
		}
		// The job keeps meeting lost connections: not the recipient's
		// fault. It waits a cool-down, the provider backs off.
		d.Action, d.At, d.Provider = Retry, a.At.Add(p.Cooldown), BackOff
		d.Reply = fmt.Sprintf("%s (connection lost before the data, %d times)", d.Reply, a.Tries)
		return giveUpOld(d, job, p)
	case ClassPermanent:
		d.Action, d.CountAttempt, d.Suppress, d.Attempted = Fail, true, true, true
		return d
	case ClassUnsendable:
		// Never reached a server's judgement; trying again would not
		// change the message or the server.
		d.Action = Fail
		return d
	case ClassPolicy:
		d.Action, d.CountAttempt, d.Policy = Fail, true, true
		// A message that could not be built never reached a server.
		d.Attempted = e.Stage != StageRender
		return d
	case ClassAmbiguous:
		if e.Protocol || a.LostReplies > 0 {
			// The server answered the data with what no SMTP server may
			// send, or its replies to the data keep being lost: the
			// provider's fault. Retried after a cool-down, no attempt
			// counted, and the provider backs off. A lone lost reply
			// counts (below): a message that breaks the server every time
			// must not be sent forever.
			d.Action, d.At, d.Provider, d.Attempted, d.Duplicate = Retry, a.At.Add(p.Cooldown), BackOff, true, true
			if !e.Protocol {
				d.Reply = fmt.Sprintf("%s (reply after the data lost, %d in a row)", d.Reply, a.LostReplies+1)
			}
			return giveUpOld(d, job, p)
		}
	}
	// Transient, ambiguous: the recipient's attempt counts.
	d.Attempted = true
	d.Duplicate = d.Class == ClassAmbiguous
	d.Action, d.CountAttempt = Retry, true
	n := job.Attempts + 1
	delay := backoff(n-1, p.Backoff, p.MaxBackoff)
	if p.Jitter != nil {
		delay = p.Jitter(delay)
	}
	d.At = a.At.Add(delay)
	if p.MaxAttempts > 0 && n >= p.MaxAttempts {
		d.Action, d.At = Fail, time.Time{}
		d.Reply = fmt.Sprintf("%s (gave up after %d attempts)", d.Reply, n)
		return d
	}
	return giveUpOld(d, job, p)
}

// giveUpOld fails a retry that would come due past retry.max_age.
func giveUpOld(d Decision, job queue.Job, p Policy) Decision {
	if d.Action == Retry && p.MaxAge > 0 && !job.Enqueued.IsZero() && d.At.Sub(job.Enqueued) >= p.MaxAge {
		d.Action, d.At = Fail, time.Time{}
		d.Reply += " (gave up: retry.max_age reached)"
	}
	return d
}

// backoff is base doubled n times, capped at ceiling.
func backoff(n int, base, ceiling time.Duration) time.Duration {
	d := base << min(n, 20)
	if d <= 0 || d > ceiling {
		d = ceiling
	}
	return d
}

// Settlement is the queue's record of a decision about job (Ack, Retry
// or Fail) tried through provider at sentAt.
func (d Decision) Settlement(job queue.Job, provider string, sentAt time.Time) queue.Settlement {
	s := queue.Settlement{Seq: job.Seq, Lease: job.Lease, Provider: provider, SentAt: sentAt,
		CountAttempt: d.CountAttempt, Suppress: d.Suppress, Reply: d.Reply}
	switch d.Action {
	case Ack:
		s.State = queue.Sent
	case Retry:
		s.State, s.At = queue.Retry, d.At
	default:
		s.State = queue.Failed
	}
	return s
}
