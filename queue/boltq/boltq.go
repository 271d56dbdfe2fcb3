package boltq

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterr "go.etcd.io/bbolt/errors"

	"github.com/heraldmail/herald/queue"
)

// Queue is the embedded queue: one bbolt file, one process. Safe for
// concurrent use within that process.
//
// Because only one process can hold the file, every job still leased when
// Open runs belonged to a process that died: Open returns those jobs to
// pending and Recovered reports how many. They may have been delivered just
// before the crash, so each is a possible duplicate.
type Queue struct {
	db        *bolt.DB
	trimmed   atomic.Int64 // when unmapPages last ran (unix nanoseconds)
	recovered int
	replayed  int      // outcomes applied from the journal at Open
	journal   *journal // the outcome journal (outcomes.go)

	keysMu sync.Mutex           // held by Enqueue and Recipient
	keys   map[string]*keyIndex // layoutMemKeys: by campaign (keyindex.go)

	// leaseMu guards the leases (leases.go), and is held by what reads
	// the store in the light of them, so that none sees a job that a
	// Settle has committed as still leased, or the other way round.
	leaseMu sync.Mutex
	leases  map[string]*held // by campaign
}

var _ queue.Queue = (*Queue)(nil)

var (
	bucketSuppression = []byte("suppression")
	bucketUsage       = []byte("usage")
	bucketSoft        = []byte("softbounce")
	bucketComplaints  = []byte("complaints")
	bucketStore       = []byte("store") // keyFormat
	keyFormat         = []byte("format")
	keyCampaign       = []byte("campaign")
	keyCounts         = []byte("counts")
	keyLease          = []byte("lease")
	keySpec           = []byte("spec")
	keyEnqueued       = []byte("enqueued") // the Enqueued of most jobs (encodeJob)
	keyLayout         = []byte("layout")   // layoutCompact or layoutMemKeys, or absent: the first layout
	keyFrontier       = []byte("frontier") // since layoutCompact: Lease has looked at the jobs before this Seq
	subMeta           = []byte("meta")
	subJobs           = []byte("jobs")
	subKeys           = []byte("keys")
	subPending        = []byte("pending")
	subTimers         = []byte("timers")
)

// storeFormat is the store's format as this herald writes it, kept under
// bucketStore/keyFormat. A herald refuses a store of a later format, which
// it could misread; a store of an earlier one (or without one: written
// before the marker, format 1) is read, and marked with this one when it
// is opened. A change to the store that an older herald would misread
// raises it.
//
// Format 2: leases are kept in memory and granted in the outcome journal
// (leases.go), whose records an older herald cannot read; the store no
// longer holds leases.
const storeFormat = 2

// ErrNewerStore is returned by Open for a store written by a later herald.
var ErrNewerStore = errors.New("written by a newer herald")

// checkFormat refuses a store of a later format and marks the others
// with this one.
func checkFormat(tx *bolt.Tx) error {
	b, err := tx.CreateBucketIfNotExists(bucketStore)
	if err != nil {
		return err
	}
	f := uint64(1)
	if v := b.Get(keyFormat); v != nil {
		var n int
		if f, n = binary.Uvarint(v); n <= 0 {
			return fmt.Errorf("unreadable store format %x", v)
		}
	}
	if f > storeFormat {
		return fmt.Errorf("%w (store format %d; this herald reads up to %d): run it with that herald, or use another queue.path", ErrNewerStore, f, storeFormat)
	}
	if f < storeFormat || b.Get(keyFormat) == nil {
		return b.Put(keyFormat, binary.AppendUvarint(nil, storeFormat))
	}
	return nil
}

// jobsFill is how full Enqueue fills the pages of job records: the rest
// is room for the records to grow as they are leased and settled (a lease
// token and deadline, then a reply: a third for a short one) without
// splitting the page, which would leave both halves half empty for good.
const jobsFill = 0.75

// allocSize is how much the store file grows by at a time (bbolt's
// default is 16 MB, which a small store would mostly not use).
const allocSize = 4 << 20

// Open opens or creates the store at path.
func Open(path string) (*Queue, error) { return OpenWait(path, time.Second) }

// ErrBusy is returned by OpenWait when another process holds the store.
var ErrBusy = errors.New("in use by another herald process")

// OpenWait is Open waiting at most wait for another process to let the
// store go.
func OpenWait(path string, wait time.Duration) (*Queue, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: wait, FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		if errors.Is(err, bolterr.ErrTimeout) {
			return nil, fmt.Errorf("queue store %s is %w", path, ErrBusy)
		}
		return nil, fmt.Errorf("queue store %s: %w", path, err)
	}
	db.AllocSize = allocSize
	q := &Queue{db: db, leases: map[string]*held{}}
	base := path + ".outcomes"
	var segs []int
	err = db.Update(func(tx *bolt.Tx) error {
		// Before anything is read or written.
		if err := checkFormat(tx); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketSuppression, bucketUsage, bucketSoft, bucketComplaints} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		// First the outcomes a dead process noted and had not committed:
		// their leases are still its own.
		var err error
		if q.replayed, q.recovered, segs, err = q.replayOutcomes(tx, base); err != nil {
			return err
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if !bytes.HasPrefix(name, []byte("c:")) {
				return nil
			}
			n, err := recoverLeases(b) // a store of format 1's
			q.recovered += n
			return err
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("queue store %s: %w", path, err)
	}
	next := 0
	for _, n := range segs {
		os.Remove(segmentName(base, n)) // applied and committed
		next = n + 1
	}
	if q.journal, err = openJournal(base, next); err != nil {
		db.Close()
		return nil, fmt.Errorf("queue store %s: %w", path, err)
	}
	return q, nil
}

// trimEvery is how often a store that is being written drops its pages
// from the process's address space (unmapPages): a campaign goes through
// its jobs once, so the pages it touched a second ago are seldom needed
// again soon.
const trimEvery = time.Second

// trim runs unmapPages at most every trimEvery.
func (q *Queue) trim() {
	now := time.Now().UnixNano()
	last := q.trimmed.Load()
	if now-last < int64(trimEvery) || !q.trimmed.CompareAndSwap(last, now) {
		return
	}
	q.unmapPages()
	if q.keysMu.TryLock() {
		q.dropIdleKeys("")
		q.keysMu.Unlock()
	}
}

// Replayed is the number of outcomes Open applied from the outcome
// journal: messages a process that died had sent and not yet recorded.
func (q *Queue) Replayed() int { return q.replayed }

// Recovered is the number of jobs Open found leased by a dead process and
// returned to pending.
func (q *Queue) Recovered() int { return q.recovered }

// Close closes the store.
func (q *Queue) Close() error {
	q.keysMu.Lock()
	for id := range q.keys {
		q.dropKeys(id)
	}
	q.keysMu.Unlock()
	if q.journal != nil {
		q.journal.close()
	}
	return q.db.Close()
}

func recoverLeases(cb *bolt.Bucket) (int, error) {
	c := openCampaign(cb)
	var leased [][]byte
	cur := c.timers.Cursor()
	for k, _ := cur.First(); k != nil; k, _ = cur.Next() {
		leased = append(leased, append([]byte(nil), k...))
	}
	n := 0
	for _, k := range leased {
		seq := k[8:]
		j, err := c.job(seq)
		if err != nil {
			return n, err
		}
		if j.State != queue.Leased {
			continue
		}
		if err := c.timers.Delete(k); err != nil {
			return n, err
		}
		c.move(&j, queue.Pending)
		if err := c.pend(seq); err != nil {
			return n, err
		}
		if err := c.putJob(&j); err != nil {
			return n, err
		}
		n++
	}
	return n, c.saveCounts()
}

// campaign is one campaign's buckets inside a transaction.
type campaign struct {
	meta, jobs, keys, pending, timers *bolt.Bucket
	counts                            queue.Counts
	enqueued                          uint64 // keyEnqueued: 0 until the first Enqueue
	layout                            byte   // keyLayout: 0 (the first), layoutCompact, layoutMemKeys
	frontier                          uint64 // keyFrontier
	index                             *keyIndex
}

// layoutCompact is the layout of the campaigns created since a campaign
// of a million recipients was made to cost the store a third of what it
// did. The keys bucket's values are uvarints (the Seq), not 8 bytes; and
// a job an Enqueue adds is found by Lease in the jobs bucket, from the
// frontier on (keyFrontier: every Pending job before it is in the pending
// bucket), rather than through an entry in the pending bucket each (24 MB
// more when a plan of a million ends). Campaigns created by an older
// herald keep the first layout (8-byte Seqs; every Pending job in the
// pending bucket), which is still read and written.
const layoutCompact = 2

// layoutMemKeys is layoutCompact without the keys bucket: a job is found
// by its key through an index in memory (keyindex.go). The campaigns
// herald creates now have it.
const layoutMemKeys = 3

// compact reports whether Lease finds new jobs from the frontier.
func (c *campaign) compact() bool { return c.layout >= layoutCompact }

// seqOf returns the Seq of the job whose Key is key. A campaign of
// layoutMemKeys needs its index (Queue.keysOf) in c.index.
func (c *campaign) seqOf(key string) (seq uint64, ok bool, err error) {
	if c.layout >= layoutMemKeys {
		return seqOfKey(c.index, c.jobs, key)
	}
	v := c.keys.Get([]byte(key))
	if v == nil || !c.compact() {
		return u64(v), v != nil, nil
	}
	s, n := binary.Uvarint(v)
	if n <= 0 {
		return 0, false, errCorrupt
	}
	return s, true, nil
}

// addKey records that the job seq holds key (not yet in the campaign).
func (c *campaign) addKey(key string, seq uint64) error {
	if c.layout >= layoutMemKeys {
		c.index.add(key, seq)
		return nil
	}
	if !c.compact() {
		return c.keys.Put([]byte(key), be(seq))
	}
	return c.keys.Put([]byte(key), binary.AppendUvarint(make([]byte, 0, 4), seq))
}

// pend makes the Pending job seq one Lease finds: an entry in the pending
// bucket, unless Lease's scan of the jobs is still to reach it.
func (c *campaign) pend(seq []byte) error {
	if c.compact() && u64(seq) >= c.frontier {
		return nil
	}
	return c.pending.Put(seq, nil)
}

// leaseFrontier makes c's frontier the one its leases have reached, where
// they are this process's: pend then puts a job before it in the pending
// bucket. The caller holds q.leaseMu.
func (q *Queue) leaseFrontier(c *campaign, id string) {
	if h := q.leases[id]; h != nil {
		c.frontier = max(c.frontier, h.frontier)
	}
}

func campaignBucket(id string) []byte { return []byte("c:" + id) }

func openCampaign(b *bolt.Bucket) *campaign {
	c := &campaign{meta: b.Bucket(subMeta), jobs: b.Bucket(subJobs), keys: b.Bucket(subKeys), pending: b.Bucket(subPending), timers: b.Bucket(subTimers)}
	c.counts = decodeCounts(c.meta.Get(keyCounts))
	c.enqueued = u64(c.meta.Get(keyEnqueued))
	if v := c.meta.Get(keyLayout); len(v) == 1 {
		c.layout = v[0]
	}
	c.frontier = u64(c.meta.Get(keyFrontier))
	return c
}

func (q *Queue) campaign(tx *bolt.Tx, id string) (*campaign, error) {
	b := tx.Bucket(campaignBucket(id))
	if b == nil {
		return nil, fmt.Errorf("%w: %s", queue.ErrNoCampaign, id)
	}
	return openCampaign(b), nil
}

// campaignRecord opens the campaign and reads its record.
func (q *Queue) campaignRecord(tx *bolt.Tx, id string) (*campaign, queue.Campaign, error) {
	c, err := q.campaign(tx, id)
	if err != nil {
		return nil, queue.Campaign{}, err
	}
	rec, err := c.record()
	return c, rec, err
}

func (c *campaign) record() (queue.Campaign, error) {
	var rec queue.Campaign
	err := json.Unmarshal(c.meta.Get(keyCampaign), &rec)
	return rec, err
}

// saveRecord stores the record without its Spec, which lives under keySpec.
func (c *campaign) saveRecord(rec queue.Campaign) error {
	rec.Spec = nil
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return c.meta.Put(keyCampaign, b)
}

func (c *campaign) saveCounts() error { return c.meta.Put(keyCounts, encodeCounts(c.counts)) }

func (c *campaign) job(seq []byte) (queue.Job, error) {
	v := c.jobs.Get(seq)
	if v == nil {
		return queue.Job{}, fmt.Errorf("queue: job %d missing", u64(seq))
	}
	j, err := decodeJob(v, c.enqueued)
	j.Seq = u64(seq)
	return j, err
}

// putJob stores j. bbolt keeps a reference to the value until the
// transaction ends, so every record gets its own buffer.
func (c *campaign) putJob(j *queue.Job) error {
	return c.jobs.Put(be(j.Seq), encodeJob(nil, j, c.enqueued))
}

// move changes a job's state and the counters.
func (c *campaign) move(j *queue.Job, to queue.State) {
	c.counts.Add(j.State, -1)
	c.counts.Add(to, 1)
	j.State = to
}

// find loads job seq; found is false for none.
func (c *campaign) find(seq uint64) (j queue.Job, found bool, err error) {
	v := c.jobs.Get(be(seq))
	if v == nil {
		return j, false, nil
	}
	j, err = decodeJob(v, c.enqueued)
	j.Seq = seq
	return j, err == nil, err
}

// takeHeld loads a leased job if token is still its lease, and removes its
// deadline from the timers; ok is false for a stale token or unknown job.
func (c *campaign) takeHeld(seq, token uint64) (j queue.Job, ok bool, err error) {
	if j, ok, err = c.find(seq); !ok || err != nil {
		return j, false, err
	}
	if j.State != queue.Leased || j.Lease != token {
		return j, false, nil
	}
	return j, true, c.timers.Delete(timerKey(j.At, j.Seq))
}

// CreateCampaign stores c unless a campaign with its id exists.
func (q *Queue) CreateCampaign(_ context.Context, rec queue.Campaign) (queue.Campaign, error) {
	var out queue.Campaign
	err := q.db.Update(func(tx *bolt.Tx) error {
		if b := tx.Bucket(campaignBucket(rec.ID)); b != nil {
			var err error
			out, err = openCampaign(b).record()
			return err
		}
		b, err := tx.CreateBucket(campaignBucket(rec.ID))
		if err != nil {
			return err
		}
		for _, name := range [][]byte{subMeta, subJobs, subPending, subTimers} {
			if _, err := b.CreateBucket(name); err != nil {
				return err
			}
		}
		if rec.Status == 0 {
			rec.Status = queue.Active
		}
		if err := b.Bucket(subMeta).Put(keyLayout, []byte{layoutMemKeys}); err != nil {
			return err
		}
		c := openCampaign(b)
		if err := c.saveRecord(rec); err != nil {
			return err
		}
		if err := c.meta.Put(keySpec, rec.Spec); err != nil {
			return err
		}
		out = rec
		out.Spec = nil
		return c.saveCounts()
	})
	return out, err
}

// Campaign returns the stored record.
func (q *Queue) Campaign(_ context.Context, id string) (queue.Campaign, error) {
	var out queue.Campaign
	err := q.db.View(func(tx *bolt.Tx) error {
		c, err := q.campaign(tx, id)
		if err != nil {
			return err
		}
		out, err = c.record()
		return err
	})
	return out, err
}

// SetStatus changes the status; cancelling cancels every job not final and
// not leased.
func (q *Queue) SetStatus(_ context.Context, id string, s queue.Status, reason string) error {
	q.leaseMu.Lock()
	defer q.leaseMu.Unlock()
	h := q.leases[id]
	return q.db.Update(func(tx *bolt.Tx) error {
		c, rec, err := q.campaignRecord(tx, id)
		if err != nil {
			return err
		}
		rec.Status, rec.Reason = s, reason
		if err := c.saveRecord(rec); err != nil {
			return err
		}
		if s != queue.CampaignCancelled {
			return nil
		}
		var seqs [][]byte
		cur := c.jobs.Cursor()
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			if st := stateOf(v); st == queue.Pending || st == queue.Retry {
				if _, leased := h.lookup(u64(k)); !leased {
					seqs = append(seqs, append([]byte(nil), k...))
				}
			}
		}
		for _, seq := range seqs {
			j, err := c.job(seq)
			if err != nil {
				return err
			}
			if j.State == queue.Pending {
				err = c.pending.Delete(seq)
			} else {
				err = c.timers.Delete(timerKey(j.At, j.Seq))
			}
			if err != nil {
				return err
			}
			c.move(&j, queue.Cancelled)
			j.At = time.Time{}
			if err := c.putJob(&j); err != nil {
				return err
			}
		}
		return c.saveCounts()
	})
}

// MarkPlanned records that planning finished.
func (q *Queue) MarkPlanned(_ context.Context, id string) error {
	err := q.db.Update(func(tx *bolt.Tx) error {
		c, rec, err := q.campaignRecord(tx, id)
		if err != nil {
			return err
		}
		rec.Planned = true
		return c.saveRecord(rec)
	})
	if err == nil {
		// Enqueue was the index's main user.
		q.keysMu.Lock()
		q.dropKeys(id)
		q.keysMu.Unlock()
	}
	return err
}

// Spec returns the campaign's Spec.
func (q *Queue) Spec(_ context.Context, id string) ([]byte, error) {
	var out []byte
	err := q.db.View(func(tx *bolt.Tx) error {
		c, err := q.campaign(tx, id)
		if err != nil {
			return err
		}
		if v := c.meta.Get(keySpec); len(v) > 0 {
			out = bytes.Clone(v)
		}
		return nil
	})
	return out, err
}

// SetSpec replaces the campaign's Spec.
func (q *Queue) SetSpec(_ context.Context, id string, spec []byte) error {
	return q.db.Update(func(tx *bolt.Tx) error {
		c, err := q.campaign(tx, id)
		if err != nil {
			return err
		}
		return c.meta.Put(keySpec, bytes.Clone(spec))
	})
}

// Campaigns lists every stored campaign's id, sorted.
func (q *Queue) Campaigns(_ context.Context) ([]string, error) {
	var ids []string
	err := q.db.View(func(tx *bolt.Tx) error {
		prefix := campaignBucket("")
		cur := tx.Cursor()
		for k, _ := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
			ids = append(ids, string(k[len(prefix):]))
		}
		return nil
	})
	return ids, err
}

// RetryFailed moves failed jobs back to pending, except suppressed ones.
func (q *Queue) RetryFailed(_ context.Context, id string, now time.Time) (queue.RetryResult, error) {
	var res queue.RetryResult
	q.leaseMu.Lock()
	defer q.leaseMu.Unlock()
	err := q.db.Update(func(tx *bolt.Tx) error {
		res = queue.RetryResult{}
		c, rec, err := q.campaignRecord(tx, id)
		if err != nil {
			return err
		}
		q.leaseFrontier(c, id)
		supp := suppList(tx, rec.List)
		var failed [][]byte
		cur := c.jobs.Cursor()
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			if stateOf(v) == queue.Failed {
				failed = append(failed, bytes.Clone(k))
			}
		}
		for _, seq := range failed {
			j, err := c.job(seq)
			if err != nil {
				return err
			}
			if getKey(supp, j.Key) != nil {
				res.Suppressed++
				continue
			}
			c.move(&j, queue.Pending)
			j.Attempts, j.At, j.Enqueued = 0, time.Time{}, now
			if err := c.pend(seq); err != nil {
				return err
			}
			if err := c.putJob(&j); err != nil {
				return err
			}
			res.Requeued++
		}
		return c.saveCounts()
	})
	return res, err
}

// Enqueue adds the jobs whose keys are new to the campaign.
func (q *Queue) Enqueue(_ context.Context, id string, jobs []queue.Job) (queue.EnqueueResult, error) {
	var res queue.EnqueueResult
	// Not beside a Lease: a job added before the frontier must not be
	// passed by a read of the store without it.
	q.leaseMu.Lock()
	defer q.leaseMu.Unlock()
	q.keysMu.Lock()
	defer q.keysMu.Unlock()
	err := q.db.Update(func(tx *bolt.Tx) error {
		res = queue.EnqueueResult{}
		c, err := q.withKeys(tx, id)
		if err != nil {
			return err
		}
		q.leaseFrontier(c, id)
		rec, err := c.record()
		if err != nil {
			return err
		}
		supp := suppList(tx, rec.List)
		// A plan adds jobs in Seq order, each after the last: a page
		// split at half full (bbolt's default) would stay so. Pending
		// entries never grow; a job's record grows by a few bytes when
		// it is leased and settled, which the room left takes in place.
		c.jobs.FillPercent, c.pending.FillPercent = jobsFill, 1
		// Addresses in ascending order (a file sorted by address, or
		// numbered ones) go into the keys one after another, where pages
		// packed full stay so; in any other order they land all over the
		// tree, where pages split at half full take them best (packed,
		// they would end up a third full).
		if c.keys != nil && slices.IsSortedFunc(jobs, func(a, b queue.Job) int { return strings.Compare(a.Key, b.Key) }) {
			c.keys.FillPercent = 0.9
		}
		if c.enqueued == 0 && len(jobs) > 0 && !jobs[0].Enqueued.IsZero() {
			c.enqueued = encodeTime(jobs[0].Enqueued)
			if err := c.meta.Put(keyEnqueued, be(c.enqueued)); err != nil {
				return err
			}
		}
		// A plan adds jobs after every job there is: those need no look-up
		// of their Seq.
		var after uint64 // every job has a smaller Seq than this
		if k, _ := c.jobs.Cursor().Last(); k != nil {
			after = u64(k) + 1
		}
		for i := range jobs {
			j := jobs[i]
			seq := be(j.Seq)
			prev, found, err := c.seqOf(j.Key)
			if err != nil {
				return err
			}
			if found {
				if prev == j.Seq {
					res.Existing++
				} else {
					res.Duplicates = append(res.Duplicates, queue.Duplicate{Seq: j.Seq, FirstSeq: prev})
				}
				continue
			}
			if j.Seq < after && c.jobs.Get(seq) != nil {
				return fmt.Errorf("queue: job %d already holds another address (did the recipients file change? use a new campaign id)", j.Seq)
			}
			after = max(after, j.Seq+1)
			j.State, j.Attempts, j.Lease, j.At = queue.Pending, 0, 0, time.Time{}
			if v := getKey(supp, j.Key); v != nil {
				j.State = queue.Suppressed
				j.Reply = queue.SuppressedReply(decodeSuppression(j.Key, v))
				res.Suppressed++
			} else if err := c.pend(seq); err != nil {
				return err
			}
			c.counts.Add(j.State, 1)
			if err := c.addKey(j.Key, j.Seq); err != nil {
				return err
			}
			if err := c.putJob(&j); err != nil {
				return err
			}
			res.Added++
		}
		return c.saveCounts()
	})
	if err != nil {
		// The index may hold keys of jobs the transaction did not add.
		q.dropKeys(id)
	}
	q.trim()
	return res, err
}

// withKeys opens the campaign with its key index; the caller holds
// q.keysMu.
func (q *Queue) withKeys(tx *bolt.Tx, id string) (*campaign, error) {
	c, err := q.campaign(tx, id)
	if err != nil || c.layout < layoutMemKeys {
		return c, err
	}
	c.index, err = q.keysOf(c, id)
	return c, err
}

// settleTx records the outcomes of leased jobs in tx; applied counts the
// ones that changed a job. where says where each job's lease is: this
// process's (Settle checked it) or the journal's (Open), and where the
// job is in the store; whereLegacy, or no where at all: in the store, a
// lease of format 1, which takeHeld checks.
func (q *Queue) settleTx(tx *bolt.Tx, id string, batch []queue.Settlement, where []byte) (lost []uint64, applied int, err error) {
	err = func() error {
		c, rec, err := q.campaignRecord(tx, id)
		if err != nil {
			return err
		}
		var supp *bolt.Bucket // created on first use
		usage := map[string]int64{}
		for i, s := range batch {
			var (
				j   queue.Job
				ok  bool
				err error
			)
			if where == nil || where[i] == whereLegacy {
				j, ok, err = c.takeHeld(s.Seq, s.Lease)
			} else {
				j, ok, err = c.takeGranted(s.Seq, s.Lease, where[i])
			}
			if err != nil {
				return err
			}
			if !ok {
				if j.Lease != s.Lease || j.State != s.State {
					lost = append(lost, s.Seq)
				} // else: the same outcome again, already recorded
				continue
			}
			applied++
			c.move(&j, s.State)
			if s.CountAttempt {
				j.Attempts++
			}
			j.Reply, j.Provider, j.At, j.Lease = s.Reply, s.Provider, time.Time{}, s.Lease
			switch s.State {
			case queue.Retry:
				j.At = s.At
				if err := c.timers.Put(timerKey(j.At, j.Seq), nil); err != nil {
					return err
				}
			case queue.Sent:
				at := s.SentAt
				if at.IsZero() {
					at = time.Now()
				}
				usage[usageKey(s.Provider, at)]++
			}
			if s.Suppress {
				if supp == nil {
					if supp, err = tx.Bucket(bucketSuppression).CreateBucketIfNotExists(listName(rec.List)); err != nil {
						return err
					}
				}
				if supp.Get([]byte(j.Key)) == nil {
					if err := supp.Put([]byte(j.Key), encodeSuppression(time.Now(), s.Reply)); err != nil {
						return err
					}
				}
			}
			if err := c.putJob(&j); err != nil {
				return err
			}
		}
		ub := tx.Bucket(bucketUsage)
		for k, n := range usage {
			if err := ub.Put([]byte(k), be(u64(ub.Get([]byte(k)))+uint64(n))); err != nil {
				return err
			}
		}
		return c.saveCounts()
	}()
	return lost, applied, err
}

// Recipient reports whether key is one of the campaign's jobs.
func (q *Queue) Recipient(_ context.Context, id, key string) (bool, error) {
	var ok bool
	q.keysMu.Lock()
	defer q.keysMu.Unlock()
	err := q.db.View(func(tx *bolt.Tx) error {
		c, err := q.withKeys(tx, id)
		if err != nil {
			return err
		}
		_, ok, err = c.seqOf(key)
		return err
	})
	return ok, err
}

// listName is a list's bucket name; "" gets a name of its own.
func listName(list string) []byte { return []byte("l:" + list) }

// suppList returns list's bucket, nil when it has no entries yet.
func suppList(tx *bolt.Tx, list string) *bolt.Bucket {
	return tx.Bucket(bucketSuppression).Bucket(listName(list))
}

// getKey is b.Get(key) where b may be nil.
func getKey(b *bolt.Bucket, key string) []byte {
	if b == nil {
		return nil
	}
	return b.Get([]byte(key))
}

func encodeSuppression(at time.Time, reason string) []byte {
	return append(be(uint64(at.UnixNano())), reason...)
}

func decodeSuppression(key string, v []byte) queue.Suppression {
	if len(v) < 8 {
		return queue.Suppression{Key: key, Reason: string(v)}
	}
	return queue.Suppression{Key: key, Reason: string(v[8:]), At: time.Unix(0, int64(u64(v[:8]))).UTC()}
}

// Suppressed returns the entries of list among keys.
func (q *Queue) Suppressed(_ context.Context, list string, keys ...string) (map[string]queue.Suppression, error) {
	out := map[string]queue.Suppression{}
	err := q.db.View(func(tx *bolt.Tx) error {
		b := suppList(tx, list)
		if b == nil {
			return nil
		}
		for _, k := range keys {
			if v := b.Get([]byte(k)); v != nil {
				out[k] = decodeSuppression(k, v)
			}
		}
		return nil
	})
	return out, err
}

// Suppress adds keys to list; keys already on it keep their entry.
func (q *Queue) Suppress(_ context.Context, list, reason string, keys ...string) error {
	now := time.Now()
	return q.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketSuppression).CreateBucketIfNotExists(listName(list))
		if err != nil {
			return err
		}
		for _, k := range keys {
			if b.Get([]byte(k)) != nil {
				continue
			}
			if err := b.Put([]byte(k), encodeSuppression(now, reason)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Unsuppress removes keys from list, and their soft-bounce counts.
func (q *Queue) Unsuppress(_ context.Context, list string, keys ...string) (int, error) {
	var n int
	err := q.db.Update(func(tx *bolt.Tx) error {
		n = 0
		if b := suppList(tx, list); b != nil {
			for _, k := range keys {
				if b.Get([]byte(k)) != nil {
					n++
					if err := b.Delete([]byte(k)); err != nil {
						return err
					}
				}
			}
		}
		soft := tx.Bucket(bucketSoft).Bucket(listName(list))
		if soft == nil {
			return nil
		}
		for _, k := range keys {
			prefix := []byte(k + "\x00")
			var del [][]byte
			cur := soft.Cursor()
			for sk, _ := cur.Seek(prefix); sk != nil && bytes.HasPrefix(sk, prefix); sk, _ = cur.Next() {
				del = append(del, bytes.Clone(sk))
			}
			for _, sk := range del {
				if err := soft.Delete(sk); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return n, err
}

// WalkSuppressed calls fn for every entry of list in key order.
func (q *Queue) WalkSuppressed(ctx context.Context, list string, fn func(queue.Suppression) error) error {
	return q.db.View(func(tx *bolt.Tx) error {
		b := suppList(tx, list)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return fn(decodeSuppression(string(k), v))
		})
	})
}

// SuppressionLists names the lists with entries.
func (q *Queue) SuppressionLists(_ context.Context) ([]string, error) {
	var out []string
	err := q.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSuppression).ForEach(func(name, v []byte) error {
			if v == nil && bytes.HasPrefix(name, []byte("l:")) {
				if k, _ := tx.Bucket(bucketSuppression).Bucket(name).Cursor().First(); k != nil {
					out = append(out, string(name[2:]))
				}
			}
			return nil
		})
	})
	return out, err
}

// LegacySuppressions counts the entries of the single suppression list an
// earlier herald kept for every sending domain (before lists were per
// domain).
func (q *Queue) LegacySuppressions(context.Context) (int, error) {
	n := 0
	err := q.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSuppression).ForEach(func(_, v []byte) error {
			if v != nil {
				n++
			}
			return nil
		})
	})
	return n, err
}

// MigrateSuppressions moves the legacy entries (see LegacySuppressions)
// onto list, keeping their reasons; an address already on list keeps its
// entry. It returns how many entries it moved.
func (q *Queue) MigrateSuppressions(_ context.Context, list string) (int, error) {
	n := 0
	now := time.Now()
	err := q.db.Update(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketSuppression)
		dst, err := root.CreateBucketIfNotExists(listName(list))
		if err != nil {
			return err
		}
		var keys [][]byte
		err = root.ForEach(func(k, v []byte) error {
			if v == nil {
				return nil
			}
			keys = append(keys, bytes.Clone(k))
			if dst.Get(k) == nil {
				if err := dst.Put(bytes.Clone(k), encodeSuppression(now, string(v))); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := root.Delete(k); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	return n, err
}

// SoftBounce records one soft bounce of key and returns its count.
func (q *Queue) SoftBounce(_ context.Context, list, key, bounceID string) (int, error) {
	var n int
	err := q.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketSoft).CreateBucketIfNotExists(listName(list))
		if err != nil {
			return err
		}
		if err := b.Put([]byte(key+"\x00"+bounceID), nil); err != nil {
			return err
		}
		n = 0
		prefix := []byte(key + "\x00")
		cur := b.Cursor()
		for k, _ := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
			n++
		}
		return nil
	})
	return n, err
}

// Usage counts messages sent through provider since t (to the minute).
func (q *Queue) Usage(_ context.Context, provider string, since time.Time) (int64, error) {
	var n int64
	err := q.db.View(func(tx *bolt.Tx) error {
		prefix := []byte(provider + "\x00")
		cur := tx.Bucket(bucketUsage).Cursor()
		for k, v := cur.Seek([]byte(usageKey(provider, since))); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
			n += int64(u64(v))
		}
		return nil
	})
	return n, err
}

// FirstUsage is the minute of provider's first recorded message.
func (q *Queue) FirstUsage(_ context.Context, provider string) (time.Time, error) {
	var first time.Time
	err := q.db.View(func(tx *bolt.Tx) error {
		prefix := []byte(provider + "\x00")
		k, _ := tx.Bucket(bucketUsage).Cursor().Seek(prefix)
		if k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8 {
			first = time.Unix(int64(u64(k[len(prefix):]))*60, 0)
		}
		return nil
	})
	return first, err
}

func usageKey(provider string, t time.Time) string {
	return provider + "\x00" + string(be(uint64(t.Unix()/60)))
}
