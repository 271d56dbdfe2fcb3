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
	work.Wait()
	close(r.results)
	<-settler

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
		jobs, err := r.e.q.Lease(ctx, r.id, time.Now(), n, leaseTTL)
		if err != nil {
			r.halt(&StoppedError{Reason: "queue: " + err.Error()})
			continue
		}
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
	log := r.e.log.With("provider", p.cfg.Name)
	var (
		c        *smtp.Client
		used     int
		lastUsed time.Time
		raw      net.Conn
		live     atomic.Pointer[net.Conn]
	)
	unhook := context.AfterFunc(r.hard, func() {
		if conn := live.Load(); conn != nil {
			(*conn).Close() // cuts a send in flight
		}
	})
	defer unhook()
	drop := func(quit bool) {
		if c == nil {
			return
		}
		if quit && r.hard.Err() == nil {
			_ = p.client.CloseWithSMTPClient(c)
		}
		c.Close()
		live.Store(nil)
		c, used = nil, 0
	}
	defer drop(true)

	var rend templates.Renderer
	data := make(map[string]string, len(r.header))
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
			drop(true)
			continue
		case <-r.hard.Done():
			return
		}
		if reason := p.state(time.Now()); reason != "" {
			r.results <- result{job: job, release: true}
			return
		}
		if err := p.limiter.Wait(r.stop); err != nil {
			r.results <- result{job: job, release: true}
			continue
		}
		now := time.Now()
		if c != nil && now.Sub(lastUsed) > p.cfg.IdleTimeout.Duration {
			// Idle too long waiting for the rate: the server may have
			// closed it already.
			drop(true)
		}
		if ok, until := p.daily.Take(now); !ok {
			r.results <- result{job: job, release: true}
			p.trip(fmt.Sprintf("daily quota of %d messages spent; it frees up from %s", p.daily.Limit(), until.Format(time.DateTime)), until)
			return
		}
		r.e.progress.inFlight.Add(1)
		for i, h := range r.header {
			data[h] = job.Fields[i]
		}
		msg, err := r.e.comp.compose(&rend, data, job.Email, job.Key, now)
		if err != nil {
			p.daily.Undo(now)
			r.e.progress.inFlight.Add(-1)
			r.results <- result{job: job, p: p, derr: Classify(StageRender, err), at: now}
			continue
		}
		var derr *DeliveryError
		var reply string
		for try := 1; ; try++ {
			if c == nil {
				if c, raw, derr = r.connect(p, log); derr != nil {
					break
				}
				live.Store(&raw)
				if r.hard.Err() != nil {
					raw.Close() // the hard stop came while dialling
				}
			}
			var keep bool
			derr, reply, keep = deliver(c, r.e.envFrom, job.Email, msg)
			if !keep {
				drop(false)
			} else if used++; used >= p.cfg.PerConnection {
				drop(true)
			}
			if derr == nil || derr.Class != ClassReconnect || try >= reconnectTries || r.hard.Err() != nil {
				break
			}
			r.e.progress.reconnects.Add(1)
		}
		r.e.progress.inFlight.Add(-1)
		if derr == nil || derr.Stage > StageAuth {
			r.notePolicy(derr)
		}
		lastUsed = time.Now()
		idle.Reset(p.cfg.IdleTimeout.Duration)
		if derr == nil {
			p.limiter.Sent()
			r.results <- result{job: job, p: p, reply: reply, at: now}
			continue
		}
		if derr.Stage <= StageAuth || derr.Class == ClassAuth {
			// No message went out: the job goes back untouched.
			p.daily.Undo(now)
			r.results <- result{job: job, release: true}
			if derr.Class == ClassAuth || derr.Class == ClassReconnect {
				reason := fmt.Sprintf("%s: %s", p.cfg, describeConnectFailure(derr))
				log.Error("provider stopped", "reason", reason, "code", derr.Code)
				p.trip(reason, time.Time{})
				return
			}
			continue // stopping
		}
		if derr.Class == ClassThrottle {
			r.e.progress.throttled.Add(1)
			if derr.Quota {
				until := now.Add(time.Hour)
				p.trip(fmt.Sprintf("%s: sending quota reply %q; paused until %s", p.cfg, derr.Reply(), until.Format(time.DateTime)), until)
			} else if !derr.Domain {
				p.limiter.Throttled()
			}
		}
		r.results <- result{job: job, p: p, derr: derr, at: now}
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
