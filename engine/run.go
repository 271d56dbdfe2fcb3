package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"

	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/templates"
)

const (
	leaseTTL       = time.Hour // single process: a lease outlives any wait in our buffer
	maxBatch       = 256       // jobs per Lease and per buffer
	settleBatch    = 512       // settlements per transaction
	settleEvery    = 25 * time.Millisecond
	reconnectTries = 3 // same job, fresh connection, before it counts as an attempt
	dialTries      = 8 // consecutive failed dials before a provider is given up
	dialBase       = 250 * time.Millisecond
	dialCeiling    = 30 * time.Second
	storeTimeout   = 30 * time.Second
	statusPoll     = 500 * time.Millisecond // how soon a pause is seen
)

// result is a sender's report on one job.
type result struct {
	job     queue.Job
	p       *provider
	derr    *DeliveryError // nil: sent
	reply   string         // the server's reply to the end of DATA
	release bool           // not tried: give the job back untouched
	at      time.Time
}

// run is the state of one Run.
type run struct {
	e       *Engine
	id      string
	header  []string
	hard    context.Context // cancelled: abort sends in flight
	stop    context.Context // cancelled: take no more jobs
	halt    context.CancelCauseFunc
	jobs    chan queue.Job
	results chan result
	settled chan struct{} // a batch was settled: the dispatcher may look again
	senders atomic.Int64

	heldMu sync.Mutex
	held   map[uint64]uint64 // leases this run holds: seq → token

	policy, attempted atomic.Int64
}

// Run delivers the planned campaign until every job is final, soft is
// cancelled (sends in flight finish; ErrInterrupted) or hard is cancelled
// (connections are cut). It returns a *StoppedError when it cannot go on:
// every provider's circuit is open, or the campaign paused itself.
func (e *Engine) Run(soft, hard context.Context) (Summary, error) {
	start := time.Now()
	id := e.cfg.Campaign.ID
	camp, err := e.q.Campaign(hard, id)
	if err != nil {
		return Summary{}, fmt.Errorf("campaign %s: %w", id, err)
	}
	switch camp.Status {
	case queue.CampaignCancelled:
		return Summary{}, &InputError{fmt.Errorf("campaign %s was cancelled", id)}
	case queue.Paused:
		e.log.Info("campaign was paused; resuming", "reason", camp.Reason)
		if err := e.q.SetStatus(hard, id, queue.Active, ""); err != nil {
			return Summary{}, err
		}
	}
	if err := e.seedQuotas(hard, start); err != nil {
		return Summary{}, err
	}
	stop, halt := context.WithCancelCause(soft)
	defer halt(nil)
	r := &run{
		e: e, id: id, header: camp.Header, hard: hard, stop: stop, halt: halt,
		jobs:    make(chan queue.Job, maxBatch),
		results: make(chan result, 2*maxBatch),
		settled: make(chan struct{}, 1),
		held:    map[uint64]uint64{},
	}
	if c, err := e.q.Counts(hard, id); err == nil {
		e.counts.Store(&c)
	}
	var work sync.WaitGroup
	for _, p := range e.providers {
		for range p.cfg.Connections {
			r.senders.Add(1)
			work.Go(func() { r.sender(p) })
		}
	}
	work.Go(r.dispatch)
	settler := make(chan struct{})
	go func() { defer close(settler); r.settle() }()
	renewer := make(chan struct{})
	go func() { defer close(renewer); r.renew(settler) }()
	go r.watch(settler)
	work.Wait()
	close(r.results)
	<-settler
	<-renewer

	sum := Summary{Progress: e.Progress(), Elapsed: time.Since(start)}
	switch {
	case context.Cause(stop) != nil && soft.Err() == nil && hard.Err() == nil:
		return sum, context.Cause(stop)
	case soft.Err() != nil || hard.Err() != nil:
		return sum, ErrInterrupted
	}
	return sum, nil
}

// seedQuotas loads each provider's usage of the last 24 hours.
func (e *Engine) seedQuotas(ctx context.Context, now time.Time) error {
	for _, p := range e.providers {
		if p.daily.Limit() == 0 {
			continue
		}
		n, err := e.q.Usage(ctx, p.cfg.Name, now.Add(-24*time.Hour))
		if err != nil {
			return fmt.Errorf("provider %s: daily usage: %w", p.cfg.Name, err)
		}
		p.daily.Seed(now.Add(-23*time.Hour), n) // conservative: counted as recent
	}
	return nil
}

// dispatch leases jobs and hands them to the senders until the campaign is
// complete or the run stops; it owns r.jobs.
func (r *run) dispatch() {
	defer close(r.jobs)
	ctx := context.WithoutCancel(r.stop)
	for {
		if r.stop.Err() != nil {
			r.drain()
			return
		}
		n := r.batchSize()
		jobs, err := r.e.q.Lease(ctx, r.id, time.Now(), n, r.e.leaseTTL)
		if err != nil {
			r.halt(&StoppedError{Reason: "queue: " + err.Error()})
			continue
		}
		r.hold(jobs)
		for i, j := range jobs {
			select {
			case r.jobs <- j:
			case <-r.stop.Done():
				for _, rest := range jobs[i:] {
					r.results <- result{job: rest, release: true}
				}
				r.drain()
				return
			}
		}
		if len(jobs) > 0 {
			continue
		}
		counts, err := r.e.q.Counts(ctx, r.id)
		if err != nil {
			r.halt(&StoppedError{Reason: "queue: " + err.Error()})
			continue
		}
		if counts.Open() == 0 {
			return // every job is final
		}
		if c, err := r.e.q.Campaign(ctx, r.id); err == nil && c.Status != queue.Active {
			r.halt(&StoppedError{Reason: fmt.Sprintf("campaign %s: %s", c.Status, c.Reason)})
			continue
		}
		wait := time.Second
		if t, ok, err := r.e.q.NextDue(ctx, r.id); err == nil && ok && counts.Leased == 0 {
			wait = max(min(wait, time.Until(t)), time.Millisecond)
			r.e.setNote(fmt.Sprintf("%d retries wait, next at %s", counts.Retry, t.Format("15:04:05")))
		}
		timer := time.NewTimer(wait)
		select {
		case <-r.settled:
		case <-timer.C:
		case <-r.stop.Done():
		}
		timer.Stop()
	}
}

// hold records leases taken; unhold forgets settled or released ones.
func (r *run) hold(jobs []queue.Job) {
	r.heldMu.Lock()
	defer r.heldMu.Unlock()
	for _, j := range jobs {
		r.held[j.Seq] = j.Lease
	}
}

func (r *run) unhold(seqs ...uint64) {
	r.heldMu.Lock()
	defer r.heldMu.Unlock()
	for _, s := range seqs {
		delete(r.held, s)
	}
}

// renew extends the leases this run holds every third of the lease TTL,
// until done is closed.
func (r *run) renew(done <-chan struct{}) {
	t := time.NewTicker(r.e.leaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		r.heldMu.Lock()
		jobs := make([]queue.Job, 0, len(r.held))
		for seq, lease := range r.held {
			jobs = append(jobs, queue.Job{Seq: seq, Lease: lease})
		}
		r.heldMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		lost, err := r.e.q.Extend(ctx, r.id, jobs, time.Now().Add(r.e.leaseTTL))
		cancel()
		if err != nil {
			r.e.log.Warn("cannot renew leases; retrying", "error", err)
			continue
		}
		if len(lost) > 0 {
			// Another worker took them after our lease ran out: our
			// outcome for them will be refused at settlement.
			r.e.log.Warn("leases lost to another worker", "jobs", len(lost))
			r.unhold(lost...)
		}
	}
}

// watch stops the run within statusPoll when someone pauses or cancels
// the campaign (herald pause, cancel): buffered jobs go back, sends in
// flight finish.
func (r *run) watch(done <-chan struct{}) {
	t := time.NewTicker(statusPoll)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-r.stop.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		c, err := r.e.q.Campaign(ctx, r.id)
		cancel()
		if err == nil && c.Status != queue.Active {
			reason := fmt.Sprintf("campaign %s", c.Status)
			if c.Reason != "" {
				reason += ": " + c.Reason
			}
			r.halt(&StoppedError{Reason: reason})
			return
		}
	}
}

// batchSize leases no more than the providers can send in about two seconds.
func (r *run) batchSize() int {
	total := 0.0
	for _, p := range r.e.providers {
		rate := p.limiter.Rate()
		if rate == 0 {
			return maxBatch
		}
		total += rate
	}
	return max(1, min(maxBatch, int(total*2)))
}

// drain gives back every job still buffered.
func (r *run) drain() {
	for {
		select {
		case j := <-r.jobs:
			r.results <- result{job: j, release: true}
		default:
			return
		}
	}
}

// sender delivers jobs over one connection of provider p at a time.
func (r *run) sender(p *provider) {
	defer func() {
		// The last sender to leave while jobs are still coming means no
		// provider can send.
		if r.senders.Add(-1) == 0 && p.state(time.Now()) != "" {
			r.halt(&StoppedError{Reason: r.providersDown()})
		}
	}()
	cn := &conn{r: r, p: p, log: r.e.log.With("provider", p.cfg.Name)}
	unhook := context.AfterFunc(r.hard, cn.cut)
	defer unhook()
	defer cn.drop(true)

	w := &worker{data: make(map[string]string, len(r.header))}
	idle := time.NewTimer(p.cfg.IdleTimeout.Duration)
	defer idle.Stop()
	for {
		var job queue.Job
		var ok bool
		select {
		case job, ok = <-r.jobs:
			if !ok {
				return
			}
		case <-idle.C:
			cn.drop(true)
			continue
		case <-r.hard.Done():
			return
		}
		if err := p.limiter.Wait(r.stop); err != nil {
			r.results <- result{job: job, release: true}
			continue
		}
		if cn.c != nil && time.Since(cn.lastUsed) > p.cfg.IdleTimeout.Duration {
			// Idle too long waiting for the rate: the server may have
			// closed it already.
			cn.drop(true)
		}
		pr, alive := r.prepare(cn, w, job)
		if !alive {
			return
		}
		if pr != nil && !r.transact(cn, w, pr) {
			return
		}
		idle.Reset(p.cfg.IdleTimeout.Duration)
	}
}

// worker is a sender's reusable rendering state.
type worker struct {
	rend templates.Renderer
	data map[string]string
}

// prepared is a job ready to go: quota taken, message built.
type prepared struct {
	job   queue.Job
	msg   *mail.Msg
	at    time.Time
	tries int
}

// prepare takes the daily quota for job and builds its message. The rate
// was already taken. It returns nil when the job was settled or given back
// here; alive is false when the provider cannot send any more.
func (r *run) prepare(cn *conn, w *worker, job queue.Job) (pr *prepared, alive bool) {
	p := cn.p
	now := time.Now()
	if reason := p.state(now); reason != "" {
		r.results <- result{job: job, release: true}
		return nil, false
	}
	if ok, until := p.daily.Take(now); !ok {
		r.results <- result{job: job, release: true}
		p.trip(fmt.Sprintf("daily quota of %d messages spent; it frees up from %s", p.daily.Limit(), until.Format(time.DateTime)), until)
		return nil, false
	}
	for i, h := range r.header {
		w.data[h] = job.Fields[i]
	}
	msg, err := r.e.comp.compose(&w.rend, w.data, job.Email, job.Key, now)
	if err != nil {
		p.daily.Undo(now)
		r.results <- result{job: job, p: p, derr: Classify(StageRender, err), at: now}
		return nil, true
	}
	r.e.progress.inFlight.Add(1)
	return &prepared{job: job, msg: msg, at: now}, true
}

// tryNext takes another job only if one is waiting and the rate allows it
// now: the pipelined path sends its envelope with the previous message.
func (r *run) tryNext(cn *conn, w *worker) *prepared {
	p := cn.p
	if cn.used+1 >= p.cfg.PerConnection || r.stop.Err() != nil || p.state(time.Now()) != "" {
		return nil
	}
	ok, undo := p.limiter.TryTake()
	if !ok {
		return nil
	}
	select {
	case job, open := <-r.jobs:
		if !open {
			undo()
			return nil
		}
		pr, _ := r.prepare(cn, w, job)
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
				alive = r.finish(cn, again, &DeliveryError{Class: ClassTransient, Stage: StageMail, Text: "connection lost before the data, " + fmt.Sprint(again.tries) + " times"}, "")
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
	derr, reply, keep := deliver(cn.c, r.e.envFrom, pr.job.Email, pr.msg)
	cn.after(keep)
	if derr != nil && derr.Class == ClassReconnect {
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
	if err := pp.writeEnvelope(r.e.envFrom, pr.job.Email); err != nil {
		return nil, r.finish(cn, pr, Classify(StageRender, err), "")
	}
	if err := pp.flush(); err != nil {
		cn.drop(false)
		return pr, true
	}
	if derr, keep := pp.readEnvelope(); derr != nil {
		cn.afterRefusal(keep)
		if derr.Class == ClassReconnect {
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
			if err := pp.writeEnvelope(r.e.envFrom, next.job.Email); err != nil {
				// Nothing of it was written: settle it on its own.
				if !r.finish(cn, next, Classify(StageRender, err), "") {
					return cur, false
				}
				next = nil
			}
		}
		if err := pp.flush(); err != nil {
			cn.drop(false)
			// Some of the content may have reached the server.
			return next, r.finish(cn, cur, Classify(StageDataEnd, err), "")
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
			if derr.Class == ClassReconnect {
				return next, true
			}
			return nil, r.finish(cn, next, derr, "")
		}
		cur = next
	}
}

// giveBack returns a prepared job untouched.
func (r *run) giveBack(p *provider, pr *prepared) {
	p.daily.Undo(pr.at)
	r.e.progress.inFlight.Add(-1)
	r.results <- result{job: pr.job, release: true}
}

// connectFailed handles a job whose connection could not be made.
func (r *run) connectFailed(cn *conn, pr *prepared, derr *DeliveryError) bool {
	p := cn.p
	r.giveBack(p, pr)
	if derr.Class == ClassAuth || derr.Class == ClassReconnect {
		reason := fmt.Sprintf("%s: %s", p.cfg, describeConnectFailure(derr))
		cn.log.Error("provider stopped", "reason", reason, "code", derr.Code)
		p.trip(reason, time.Time{})
		return false
	}
	return true // stopping, or a throttled greeting: the job waits for the next try
}

// finish settles one attempted job and adjusts the provider. It returns
// false when the provider cannot send any more.
func (r *run) finish(cn *conn, pr *prepared, derr *DeliveryError, reply string) bool {
	p := cn.p
	if derr != nil && derr.Class == ClassAuth {
		return r.connectFailed(cn, pr, derr) // e.g. 530 at MAIL: no login configured
	}
	r.e.progress.inFlight.Add(-1)
	r.notePolicy(derr)
	cn.lastUsed = time.Now()
	if derr == nil {
		p.limiter.Sent()
		r.results <- result{job: pr.job, p: p, reply: reply, at: pr.at}
		return true
	}
	if derr.Class == ClassThrottle {
		r.e.progress.throttled.Add(1)
		if derr.Quota {
			until := pr.at.Add(time.Hour)
			p.trip(fmt.Sprintf("%s: sending quota reply %q; paused until %s", p.cfg, derr.Reply(), until.Format(time.DateTime)), until)
		} else if !derr.Domain {
			p.limiter.Throttled()
		}
	}
	r.results <- result{job: pr.job, p: p, derr: derr, at: pr.at}
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
}

// open connects, replacing a connection idle for too long.
func (cn *conn) open() *DeliveryError {
	c, raw, derr := cn.r.connect(cn.p, cn.log)
	if derr != nil {
		return derr
	}
	cn.c, cn.used, cn.lastUsed = c, 0, time.Now()
	cn.live.Store(&raw)
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
	if cn.used >= cn.p.cfg.PerConnection {
		cn.drop(true)
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
func (r *run) connect(p *provider, log *slog.Logger) (*smtp.Client, net.Conn, *DeliveryError) {
	var last *DeliveryError
	for n := 0; n < dialTries; n++ {
		if p.state(time.Now()) != "" {
			return nil, nil, &DeliveryError{Class: ClassReconnect, Stage: StageConnect, Text: "provider stopped"}
		}
		c, raw, derr := p.open(r.stop)
		if derr == nil {
			return c, raw, nil
		}
		if derr.Class == ClassAuth {
			return nil, nil, derr
		}
		last = derr
		if r.stop.Err() != nil {
			break
		}
		if derr.Class == ClassThrottle {
			p.limiter.Throttled()
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
		return nil, nil, &DeliveryError{Class: ClassTransient, Stage: StageConnect, Text: "stopping"}
	}
	return nil, nil, last
}

func describeConnectFailure(d *DeliveryError) string {
	switch {
	case d.Class == ClassAuth && d.Stage == StageAuth:
		return "the server refused the login: " + d.Reply()
	case d.Class == ClassAuth && d.Stage > StageAuth:
		return fmt.Sprintf("the server requires a login (set username and password_env): %s", d.Reply())
	case d.Class == ClassAuth && d.Code == 0:
		return "cannot connect securely: " + d.Reply()
	case d.Class == ClassAuth:
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

// settle records outcomes in batches and keeps the progress counters.
func (r *run) settle() {
	var (
		batch    []queue.Settlement
		releases []queue.Job
		tick     = time.NewTicker(settleEvery)
	)
	defer tick.Stop()
	ctx := context.Background()
	flush := func() {
		if len(batch) == 0 && len(releases) == 0 {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, storeTimeout)
		defer cancel()
		seqs := make([]uint64, 0, len(batch)+len(releases))
		for _, s := range batch {
			seqs = append(seqs, s.Seq)
		}
		for _, j := range releases {
			seqs = append(seqs, j.Seq)
		}
		defer r.unhold(seqs...)
		if len(batch) > 0 {
			lost, err := r.e.q.Settle(sctx, r.id, batch)
			if err != nil {
				r.e.log.Error("cannot record outcomes; stopping", "error", err, "jobs", len(batch))
				r.halt(&StoppedError{Reason: "queue: " + err.Error()})
			} else if len(lost) > 0 {
				r.e.log.Warn("outcomes for jobs whose lease had expired were dropped", "jobs", len(lost))
			}
		}
		if len(releases) > 0 {
			if err := r.e.q.Release(sctx, r.id, releases); err != nil {
				r.e.log.Error("cannot release jobs", "error", err)
			}
		}
		if c, err := r.e.q.Counts(sctx, r.id); err == nil {
			r.e.counts.Store(&c)
		}
		batch, releases = batch[:0], releases[:0]
		select {
		case r.settled <- struct{}{}:
		default:
		}
	}
	for {
		select {
		case res, ok := <-r.results:
			if !ok {
				flush()
				return
			}
			if res.release {
				releases = append(releases, res.job)
				continue
			}
			s := r.e.settlement(res.job, res.p, res.derr, res.reply, res.at)
			r.count(res, s)
			batch = append(batch, s)
			if len(batch) >= settleBatch {
				flush()
			}
		case <-tick.C:
			flush()
		}
	}
}

// count updates the progress counters and pauses the campaign when too
// many messages meet a policy rejection.
func (r *run) count(res result, s queue.Settlement) {
	pr := &r.e.progress
	switch s.State {
	case queue.Sent:
		pr.sent.Add(1)
	case queue.Failed:
		pr.failed.Add(1)
		if s.Suppress {
			pr.suppressed.Add(1)
		}
	case queue.Retry:
		pr.retried.Add(1)
	}
	if res.derr != nil && res.derr.Class == ClassAmbiguous {
		pr.ambiguous.Add(1)
	}
}

// notePolicy counts an attempted message and pauses the campaign when too
// many meet a policy rejection. Senders call it as each reply arrives, so
// the pause is not late by a settle batch.
func (r *run) notePolicy(derr *DeliveryError) {
	attempted := r.attempted.Add(1)
	if derr == nil || derr.Class != ClassPolicy {
		return
	}
	policy := r.policy.Add(1)
	cfg := r.e.cfg.Campaign
	if attempted >= int64(cfg.PolicyMinimum) && float64(policy)/float64(attempted) >= cfg.PolicyThreshold {
		reason := fmt.Sprintf("%d of %d messages were rejected for policy reasons (last: %s); fix the cause, then run again", policy, attempted, derr.Reply())
		if r.stop.Err() == nil {
			r.halt(&StoppedError{Reason: "campaign paused: " + reason}) // first: no sender takes another job
			r.e.log.Error("pausing the campaign", "reason", reason)
			ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
			defer cancel()
			if err := r.e.q.SetStatus(ctx, r.id, queue.Paused, reason); err != nil {
				r.e.log.Error("cannot pause the campaign", "error", err)
			}
		}
	}
}
