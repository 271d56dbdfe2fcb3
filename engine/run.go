package engine

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/ratelimit"
)

const (
	maxBatch       = 256 // jobs per Lease and per buffer
	settleBatch    = 512 // settlements per transaction
	settleEvery    = 25 * time.Millisecond
	reconnectTries = 3 // same job, fresh connection, before it counts as an attempt
	dialTries      = 8 // consecutive failed dials before a provider is given up
	dialBase       = 250 * time.Millisecond
	dialCeiling    = 30 * time.Second
	storeTimeout   = 30 * time.Second
	statusPoll     = 500 * time.Millisecond // how soon a pause is seen
	domainWaitMax  = 100 * time.Millisecond // longer waits for a domain's pace settle the job as a retry
	weightSlack    = 8                      // messages a provider may run ahead of its weight
	weightPeriod   = time.Second            // the weights hold within each such period
	circuitPoll    = time.Second            // how often a provider looks at its shared circuit
	// contendedPerConnection caps per_connection while other processes
	// wait for a connection slot.
	contendedPerConnection = 200
	finishedPoll           = 10 * time.Second // Work: how soon a finished campaign reopened by retry-failed is seen
	// queueOutage is how long the queue may stay unreachable before a run
	// gives up; until then every step is retried with backoff.
	queueOutage = 2 * time.Minute
)

// campaign is one campaign being delivered by a run: its content and the
// leases the run holds. Safe for concurrent use.
type campaign struct {
	id      string
	header  []string
	content *content
	list    string // suppression list

	heldMu sync.Mutex
	held   map[uint64]uint64 // leases held: seq → token

	policy, attempted atomic.Int64
	// gone is set when the run stops delivering the campaign (paused,
	// cancelled, finished): jobs still buffered go back untouched.
	gone   atomic.Bool
	counts atomic.Pointer[queue.Counts]
}

func newCampaign(id string, header []string, c *content) *campaign {
	cp := &campaign{id: id, header: header, content: c, list: SuppressionList(c.comp.from.Address), held: map[uint64]uint64{}}
	cp.counts.Store(&queue.Counts{})
	return cp
}

// hold records leases taken; unhold forgets settled or released ones.
func (c *campaign) hold(jobs []queue.Job) {
	c.heldMu.Lock()
	defer c.heldMu.Unlock()
	for _, j := range jobs {
		c.held[j.Seq] = j.Lease
	}
}

// unhold forgets a lease if it is still the one held for seq (the seq
// may have been leased again since), and says whether it was.
func (c *campaign) unhold(seq, token uint64) bool {
	c.heldMu.Lock()
	defer c.heldMu.Unlock()
	if t, ok := c.held[seq]; ok && t == token {
		delete(c.held, seq)
		return true
	}
	return false
}

// holds reports whether the run still holds this lease: one lost to
// another worker (it expired, and renew learnt so) must not be sent.
func (c *campaign) holds(seq, token uint64) bool {
	c.heldMu.Lock()
	defer c.heldMu.Unlock()
	t, ok := c.held[seq]
	return ok && t == token
}

func (c *campaign) holding() []queue.Job {
	c.heldMu.Lock()
	defer c.heldMu.Unlock()
	jobs := make([]queue.Job, 0, len(c.held))
	for seq, lease := range c.held {
		jobs = append(jobs, queue.Job{Seq: seq, Lease: lease})
	}
	return jobs
}

// task is a leased job of a campaign.
type task struct {
	c   *campaign
	job queue.Job
	// checked is when the job's address was last found off the
	// suppression list.
	checked time.Time
}

// result is a sender's report on one job.
type result struct {
	task
	p       *provider
	derr    *DeliveryError // nil: sent
	reply   string         // the server's reply to the end of DATA
	release bool           // not tried: give the job back untouched
	at      time.Time
	// later: not tried; due again then (its recipient's domain wants a
	// slower pace). No attempt is counted.
	later time.Time
	// skip: not tried; the address went on the suppression list.
	skip *queue.Suppression
}

// run is the state of one Run or Work.
type run struct {
	e       *Engine
	single  *campaign       // Run: the one campaign; nil for Work
	hard    context.Context // cancelled: abort sends in flight
	stop    context.Context // cancelled: take no more jobs
	halt    context.CancelCauseFunc
	jobs    chan task
	results chan result
	settled chan struct{} // a batch was settled: the dispatcher may look again
	added   chan struct{} // Work: a campaign was added
	senders atomic.Int64
	// weightEpoch is when the current weight epoch began (unix ns).
	weightEpoch atomic.Int64

	mu      sync.Mutex
	active  []*campaign          // delivered now, in round-robin order
	retired []*campaign          // dropped, perhaps still holding leases
	broken  map[string]string    // Work: campaigns that cannot be loaded, and why
	quiet   map[string]time.Time // Work: finished or cancelled campaigns, looked at again from then
	rr      int                  // round-robin start
}

// Run delivers the configuration's planned campaign until every job is
// final, soft is cancelled (sends in flight finish; ErrInterrupted) or
// hard is cancelled (connections are cut). It returns a *StoppedError when
// it cannot go on: every provider's circuit is open, the queue is out of
// reach, or the campaign was paused or cancelled.
func (e *Engine) Run(soft, hard context.Context) (Summary, error) {
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
	return e.deliver(soft, hard, newCampaign(id, camp.Header, e.content))
}

// Work delivers every active campaign in the queue, sharing the providers
// fairly between them, until soft is cancelled (ErrInterrupted; sends in
// flight finish and buffered jobs go back) or it cannot go on
// (*StoppedError: every provider's circuit is open, or the queue is out of
// reach). Campaigns planned while it runs are picked up within statusPoll;
// a paused or cancelled one is dropped within statusPoll. A campaign's
// content is loaded when Work starts delivering it.
func (e *Engine) Work(soft, hard context.Context) (Summary, error) {
	return e.deliver(soft, hard, nil)
}

func (e *Engine) deliver(soft, hard context.Context, single *campaign) (Summary, error) {
	start := time.Now()
	if err := e.seedQuotas(hard, start); err != nil {
		return Summary{}, err
	}
	stop, halt := context.WithCancelCause(soft)
	defer halt(nil)
	// A hard stop is a stop too, even without the soft one.
	defer context.AfterFunc(hard, func() { halt(ErrInterrupted) })()
	r := &run{
		e: e, single: single, hard: hard, stop: stop, halt: halt,
		jobs:    make(chan task, maxBatch),
		results: make(chan result, 2*maxBatch),
		settled: make(chan struct{}, 1),
		added:   make(chan struct{}, 1),
		broken:  map[string]string{},
		quiet:   map[string]time.Time{},
	}
	if single != nil {
		if c, err := e.q.Counts(hard, single.id); err == nil {
			single.counts.Store(&c)
			e.counts.Store(&c)
		}
		r.add(single)
	} else {
		r.refresh()
	}
	var work sync.WaitGroup
	for _, p := range e.providers {
		for i := range p.cfg.Connections {
			r.senders.Add(1)
			p.senders.Add(1)
			holder := fmt.Sprintf("%s/%d", e.holder, i)
			work.Go(func() { r.sender(p, holder) })
		}
	}
	work.Go(r.dispatch)
	settler := make(chan struct{})
	go func() { defer close(settler); r.settle() }()
	renewer := make(chan struct{})
	go func() { defer close(renewer); r.renew(settler) }()
	go r.renewSlots(settler)
	go r.track(settler)
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
		if p.quota.Limit() == 0 {
			continue
		}
		n, err := e.q.Usage(ctx, p.cfg.Name, now.Add(-24*time.Hour))
		if err != nil {
			return fmt.Errorf("provider %s: daily usage: %w", p.cfg.Name, err)
		}
		// Conservative: counted as recent. A shared quota that already
		// counts takes no seed.
		if err := p.quota.Seed(ctx, now.Add(-23*time.Hour), n); err != nil {
			return fmt.Errorf("provider %s: %w", p.cfg.Name, err)
		}
	}
	return nil
}

// add starts delivering c.
func (r *run) add(c *campaign) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active = append(r.active, c)
	select {
	case r.added <- struct{}{}:
	default:
	}
}

// drop stops delivering c: buffered jobs go back, sends in flight finish
// and are settled.
func (r *run) drop(c *campaign) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.gone.Swap(true) {
		return
	}
	r.active = slices.DeleteFunc(r.active, func(a *campaign) bool { return a == c })
	r.retired = append(r.retired, c)
}

// activeCampaign is the campaign being delivered under id, or nil.
func (r *run) activeCampaign(id string) *campaign {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.active {
		if c.id == id {
			return c
		}
	}
	return nil
}

// rotation is the active campaigns, starting one further each call.
func (r *run) rotation() []*campaign {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.active)
	if n == 0 {
		return nil
	}
	r.rr = (r.rr + 1) % n
	return append(slices.Clone(r.active[r.rr:]), r.active[:r.rr]...)
}

// campaigns is every campaign that may hold leases: the active ones and
// the dropped ones still settling; dropped ones that hold nothing are
// forgotten.
func (r *run) campaigns() []*campaign {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retired = slices.DeleteFunc(r.retired, func(c *campaign) bool { return len(c.holding()) == 0 })
	return append(slices.Clone(r.active), r.retired...)
}

// dispatch leases jobs and hands them to the senders until the run stops
// (or, for Run, the campaign is complete); it owns r.jobs. Each round
// leases an equal share from every active campaign, so campaigns share the
// providers fairly.
func (r *run) dispatch() {
	defer close(r.jobs)
	ctx := context.WithoutCancel(r.stop)
	var outage queueOutageClock
	for {
		if r.stop.Err() != nil {
			r.drain()
			return
		}
		// Top the buffer up to about a second of work, in equal shares
		// of the active campaigns: a campaign planned now, or a pause, is
		// not queued behind more, and the senders alternate between
		// campaigns in small steps.
		if !r.anyUsable() {
			// Every provider waits for its circuit to close (a spent
			// quota): the jobs go back for other workers meanwhile.
			r.drain()
			sleepCtx(r.stop, time.Second)
			continue
		}
		cs := r.rotation()
		n := min(r.batchSize(), cap(r.jobs)) - len(r.jobs)
		if n < max(1, len(cs)) || n < min(r.batchSize(), cap(r.jobs))/8 {
			t := time.NewTimer(10 * time.Millisecond)
			select {
			case <-t.C:
			case <-r.stop.Done():
			}
			t.Stop()
			continue
		}
		leased := 0
		for _, c := range cs {
			jobs, err := r.e.q.Lease(ctx, c.id, time.Now(), max(1, n/len(cs)), r.e.leaseTTL)
			if err != nil {
				if r.vanished(c.id, err) {
					break
				}
				if !outage.failed(r, "lease", err) {
					continue
				}
				break
			}
			c.hold(jobs)
			checked := time.Now()
			jobs, err = r.unsuppressed(ctx, c, jobs)
			if err != nil {
				// The jobs went back untried; wait as for any outage.
				if outage.failed(r, "suppression list", err) {
					break
				}
				sleepCtx(r.stop, outage.delay())
				continue
			}
			outage.ok()
			leased += len(jobs)
			for i, j := range jobs {
				select {
				case r.jobs <- task{c, j, checked}:
				case <-r.stop.Done():
					for _, rest := range jobs[i:] {
						r.results <- result{task: task{c: c, job: rest}, release: true}
					}
					r.drain()
					return
				}
			}
		}
		if leased > 0 {
			continue
		}
		wait := time.Second
		if c := r.single; c != nil {
			counts, err := r.e.q.Counts(ctx, c.id)
			if err != nil {
				if !r.vanished(c.id, err) {
					outage.failed(r, "counts", err)
				}
			} else if counts.Open() == 0 {
				return // every job is final
			} else if t, ok, err := r.e.q.NextDue(ctx, c.id); err == nil && ok && counts.Leased == 0 {
				wait = max(min(wait, time.Until(t)), time.Millisecond)
				r.e.setNote(fmt.Sprintf("%d retries wait, next at %s", counts.Retry, t.Format("15:04:05")))
			}
		}
		if outage.since != (time.Time{}) {
			wait = outage.delay()
		}
		timer := time.NewTimer(wait)
		select {
		case <-r.settled:
		case <-r.added:
		case <-timer.C:
		case <-r.stop.Done():
		}
		timer.Stop()
	}
}

// unsuppressed returns the jobs whose address is not on the campaign's
// suppression list; the others are settled as Suppressed. The list is read
// as jobs are leased, for the batch; a sender reads it again for a job that
// waited longer than suppressionRecheck since (recheck), so no message goes
// out more than that after its address went on the list. When the list
// cannot be read, the jobs go back untried.
func (r *run) unsuppressed(ctx context.Context, c *campaign, jobs []queue.Job) ([]queue.Job, error) {
	if len(jobs) == 0 {
		return jobs, nil
	}
	keys := make([]string, len(jobs))
	for i, j := range jobs {
		keys[i] = j.Key
	}
	supp, err := r.e.q.Suppressed(ctx, c.list, keys...)
	if err != nil {
		for _, j := range jobs {
			r.results <- result{task: task{c: c, job: j}, release: true}
		}
		return nil, err
	}
	if len(supp) == 0 {
		return jobs, nil
	}
	keep := jobs[:0:0]
	for _, j := range jobs {
		if e, ok := supp[j.Key]; ok {
			r.results <- result{task: task{c: c, job: j}, skip: &e}
			continue
		}
		keep = append(keep, j)
	}
	return keep, nil
}

// queueOutageClock tracks how long the queue has been out of reach: a
// dropped connection is retried with backoff; past queueOutage the run
// stops (its leases expire and the jobs go to other workers or the next
// run).
type queueOutageClock struct {
	since time.Time
	n     int
}

// failed records a failure and reports whether the run was halted.
func (o *queueOutageClock) failed(r *run, what string, err error) bool {
	if o.since.IsZero() {
		o.since = time.Now()
		r.e.log.Warn("queue out of reach; retrying", "step", what, "error", err)
	}
	o.n++
	if time.Since(o.since) > queueOutage {
		r.halt(&StoppedError{Reason: fmt.Sprintf("queue: %s: %v (out of reach for %s)", what, err, queueOutage)})
		return true
	}
	return false
}

func (o *queueOutageClock) ok() { o.since, o.n = time.Time{}, 0 }

func (o *queueOutageClock) delay() time.Duration {
	return backoff(o.n, 50*time.Millisecond, 5*time.Second)
}

// renew extends the leases the run holds every third of the lease TTL,
// until done is closed.
func (r *run) renew(done <-chan struct{}) {
	every(r.e.leaseTTL/3, done, func() {
		for _, c := range r.campaigns() {
			jobs := c.holding()
			if len(jobs) == 0 {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
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
				if c.unhold(seq, tokens[seq]) {
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
			ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
			if err := p.slots.Renew(ctx, time.Now()); err != nil {
				r.e.log.Warn("cannot renew connection slots", "provider", p.cfg.Name, "error", err)
			}
			cancel()
		}
	})
}

// track follows the campaigns' status every statusPoll until done is
// closed. Run stops when its campaign is paused or cancelled; Work drops
// such campaigns and picks up new ones.
func (r *run) track(done <-chan struct{}) {
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
		if r.single == nil {
			r.refresh()
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		c, err := r.e.q.Campaign(ctx, r.single.id)
		cancel()
		if r.vanished(r.single.id, err) {
			return
		}
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

// refresh brings Work's set of campaigns up to date: active campaigns
// with jobs to deliver are loaded, paused, cancelled and finished ones
// dropped.
func (r *run) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	ids, err := r.e.q.Campaigns(ctx)
	if err != nil {
		r.e.log.Warn("cannot list campaigns", "error", err)
		return
	}
	var total queue.Counts
	now := time.Now()
	for _, id := range ids {
		if now.Before(r.quiet[id]) {
			continue
		}
		delete(r.quiet, id)
		rec, err := r.e.q.Campaign(ctx, id)
		if err != nil {
			if r.lostInRefresh(id, err) {
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
				r.quiet[id] = now.Add(24 * time.Hour) // final
			}
			continue
		}
		counts, err := r.e.q.Counts(ctx, id)
		if err != nil {
			if r.lostInRefresh(id, err) {
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
				r.quiet[id] = now.Add(finishedPoll)
			}
			continue
		}
		total = addCounts(total, counts)
		if c == nil {
			if c = r.load(ctx, id, rec.Header); c == nil {
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
func (r *run) load(ctx context.Context, id string, header []string) *campaign {
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
		if r.broken[id] != err.Error() {
			r.broken[id] = err.Error()
			r.e.log.Error("cannot deliver campaign", "campaign", id, "error", err)
		}
		return nil
	}
	delete(r.broken, id)
	r.e.log.Info("delivering campaign", "campaign", id)
	return newCampaign(id, header, c)
}

func addCounts(a, b queue.Counts) queue.Counts {
	for s := queue.Pending; s <= queue.Cancelled; s++ {
		a.Add(s, b.Get(s))
	}
	return a
}

// anyUsable reports whether some provider's circuit is closed.
func (r *run) anyUsable() bool {
	now := time.Now()
	for _, p := range r.e.providers {
		if p.state(now) == "" {
			return true
		}
	}
	return false
}

// batchSize leases no more than the providers can send in about a second.
func (r *run) batchSize() int {
	total := 0.0
	for _, p := range r.e.providers {
		if p.cfg.Rate == 0 {
			return maxBatch
		}
		total += p.cfg.Rate
	}
	return max(1, min(maxBatch, int(total)))
}

// drain gives back every job still buffered.
func (r *run) drain() {
	for {
		select {
		case t := <-r.jobs:
			r.results <- result{task: t, release: true}
		default:
			return
		}
	}
}

// settle records outcomes in batches, one transaction per campaign, and
// keeps the progress counters. A batch the queue cannot take is kept and
// tried again with backoff: dropping it would send those messages twice.
func (r *run) settle() {
	type pending struct {
		batch    []queue.Settlement
		releases []queue.Job
	}
	var (
		byCampaign = map[*campaign]*pending{}
		size       int
		tick       = time.NewTicker(settleEvery)
		outage     queueOutageClock
	)
	defer tick.Stop()
	flushOne := func(c *campaign, p *pending) error {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		defer cancel()
		if len(p.batch) > 0 {
			lost, err := r.e.q.Settle(ctx, c.id, p.batch)
			if err != nil {
				return err
			}
			if len(lost) > 0 {
				r.e.log.Warn("outcomes for jobs whose lease had expired were dropped", "campaign", c.id, "jobs", len(lost))
			}
			for _, s := range p.batch {
				c.unhold(s.Seq, s.Lease)
			}
			p.batch = p.batch[:0]
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
		if r.single != nil {
			if counts, err := r.e.q.Counts(ctx, c.id); err == nil {
				c.counts.Store(&counts)
				r.e.counts.Store(&counts)
				r.e.obs.Depth(c.id, counts)
			}
		}
		return nil
	}
	var retryAt time.Time // while the queue is out of reach: next attempt
	flush := func(final bool) {
		for {
			if !final && time.Now().Before(retryAt) {
				return
			}
			var err error
			for c, p := range byCampaign {
				if err = flushOne(c, p); err != nil {
					if r.vanished(c.id, err) {
						// Nowhere to record them: the run stops.
						delete(byCampaign, c)
						err = nil
						continue
					}
					break
				}
				delete(byCampaign, c)
			}
			if err == nil {
				size, retryAt = 0, time.Time{}
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
				}
				clear(byCampaign)
				size = 0
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
	for {
		select {
		case res, ok := <-r.results:
			if !ok {
				flush(true)
				return
			}
			p := byCampaign[res.c]
			if p == nil {
				p = &pending{}
				byCampaign[res.c] = p
			}
			size++
			if res.release {
				p.releases = append(p.releases, res.job)
				continue
			}
			var s queue.Settlement
			switch {
			case res.skip != nil:
				s = queue.Settlement{Seq: res.job.Seq, Lease: res.job.Lease, State: queue.Suppressed, Reply: queue.SuppressedReply(*res.skip)}
			case !res.later.IsZero():
				s = queue.Settlement{Seq: res.job.Seq, Lease: res.job.Lease, State: queue.Retry, At: res.later, Reply: res.reply}
			default:
				s = res.c.content.settlement(res.job, res.p, res.derr, res.reply, res.at)
				if res.derr != nil && res.derr.Domain && s.State == queue.Retry {
					// The domain throttled us: due when its cool-down ends.
					s.At = res.at.Add(r.e.cfg.DomainPolicy(domainOf(res.job.Key)).Cooldown.Duration)
				}
			}
			r.count(res, s)
			p.batch = append(p.batch, s)
			if size >= settleBatch {
				flush(false)
			}
		case <-tick.C:
			if size > 0 {
				flush(false)
			}
		}
	}
}

// count updates the progress counters and the observer.
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
	case queue.Suppressed:
		pr.skipped.Add(1)
	}
	if res.derr != nil && res.derr.Class == ClassAmbiguous {
		pr.ambiguous.Add(1)
	}
}

// notePolicy counts an attempted message of c and pauses the campaign when
// too many meet a policy rejection. Senders call it as each reply arrives,
// so the pause is not late by a settle batch.
func (r *run) notePolicy(c *campaign, derr *DeliveryError) {
	attempted := c.attempted.Add(1)
	if derr == nil || derr.Class != ClassPolicy {
		return
	}
	policy := c.policy.Add(1)
	spec := c.content.spec
	if attempted < int64(spec.PolicyMinimum) || float64(policy)/float64(attempted) < spec.PolicyThreshold || c.gone.Load() {
		return
	}
	reason := fmt.Sprintf("%d of %d messages were rejected for policy reasons (last: %s); fix the cause, then run again", policy, attempted, derr.Reply())
	if r.single != nil {
		if r.stop.Err() != nil {
			return
		}
		r.halt(&StoppedError{Reason: "campaign paused: " + reason}) // first: no sender takes another job
	} else {
		r.drop(c)
	}
	r.e.log.Error("pausing the campaign", "campaign", c.id, "reason", reason)
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := r.e.q.SetStatus(ctx, c.id, queue.Paused, reason); err != nil {
		r.e.log.Error("cannot pause the campaign", "campaign", c.id, "error", err)
	}
}
