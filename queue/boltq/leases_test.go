package boltq

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heraldmail/herald/queue"
)

// die ends q as kill -9 would: the journal's mappings and files go
// without a close, the store without another write.
func die(q *Queue) {
	for _, s := range q.journal.segs {
		if s.m != nil {
			unmapFile(s.m)
		}
		s.f.Close()
	}
	q.journal = nil
	q.db.Close()
}

// storedJob reads a job's record as the store holds it, without the
// leases this process holds.
func storedJob(t *testing.T, q *Queue, id string, seq uint64) queue.Job {
	t.Helper()
	var j queue.Job
	err := q.db.View(func(tx *bolt.Tx) error {
		c, err := q.campaign(tx, id)
		if err != nil {
			return err
		}
		j, err = c.job(be(seq))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// addJobs enqueues a job for each seq in campaign c.
func addJobs(t *testing.T, q *Queue, seqs ...uint64) {
	t.Helper()
	var jobs []queue.Job
	for _, i := range seqs {
		jobs = append(jobs, queue.Job{Seq: i, Key: fmt.Sprintf("u%d@x.y", i), Email: "x", Fields: []string{"x"}})
	}
	if _, err := q.Enqueue(context.Background(), "c", jobs); err != nil {
		t.Fatal(err)
	}
}

// span is first, first+1, ..., last.
func span(first, last uint64) []uint64 {
	var out []uint64
	for i := first; i <= last; i++ {
		out = append(out, i)
	}
	return out
}

func settled(jobs []queue.Job, state queue.State) []queue.Settlement {
	var out []queue.Settlement
	for _, j := range jobs {
		out = append(out, queue.Settlement{Seq: j.Seq, Lease: j.Lease, State: state, Reply: "250 ok", Provider: "p", SentAt: time.Now()})
	}
	return out
}

// TestLeasesAcrossACrash: leases are not written to the store, and a
// process that dies loses none of its jobs. Of 30 jobs leased: 10 are
// settled; 5 given back and leased again; 5 settled, which stores the
// frontier past every job leased but two given back; 5 noted and not
// settled; 2 given back; 3 in flight. The next Open applies the 5 noted,
// returns the 8 leased and not settled (and no other) to pending, and a
// Lease then finds every job not sent: none is stranded behind the
// stored frontier.
func TestLeasesAcrossACrash(t *testing.T) {
	t.Parallel()
	path, q := withCampaign(t)
	ctx := context.Background()
	var jobs []queue.Job
	for i := uint64(1); i <= 100; i++ {
		jobs = append(jobs, queue.Job{Seq: i, Key: fmt.Sprintf("u%d@x.y", i), Email: "x", Row: queue.RowRef{Offset: i * 10, Size: 9, Sum: uint32(i)}})
	}
	if _, err := q.Enqueue(ctx, "c", jobs); err != nil {
		t.Fatal(err)
	}
	l, err := q.Lease(ctx, "c", time.Now(), 30, time.Hour)
	if err != nil || len(l) != 30 {
		t.Fatal(len(l), err)
	}
	for _, j := range l {
		if s := storedJob(t, q, "c", j.Seq); s.State != queue.Pending || s.Lease != 0 {
			t.Fatalf("a lease was written to the store: %+v", s)
		}
	}
	if c, _ := q.Counts(ctx, "c"); c.Leased != 30 || c.Pending != 70 {
		t.Fatalf("counts while leased: %+v", c)
	}
	// A settlement with a stale lease is refused, and leaves no trace.
	stale := settled(l[25:26], queue.Sent)
	stale[0].Lease--
	if lost, err := q.Settle(ctx, "c", stale); err != nil || len(lost) != 1 {
		t.Fatalf("stale settle: lost %v, %v", lost, err)
	}
	if lost, err := q.Settle(ctx, "c", settled(l[:10], queue.Sent)); err != nil || len(lost) != 0 {
		t.Fatal(lost, err)
	}
	if err := q.Release(ctx, "c", l[10:15]); err != nil {
		t.Fatal(err)
	}
	back, err := q.Lease(ctx, "c", time.Now(), 5, time.Hour)
	if err != nil || fmt.Sprint(seqs(back)) != "[11 12 13 14 15]" {
		t.Fatalf("leased again %v, %v", seqs(back), err)
	}
	if err := q.Release(ctx, "c", l[25:27]); err != nil {
		t.Fatal(err)
	}
	if lost, err := q.Settle(ctx, "c", settled(l[15:20], queue.Sent)); err != nil || len(lost) != 0 {
		t.Fatal(lost, err)
	}
	for _, s := range settled(l[20:25], queue.Sent) {
		if err := q.Note("c", s); err != nil {
			t.Fatal(err)
		}
	}
	if s := storedJob(t, q, "c", l[15].Seq); s.State != queue.Sent || s.Lease != l[15].Lease {
		t.Fatalf("a settled job holds %+v", s)
	}
	last := back[4].Lease
	die(q)

	q, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.Replayed() != 5 || q.Recovered() != 8 {
		t.Fatalf("replayed %d, recovered %d; want 5 and 8", q.Replayed(), q.Recovered())
	}
	if c, _ := q.Counts(ctx, "c"); c.Sent != 20 || c.Pending != 80 || c.Leased != 0 {
		t.Fatalf("after the crash: %+v", c)
	}
	again, err := q.Lease(ctx, "c", time.Now(), 1000, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, j := range again {
		got = append(got, j.Seq)
		if j.Lease <= last {
			t.Fatalf("job %d leased again with token %d, not after %d", j.Seq, j.Lease, last)
		}
	}
	slices.Sort(got)
	var want []uint64
	for i := uint64(11); i <= 100; i++ {
		if i <= 15 || i > 25 {
			want = append(want, i)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("leased after the crash %v, want %v", got, want)
	}
	// A late note of a lease from before the crash no longer counts.
	if lost, err := q.Settle(ctx, "c", settled(l[27:28], queue.Sent)); err != nil || len(lost) != 1 {
		t.Fatalf("a settle with the dead process's lease: lost %v, %v", lost, err)
	}
	if _, err := q.Settle(ctx, "c", settled(again, queue.Sent)); err != nil {
		t.Fatal(err)
	}
	if c, _ := q.Counts(ctx, "c"); c.Sent != 100 || c.Open() != 0 {
		t.Fatalf("at the end: %+v", c)
	}
}

// TestLeasesOfAnOlderStore: a store of format 1 that an older herald left
// after a crash (leases in the store, a journal of settlements without
// grants) is read as before: the noted outcome of a lease the store
// holds is applied, the other lease goes back to pending, and the store
// is marked with this herald's format.
func TestLeasesOfAnOlderStore(t *testing.T) {
	t.Parallel()
	path, q := withCampaign(t)
	ctx := context.Background()
	addJobs(t, q, 1, 2, 3)
	q.Close()
	until := time.Now().Add(time.Hour)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		c := openCampaign(tx.Bucket(campaignBucket("c")))
		for seq := uint64(1); seq <= 2; seq++ {
			j, err := c.job(be(seq))
			if err != nil {
				return err
			}
			c.move(&j, queue.Leased)
			j.Lease, j.At = 6+seq, until
			if err := c.timers.Put(timerKey(until, seq), nil); err != nil {
				return err
			}
			if err := c.putJob(&j); err != nil {
				return err
			}
		}
		if err := c.meta.Put(keyFrontier, be(3)); err != nil {
			return err
		}
		if err := c.meta.Put(keyLease, be(8)); err != nil {
			return err
		}
		if err := c.saveCounts(); err != nil {
			return err
		}
		return tx.Bucket(bucketStore).Put(keyFormat, []byte{1})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	rec := appendRecord(nil, "c", queue.Settlement{Seq: 1, Lease: 7, State: queue.Sent, Reply: "250 ok", Provider: "p"})
	rec = appendRecord(rec, "c", queue.Settlement{Seq: 2, Lease: 5, State: queue.Sent, Reply: "250 stale"})
	if err := os.WriteFile(segmentName(path+".outcomes", 0), rec, 0o600); err != nil {
		t.Fatal(err)
	}

	q, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.Replayed() != 1 || q.Recovered() != 1 {
		t.Fatalf("replayed %d, recovered %d; want 1 and 1", q.Replayed(), q.Recovered())
	}
	if c, _ := q.Counts(ctx, "c"); c.Sent != 1 || c.Pending != 2 || c.Leased != 0 {
		t.Fatalf("counts: %+v", c)
	}
	l, err := q.Lease(ctx, "c", time.Now(), 10, time.Minute)
	if err != nil || len(l) != 2 || l[0].Seq != 2 || l[1].Seq != 3 || l[0].Lease <= 8 {
		t.Fatalf("leased %+v, %v", l, err)
	}
	var f []byte
	q.db.View(func(tx *bolt.Tx) error {
		f = append(f, tx.Bucket(bucketStore).Get(keyFormat)...)
		return nil
	})
	if len(f) != 1 || f[0] != storeFormat {
		t.Fatalf("format after the open: %x", f)
	}
	if left, _ := filepath.Glob(path + ".outcomes.*"); len(left) != 1 {
		t.Fatalf("segments: %v", left)
	}
}

func seqs(jobs []queue.Job) []uint64 {
	out := make([]uint64, len(jobs))
	for i, j := range jobs {
		out[i] = j.Seq
	}
	return out
}

// TestReleaseAfterTheLastSettle: jobs given back after the last Settle
// stored a frontier past them (a graceful stop gives back what was
// leased and not sent) are leased again after a clean close and an
// Open, first and in Seq order.
func TestReleaseAfterTheLastSettle(t *testing.T) {
	t.Parallel()
	path, q := withCampaign(t)
	ctx := context.Background()
	addJobs(t, q, span(1, 20)...)
	l, err := q.Lease(ctx, "c", time.Now(), 10, time.Hour)
	if err != nil || len(l) != 10 {
		t.Fatal(len(l), err)
	}
	if _, err := q.Settle(ctx, "c", settled(l[:2], queue.Sent)); err != nil {
		t.Fatal(err)
	}
	if err := q.Release(ctx, "c", l[2:]); err != nil {
		t.Fatal(err)
	}
	q.Close()
	if left, _ := filepath.Glob(path + ".outcomes.*"); len(left) != 0 {
		t.Fatalf("a close with no lease held left %v", left)
	}
	if q, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.Recovered() != 0 {
		t.Fatalf("recovered %d after a clean close", q.Recovered())
	}
	again, err := q.Lease(ctx, "c", time.Now(), 100, time.Hour)
	if err != nil || len(again) != 18 || again[0].Seq != 3 || again[7].Seq != 10 || again[8].Seq != 11 {
		t.Fatalf("leased after the reopen %v, %v", seqs(again), err)
	}
}

// TestNotesOfTwoLeases: of two outcomes noted for one job (its first lease
// expired and a second sender had it), the one of the later lease keeps
// its segment, whichever came first, and its commit frees it; the lost
// lease's commit frees nothing.
func TestNotesOfTwoLeases(t *testing.T) {
	t.Parallel()
	for _, order := range [][]uint64{{5, 7}, {7, 5}} {
		j, err := openJournal(filepath.Join(t.TempDir(), "q.db.outcomes"), 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, lease := range order {
			if err := j.note("c", queue.Settlement{Seq: 1, Lease: lease, State: queue.Sent}); err != nil {
				t.Fatal(err)
			}
		}
		if n, p := j.uncommitted(), j.segs[0].pending; n != 1 || p != 1 {
			t.Fatalf("order %v: %d noted, segment holds %d; want 1 and 1", order, n, p)
		}
		j.committed("c", []queue.Settlement{{Seq: 1, Lease: 5}})
		if n := j.uncommitted(); n != 1 {
			t.Fatalf("order %v: the lost lease's commit freed the later note", order)
		}
		j.committed("c", []queue.Settlement{{Seq: 1, Lease: 7}})
		if n, p := j.uncommitted(), j.segs[0].pending; n != 0 || p != 0 {
			t.Fatalf("order %v: after the commit %d noted, segment holds %d", order, n, p)
		}
		j.close()
	}
}

// TestNoJobTwiceAfterAnOpen: jobs that have an entry in the pending
// bucket past the stored frontier (given back after the last Settle, or
// added behind the frontier of the process before) are handed out once
// by the first Lease after an Open, not once from the bucket and again
// from the frontier's scan; and the counts stay true to the end.
func TestNoJobTwiceAfterAnOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, q *Queue, l []queue.Job)
	}{
		{"given back, then a clean close", func(t *testing.T, q *Queue, l []queue.Job) {
			if err := q.Release(ctx, "c", l); err != nil {
				t.Fatal(err)
			}
			q.Close()
		}},
		{"added behind the frontier, then a crash", func(t *testing.T, q *Queue, l []queue.Job) {
			addJobs(t, q, 4)
			die(q)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, q := withCampaign(t)
			addJobs(t, q, 1, 2, 3, 5, 6, 7, 8, 9, 10)
			l, err := q.Lease(ctx, "c", time.Now(), 5, time.Hour)
			if err != nil || len(l) != 5 {
				t.Fatal(len(l), err)
			}
			tc.end(t, q, l)
			if q, err = Open(path); err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			again, err := q.Lease(ctx, "c", time.Now(), 100, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			got := seqs(again)
			slices.Sort(got)
			c, _ := q.Counts(ctx, "c")
			if len(slices.Compact(slices.Clone(got))) != len(got) || c.Leased != int64(len(got)) || c.Pending != 0 {
				t.Fatalf("leased %v after the open; counts %+v", got, c)
			}
			if _, err := q.Settle(ctx, "c", settled(again, queue.Sent)); err != nil {
				t.Fatal(err)
			}
			if c, _ := q.Counts(ctx, "c"); c.Sent != c.Total() || c.Open() != 0 {
				t.Fatalf("counts at the end: %+v", c)
			}
		})
	}
}

// TestJournalBoundedWithoutSettles: leases taken and given back for a
// long while, with nothing settled (every provider refuses), do not grow
// the journal past a segment or two.
func TestJournalBoundedWithoutSettles(t *testing.T) {
	t.Parallel()
	_, q := withCampaign(t)
	defer q.Close()
	ctx := context.Background()
	addJobs(t, q, span(1, 200)...)
	var written int64
	for range 8000 {
		l, err := q.Lease(ctx, "c", time.Now(), 200, time.Hour)
		if err != nil || len(l) != 200 {
			t.Fatal(len(l), err)
		}
		if err := q.Release(ctx, "c", l); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range q.journal.segs {
		written += s.size
	}
	if n := len(q.journal.segs); n > 2 || written > 2*segmentMax {
		t.Fatalf("%d segments, %d bytes, after 8,000 leases given back", n, written)
	}
}

// TestGrantedAgainKeepsTheFirstGrant: a lease that expired and is granted
// again keeps the segment of its first grant until the new lease ends (the
// new grant may not be on disk yet when a Settle removes segments), and
// the new lease's end frees both.
func TestGrantedAgainKeepsTheFirstGrant(t *testing.T) {
	t.Parallel()
	_, q := withCampaign(t)
	defer q.Close()
	ctx := context.Background()
	addJobs(t, q, 1)
	t0 := time.Now()
	first, err := q.Lease(ctx, "c", t0, 1, time.Second)
	if err != nil || len(first) != 1 {
		t.Fatal(first, err)
	}
	seg := q.leases["c"].jobs[1].seg
	var again []queue.Job
	for i := range 3 { // granted again, and again
		if again, err = q.Lease(ctx, "c", t0.Add(time.Duration(2+2*i)*time.Second), 1, time.Second); err != nil || len(again) != 1 || again[0].Lease <= first[0].Lease {
			t.Fatalf("grant %d: %+v, %v", i+2, again, err)
		}
	}
	// One segment holds the four grants: the first and the current one
	// count, the two between do not.
	if x := q.leases["c"].jobs[1]; x.prev != seg || x.seg != seg || seg.pending != 2 {
		t.Fatalf("the first grant's segment: kept %v, holds %d", x.prev == seg, seg.pending)
	}
	if lost, err := q.Settle(ctx, "c", settled(first, queue.Sent)); err != nil || len(lost) != 1 {
		t.Fatalf("the expired lease's settle: lost %v, %v", lost, err)
	}
	if _, err := q.Settle(ctx, "c", settled(again, queue.Sent)); err != nil {
		t.Fatal(err)
	}
	for _, s := range q.journal.segs {
		if s.pending != 0 {
			t.Fatalf("segment %d holds %d after the settle", s.n, s.pending)
		}
	}
}

// TestLeaseWithoutAJournal: when the journal cannot take a grant (its
// disk failed), Lease says so and hands out nothing, and holds nothing:
// no job is leased that a crash could not give back.
func TestLeaseWithoutAJournal(t *testing.T) {
	t.Parallel()
	_, q := withCampaign(t)
	defer q.Close()
	ctx := context.Background()
	addJobs(t, q, 1, 2, 3)
	q.journal.mu.Lock()
	q.journal.broken = errors.New("outcome journal: disk failed")
	q.journal.mu.Unlock()
	l, err := q.Lease(ctx, "c", time.Now(), 3, time.Hour)
	if err == nil || !strings.Contains(err.Error(), "disk failed") || len(l) != 0 {
		t.Fatalf("Lease with a broken journal: %v, %v", seqs(l), err)
	}
	if c, _ := q.Counts(ctx, "c"); c.Leased != 0 || c.Pending != 3 {
		t.Fatalf("counts: %+v", c)
	}
}

// TestLeasesOfAnUnknownCampaign: Extend and Release, which need not read
// the store, still say that a campaign does not exist.
func TestLeasesOfAnUnknownCampaign(t *testing.T) {
	t.Parallel()
	_, q := withCampaign(t)
	defer q.Close()
	ctx := context.Background()
	j := []queue.Job{{Seq: 1, Lease: 1}}
	if err := q.Release(ctx, "nope", j); !errors.Is(err, queue.ErrNoCampaign) {
		t.Fatalf("Release: %v", err)
	}
	if _, err := q.Extend(ctx, "nope", j, time.Now()); !errors.Is(err, queue.ErrNoCampaign) {
		t.Fatalf("Extend: %v", err)
	}
	if err := q.Release(ctx, "c", j); err != nil {
		t.Fatalf("Release of a lease not held, known campaign: %v", err)
	}
}

// reopen ends q (die, or a Close) and opens its store again, closed when
// the test ends.
func reopen(t *testing.T, path string, q *Queue, end func(*Queue)) *Queue {
	t.Helper()
	end(q)
	q, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// rotate starts the journal's next segment, as a segment grown past
// segmentMax does at the next commit.
func rotate(t *testing.T, q *Queue) {
	t.Helper()
	j := q.journal
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.rotate(j.segs[len(j.segs)-1].n + 1); err != nil {
		t.Fatal(err)
	}
}

// TestReleaseOutlivesItsGrant: a job given back whose grant stays in an
// older segment (another lease of the grant is still held) keeps the
// release's segment too, however many segments later, so that the next
// Open after a crash, or a Close, counts only the job still held among
// those recovered, not the one given back. Both are pending again.
func TestReleaseOutlivesItsGrant(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"crash", "close"} {
		t.Run(how, func(t *testing.T) {
			path, q := withCampaign(t)
			ctx := context.Background()
			addJobs(t, q, 1, 2, 3)
			l, err := q.Lease(ctx, "c", time.Now(), 3, time.Hour)
			if err != nil || len(l) != 3 {
				t.Fatal(l, err)
			}
			rotate(t, q)
			if err := q.Release(ctx, "c", l[:1]); err != nil {
				t.Fatal(err)
			}
			rotate(t, q)
			// A settle tidies the journal: the release's segment holds
			// nothing of its own now, the grant's holds job 2's lease.
			if _, err := q.Settle(ctx, "c", settled(l[2:], queue.Sent)); err != nil {
				t.Fatal(err)
			}
			if n := len(q.journal.segs); n != 3 {
				t.Fatalf("%d segments kept, want the grant's, the release's and the current one", n)
			}
			end := die
			if how == "close" {
				end = func(q *Queue) {
					if err := q.Close(); err != nil {
						t.Fatal(err)
					}
				}
			}
			q = reopen(t, path, q, end)
			if q.Recovered() != 1 {
				t.Fatalf("recovered %d, want 1: the job still held, not the one given back", q.Recovered())
			}
			if c, _ := q.Counts(ctx, "c"); c.Sent != 1 || c.Pending != 2 || c.Leased != 0 {
				t.Fatalf("after the %s: %+v", how, c)
			}
		})
	}
}

// TestReleasedSegmentsGoWithTheirGrant: the segments a release kept go
// when the grant's segment goes, and do not outlive it.
func TestReleasedSegmentsGoWithTheirGrant(t *testing.T) {
	t.Parallel()
	_, q := withCampaign(t)
	defer q.Close()
	ctx := context.Background()
	addJobs(t, q, span(1, 4)...)
	l, err := q.Lease(ctx, "c", time.Now(), 4, time.Hour)
	if err != nil || len(l) != 4 {
		t.Fatal(l, err)
	}
	for i := range 3 { // each release in a segment of its own
		rotate(t, q)
		if err := q.Release(ctx, "c", l[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	rotate(t, q)
	if _, err := q.Settle(ctx, "c", settled(l[3:], queue.Sent)); err != nil {
		t.Fatal(err)
	}
	if n := len(q.journal.segs); n != 1 || q.journal.segs[0].pending != 0 {
		t.Fatalf("%d segments kept after every lease ended", n)
	}
	files, _ := filepath.Glob(q.journal.base + ".*")
	if len(files) != 1 {
		t.Fatalf("segment files left: %v", files)
	}
}

// TestGrantedAgainThenReleased: a lease that expired twice is granted a
// third time; the second grant's segment, kept by another lease, must
// not outlive the third's, nor the third the release that ends it: after
// a crash, the job given back is not among those recovered.
func TestGrantedAgainThenReleased(t *testing.T) {
	t.Parallel()
	path, q := withCampaign(t)
	ctx := context.Background()
	addJobs(t, q, 1, 2)
	t0 := time.Now()
	if l, err := q.Lease(ctx, "c", t0, 1, time.Second); err != nil || len(l) != 1 || l[0].Seq != 1 {
		t.Fatal(l, err) // the first grant: segment A
	}
	rotate(t, q)
	// Job 1 again, and job 2 for an hour: segment B.
	l, err := q.Lease(ctx, "c", t0.Add(2*time.Second), 2, time.Second)
	if err != nil || len(l) != 2 {
		t.Fatal(l, err)
	}
	if lost, err := q.Extend(ctx, "c", l[1:], t0.Add(time.Hour)); err != nil || len(lost) != 0 || l[1].Seq != 2 {
		t.Fatal(l, lost, err)
	}
	rotate(t, q)
	third, err := q.Lease(ctx, "c", t0.Add(4*time.Second), 1, time.Hour) // segment C
	if err != nil || len(third) != 1 || third[0].Seq != 1 {
		t.Fatal(third, err)
	}
	rotate(t, q)
	if err := q.Release(ctx, "c", third); err != nil { // segment D
		t.Fatal(err)
	}
	q = reopen(t, path, q, die)
	if q.Recovered() != 1 {
		t.Fatalf("recovered %d, want 1: job 2, not job 1, which was given back", q.Recovered())
	}
	if c, _ := q.Counts(ctx, "c"); c.Pending != 2 || c.Leased != 0 {
		t.Fatalf("after the crash: %+v", c)
	}
}

// TestFirstGrantOutlivesTheRelease: a lease granted again keeps its first
// grant's segment until it ends, and that segment may stay longer (another
// lease of it is held) than the later grants' and the release's own: the
// release still ends the first grant at the next Open.
func TestFirstGrantOutlivesTheRelease(t *testing.T) {
	t.Parallel()
	for _, grants := range []int{2, 3} {
		t.Run(fmt.Sprint(grants, " grants"), func(t *testing.T) {
			path, q := withCampaign(t)
			ctx := context.Background()
			addJobs(t, q, 1, 2)
			t0 := time.Now()
			l, err := q.Lease(ctx, "c", t0, 2, time.Second) // segment A
			if err != nil || len(l) != 2 {
				t.Fatal(l, err)
			}
			if lost, err := q.Extend(ctx, "c", l[1:], t0.Add(time.Hour)); err != nil || len(lost) != 0 {
				t.Fatal(lost, err)
			}
			var again []queue.Job
			for i := 1; i < grants; i++ {
				rotate(t, q)
				again, err = q.Lease(ctx, "c", t0.Add(time.Duration(2*i)*time.Second), 1, time.Second)
				if err != nil || len(again) != 1 || again[0].Seq != 1 {
					t.Fatal(again, err)
				}
			}
			rotate(t, q)
			if err := q.Release(ctx, "c", again); err != nil {
				t.Fatal(err)
			}
			q = reopen(t, path, q, die)
			if q.Recovered() != 1 {
				t.Fatalf("recovered %d, want 1: job 2, not job 1, which was given back", q.Recovered())
			}
		})
	}
}
