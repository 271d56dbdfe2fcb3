package engine

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/heraldmail/herald/queue"
)

const (
	maxBatch       = 2048                   // jobs per Lease and per buffer, at most
	minBatch       = 64                     // the buffer's size before the senders' pace is known
	leaseAhead     = 100 * time.Millisecond // the buffer holds about this much sending
	settleBatch    = 512                    // settlements per transaction
	reconnectTries = 3                      // same job, fresh connection, before it goes back to the queue
	dialTries      = 8                      // consecutive failed dials before a provider is given up
	domainWaitMax  = 100 * time.Millisecond // longer waits for a domain's pace settle the job as a retry
	weightSlack    = 8                      // messages a provider may run ahead of its weight
	weightPeriod   = time.Second            // the weights hold within each such period
	// contendedPerConnection caps per_connection while other processes
	// wait for a connection slot.
	contendedPerConnection = 200
	// lossesToStop is how many jobs in a row may meet connections lost
	// before their data (each after reconnectTries fresh connections)
	// before the provider is stopped for the run.
	lossesToStop = 8
)

// campaign is one campaign being delivered by a run: its content and the
// leases the run holds. Safe for concurrent use.
type campaign struct {
	id      string
	header  []string
	content *content
	list    string // suppression list

	heldMu sync.RWMutex      // senders read (holds) at every message
	held   map[uint64]uint64 // leases held: seq → token
	// settling counts the settler's commits in progress per seq: the
	// queue may already show such a job settled while it is still held.
	settling map[uint64]int

	policy, bounced, attempted atomic.Int64
	// gone is set when the run stops delivering the campaign (paused,
	// cancelled, finished): jobs still buffered go back untouched.
	gone   atomic.Bool
	counts atomic.Pointer[queue.Counts]
}

func newCampaign(id string, header []string, c *content) *campaign {
	cp := &campaign{id: id, header: header, content: c, list: SuppressionList(c.comp.from.Address), held: map[uint64]uint64{}, settling: map[uint64]int{}}
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
	return c.forgetHeld(seq, token)
}

// unholdSettled is unhold for each settlement of a committed batch,
// under one lock.
func (c *campaign) unholdSettled(batch []queue.Settlement) {
	c.heldMu.Lock()
	defer c.heldMu.Unlock()
	for _, s := range batch {
		c.forgetHeld(s.Seq, s.Lease)
	}
}

// forgetHeld is unhold's work; the caller holds heldMu.
func (c *campaign) forgetHeld(seq, token uint64) bool {
	if t, ok := c.held[seq]; ok && t == token {
		delete(c.held, seq)
		return true
	}
	return false
}

// committing marks seqs whose outcome the settler is recording (begin)
// or has recorded (end).
func (c *campaign) committing(seqs []uint64, begin bool) {
	c.heldMu.Lock()
	defer c.heldMu.Unlock()
	for _, seq := range seqs {
		if begin {
			c.settling[seq]++
		} else if c.settling[seq]--; c.settling[seq] <= 0 {
			delete(c.settling, seq)
		}
	}
}

// lostLease forgets a lease the queue no longer knows as ours, unless the
// settler is recording its outcome right now (then the queue shows it
// settled, not lost), and says whether it did.
func (c *campaign) lostLease(seq, token uint64) bool {
	c.heldMu.Lock()
	defer c.heldMu.Unlock()
	if t, ok := c.held[seq]; ok && t == token && c.settling[seq] == 0 {
		delete(c.held, seq)
		return true
	}
	return false
}

// holds reports whether the run still holds this lease: one lost to
// another worker (it expired, and renew learnt so) must not be sent.
func (c *campaign) holds(seq, token uint64) bool {
	c.heldMu.RLock()
	defer c.heldMu.RUnlock()
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

// resultKind names what a sender or the leaser reports about a job.
type resultKind uint8

const (
	// released: not tried; the job goes back to pending untouched.
	released resultKind = iota + 1
	// settled: s records the job's outcome (tried, put off for its
	// domain's pace, or skipped for the suppression list).
	settled
)

// result is a report on one job for the settler.
type result struct {
	task
	kind resultKind
	s    queue.Settlement // settled
	// dup: the message may have been delivered although no reply said so.
	dup bool
	// ack, if set, is told when s is durable (the queue keeps no journal:
	// the sender waits for the group commit before its next data).
	ack *ack
}

// ack tells a sender that its settlement was committed (ok) or that it
// never will be (the queue is out of reach and the run stops).
type ack struct {
	done chan struct{}
	ok   bool
}

func newAck() *ack { return &ack{done: make(chan struct{})} }

func (a *ack) resolve(ok bool) {
	a.ok = ok
	close(a.done)
}

// run is the state of one Run or Work.
type run struct {
	e       *Engine
	mode    mode
	hard    context.Context // cancelled: abort sends in flight
	stop    context.Context // cancelled: take no more jobs
	halt    context.CancelCauseFunc
	jobs    chan task
	results chan result
	settled chan struct{} // a batch was settled: the leaser may look again
	added   chan struct{} // a campaign was added
	senders atomic.Int64
	// connected counts the senders with an open connection: those that
	// may wait for a commit.
	connected atomic.Int64
	// journal, when the queue keeps one, makes an outcome durable at once.
	journal Journal
	// journalFailed: a note was refused (said once; the group commit
	// serves from then on).
	journalFailed atomic.Bool
	// weightEpoch is when the current weight epoch began (unix ns).
	weightEpoch atomic.Int64

	mu      sync.Mutex
	active  []*campaign // delivered now, in round-robin order
	retired []*campaign // dropped, perhaps still holding leases
	rr      int         // round-robin start
}

// Journal is an optional ability of a Queue (the embedded queue has it):
// Note makes one settlement durable against a crash of this process at
// once, well before the batch that Settle records (and fsyncs) it in. A
// queue restarted after a crash applies the settlements noted and not yet
// settled before it hands out any lease.
type Journal interface {
	Note(campaign string, s queue.Settlement) error
}

// Run delivers the configuration's planned campaign until every job is
// final, soft is cancelled (sends in flight finish; ErrInterrupted) or
// hard is cancelled (connections are cut). It returns a *StoppedError when
// it cannot go on: every provider's circuit is open, the queue is out of
// reach, or the campaign was paused or cancelled.
func (e *Engine) Run(soft, hard context.Context) (Summary, error) {
	return e.RunPlanning(soft, hard, nil)
}

// RunPlanning is Run on a campaign that may still be being planned: the
// run does not end for want of jobs until planning is closed (nil: it is
// done). herald send delivers while the rest of the file is planned.
func (e *Engine) RunPlanning(soft, hard context.Context, planning <-chan struct{}) (Summary, error) {
	id := e.cfg.Campaign.ID
	camp, err := e.q.Campaign(hard, id)
	if err != nil {
		return Summary{}, fmt.Errorf("campaign %s: %w", id, err)
	}
	switch camp.Status {
	case queue.CampaignCancelled:
		return Summary{}, &InputError{fmt.Errorf("campaign %s was cancelled", id)}
	case queue.Paused:
		// Paused by an operator (herald pause) or by the policy brake:
		// only herald resume lets it go on, never a run that was started
		// again, perhaps by a cron job.
		return Summary{}, &PausedError{ID: id, Reason: camp.Reason}
	}
	return e.deliver(soft, hard, &oneCampaign{c: newCampaign(id, camp.Header, e.content), planning: planning})
}

// Work delivers every active campaign in the queue, sharing the providers
// fairly between them, until soft is cancelled (ErrInterrupted; sends in
// flight finish and buffered jobs go back) or it cannot go on
// (*StoppedError: every provider's circuit is open, or the queue is out of
// reach). Campaigns planned while it runs are picked up within Timing.StatusPoll;
// a paused or cancelled one is dropped within Timing.StatusPoll. A campaign's
// content is loaded when Work starts delivering it.
func (e *Engine) Work(soft, hard context.Context) (Summary, error) {
	return e.deliver(soft, hard, &allCampaigns{broken: map[string]string{}, quiet: map[string]time.Time{}})
}

// deliver owns a run: every part runs in one errgroup, and deliver returns
// once the last outcome is recorded.
func (e *Engine) deliver(soft, hard context.Context, m mode) (Summary, error) {
	start := time.Now()
	if err := e.seedQuotas(hard, start); err != nil {
		return Summary{}, err
	}
	stop, halt := context.WithCancelCause(soft)
	defer halt(nil)
	// A hard stop is a stop too, even without the soft one.
	defer context.AfterFunc(hard, func() { halt(ErrInterrupted) })()
	r := &run{
		e: e, mode: m, hard: hard, stop: stop, halt: halt,
		jobs:    make(chan task, maxBatch),
		results: make(chan result, 2*maxBatch),
		settled: make(chan struct{}, 1),
		added:   make(chan struct{}, 1),
	}
	r.journal, _ = e.q.(Journal)
	for _, p := range e.providers {
		p.bind(hard)
	}
	m.start(hard, r)

	var g errgroup.Group
	// The producers report results; the settler, renewer and tracker run
	// until the last result is recorded.
	var producers sync.WaitGroup
	for _, p := range e.providers {
		for i := range p.cfg.Connections {
			r.senders.Add(1)
			p.senders.Add(1)
			holder := fmt.Sprintf("%s/%d", e.holder, i)
			producers.Go(func() { r.sender(p, holder) })
		}
	}
	producers.Go(r.lease)
	recorded := make(chan struct{})
	g.Go(func() error {
		defer close(recorded)
		r.settle()
		return nil
	})
	g.Go(func() error { r.renew(recorded); return nil })
	g.Go(func() error { r.renewSlots(recorded); return nil })
	g.Go(func() error { r.track(recorded); return nil })
	g.Go(func() error {
		producers.Wait()
		close(r.results)
		return nil
	})
	g.Wait()

	sum := Summary{Progress: e.Progress(), Elapsed: time.Since(start)}
	switch {
	case context.Cause(stop) != nil && soft.Err() == nil && hard.Err() == nil:
		return sum, context.Cause(stop)
	case soft.Err() != nil || hard.Err() != nil:
		return sum, ErrInterrupted
	}
	return sum, nil
}

// storeCtx bounds one call to the queue or the shared limits. It is
// derived from the hard stop, so that a hard stop ends it.
func (r *run) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.hard, r.e.t.StoreTimeout)
}

// recordCtx bounds a call that records outcomes: what was sent is
// recorded even after a hard stop, within Timing.StoreTimeout.
func (r *run) recordCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.hard), r.e.t.StoreTimeout)
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

func addCounts(a, b queue.Counts) queue.Counts {
	for s := queue.Pending; s <= queue.Cancelled; s++ {
		a.Add(s, b.Get(s))
	}
	return a
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
