package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/heraldmail/herald/outcome"
	"github.com/heraldmail/herald/ratelimit"
	"github.com/heraldmail/herald/recipients"
	"github.com/heraldmail/herald/templates"
)

// sender delivers jobs over one connection of provider p at a time.
func (r *run) sender(p *provider, holder string) {
	defer p.senders.Add(-1)
	defer func() {
		// The last sender to leave while jobs are still coming means no
		// provider can send.
		if r.senders.Add(-1) == 0 && p.state(time.Now()) != "" {
			r.halt(&StoppedError{Reason: r.providersDown()})
		}
	}()
	cn := &conn{r: r, p: p, log: r.e.log.With("provider", p.cfg.Name), holder: holder}
	cn.gate.hard, cn.gate.timeout = r.hard.Done(), p.cfg.Timeout.Duration
	unhook := context.AfterFunc(r.hard, cn.cut)
	defer unhook()
	defer cn.releaseSlot()
	defer cn.drop(true)

	w := &worker{}
	// The idle timer looks at least every second: when another process
	// starts to wait for a slot, the idle time allowed drops to a second,
	// and a sender with nothing to do must notice and let its slot go.
	lastActive := time.Now()
	idle := time.NewTimer(min(cn.idleTimeout(), time.Second))
	defer idle.Stop()
	for {
		if p.state(time.Now()) != "" {
			if !r.waitsOut(p) {
				return
			}
			cn.drop(true)
			cn.releaseSlot()
			sleepCtx(r.stop, time.Second)
			if r.stop.Err() != nil {
				return
			}
			continue
		}
		if !r.turn(p) {
			if r.outranked(p) {
				// A provider of a smaller priority can send (again).
				cn.drop(true)
				cn.releaseSlot()
			}
			if !r.waitTurn(p) {
				return // stopping
			}
		}
		var t task
		var ok bool
		select {
		case t, ok = <-r.jobs:
			if !ok {
				return
			}
		case <-idle.C:
			if left := cn.idleTimeout() - time.Since(lastActive); left > 0 {
				idle.Reset(min(left, time.Second))
				continue
			}
			cn.drop(true)
			cn.releaseSlot()
			idle.Reset(time.Second)
			continue
		case <-r.hard.Done():
			return
		}
		if t.c.gone.Load() {
			r.release(t)
			continue
		}
		if !r.domainTurn(t, true) {
			continue
		}
		// A connection needs one of the provider's slots; while other
		// processes hold them all, this sender waits its turn with the
		// job (its lease is renewed), before it takes the job's pace.
		if !cn.slot && !cn.waitSlot() {
			r.release(t)
			return // stopping
		}
		waited := time.Now()
		if err := ratelimit.Wait(r.stop, p.pacer, time.Now); err != nil {
			r.release(t)
			if r.stop.Err() == nil {
				// The shared limits are out of reach (Redis): the job goes
				// back; wait before taking another.
				cn.log.Warn("rate limit out of reach", "error", err)
				sleepCtx(r.stop, time.Second)
			}
			continue
		}
		r.e.obs.LimitWait(p.cfg.Name, time.Since(waited))
		if !t.c.holds(t.job.Seq, t.job.Lease) {
			// The lease ran out while the job waited, and another worker
			// has it now.
			p.pacer.Undo(r.hard, time.Now())
			continue
		}
		if cn.c != nil && time.Since(cn.lastUsed) > p.cfg.IdleTimeout.Duration {
			// Idle too long waiting for the rate: the server may have
			// closed it already.
			cn.drop(true)
		}
		pr, alive := r.prepare(cn, w, t, false)
		if !alive {
			return
		}
		if pr != nil && !r.transact(cn, w, pr) {
			return
		}
		lastActive = time.Now()
		idle.Reset(min(cn.idleTimeout(), time.Second))
	}
}

// worker is a sender's reusable rendering state.
type worker struct {
	rend templates.Renderer
	data map[string]string
	c    *campaign // whose columns data holds
	// spare is the buffer of a message that is done, for the next one
	// built: at full speed a sender then builds its messages in the
	// same two buffers (one in flight, one being built) rather than
	// leave one for the collector each time.
	spare text
}

// maxSpare is the largest buffer a worker keeps for its next message.
const maxSpare = 1 << 20

// recycle keeps m's buffer for the next message: m is done, and nothing
// reads it any more (written and answered, not to be tried again).
func (w *worker) recycle(m *message) {
	if m == nil || cap(m.text) > maxSpare {
		return
	}
	w.spare = m.text[:0]
	m.text, m.wire = nil, nil // a message used after this writes nothing
}

// prepared is a job ready to go: quota taken, message built.
type prepared struct {
	task
	msg     *message // the message, signed when the campaign is
	rcpt    string   // RCPT TO: the recipient, its domain in A-labels
	envFrom string   // MAIL FROM: the bounce address, per recipient with VERP
	at      time.Time
	tries   int  // connections this job met in a row
	share   bool // holds a share of the provider's quota, not tried yet (provider.reserved)
}

// prepare takes the daily quota for job and builds its message. The rate
// was already taken. It returns nil when the job was settled or given back
// here; alive is false when the provider cannot send any more. ahead says
// that the sender's last message is still in flight (tryNext).
func (r *run) prepare(cn *conn, w *worker, t task, ahead bool) (pr *prepared, alive bool) {
	p := cn.p
	now := time.Now()
	if reason := p.state(now); reason != "" {
		r.release(t)
		return nil, r.waitsOut(p)
	}
	if !r.recheck(cn, t, now) {
		return nil, true
	}
	if ok, until, err := p.quota.Take(r.hard, now); err != nil || !ok {
		r.release(t)
		if err != nil {
			cn.log.Warn("daily quota out of reach", "error", err)
			sleepCtx(r.stop, time.Second)
			return nil, true
		}
		if p.reserved.Load() > 0 {
			// Messages of this process hold the rest of the quota and
			// were not tried yet: one may give its share back (its dial
			// fails, the circuit opened meanwhile). The provider is not
			// closed for the day before they are tried; the next job's
			// Take decides. Ahead of its own last message the sender
			// does not wait (that message is one of them).
			for end := now.Add(shareWaitMax); !ahead && p.reserved.Load() > 0 && time.Now().Before(end) && r.stop.Err() == nil; {
				sleepCtx(r.stop, shareWait)
			}
			return nil, true
		}
		why := fmt.Sprintf("daily quota of %d messages spent; it frees up from %s", p.quota.Limit(), until.Format(time.DateTime))
		if w, ok := p.quota.(*warmup); ok {
			why = w.Spent(now, until)
		}
		p.trip(why, until)
		return nil, r.waitsOut(p)
	}
	if w.c != t.c {
		w.c, w.data = t.c, make(map[string]string, len(t.c.header))
	}
	for i, h := range t.c.header {
		w.data[h] = t.job.Fields[i]
	}
	ct := t.c.content
	r.e.progress.inFlight.Add(1)
	p.reserved.Add(1)
	pr = &prepared{task: t, at: now, share: true}
	fail := func(derr *outcome.DeliveryError) (*prepared, bool) {
		r.quotaBack(p, pr)
		_, alive := r.conclude(cn, pr, derr, "")
		return nil, alive
	}
	// Planning checked the address; a job planned by an older herald may
	// not have been.
	rcpt, err := recipients.ASCIIDomain(t.job.Email)
	if err != nil {
		return fail(outcome.Unsendable(outcome.StageRender, fmt.Sprintf("%s: the domain is not a valid internationalized domain name (%v); not sent", t.job.Email, err)))
	}
	pr.rcpt, pr.envFrom = rcpt, ct.comp.envelope(rcpt)
	msg, err := ct.comp.buildInto(w.spare, &w.rend, w.data, rcpt, t.job.Key, now)
	w.spare = nil // it is msg's now, or garbage
	if tl := (*templates.TooLargeError)(nil); errors.As(err, &tl) {
		return fail(outcome.Unsendable(outcome.StageRender, ct.tooLarge(0)+"; not sent"))
	}
	if err != nil {
		return fail(outcome.Classify(outcome.StageRender, err))
	}
	if size, ok := msg.within(ct.maxSize); !ok {
		return fail(outcome.Unsendable(outcome.StageRender, ct.tooLarge(size)+"; not sent"))
	}
	pr.msg = msg
	p.taken.Add(1)
	return pr, true
}

// A sender that found the quota full while other messages of the process
// still hold shares of it looks every shareWait whether they were tried,
// for up to shareWaitMax, before it takes another job.
const (
	shareWait    = 10 * time.Millisecond
	shareWaitMax = time.Second
)

// quotaBack gives pr's share of the provider's quota back: nothing of it
// was sent. A share is given back once: a job given back after its share
// was spent or given back leaves the quota as it is.
func (r *run) quotaBack(p *provider, pr *prepared) {
	if !pr.share {
		return
	}
	p.quota.Undo(r.hard, pr.at)
	r.shareSpent(p, pr)
}

// shareSpent notes that pr no longer holds a share that may come back: it
// was tried (or given back).
func (r *run) shareSpent(p *provider, pr *prepared) {
	if pr.share {
		pr.share = false
		p.reserved.Add(-1)
	}
}

// suppressionRecheck is how old a job's last look at the suppression list
// may be when it is sent: past it, the sender looks again.
const suppressionRecheck = time.Second

// recheck looks at the suppression list again for a job whose last look
// is older than suppressionRecheck (it waited for its pace, a slot or its
// domain); false when the job was settled or given back here.
func (r *run) recheck(cn *conn, t task, now time.Time) bool {
	if now.Sub(t.checked) <= suppressionRecheck {
		return true
	}
	ctx, cancel := r.storeCtx()
	defer cancel()
	supp, err := r.e.q.Suppressed(ctx, t.c.list, t.job.Key)
	if err != nil {
		cn.log.Warn("suppression list out of reach; the job goes back", "error", err)
		r.release(t)
		return false
	}
	if e, ok := supp[t.job.Key]; ok {
		r.skip(t, e)
		return false
	}
	return true
}

// tryNext takes another job only if one is waiting and the rate allows it
// now: the pipelined path sends its envelope with the previous message.
func (r *run) tryNext(cn *conn, w *worker) *prepared {
	p := cn.p
	if cn.used+1 >= cn.perConnection() || r.stop.Err() != nil || p.state(time.Now()) != "" || !r.turn(p) {
		return nil
	}
	now := time.Now()
	if w, err := p.pacer.Take(r.stop, now); err != nil || w > 0 {
		return nil
	}
	undo := func() { p.pacer.Undo(r.hard, now) }
	select {
	case t, open := <-r.jobs:
		if !open {
			undo()
			return nil
		}
		if t.c.gone.Load() {
			undo()
			r.release(t)
			return nil
		}
		if !r.domainTurn(t, false) {
			undo()
			return nil
		}
		if !t.c.holds(t.job.Seq, t.job.Lease) {
			undo()
			return nil
		}
		pr, _ := r.prepare(cn, w, t, true)
		if pr != nil {
			pr.tries = 1 // its first connection is this one
		}
		return pr
	default:
		undo()
		return nil
	}
}

// transact sends pr, reconnecting as outcome.Decide asks. It returns false
// when the provider cannot send any more.
func (r *run) transact(cn *conn, w *worker, pr *prepared) bool {
	for pr != nil {
		pr.tries++
		if pr.tries > 1 && !pr.c.holds(pr.job.Seq, pr.job.Lease) {
			// While it waited for a fresh connection its lease ran out
			// and another worker has it now: not sent here.
			r.quotaBack(cn.p, pr)
			r.e.progress.inFlight.Add(-1)
			return true
		}
		if cn.c == nil {
			if !cn.slot && !cn.waitSlot() {
				r.giveBack(cn.p, pr)
				return false // stopping
			}
			if derr := cn.open(); derr != nil {
				if r.stop.Err() != nil {
					r.giveBack(cn.p, pr)
					return false
				}
				if derr == errCircuitOpen {
					// Another sender or process opened the circuit while
					// this one dialled: not this connection's verdict.
					r.giveBack(cn.p, pr)
					return r.waitsOut(cn.p)
				}
				again, alive := r.conclude(cn, pr, derr, "")
				if again {
					// Decide never asks for this after a failed connection;
					// should it, the job goes back rather than be held.
					r.giveBack(cn.p, pr)
				}
				return alive
			}
		}
		if derr := cn.admit(pr); derr != nil {
			return r.refuse(cn, pr, derr)
		}
		var again *prepared
		var alive bool
		if cn.pipe != nil {
			again, alive = r.pipelined(cn, w, pr)
		} else {
			again, alive = r.plain(cn, pr)
		}
		if !alive {
			if again != nil {
				r.giveBack(cn.p, again)
			}
			return false
		}
		if again != nil && r.stop.Err() != nil {
			// Stopping: the job goes back rather than on a fresh connection.
			r.giveBack(cn.p, again)
			return true
		}
		pr = again
	}
	return true
}

// plain is one transaction without pipelining (one command, one reply).
func (r *run) plain(cn *conn, pr *prepared) (again *prepared, alive bool) {
	derr, reply, keep := deliver(cn.c, cn.arm, pr.envFrom, pr.rcpt, cn.mailParams(pr), pr.msg)
	cn.after(keep)
	return r.settleOne(cn, pr, derr, reply)
}

// settleOne concludes pr and returns it as again when it is to be tried
// at once on a fresh connection.
func (r *run) settleOne(cn *conn, pr *prepared, derr *outcome.DeliveryError, reply string) (again *prepared, alive bool) {
	tryAgain, alive := r.conclude(cn, pr, derr, reply)
	if tryAgain {
		return pr, alive
	}
	return nil, alive
}

// pipelined sends pr and, while more jobs are ready, the ones after it: the
// content of each message shares a flight with the next envelope, so a
// message costs one round trip. Every job is concluded here except again,
// a job to be retried at once on a fresh connection.
func (r *run) pipelined(cn *conn, w *worker, pr *prepared) (again *prepared, alive bool) {
	pp := cn.pipe
	if err := pp.writeEnvelope(pr.envFrom, pr.rcpt, cn.mailParams(pr)); err != nil {
		return r.envelopeFailed(cn, pr, err)
	}
	cn.arm()
	if err := pp.flush(); err != nil {
		cn.drop(false)
		return r.settleOne(cn, pr, outcome.Classify(outcome.StageMail, err), "")
	}
	if derr, keep := pp.readEnvelope(); derr != nil {
		cn.afterRefusal(keep)
		return r.settleOne(cn, pr, derr, "")
	}
	cur := pr
	for {
		// The previous message's outcome is durable before this one's
		// data leaves (the journal, or the connection's gate): after a
		// crash at most one message per connection is in doubt.
		if err := pp.writeContent(cur.msg); err != nil {
			cn.drop(false) // the final dot never left: safe to send again
			return r.settleOne(cn, cur, outcome.Classify(outcome.StageContent, err), "")
		}
		next := r.tryNext(cn, w)
		if next != nil {
			if derr := cn.admit(next); derr != nil {
				if !r.refuse(cn, next, derr) {
					return cur, false
				}
				next = nil
			}
		}
		if next != nil {
			if err := pp.writeEnvelope(next.envFrom, next.rcpt, cn.mailParams(next)); err != nil {
				if !isAddressError(err) {
					// The buffer flushed into a connection that is gone:
					// cur's data end meets the same below.
					r.giveBack(cn.p, next)
				} else if _, alive := r.conclude(cn, next, outcome.Classify(outcome.StageRender, err), ""); !alive {
					// Nothing of it was written: concluded on its own.
					return cur, false
				}
				next = nil
			}
		}
		cn.arm()
		if err := pp.flush(); err != nil {
			cn.drop(false)
			if errors.Is(err, errNotDurable) {
				// The gate let nothing of cur's content out.
				r.giveBack(cn.p, cur)
				if next != nil {
					r.giveBack(cn.p, next)
				}
				return nil, false
			}
			// Some of the content may have reached the server.
			if _, alive := r.conclude(cn, cur, outcome.Classify(outcome.StageDataEnd, err), ""); !alive {
				return next, false
			}
			return r.lostEnvelope(cn, next, err)
		}
		cn.arm() // the flush may have taken a while: the wait for the reply gets its own timeout
		derr, reply, keep := pp.readDataEnd()
		cn.used++
		if !keep {
			cn.drop(false)
		}
		if again, alive := r.settleOne(cn, cur, derr, reply); !alive || again != nil {
			// A data-end outcome is never "again"; keep the contract.
			if next != nil {
				r.giveBack(cn.p, next)
			}
			return again, alive
		}
		// cur is written, answered and concluded for good.
		w.recycle(cur.msg)
		if next == nil {
			cn.after(keep)
			return nil, true
		}
		if !keep {
			// The session closed with the reply to the data (a 421): the
			// next envelope was never judged; it goes back untouched.
			r.giveBack(cn.p, next)
			return nil, true
		}
		cn.arm()
		derr, keep = pp.readEnvelope()
		if derr != nil {
			cn.afterRefusal(keep)
			return r.settleOne(cn, next, derr, "")
		}
		cur = next
	}
}

// lostEnvelope concludes a job whose envelope went out on a connection
// that is gone: a connection lost at MAIL.
func (r *run) lostEnvelope(cn *conn, next *prepared, err error) (again *prepared, alive bool) {
	if next == nil {
		return nil, true
	}
	return r.settleOne(cn, next, outcome.Classify(outcome.StageMail, err), "")
}

// envelopeFailed concludes a job whose envelope could not be written: an
// address SMTP cannot carry fails it (a render failure), a write into a
// connection that is gone is a connection lost at MAIL.
func (r *run) envelopeFailed(cn *conn, pr *prepared, err error) (again *prepared, alive bool) {
	if isAddressError(err) {
		return r.settleOne(cn, pr, outcome.Classify(outcome.StageRender, err), "")
	}
	cn.drop(false)
	return r.lostEnvelope(cn, pr, err)
}

// refuse concludes a job the connection cannot carry (conn.admit): nothing
// of it was sent, so its share of the daily quota goes back.
func (r *run) refuse(cn *conn, pr *prepared, derr *outcome.DeliveryError) (alive bool) {
	r.quotaBack(cn.p, pr)
	_, alive = r.conclude(cn, pr, derr, "")
	return alive
}

// giveBack returns a prepared job untouched.
func (r *run) giveBack(p *provider, pr *prepared) {
	r.quotaBack(p, pr)
	r.e.progress.inFlight.Add(-1)
	r.release(pr.task)
}

// policy is what outcome.Decide needs to know of c's retry policy (nil:
// none, for an attempt that concerns no job), p's configuration and the
// recipient's domain.
func (r *run) policy(c *campaign, p *provider, domain string) outcome.Policy {
	pol := outcome.Policy{
		Cooldown:       p.cfg.Cooldown.Duration,
		QuotaPause:     r.e.t.QuotaPause,
		AuthPause:      r.e.t.AuthPause,
		ReconnectTries: reconnectTries,
		Jitter:         func(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) },
	}
	if domain != "" {
		pol.DomainCooldown = r.e.cfg.DomainPolicy(domain).Cooldown.Duration
	}
	if c != nil {
		s := c.content.spec
		pol.MaxAttempts, pol.MaxAge, pol.Backoff, pol.MaxBackoff = s.MaxAttempts, s.MaxAge, s.Backoff, s.MaxBackoff
	}
	return pol
}

// conclude carries out outcome.Decide's decision on one attempt: the
// job's record, the provider, the campaign. again is true when the job is
// to be tried at once on a fresh connection (the sender keeps it); alive
// is false when the provider can send no more.
func (r *run) conclude(cn *conn, pr *prepared, derr *outcome.DeliveryError, reply string) (again, alive bool) {
	p := cn.p
	domain := domainOf(pr.job.Key)
	// The retry times and the after-a-throttle rule count from this try,
	// not from the job's first (it may have waited for connections).
	d := outcome.Decide(outcome.Attempt{Err: derr, Reply: reply, At: time.Now(), Tries: pr.tries, LastThrottle: p.lastThrottle(),
		LostReplies: int(p.lostReplies.Load()), Open: int(p.openConns.Load())}, pr.job, r.policy(pr.c, p, domain))
	switch {
	case derr == nil || (derr.Stage == outcome.StageDataEnd && derr.Code != 0):
		p.lostReplies.Store(0) // the server answered the data
	case derr.Class == outcome.ClassAmbiguous:
		p.lostReplies.Add(1)
	}
	// Before affect, which may pause the provider: the other senders see
	// at once whether this job's share of the quota is spent or back.
	switch d.Action {
	case outcome.Again: // still held, for the next try
	case outcome.Release:
		r.quotaBack(p, pr)
	default:
		r.shareSpent(p, pr) // tried: spent
	}
	alive = r.affect(cn, d, derr, domain)
	if d.Attempted || d.Policy {
		r.notePolicy(pr.c, d, d.Reply)
	}
	cn.lastUsed = time.Now()
	if d.Class == outcome.ClassSent {
		r.e.obs.Latency(p.cfg.Name, cn.lastUsed.Sub(pr.at))
	}
	if d.Class != outcome.ClassReconnect || d.Action != outcome.Again {
		r.e.obs.Outcome(p.cfg.Name, d.Class)
	}
	switch d.Action {
	case outcome.Again:
		r.e.progress.reconnects.Add(1)
		return true, alive
	case outcome.Release:
		r.giveBack(p, pr)
		return false, alive
	}
	if d.Action == outcome.Ack {
		p.losses.Store(0)
	}
	r.e.progress.inFlight.Add(-1)
	res := result{task: pr.task, kind: settled, s: d.Settlement(pr.job, p.cfg.Name, pr.at), dup: d.Duplicate}
	if d.Action == outcome.Ack {
		cn.noteSent(&res)
	}
	r.results <- res
	return false, alive
}

// affect carries out a decision's effect on the provider; false when it
// can send no more.
func (r *run) affect(cn *conn, d outcome.Decision, derr *outcome.DeliveryError, domain string) bool {
	p := cn.p
	switch d.Provider {
	case outcome.SlowDown:
		r.e.progress.throttled.Add(1)
		p.noteThrottle(time.Now())
		p.throttled(r.hard, cn.log)
	case outcome.SlowDomain:
		r.e.progress.throttled.Add(1)
		if err := r.e.domains.throttled(domain).Throttled(r.hard, time.Now()); err != nil {
			cn.log.Warn("cannot record a domain's throttle reply", "domain", domain, "error", err)
		}
	case outcome.Pause:
		r.e.progress.throttled.Add(1)
		what := "sending quota reply"
		if derr.Class == outcome.ClassAuth {
			what = "login refused for now"
		}
		p.trip(fmt.Sprintf("%s: %s %q; paused until %s", p.cfg, what, derr.Reply(), d.Until.Format(time.DateTime)), d.Until)
	case outcome.Stop:
		reason := fmt.Sprintf("%s: %s", p.cfg, describeConnectFailure(derr))
		if hint := p.cfg.LoginHint(); hint != "" && derr.Class == outcome.ClassAuth && derr.Stage == outcome.StageAuth {
			reason += " (" + hint + ")"
		}
		cn.log.Error("provider stopped", "reason", reason, "code", derr.Code)
		p.trip(reason, time.Time{})
		return false
	case outcome.Fewer:
		// The provider takes fewer connections than configured: this
		// sender gives its up for the run; the others carry on.
		cn.log.Warn("the provider refuses one more connection; one sender fewer for this run",
			"open", p.openConns.Load(), "reply", derr.Reply())
		return false
	case outcome.BackOff:
		// Jobs keep meeting connections lost before their data: the
		// provider slows down, this sender waits before it connects
		// again, and a provider that never keeps a connection stops.
		n := p.losses.Add(1)
		if n >= lossesToStop {
			// A circuit that closes again after a while: a worker waits it
			// out, herald send stops and says so.
			until := time.Now().Add(backoff(int(n-lossesToStop), p.cfg.Cooldown.Duration, 10*p.cfg.Cooldown.Duration))
			what := fmt.Sprintf("connections keep closing before the data (%d jobs in a row, each on %d connections; last: %s)", n, reconnectTries, derr.Reply())
			if derr.Stage == outcome.StageDataEnd {
				what = fmt.Sprintf("the replies to the data keep being lost (%d in a row; last: %s)", n, derr.Reply())
			}
			p.trip(fmt.Sprintf("%s: %s; paused until %s", p.cfg, what, until.Format(time.DateTime)), until)
			return r.waitsOut(p)
		}
		p.throttled(r.hard, cn.log)
		cn.drop(false)
		sleepCtx(r.stop, backoff(int(n), r.e.t.DialBase, max(r.e.t.DialBase, p.cfg.Cooldown.Duration)))
	}
	return true
}
