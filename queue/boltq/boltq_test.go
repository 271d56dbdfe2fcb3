package boltq

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/queue/queuetest"
)

func TestConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T) queue.Queue {
		q, err := Open(filepath.Join(t.TempDir(), "q.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	})
}

func TestReopenKeepsDataAndRecoversLeases(t *testing.T) {
	t.Parallel()
	path, q := withCampaign(t)
	ctx := context.Background()
	var jobs []queue.Job
	for i := uint64(1); i <= 5; i++ {
		jobs = append(jobs, queue.Job{Seq: i, Key: string(rune('a'+i)) + "@x.y", Email: "x", Fields: []string{"x"}})
	}
	if _, err := q.Enqueue(ctx, "c", jobs); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	l, err := q.Lease(ctx, "c", now, 3, time.Hour)
	if err != nil || len(l) != 3 {
		t.Fatal(l, err)
	}
	if _, err := q.Settle(ctx, "c", []queue.Settlement{{Seq: l[0].Seq, Lease: l[0].Lease, State: queue.Sent}}); err != nil {
		t.Fatal(err)
	}
	// A second process cannot open the store while the first holds it.
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "in use by another herald process") {
		t.Fatalf("second open: %v", err)
	}
	q.Close() // the process dies with two jobs leased

	q, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.Recovered() != 2 {
		t.Fatalf("recovered %d leases, want 2", q.Recovered())
	}
	c, _ := q.Counts(ctx, "c")
	if c.Sent != 1 || c.Pending != 4 || c.Leased != 0 {
		t.Fatalf("after reopen: %+v", c)
	}
	// The recovered jobs go out first, in Seq order, at once (no lease wait).
	l, _ = q.Lease(ctx, "c", now, 2, time.Hour)
	if len(l) != 2 || l[0].Seq != 2 || l[1].Seq != 3 {
		t.Fatalf("leased %+v", l)
	}
}

func BenchmarkEnqueue(b *testing.B) {
	q, err := Open(filepath.Join(b.TempDir(), "q.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	q.CreateCampaign(ctx, queue.Campaign{ID: "b"})
	batch := make([]queue.Job, 1000)
	seq := uint64(0)
	b.ResetTimer()
	for b.Loop() {
		for i := range batch {
			seq++
			e := "user" + string(rune(seq)) + "@example.com"
			batch[i] = queue.Job{Seq: seq, Key: e + string(rune(seq>>20)), Email: e, Fields: []string{e, "Name", "City"}}
		}
		if _, err := q.Enqueue(ctx, "b", batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "jobs/s")
}

func BenchmarkLeaseSettle(b *testing.B) {
	q, err := Open(filepath.Join(b.TempDir(), "q.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	q.CreateCampaign(ctx, queue.Campaign{ID: "b"})
	var total int
	now := time.Now()
	settle := make([]queue.Settlement, 0, 256)
	seq := uint64(0)
	for b.Loop() {
		b.StopTimer()
		batch := make([]queue.Job, 256)
		for i := range batch {
			seq++
			e := "user" + strings.Repeat("x", int(seq%7)) + string(rune(seq)) + "@example.com"
			batch[i] = queue.Job{Seq: seq, Key: e, Email: e, Fields: []string{e, "Name", "City"}}
		}
		if _, err := q.Enqueue(ctx, "b", batch); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		jobs, err := q.Lease(ctx, "b", now, 256, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		settle = settle[:0]
		for _, j := range jobs {
			settle = append(settle, queue.Settlement{Seq: j.Seq, Lease: j.Lease, State: queue.Sent, Provider: "p", SentAt: now})
		}
		if _, err := q.Settle(ctx, "b", settle); err != nil {
			b.Fatal(err)
		}
		total += len(jobs)
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "jobs/s")
}

// The single suppression list of an earlier herald moves onto a domain's
// list (queuetest.RunMigration).
func TestMigrateSuppressions(t *testing.T) {
	q, err := Open(filepath.Join(t.TempDir(), "q.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	queuetest.RunMigration(t, q, func(entries map[string]string) {
		err := q.db.Update(func(tx *bolt.Tx) error {
			for k, v := range entries {
				if err := tx.Bucket(bucketSuppression).Put([]byte(k), []byte(v)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestOutcomeJournal: outcomes noted and never settled (the process died
// between the server's reply and the settle batch) are applied when the
// store is opened again, before the dead process's leases go back to
// pending; a record the crash tore ends the replay, and what was settled
// leaves nothing behind.
func TestOutcomeJournal(t *testing.T) {
	t.Parallel()
	path, q := withCampaign(t)
	ctx := context.Background()
	var jobs []queue.Job
	for i := uint64(1); i <= 6; i++ {
		jobs = append(jobs, queue.Job{Seq: i, Key: fmt.Sprintf("u%d@x.y", i), Email: "x", Fields: []string{"x"}})
	}
	if _, err := q.Enqueue(ctx, "c", jobs); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	l, err := q.Lease(ctx, "c", now, 6, time.Hour)
	if err != nil || len(l) != 6 {
		t.Fatal(l, err)
	}
	sent := func(j queue.Job) queue.Settlement {
		return queue.Settlement{Seq: j.Seq, Lease: j.Lease, State: queue.Sent, Reply: "250 ok " + fmt.Sprint(j.Seq), Provider: "p", SentAt: now}
	}
	// Job 1 is noted and settled; 2 and 3 noted only (sent, reply in);
	// 4 noted as a retry; 5 and 6 were in flight (nothing noted).
	for _, j := range l[:3] {
		if err := q.Note("c", sent(j)); err != nil {
			t.Fatal(err)
		}
	}
	retry := queue.Settlement{Seq: l[3].Seq, Lease: l[3].Lease, State: queue.Retry, At: now.Add(time.Minute), CountAttempt: true, Reply: "451 later"}
	if err := q.Note("c", retry); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Settle(ctx, "c", []queue.Settlement{sent(l[0])}); err != nil {
		t.Fatal(err)
	}
	// The process dies: the journal's file descriptors and mapping go
	// with it, and a last record is torn halfway, where the next record
	// would have gone.
	end := q.journal.segs[len(q.journal.segs)-1].size
	for _, s := range q.journal.segs {
		if s.m != nil {
			unmapFile(s.m)
		}
		s.f.Close()
	}
	q.journal = nil
	q.db.Close()
	segs, _ := segments(path + ".outcomes")
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	torn := appendRecord(nil, "c", sent(l[4]))
	f, err := os.OpenFile(segmentName(path+".outcomes", segs[0]), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(torn[:len(torn)-3], end)
	f.Close()

	q, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if q.Replayed() != 3 || q.Recovered() != 2 {
		t.Fatalf("replayed %d, recovered %d; want 3 and 2", q.Replayed(), q.Recovered())
	}
	c, _ := q.Counts(ctx, "c")
	if c.Sent != 3 || c.Retry != 1 || c.Pending != 2 || c.Leased != 0 {
		t.Fatalf("after the replay: %+v", c)
	}
	for _, seq := range []uint64{2, 3} {
		if j := jobBySeq(t, q, "c", seq); j.State != queue.Sent || j.Reply != fmt.Sprintf("250 ok %d", seq) || j.Provider != "p" {
			t.Fatalf("job %d: %+v", seq, j)
		}
	}
	if j := jobBySeq(t, q, "c", 4); j.Attempts != 1 || !j.At.Equal(now.Add(time.Minute)) {
		t.Fatalf("job 4: %+v", j)
	}
	if u, _ := q.Usage(ctx, "p", now.Add(-time.Minute)); u != 3 {
		t.Fatalf("usage %d, want 3 (the replayed messages count toward the quota)", u)
	}
	if left, _ := segments(path + ".outcomes"); len(left) != 1 || left[0] != segs[0]+1 {
		t.Fatalf("segments after the replay: %v", left)
	}
	// Everything noted now is settled: a clean close leaves no journal.
	l, _ = q.Lease(ctx, "c", now, 2, time.Hour)
	for _, j := range l {
		if err := q.Note("c", sent(j)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.Settle(ctx, "c", []queue.Settlement{sent(l[0]), sent(l[1])}); err != nil {
		t.Fatal(err)
	}
	q.Close()
	if left, _ := segments(path + ".outcomes"); len(left) != 0 {
		t.Fatalf("a clean close left segments %v", left)
	}
	q, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.Replayed() != 0 {
		t.Fatalf("replayed %d after a clean close", q.Replayed())
	}
}

// TestOutcomeJournalSegments: segments rotate as they grow and go once
// everything in them is settled.
func TestOutcomeJournalSegments(t *testing.T) {
	t.Parallel()
	j, base := tempJournal(t)
	reply := strings.Repeat("r", 4096)
	var batch []queue.Settlement
	for i := range 3000 { // ~12 MB: three segments
		s := queue.Settlement{Seq: uint64(i), Lease: 1, State: queue.Sent, Reply: reply}
		if err := j.note("c", s); err != nil {
			t.Fatal(err)
		}
		batch = append(batch, s)
		if len(batch) == 100 {
			j.committed("c", batch[:99]) // one of each hundred stays noted
			batch = batch[:0]
		}
	}
	if len(j.segs) < 3 {
		t.Fatalf("%d segments for ~12 MB", len(j.segs))
	}
	j.committed("c", batch)
	// Now everything but one record in each hundred is committed: the old
	// segments stay.
	kept := len(j.segs)
	var rest []queue.Settlement
	for i := 99; i < 3000; i += 100 {
		rest = append(rest, queue.Settlement{Seq: uint64(i), Lease: 1})
	}
	j.committed("c", rest)
	if len(j.segs) != 1 || kept < 3 {
		t.Fatalf("after every record was committed: %d segments (had %d)", len(j.segs), kept)
	}
	if on, _ := segments(base); len(on) != 1 {
		t.Fatalf("files %v", on)
	}
	j.close()
}

// withCampaign opens a store in a new directory with a campaign "c" of
// one column, email.
func withCampaign(t *testing.T) (path string, q *Queue) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "q.db")
	q, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.CreateCampaign(context.Background(), queue.Campaign{ID: "c", Header: []string{"email"}}); err != nil {
		t.Fatal(err)
	}
	return path, q
}

func jobBySeq(t *testing.T, q *Queue, id string, seq uint64) queue.Job {
	t.Helper()
	var found queue.Job
	err := q.Walk(context.Background(), id, func(j queue.Job) error {
		if j.Seq == seq {
			found = j
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestOutcomeJournalConcurrentNotes: notes from many senders at once go
// out in group writes while commits rotate and remove segments; every
// record is whole on disk, each is accounted to the segment it is in, and
// what was not committed is there to replay.
func TestOutcomeJournalConcurrentNotes(t *testing.T) {
	t.Parallel()
	t.Run("mapped", func(t *testing.T) { t.Parallel(); concurrentNotes(t, mapFile) })
	// Where a segment cannot be mapped, it is written with write(2).
	t.Run("written", func(t *testing.T) {
		t.Parallel()
		concurrentNotes(t, func(*os.File, int) ([]byte, error) { return nil, errors.ErrUnsupported })
	})
}

func concurrentNotes(t *testing.T, mapf func(*os.File, int) ([]byte, error)) {
	base := filepath.Join(t.TempDir(), "q.db.outcomes")
	j, err := newJournal(base, 0, mapf)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("segment mapped: %v", j.segs[0].m != nil)
	const senders, each = 16, 400
	reply := strings.Repeat("r", 3000) // ~19 MB in all: segments rotate
	done := make(chan queue.Settlement, 64)
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				s := queue.Settlement{Seq: uint64(g*each + i), Lease: 1, State: queue.Sent, Reply: reply}
				if err := j.note("c", s); err != nil {
					t.Error(err)
					return
				}
				done <- s
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	var batch, kept []queue.Settlement
	for s := range done {
		if s.Seq%senders == 3 {
			kept = append(kept, s) // never committed: to replay
			continue
		}
		if batch = append(batch, s); len(batch) == 50 {
			j.committed("c", batch)
			batch = nil
		}
	}
	j.committed("c", batch)
	if n := j.uncommitted(); n != len(kept) {
		t.Fatalf("%d settlements noted and not committed, want %d", n, len(kept))
	}
	// The process dies here: what is on disk is what a replay finds.
	for _, s := range j.segs {
		if s.m != nil {
			unmapFile(s.m)
		}
		s.f.Close()
	}
	ns, _ := segments(base)
	found := map[uint64]bool{}
	for _, n := range ns {
		f, err := os.Open(segmentName(base, n))
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(f)
		for {
			e, err := readRecord(r)
			s := e.s
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("segment %d: %v", n, err)
			}
			if s.Reply != reply {
				t.Fatalf("segment %d: record %d garbled", n, s.Seq)
			}
			found[s.Seq] = true
		}
		f.Close()
	}
	for _, s := range kept {
		if !found[s.Seq] {
			t.Errorf("settlement %d, noted and not committed, is in no segment", s.Seq)
		}
	}
	if len(ns) > len(j.segs) {
		t.Errorf("%d segment files, %d known", len(ns), len(j.segs))
	}
}

// TestOutcomeJournalGrows: notes that outrun the commits fill more than a
// mapped segment's first mapping; the mapping grows, and every record is
// in the file, which a clean close cuts to its records.
func TestOutcomeJournalGrows(t *testing.T) {
	t.Parallel()
	j, base := tempJournal(t)
	if j.segs[0].m == nil {
		t.Skip("segments are not mapped on " + runtime.GOOS)
	}
	reply := strings.Repeat("r", 3000)
	n := 2*segmentMap/len(reply) + 1 // past two mappings' worth
	for i := range n {
		if err := j.note("c", queue.Settlement{Seq: uint64(i), Lease: 1, State: queue.Sent, Reply: reply}); err != nil {
			t.Fatal(err)
		}
	}
	seg := j.segs[0]
	if len(j.segs) != 1 || len(seg.m) < int(seg.size) || seg.size <= 2*segmentMap {
		t.Fatalf("%d segments, mapped %d bytes of %d", len(j.segs), len(seg.m), seg.size)
	}
	size := seg.size
	j.close() // nothing committed: the segment stays, cut to its records
	st, err := os.Stat(segmentName(base, 0))
	if err != nil || st.Size() != size {
		t.Fatalf("after close: %v, %v; want %d bytes", st, err, size)
	}
	f, err := os.Open(segmentName(base, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	for i := range n {
		if e, err := readRecord(r); err != nil || e.kind != kindSettle || e.s.Seq != uint64(i) || e.s.Reply != reply {
			t.Fatalf("record %d: %d, %v", i, e.s.Seq, err)
		}
	}
	if _, err := readRecord(r); err != io.EOF {
		t.Fatalf("after the records: %v", err)
	}
}

// TestOutcomeJournalFaultIsAnError: a mapped segment whose file is cut
// under it faults on the next copy; Note returns an error (the engine then
// falls back to group commits), the process does not crash.
func TestOutcomeJournalFaultIsAnError(t *testing.T) {
	t.Parallel()
	j, base := tempJournal(t)
	defer j.close()
	if j.segs[0].m == nil {
		t.Skip("segments are not mapped on " + runtime.GOOS)
	}
	s := queue.Settlement{Seq: 1, Lease: 1, State: queue.Sent, Reply: "250 ok"}
	if err := j.note("c", s); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(segmentName(base, 0), 0); err != nil {
		t.Fatal(err)
	}
	s.Seq = 2
	if err := j.note("c", s); err == nil {
		t.Fatal("a note into a segment cut under its mapping succeeded")
	} else {
		t.Log(err)
	}
	s.Seq = 3
	if err := j.note("c", s); err == nil {
		t.Fatal("the journal took a note after it broke")
	}
}

// tempJournal opens a new outcome journal in a temporary directory; base
// is its segments' path without their number.
func tempJournal(t *testing.T) (*journal, string) {
	t.Helper()
	base := filepath.Join(t.TempDir(), "q.db.outcomes")
	j, err := openJournal(base, 0)
	if err != nil {
		t.Fatal(err)
	}
	return j, base
}

// TestStoreFormat: a new store is marked with this herald's format, and so
// is one written before the marker existed; a store of a later format is
// refused with an error that says so, and is left as it was.
func TestStoreFormat(t *testing.T) {
	t.Parallel()
	format := func(path string) []byte {
		t.Helper()
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var v []byte
		db.View(func(tx *bolt.Tx) error {
			if b := tx.Bucket(bucketStore); b != nil {
				v = append([]byte(nil), b.Get(keyFormat)...)
			}
			return nil
		})
		return v
	}
	setFormat := func(path string, v []byte) {
		t.Helper()
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bolt.Tx) error {
			if v == nil {
				return tx.DeleteBucket(bucketStore)
			}
			b, err := tx.CreateBucketIfNotExists(bucketStore)
			if err != nil {
				return err
			}
			return b.Put(keyFormat, v)
		}); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "q.db")
	q, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	if v := format(path); len(v) != 1 || v[0] != storeFormat {
		t.Fatalf("a new store's format: %x", v)
	}

	setFormat(path, nil) // as a herald before the marker left it
	if q, err = Open(path); err != nil {
		t.Fatalf("a store without a format: %v", err)
	}
	q.Close()
	if v := format(path); len(v) != 1 || v[0] != storeFormat {
		t.Fatalf("a store opened without a format was marked %x", v)
	}

	setFormat(path, []byte{storeFormat + 1})
	_, err = Open(path)
	if !errors.Is(err, ErrNewerStore) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), fmt.Sprintf("store format %d", storeFormat+1)) {
		t.Fatalf("a store of a later format: %v", err)
	}
	if v := format(path); len(v) != 1 || v[0] != storeFormat+1 {
		t.Fatalf("a refused store was changed: format %x", v)
	}

	setFormat(path, []byte{0x80}) // a varint that never ends
	if _, err = Open(path); err == nil || !strings.Contains(err.Error(), "unreadable store format 80") || !strings.Contains(err.Error(), path) {
		t.Fatalf("a store whose format cannot be read: %v", err)
	}
}
