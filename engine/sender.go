package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wneessen/go-mail/smtp"

	"github.com/heraldmail/herald/outcome"
	"github.com/heraldmail/herald/ratelimit"
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
			r.results <- result{task: t, release: true}
			continue
		}
		if !r.domainTurn(t, true) {
			continue
		}
		// A connection needs one of the provider's slots; while other
		// processes hold them all, this sender waits its turn with the
		// job (its lease is renewed), before it takes the job's pace.
		if !cn.slot && !cn.waitSlot() {
			r.results <- result{task: t, release: true}
			return // stopping
		}
		waited := time.Now()
		if err := ratelimit.Wait(r.stop, p.pacer, time.Now); err != nil {
			r.results <- result{task: t, release: true}
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
		pr, alive := r.prepare(cn, w, t)
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
}

// prepared is a job ready to go: quota taken, message built.
type prepared struct {
	task
	msg     io.WriterTo // the message, signed when the campaign is
	envFrom string      // MAIL FROM: the bounce address, per recipient with VERP
	at      time.Time
	tries   int
}

// prepare takes the daily quota for job and builds its message. The rate
// was already taken. It returns nil when the job was settled or given back
// here; alive is false when the provider cannot send any more.
func (r *run) prepare(cn *conn, w *worker, t task) (pr *prepared, alive bool) {
	p := cn.p
	now := time.Now()
	if reason := p.state(now); reason != "" {
		r.results <- result{task: t, release: true}
		return nil, r.waitsOut(p)
	}
	if !r.recheck(cn, t, now) {
		return nil, true
	}
	if ok, until, err := p.quota.Take(r.hard, now); err != nil || !ok {
		r.results <- result{task: t, release: true}
		if err != nil {
			cn.log.Warn("daily quota out of reach", "error", err)
			sleepCtx(r.stop, time.Second)
			return nil, true
		}
		p.trip(fmt.Sprintf("daily quota of %d messages spent; it frees up from %s", p.quota.Limit(), until.Format(time.DateTime)), until)
		return nil, r.waitsOut(p)
	}
	if w.c != t.c {
		w.c, w.data = t.c, make(map[string]string, len(t.c.header))
	}
	for i, h := range t.c.header {
		w.data[h] = t.job.Fields[i]
	}
	comp := t.c.content.comp
	msg, err := comp.build(&w.rend, w.data, t.job.Email, t.job.Key, now)
	if err != nil {
		p.quota.Undo(r.hard, now)
		r.results <- result{task: t, p: p, derr: outcome.Classify(outcome.StageRender, err), at: now}
		return nil, true
	}
	r.e.progress.inFlight.Add(1)
	p.taken.Add(1)
	return &prepared{task: t, msg: msg, envFrom: comp.envelope(t.job.Email), at: now}, true
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
	ctx, cancel := context.WithTimeout(r.hard, storeTimeout)
	defer cancel()
	supp, err := r.e.q.Suppressed(ctx, t.c.list, t.job.Key)
	if err != nil {
		cn.log.Warn("suppression list out of reach; the job goes back", "error", err)
		r.results <- result{task: t, release: true}
		return false
	}
	if e, ok := supp[t.job.Key]; ok {
		r.results <- result{task: t, skip: &e}
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
			r.results <- result{task: t, release: true}
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
		pr, _ := r.prepare(cn, w, t)
		return pr
	default:
		undo()
		return nil
	}
}

// transact sends pr, reconnecting as needed. It returns false when the
// provider cannot send any more.
func (r *run) transact(cn *conn, w *worker, pr *prepared) bool {
	for pr != nil {
		pr.tries++
		if cn.c == nil {
			if !cn.slot && !cn.waitSlot() {
				r.giveBack(cn.p, pr)
				return false // stopping
			}
			if derr := cn.open(); derr != nil {
				return r.connectFailed(cn, pr, derr)
			}
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
		if again != nil {
			r.e.progress.reconnects.Add(1)
			if again.tries >= reconnectTries || r.hard.Err() != nil {
				// The connection keeps failing on this job: count it.
				alive = r.finish(cn, again, &outcome.DeliveryError{Class: outcome.ClassTransient, Stage: outcome.StageMail, Text: "connection lost before the data, " + fmt.Sprint(again.tries) + " times"}, "")
				if !alive {
					return false
				}
				again = nil
			}
		}
		pr = again
	}
	return true
}

// plain is one transaction without pipelining (one command, one reply).
func (r *run) plain(cn *conn, pr *prepared) (again *prepared, alive bool) {
	derr, reply, keep := deliver(cn.c, pr.envFrom, pr.job.Email, pr.msg)
	cn.after(keep)
	if derr != nil && derr.Class == outcome.ClassReconnect {
		return pr, true
	}
	return nil, r.finish(cn, pr, derr, reply)
}

// pipelined sends pr and, while more jobs are ready, the ones after it: the
// content of each message shares a flight with the next envelope, so a
// message costs one round trip. Every job is settled here except again, a
// job whose envelope met a lost connection or a 421 and is to be retried on
// a fresh one.
func (r *run) pipelined(cn *conn, w *worker, pr *prepared) (again *prepared, alive bool) {
	pp := cn.pipe
	if err := pp.writeEnvelope(pr.envFrom, pr.job.Email); err != nil {
		return nil, r.finish(cn, pr, outcome.Classify(outcome.StageRender, err), "")
	}
	if err := pp.flush(); err != nil {
		cn.drop(false)
		return pr, true
	}
	if derr, keep := pp.readEnvelope(); derr != nil {
		cn.afterRefusal(keep)
		if derr.Class == outcome.ClassReconnect {
			return pr, true
		}
		return nil, r.finish(cn, pr, derr, "")
	}
	cur := pr
	for {
		if err := pp.writeContent(cur.msg); err != nil {
			cn.drop(false) // the final dot never left: safe to send again
			return cur, true
		}
		next := r.tryNext(cn, w)
		if next != nil {
			if err := pp.writeEnvelope(next.envFrom, next.job.Email); err != nil {
				// Nothing of it was written: settle it on its own.
				if !r.finish(cn, next, outcome.Classify(outcome.StageRender, err), "") {
					return cur, false
				}
				next = nil
			}
		}
		if err := pp.flush(); err != nil {
			cn.drop(false)
			// Some of the content may have reached the server.
			return next, r.finish(cn, cur, outcome.Classify(outcome.StageDataEnd, err), "")
		}
		derr, reply, keep := pp.readDataEnd()
		cn.used++
		if !keep {
			cn.drop(false)
		}
		if !r.finish(cn, cur, derr, reply) {
			return next, false
		}
		if next == nil {
			cn.after(keep)
			return nil, true
		}
		if !keep {
			return next, true // its envelope went to a closed session
		}
		derr, keep = pp.readEnvelope()
		if derr != nil {
			cn.afterRefusal(keep)
			if derr.Class == outcome.ClassReconnect {
				return next, true
			}
			return nil, r.finish(cn, next, derr, "")
		}
		cur = next
	}
}

// giveBack returns a prepared job untouched.
func (r *run) giveBack(p *provider, pr *prepared) {
	p.quota.Undo(r.hard, pr.at)
	r.e.progress.inFlight.Add(-1)
	r.results <- result{task: pr.task, release: true}
}

// connectFailed handles a job whose connection could not be made.
func (r *run) connectFailed(cn *conn, pr *prepared, derr *outcome.DeliveryError) bool {
	p := cn.p
	r.giveBack(p, pr)
	if derr.Class == outcome.ClassAuth || derr.Class == outcome.ClassReconnect {
		reason := fmt.Sprintf("%s: %s", p.cfg, describeConnectFailure(derr))
		if hint := p.cfg.LoginHint(); hint != "" && derr.Class == outcome.ClassAuth && derr.Stage == outcome.StageAuth {
			reason += " (" + hint + ")"
		}
		cn.log.Error("provider stopped", "reason", reason, "code", derr.Code)
		p.trip(reason, time.Time{})
		return false
	}
	return true // stopping, or a throttled greeting: the job waits for the next try
}

// finish settles one attempted job and adjusts the provider. It returns
// false when the provider cannot send any more.
func (r *run) finish(cn *conn, pr *prepared, derr *outcome.DeliveryError, reply string) bool {
	p := cn.p
	if derr != nil && derr.Class == outcome.ClassAuth {
		return r.connectFailed(cn, pr, derr) // e.g. 530 at MAIL: no login configured
	}
	r.e.progress.inFlight.Add(-1)
	r.notePolicy(pr.c, derr)
	cn.lastUsed = time.Now()
	if derr == nil {
		r.e.obs.Outcome(p.cfg.Name, outcome.ClassSent)
		r.e.obs.Latency(p.cfg.Name, cn.lastUsed.Sub(pr.at))
		r.results <- result{task: pr.task, p: p, reply: reply, at: pr.at}
		return true
	}
	r.e.obs.Outcome(p.cfg.Name, derr.Class)
	if derr.Class == outcome.ClassThrottle {
		r.e.progress.throttled.Add(1)
		if derr.Quota {
			until := pr.at.Add(time.Hour)
			p.trip(fmt.Sprintf("%s: sending quota reply %q; paused until %s", p.cfg, derr.Reply(), until.Format(time.DateTime)), until)
		} else if derr.Domain {
			d := domainOf(pr.job.Key)
			if err := r.e.domains.throttled(d).Throttled(r.hard, time.Now()); err != nil {
				cn.log.Warn("cannot record a domain's throttle reply", "domain", d, "error", err)
			}
		} else {
			p.throttled(r.hard, cn.log)
		}
	}
	r.results <- result{task: pr.task, p: p, derr: derr, at: pr.at}
	return true
}

// conn is a sender's connection to its provider.
type conn struct {
	r        *run
	p        *provider
	log      *slog.Logger
	c        *smtp.Client
	pipe     *pipe // set when the server pipelines and the provider allows it
	used     int
	lastUsed time.Time
	live     atomic.Pointer[net.Conn]
	holder   string // names this connection's slot in the provider's Slots
	slot     bool   // a slot is held
}

// waitSlot takes one of the provider's connection slots (the sender then
// keeps it across reconnects, until the connection rotates or idles),
// waiting its turn while other processes hold them all; false when the run
// stops first.
func (cn *conn) waitSlot() bool {
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, 250*time.Millisecond) {
		ok, err := cn.p.slots.Acquire(cn.r.stop, cn.holder, time.Now())
		if err != nil && cn.r.stop.Err() == nil {
			cn.log.Warn("connection slots out of reach", "error", err)
		}
		if ok {
			cn.slot = true
			return true
		}
		if cn.r.stop.Err() != nil {
			return false
		}
		sleepCtx(cn.r.stop, wait/2+rand.N(wait))
	}
}

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
			r.results <- result{task: t, later: r.e.domains.later(d, now.Add(w)), reply: "waiting for the pace of " + d}
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
	return r.single == nil && p.temporary()
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

// perConnection is how many messages a connection carries before a fresh
// one: the provider's per_connection, or at most contendedPerConnection
// while other processes wait for a slot, so that the slots go round.
func (cn *conn) perConnection() int {
	if n := cn.p.cfg.PerConnection; n > contendedPerConnection && cn.p.slots.Contended() {
		return contendedPerConnection
	}
	return cn.p.cfg.PerConnection
}

// idleTimeout is how long an unused connection stays open: the provider's
// idle_timeout, or a second while other processes wait for a slot.
func (cn *conn) idleTimeout() time.Duration {
	if d := cn.p.cfg.IdleTimeout.Duration; !cn.p.slots.Contended() || d < time.Second {
		return d
	}
	return time.Second
}

func (cn *conn) releaseSlot() {
	if !cn.slot {
		return
	}
	cn.slot = false
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := cn.p.slots.Release(ctx, cn.holder); err != nil {
		cn.log.Warn("cannot free a connection slot; it frees itself soon", "error", err)
	}
}

// open connects, replacing a connection idle for too long.
func (cn *conn) open() *outcome.DeliveryError {
	c, raw, derr := cn.r.connect(cn.p, cn.log)
	if derr != nil {
		return derr
	}
	cn.c, cn.used, cn.lastUsed = c, 0, time.Now()
	cn.live.Store(&raw)
	cn.r.e.obs.Connections(cn.p.cfg.Name, 1)
	if cn.r.hard.Err() != nil {
		raw.Close() // the hard stop came while dialling
	}
	cn.pipe = nil
	if ok, _ := c.Extension("PIPELINING"); ok && cn.p.cfg.PipeliningOn() {
		cn.pipe = newPipe(c)
	}
	return nil
}

// cut closes the raw connection: the one way to stop a command in flight,
// as go-mail's Client.Close waits for it.
func (cn *conn) cut() {
	if raw := cn.live.Load(); raw != nil {
		(*raw).Close()
	}
}

// drop closes the connection, with QUIT when quit is set and the run is
// not stopping hard.
func (cn *conn) drop(quit bool) {
	if cn.c == nil {
		return
	}
	if quit && cn.r.hard.Err() == nil {
		_ = cn.p.client.CloseWithSMTPClient(cn.c)
	}
	cn.c.Close()
	cn.live.Store(nil)
	cn.r.e.obs.Connections(cn.p.cfg.Name, -1)
	cn.c, cn.pipe, cn.used = nil, nil, 0
}

// after counts a finished transaction and rotates the connection.
func (cn *conn) after(keep bool) {
	if !keep {
		cn.drop(false)
		return
	}
	if cn.pipe == nil {
		cn.used++
	}
	if cn.used >= cn.perConnection() {
		// A fresh connection, and the slot goes to whoever waited.
		cn.drop(true)
		cn.releaseSlot()
	}
}

// afterRefusal keeps or drops the connection after a refused envelope.
func (cn *conn) afterRefusal(keep bool) {
	if !keep {
		cn.drop(false)
	}
}

// connect dials provider p with exponential backoff and jitter. It gives up
// at once on an auth-class failure, after dialTries failures otherwise, and
// when the run stops (Stage connect, Class reconnect, no code).
func (r *run) connect(p *provider, log *slog.Logger) (*smtp.Client, net.Conn, *outcome.DeliveryError) {
	var last *outcome.DeliveryError
	for n := 0; n < dialTries; n++ {
		if p.state(time.Now()) != "" {
			return nil, nil, &outcome.DeliveryError{Class: outcome.ClassReconnect, Stage: outcome.StageConnect, Text: "provider stopped"}
		}
		c, raw, derr := p.open(r.stop)
		if derr == nil {
			return c, raw, nil
		}
		if derr.Class == outcome.ClassAuth {
			return nil, nil, derr
		}
		last = derr
		if r.stop.Err() != nil {
			break
		}
		if derr.Class == outcome.ClassThrottle {
			p.throttled(r.hard, log)
		}
		d := backoff(n, dialBase, dialCeiling)
		log.Warn("cannot connect; retrying", "error", derr.Reply(), "in", d.Round(time.Millisecond))
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.stop.Done():
			t.Stop()
		}
	}
	if r.stop.Err() != nil {
		return nil, nil, &outcome.DeliveryError{Class: outcome.ClassTransient, Stage: outcome.StageConnect, Text: "stopping"}
	}
	return nil, nil, last
}

func describeConnectFailure(d *outcome.DeliveryError) string {
	switch {
	case d.Class == outcome.ClassAuth && d.Stage == outcome.StageAuth:
		return "the server refused the login: " + d.Reply()
	case d.Class == outcome.ClassAuth && d.Stage > outcome.StageAuth:
		return fmt.Sprintf("the server requires a login (set username and password_env): %s", d.Reply())
	case d.Class == outcome.ClassAuth && d.Code == 0:
		return "cannot connect securely: " + d.Reply()
	case d.Class == outcome.ClassAuth:
		return "the server refused us: " + d.Reply()
	}
	return fmt.Sprintf("cannot connect after %d tries: %s", dialTries, d.Reply())
}

// providersDown explains why no sender is left.
func (r *run) providersDown() string {
	var why []string
	for _, p := range r.e.providers {
		if s := p.state(time.Now()); s != "" {
			why = append(why, s)
		}
	}
	if len(why) == 0 {
		return "all senders stopped"
	}
	return "no provider can send: " + strings.Join(why, "; ")
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
