package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/heraldmail/herald/queue"
)

// lease takes jobs from the queue and hands them to the senders until the
// run stops (or, for Run, the campaign is complete); it owns r.jobs. Each
// round leases an equal share from every active campaign, so campaigns
// share the providers fairly.
func (r *run) lease() {
	defer close(r.jobs)
	var (
		outage queueOutageClock
		pace   intake
	)
	for {
		if r.stop.Err() != nil {
			r.drain()
			return
		}
		if !r.anyUsable() {
			// Every provider waits for its circuit to close (a spent
			// quota): the jobs go back for other workers meanwhile.
			r.drain()
			sleepCtx(r.stop, time.Second)
			continue
		}
		// Top the buffer up to about leaseAhead of sending at the pace
		// the senders take jobs (no more than a second of the providers'
		// rates), in equal shares of the active campaigns: a campaign
		// planned now, or a pause, is not queued behind more, and the
		// senders alternate between campaigns in small steps. It is
		// topped up once half of it was taken: a Lease costs the queue a
		// transaction whatever it carries, so at full speed each carries
		// hundreds of jobs.
		cs := r.rotation()
		want := min(r.batchSize(), pace.target(time.Now(), len(r.jobs)))
		n := want - len(r.jobs)
		if n < max(1, len(cs)) || n < want/2 {
			sleepCtx(r.stop, 10*time.Millisecond)
			continue
		}
		leased, ok := r.leaseRound(cs, n, &outage)
		pace.handed += leased
		if !ok {
			return
		}
		if leased > 0 {
			continue
		}
		ctx, cancel := r.storeCtx()
		finished, wait, err := r.mode.idle(ctx, r)
		cancel()
		if err != nil {
			outage.failed(r, "counts", err)
		}
		if finished {
			return
		}
		if !outage.since.IsZero() {
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

// leaseRound leases up to n jobs shared between cs and hands them to the
// senders; ok is false when the run stopped while it handed them out.
func (r *run) leaseRound(cs []*campaign, n int, outage *queueOutageClock) (leased int, ok bool) {
	// Leasing is not cut by the hard stop mid-call: jobs leased are
	// handed out or given back.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.stop), r.e.t.StoreTimeout)
	defer cancel()
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
		if err := readRows(c.content.spec.Recipients, c.header, jobs); err != nil {
			for _, j := range jobs {
				r.release(task{c: c, job: j})
			}
			r.pauseFor(c, err.Error())
			continue
		}
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
		jobs = r.inWindow(c, jobs, checked)
		leased += len(jobs)
		for i, j := range jobs {
			select {
			case r.jobs <- task{c, j, checked}:
			case <-r.stop.Done():
				for _, rest := range jobs[i:] {
					r.release(task{c: c, job: rest})
				}
				r.drain()
				return leased, false
			}
		}
	}
	return leased, true
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
			r.release(task{c: c, job: j})
		}
		return nil, err
	}
	if len(supp) == 0 {
		return jobs, nil
	}
	keep := jobs[:0:0]
	for _, j := range jobs {
		if e, ok := supp[j.Key]; ok {
			r.skip(task{c: c, job: j}, e)
			continue
		}
		keep = append(keep, j)
	}
	return keep, nil
}

// inWindow returns the jobs whose sending window is open; the others are
// put off to its next opening, no attempt counted.
func (r *run) inWindow(c *campaign, jobs []queue.Job, now time.Time) []queue.Job {
	if c.content.window.Always() {
		return jobs
	}
	keep := jobs[:0:0]
	for _, j := range jobs {
		at, loc := c.content.opens(c.header, j.Fields, now)
		if at.After(now) {
			r.putOff(task{c: c, job: j}, at, "outside the sending window; "+c.content.window.Describe(at, loc))
			continue
		}
		keep = append(keep, j)
	}
	return keep
}

// release gives a job back untouched.
func (r *run) release(t task) { r.results <- result{task: t, kind: released} }

// skip settles a job whose address is on the suppression list.
func (r *run) skip(t task, e queue.Suppression) {
	r.results <- result{task: t, kind: settled, s: queue.Settlement{Seq: t.job.Seq, Lease: t.job.Lease, State: queue.Suppressed, Reply: queue.SuppressedReply(e)}}
}

// putOff settles a job, untried, as due again at at (its domain's pace
// wants it later); no attempt is counted.
func (r *run) putOff(t task, at time.Time, why string) {
	r.results <- result{task: t, kind: settled, s: queue.Settlement{Seq: t.job.Seq, Lease: t.job.Lease, State: queue.Retry, At: at, Reply: why}}
}

// drain gives back every job still buffered.
func (r *run) drain() {
	for {
		select {
		case t := <-r.jobs:
			r.release(t)
		default:
			return
		}
	}
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

// intake measures the pace at which the senders take jobs from the
// buffer, for the leaser's batches.
type intake struct {
	handed int       // jobs put in the buffer
	at     time.Time // of the last measure
	taken  int       // jobs taken from the buffer by then
	rate   float64   // jobs a second, smoothed
}

// target is how many jobs the buffer should hold now that it holds
// buffered: about leaseAhead of sending, at least minBatch, at most
// maxBatch. An empty buffer doubles it: the senders waited, so their pace
// was the leaser's, not their own.
func (in *intake) target(now time.Time, buffered int) int {
	taken := in.handed - buffered
	if dt := now.Sub(in.at); in.at.IsZero() || dt >= 4*leaseAhead {
		if !in.at.IsZero() {
			in.rate = (in.rate + float64(taken-in.taken)/dt.Seconds()) / 2
		}
		in.at, in.taken = now, taken
	}
	want := int(in.rate * leaseAhead.Seconds())
	if buffered == 0 && in.handed > 0 {
		in.rate = min(max(in.rate, float64(minBatch)/leaseAhead.Seconds())*2, float64(maxBatch)/leaseAhead.Seconds())
		want = int(in.rate * leaseAhead.Seconds())
	}
	return max(minBatch, min(maxBatch, want))
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

// queueOutageClock tracks how long the queue has been out of reach: a
// dropped connection is retried with backoff; past Timing.QueueOutage the run
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
	if time.Since(o.since) > r.e.t.QueueOutage {
		r.halt(&StoppedError{Reason: fmt.Sprintf("queue: %s: %v (out of reach for %s)", what, err, r.e.t.QueueOutage)})
		return true
	}
	return false
}

func (o *queueOutageClock) ok() { o.since, o.n = time.Time{}, 0 }

// outageRetryCeiling bounds the wait between two tries of an
// unreachable queue. A Sentinel or Cluster failover ends within seconds;
// the first try after it should come soon after, not up to five seconds
// later while senders wait for their outcomes to be recorded. A try a
// second costs the queue nothing.
const outageRetryCeiling = time.Second

func (o *queueOutageClock) delay() time.Duration {
	return backoff(o.n, 50*time.Millisecond, outageRetryCeiling)
}
