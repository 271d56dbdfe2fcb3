package boltq

import (
	"bytes"
	"cmp"
	"context"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heraldmail/herald/queue"
)

// Leases are kept in memory, not in the store. Only one process holds the
// store, and when it ends every lease it held ends with it: a lease is
// the process's own business while it lives. What a later Open must know
// of them is in the outcome journal instead: Lease appends one grant
// record for a whole batch (a copy into the mapped segment) before the
// jobs are handed out; Release appends a release record. A leased job's
// record in the store stays as it was (Pending, or Retry with its timer)
// until Settle writes its outcome there, the lease token with it; the
// store's counts likewise. So a job costs the store one write from
// enqueue to outcome, not three, and a Lease no transaction that writes.
//
// Open replays the journal: a settlement applies when its lease is the
// last one granted on its job there (one of a store format 1 journal,
// without grants, when the store holds its lease, as before), and each
// job granted and not settled or released is returned to pending and
// counted in Recovered, as the leases a store of format 1 held were.
//
// The frontier (keyFrontier) is kept in memory too, and stored with
// Settle's commits, after the journal is synced: a job before the stored
// frontier that is still Pending is either in the pending bucket, or
// leased with its grant in the journal on disk (Open puts it in the
// bucket). Release puts a job the frontier has passed in the pending
// bucket before its lease ends.

// Where a held job is in the store, which says what Settle removes: the
// job's entry in the pending bucket, or its timer.
const (
	whereLegacy   = iota // the store holds the lease (format 1 journals): takeHeld checks it
	whereFrontier        // Pending, found by the frontier's scan: no entry to remove
	wherePending         // Pending, with an entry in the pending bucket
	whereTimer           // Retry, with its timer
	whereStored          // replay: whatever the stored state says
)

// hold is one lease held by this process.
type hold struct {
	lease    uint64
	until    time.Time
	where    byte
	settling bool     // in a Settle's transaction: not leased again, not counted as Leased
	seg      *segment // the journal segment with its grant
	// prev is the segment of the lease's first grant, when it expired and
	// was granted again: kept until the lease ends, so that a grant of
	// the job is on disk at all times (the new one may not be yet).
	prev *segment
}

// held is one campaign's leases, and its lease token and frontier, which
// are the store's when the campaign is first leased and this process's
// from then on.
type held struct {
	jobs     map[uint64]hold
	token    uint64 // the last lease token granted
	frontier uint64
	pending  int64 // held jobs (not settling) Pending in the store
	retry    int64 // and Retry
	soonest  time.Time
}

// heldOf returns the campaign's leases, loading its token and frontier
// from c the first time; the caller holds q.leaseMu.
func (q *Queue) heldOf(id string, c *campaign) *held {
	h := q.leases[id]
	if h == nil {
		h = &held{jobs: map[uint64]hold{}, token: u64(c.meta.Get(keyLease)), frontier: c.frontier}
		q.leases[id] = h
	}
	return h
}

// due notes that a lease comes due at t.
func (h *held) due(t time.Time) {
	if h.soonest.IsZero() || t.Before(h.soonest) {
		h.soonest = t
	}
}

// count moves a held job in or out of the Leased count (d: +1 or -1).
func (h *held) count(x hold, d int64) {
	if x.where == whereTimer {
		h.retry += d
	} else {
		h.pending += d
	}
}

// candidate is a job Lease is about to hand out.
type candidate struct {
	job   queue.Job
	where byte
	at    time.Time // for the due ones: since when
	old   *hold     // a lease that expired, granted again
}

// Lease hands out due retries and expired leases, oldest first, then
// pending jobs in Seq order (the pending bucket's, which holds the jobs
// given back, then the frontier's). It reads the store and writes the
// grant to the journal.
func (q *Queue) Lease(_ context.Context, id string, now time.Time, n int, ttl time.Duration) ([]queue.Job, error) {
	q.leaseMu.Lock()
	defer q.leaseMu.Unlock()
	var (
		h        *held
		cands    []candidate
		frontier uint64
	)
	err := q.db.View(func(tx *bolt.Tx) error {
		c, rec, err := q.campaignRecord(tx, id)
		if err != nil {
			return err
		}
		if rec.Status != queue.Active || n <= 0 {
			return nil
		}
		h = q.heldOf(id, c)
		frontier = h.frontier
		open := c.counts.Pending + c.counts.Retry
		cands = make([]candidate, 0, min(int64(n), max(open, 0)))
		load := func(seq uint64) (queue.Job, error) { return c.job(be(seq)) }
		// The due ones: leases that expired and retries whose time came,
		// oldest first.
		if !h.soonest.IsZero() && !h.soonest.After(now) {
			h.soonest = time.Time{}
			for seq, x := range h.jobs {
				if x.settling {
					continue
				}
				if x.until.After(now) {
					h.due(x.until)
					continue
				}
				j, err := load(seq)
				if err != nil {
					return err
				}
				cands = append(cands, candidate{job: j, where: x.where, at: x.until, old: &x})
				h.due(x.until) // due still, should it not be among the n taken
			}
		}
		cur := c.timers.Cursor()
		limit := timerKey(now, ^uint64(0))
		timers := 0
		for k, _ := cur.First(); k != nil && timers < n && bytes.Compare(k, limit) <= 0; k, _ = cur.Next() {
			seq := u64(k[8:])
			if _, ok := h.jobs[seq]; ok {
				continue
			}
			j, err := load(seq)
			if err != nil {
				return err
			}
			cands = append(cands, candidate{job: j, where: whereTimer, at: decodeTime(u64(k[:8]))})
			timers++
		}
		slices.SortStableFunc(cands, func(a, b candidate) int {
			if c := a.at.Compare(b.at); c != 0 {
				return c
			}
			return cmp.Compare(a.job.Seq, b.job.Seq)
		})
		cands = cands[:min(len(cands), n)]
		// Then the pending bucket: jobs before the frontier, and, after
		// an Open, some past the stored one (given back, or added, behind
		// the frontier of the process before): inBucket, which the
		// frontier's scan then passes. It runs only when every entry was
		// seen.
		var inBucket map[uint64]bool
		pc := c.pending.Cursor()
		for k, _ := pc.First(); k != nil && len(cands) < n; k, _ = pc.Next() {
			seq := u64(k)
			if seq >= frontier {
				if inBucket == nil {
					inBucket = map[uint64]bool{}
				}
				inBucket[seq] = true
			}
			if _, ok := h.jobs[seq]; ok {
				continue
			}
			j, err := load(seq)
			if err != nil {
				return err
			}
			if j.State != queue.Pending {
				continue // an entry its job outlived
			}
			cands = append(cands, candidate{job: j, where: wherePending})
		}
		// Then the jobs from the frontier on, which have no entry in the
		// pending bucket: all after the ones in it. Decoded as they are
		// passed: no second look-up each.
		if c.compact() && len(cands) < n {
			jc := c.jobs.Cursor()
			for k, v := jc.Seek(be(frontier)); k != nil && len(cands) < n; k, v = jc.Next() {
				seq := u64(k)
				if _, held := h.jobs[seq]; stateOf(v) == queue.Pending && !inBucket[seq] && !held {
					j, err := decodeJob(v, c.enqueued)
					if err != nil {
						return err
					}
					j.Seq = seq
					cands = append(cands, candidate{job: j, where: whereFrontier})
				}
				frontier = seq + 1
			}
		}
		return nil
	})
	if err != nil || len(cands) == 0 {
		if h != nil && err == nil {
			h.frontier = frontier
		}
		return nil, err
	}
	// The grant goes to the journal before the jobs go anywhere.
	seqs := make([]uint64, len(cands))
	for i, cd := range cands {
		seqs[i] = cd.job.Seq
	}
	// A lease granted again keeps its first grant's segment; a later
	// grant's goes, and the new grant stays while that one does
	// (grantWrite.ends): a replay must not find the later grant without
	// what ends it.
	var ended []*segment
	for _, cd := range cands {
		if cd.old != nil && cd.old.prev != nil {
			ended = append(ended, cd.old.seg)
		}
	}
	seg, err := q.journal.grant(id, h.token+1, seqs, ended)
	if err != nil {
		return nil, err
	}
	h.frontier = frontier
	until := now.Add(ttl)
	out := make([]queue.Job, len(cands))
	for i, cd := range cands {
		var prev *segment
		if cd.old != nil {
			h.count(*cd.old, -1)
			if prev = cd.old.prev; prev == nil {
				prev = cd.old.seg
			}
		}
		h.token++
		x := hold{lease: h.token, until: until, where: cd.where, seg: seg, prev: prev}
		h.jobs[cd.job.Seq] = x
		h.count(x, 1)
		j := cd.job
		j.State, j.Lease, j.At = queue.Leased, x.lease, until
		out[i] = j
	}
	h.due(until)
	q.journal.drop(ended)
	return out, nil
}

// Settle records the outcomes of leased jobs.
func (q *Queue) Settle(_ context.Context, id string, batch []queue.Settlement) ([]uint64, error) {
	where := make([]byte, len(batch))
	q.leaseMu.Lock()
	h := q.leases[id]
	var frontier, token uint64
	if h != nil {
		for i, s := range batch {
			if x, ok := h.jobs[s.Seq]; ok && x.lease == s.Lease && !x.settling {
				h.count(x, -1)
				x.settling = true
				h.jobs[s.Seq] = x
				where[i] = x.where
			}
		}
		frontier, token = h.frontier, h.token
	}
	q.leaseMu.Unlock()
	// What the commit stores must not run ahead of the journal on disk.
	q.journal.sync()
	var lost []uint64
	err := q.db.Update(func(tx *bolt.Tx) (err error) {
		lost, _, err = q.settleTx(tx, id, batch, where)
		if err != nil || h == nil {
			return err
		}
		c, err := q.campaign(tx, id)
		if err != nil {
			return err
		}
		if token > u64(c.meta.Get(keyLease)) {
			if err := c.meta.Put(keyLease, be(token)); err != nil {
				return err
			}
		}
		if c.compact() && frontier > c.frontier {
			return c.meta.Put(keyFrontier, be(frontier))
		}
		return nil
	})
	segs := make([]*segment, 0, 2*len(batch)) // each lease's grant and first grant
	q.leaseMu.Lock()
	for i, s := range batch {
		if where[i] == whereLegacy {
			continue
		}
		x := h.jobs[s.Seq]
		if err != nil {
			x.settling = false
			h.jobs[s.Seq] = x
			h.count(x, 1)
			h.due(x.until)
			continue
		}
		delete(h.jobs, s.Seq)
		segs = append(segs, x.seg, x.prev)
	}
	q.leaseMu.Unlock()
	if err == nil {
		q.journal.committed(id, batch, segs...)
	}
	q.trim()
	return lost, err
}

// takeGranted loads a job this process leased, whose lease Settle checked
// (or, replaying, the journal's last grant on it), and removes what
// pointed Lease to it (where). ok is false for a job already settled
// with this lease or a later one.
func (c *campaign) takeGranted(seq, lease uint64, where byte) (j queue.Job, ok bool, err error) {
	if j, ok, err = c.find(seq); !ok || err != nil {
		return j, false, err
	}
	if j.Lease >= lease && j.State != queue.Leased {
		return j, false, nil
	}
	if where == whereStored {
		switch j.State {
		case queue.Pending:
			where = wherePending // it may have an entry there: removed if so
		case queue.Retry, queue.Leased:
			where = whereTimer
		default:
			return j, false, nil
		}
	}
	switch where {
	case wherePending:
		err = c.pending.Delete(be(seq))
	case whereTimer:
		err = c.timers.Delete(timerKey(j.At, seq))
	}
	return j, true, err
}

// Release returns leased jobs to pending without counting an attempt. A
// job the frontier's scan found gets an entry in the pending bucket, as
// the frontier has passed it, before its lease ends in the journal.
func (q *Queue) Release(_ context.Context, id string, jobs []queue.Job) error {
	q.leaseMu.Lock()
	defer q.leaseMu.Unlock()
	h := q.leases[id]
	if h == nil {
		return q.known(h, id)
	}
	var (
		leases []leaseKey
		behind [][]byte // the frontier's
	)
	for _, r := range jobs {
		x, ok := h.jobs[r.Seq]
		if !ok || x.lease != r.Lease || x.settling {
			continue
		}
		leases = append(leases, leaseKey{r.Seq, r.Lease})
		if x.where == whereFrontier {
			behind = append(behind, be(r.Seq))
		}
	}
	if len(behind) > 0 {
		err := q.db.Update(func(tx *bolt.Tx) error {
			c, err := q.campaign(tx, id)
			if err != nil {
				return err
			}
			for _, seq := range behind {
				if err := c.pending.Put(seq, nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err // the leases stand, to run out or be settled
		}
	}
	segs := make([]*segment, 0, 2*len(leases))
	for _, l := range leases {
		x := h.jobs[l.seq]
		delete(h.jobs, l.seq)
		h.count(x, -1)
		segs = append(segs, x.seg, x.prev)
	}
	if len(leases) == 0 {
		return nil
	}
	return q.journal.release(id, leases, segs)
}

// Extend moves the deadline of leases still held.
func (q *Queue) Extend(_ context.Context, id string, jobs []queue.Job, until time.Time) ([]uint64, error) {
	q.leaseMu.Lock()
	defer q.leaseMu.Unlock()
	h := q.leases[id]
	var lost []uint64
	for _, r := range jobs {
		x, ok := h.lookup(r.Seq)
		if !ok || x.lease != r.Lease {
			lost = append(lost, r.Seq)
			continue
		}
		x.until = until
		h.jobs[r.Seq] = x
	}
	if h != nil && len(lost) < len(jobs) {
		h.due(until)
	}
	return lost, q.known(h, id)
}

// known returns queue.ErrNoCampaign for a campaign the store does not
// hold, where h, its leases, is nil (a campaign with leases is known).
func (q *Queue) known(h *held, id string) error {
	if h != nil {
		return nil
	}
	return q.db.View(func(tx *bolt.Tx) error {
		_, err := q.campaign(tx, id)
		return err
	})
}

// lookup returns the lease held on seq; h may be nil.
func (h *held) lookup(seq uint64) (hold, bool) {
	if h == nil {
		return hold{}, false
	}
	x, ok := h.jobs[seq]
	return x, ok
}

// NextDue is the earliest time a retry or a lease comes due.
func (q *Queue) NextDue(_ context.Context, id string) (time.Time, bool, error) {
	q.leaseMu.Lock()
	defer q.leaseMu.Unlock()
	h := q.leases[id]
	var t time.Time
	var ok bool
	err := q.db.View(func(tx *bolt.Tx) error {
		c, err := q.campaign(tx, id)
		if err != nil {
			return err
		}
		cur := c.timers.Cursor()
		for k, _ := cur.First(); k != nil; k, _ = cur.Next() {
			if _, held := h.lookup(u64(k[8:])); !held {
				t, ok = decodeTime(u64(k[:8])), true
				break
			}
		}
		return nil
	})
	if h != nil {
		for _, x := range h.jobs {
			if !x.settling && (!ok || x.until.Before(t)) {
				t, ok = x.until, true
			}
		}
	}
	return t, ok, err
}

// Counts returns the number of jobs per state.
func (q *Queue) Counts(_ context.Context, id string) (queue.Counts, error) {
	q.leaseMu.Lock()
	defer q.leaseMu.Unlock()
	var out queue.Counts
	err := q.db.View(func(tx *bolt.Tx) error {
		c, err := q.campaign(tx, id)
		if err != nil {
			return err
		}
		out = c.counts
		return nil
	})
	if h := q.leases[id]; h != nil && err == nil {
		out.Pending -= h.pending
		out.Retry -= h.retry
		out.Leased += h.pending + h.retry
	}
	return out, err
}

// Walk calls fn for every job in Seq order, in one read transaction; the
// jobs this process holds are Leased.
func (q *Queue) Walk(ctx context.Context, id string, fn func(queue.Job) error) error {
	q.leaseMu.Lock()
	var leased map[uint64]hold
	if h := q.leases[id]; h != nil {
		leased = make(map[uint64]hold, len(h.jobs))
		for seq, x := range h.jobs {
			if !x.settling {
				leased[seq] = x
			}
		}
	}
	q.leaseMu.Unlock()
	return q.db.View(func(tx *bolt.Tx) error {
		c, err := q.campaign(tx, id)
		if err != nil {
			return err
		}
		cur := c.jobs.Cursor()
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			j, err := decodeJob(v, c.enqueued)
			if err != nil {
				return err
			}
			j.Seq = u64(k)
			if x, ok := leased[j.Seq]; ok && !j.State.Final() {
				j.State, j.Lease, j.At = queue.Leased, x.lease, x.until
			}
			if err := fn(j); err != nil {
				return err
			}
		}
		return nil
	})
}
