package redisq

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/internal/redistest"
	"github.com/heraldmail/herald/queue"
)

func openTest(t *testing.T) *Queue {
	t.Helper()
	srv := redistest.Start(t)
	q, err := Open(context.Background(), srv.URL(), Options{Prefix: fmt.Sprintf("l%d:", prefixes.Add(1))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func jobsFor(seqs ...uint64) []queue.Job {
	var out []queue.Job
	for _, s := range seqs {
		e := fmt.Sprintf("u%d@example.com", s)
		out = append(out, queue.Job{Seq: s, Key: e, Email: e, Fields: []string{e}})
	}
	return out
}

func walkSeqs(t *testing.T, q *Queue, id string) (seqs []uint64, states map[uint64]queue.State) {
	t.Helper()
	states = map[uint64]queue.State{}
	var byState queue.Counts
	err := q.Walk(context.Background(), id, func(j queue.Job) error {
		seqs = append(seqs, j.Seq)
		states[j.Seq] = j.State
		byState.Add(j.State, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := q.Counts(context.Background(), id); err != nil || c != byState {
		t.Fatalf("Counts %+v %v disagree with the jobs %+v", c, err, byState)
	}
	return seqs, states
}

func leaseSeqs(t *testing.T, q *Queue, id string, n int) []queue.Job {
	t.Helper()
	jobs, err := q.Lease(context.Background(), id, time.Now(), n, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

func seqsOf(jobs []queue.Job) []uint64 {
	var out []uint64
	for _, j := range jobs {
		out = append(out, j.Seq)
	}
	return out
}

// TestListsAndSortedSets mixes jobs appended to pendlist/orderlist (new
// lines in ascending order) with jobs that go to the sorted sets (gaps
// filled by a re-plan, unordered batches, releases): Lease and Walk still
// see Seq order.
func TestListsAndSortedSets(t *testing.T) {
	q := openTest(t)
	ctx := context.Background()
	if _, err := q.CreateCampaign(ctx, queue.Campaign{ID: "m", Header: []string{"email"}}); err != nil {
		t.Fatal(err)
	}
	for _, batch := range [][]uint64{{10, 20, 30}, {5, 15, 25}, {40, 41, 42}, {1}, {44, 43}, {50, 51, 50}} {
		if _, err := q.Enqueue(ctx, "m", jobsFor(batch...)); err != nil {
			t.Fatal(err)
		}
	}
	k := q.keys("m")
	if n, _ := q.rdb.LLen(ctx, k.pendlist).Result(); n != 6 {
		t.Errorf("pendlist holds %d, want 6 (10 20 30 40 41 42)", n)
	}
	all := []uint64{1, 5, 10, 15, 20, 25, 30, 40, 41, 42, 43, 44, 50, 51}
	if got, _ := walkSeqs(t, q, "m"); !slices.Equal(got, all) {
		t.Fatalf("Walk %v", got)
	}
	first := leaseSeqs(t, q, "m", 4)
	if got := seqsOf(first); !slices.Equal(got, []uint64{1, 5, 10, 15}) {
		t.Fatalf("first lease %v", got)
	}
	if err := q.Release(ctx, "m", first[1:3]); err != nil { // 5 and 10 go back, into pending
		t.Fatal(err)
	}
	if got := seqsOf(leaseSeqs(t, q, "m", 4)); !slices.Equal(got, []uint64{5, 10, 20, 25}) {
		t.Fatalf("after release %v", got)
	}
	if got := seqsOf(leaseSeqs(t, q, "m", 100)); !slices.Equal(got, []uint64{30, 40, 41, 42, 43, 44, 50, 51}) {
		t.Fatalf("the rest %v", got)
	}
	if got, states := walkSeqs(t, q, "m"); !slices.Equal(got, all) || states[5] != queue.Leased {
		t.Fatalf("Walk %v %v", got, states)
	}
}

// TestCancelLists cancels jobs from both pending structures and retries.
func TestCancelLists(t *testing.T) {
	q := openTest(t)
	ctx := context.Background()
	fill(t, q, "c", 2500)                                               // pendlist, in chunks
	if _, err := q.Enqueue(ctx, "c", jobsFor(2600, 2550)); err != nil { // pending
		t.Fatal(err)
	}
	l := leaseSeqs(t, q, "c", 3)
	if _, err := q.Settle(ctx, "c", []queue.Settlement{
		{Seq: l[0].Seq, Lease: l[0].Lease, State: queue.Retry, At: time.Now().Add(time.Hour), Reply: "451 later", Provider: "p"},
		{Seq: l[1].Seq, Lease: l[1].Lease, State: queue.Sent},
	}); err != nil {
		t.Fatal(err)
	}
	if err := q.SetStatus(ctx, "c", queue.CampaignCancelled, "test"); err != nil {
		t.Fatal(err)
	}
	c, err := q.Counts(ctx, "c")
	if err != nil || c.Cancelled != 2500 || c.Sent != 1 || c.Leased != 1 || c.Open() != 1 {
		t.Fatalf("counts %+v %v", c, err)
	}
	_, states := walkSeqs(t, q, "c")
	if states[1] != queue.Cancelled || states[2] != queue.Sent || states[3] != queue.Leased || states[2550] != queue.Cancelled {
		t.Fatalf("states %v %v %v %v", states[1], states[2], states[3], states[2550])
	}
	if next, ok, _ := q.NextDue(ctx, "c"); !ok || next.Before(time.Now().Add(30*time.Minute)) {
		t.Fatalf("only the leased job's deadline remains: %v %v", next, ok)
	}
	var retry queue.Job
	q.Walk(ctx, "c", func(j queue.Job) error {
		if j.Seq == 1 {
			retry = j
		}
		return nil
	})
	if retry.Reply != "451 later" || retry.Provider != "p" || !retry.At.IsZero() {
		t.Fatalf("a cancelled retry keeps its reply and loses its due time: %+v", retry)
	}
}

// TestSeqTaken: a line that already holds another address is refused, in
// the fast path's absence (seqs not above maxseq) and inside one batch.
func TestSeqTaken(t *testing.T) {
	q := openTest(t)
	ctx := context.Background()
	q.CreateCampaign(ctx, queue.Campaign{ID: "s", Header: []string{"email"}})
	q.Enqueue(ctx, "s", jobsFor(1, 2, 3))
	other := jobsFor(2)
	other[0].Key, other[0].Email = "other@example.com", "other@example.com"
	if _, err := q.Enqueue(ctx, "s", other); err == nil || !strings.Contains(err.Error(), "SEQTAKEN") {
		t.Fatalf("stored seq: %v", err)
	}
	two := jobsFor(7, 8)
	two[1].Seq = 7
	if _, err := q.Enqueue(ctx, "s", two); err == nil || !strings.Contains(err.Error(), "SEQTAKEN") {
		t.Fatalf("seq twice in a batch: %v", err)
	}
	if got, _ := walkSeqs(t, q, "s"); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("Walk %v", got)
	}
	if _, err := q.Enqueue(ctx, "nope", jobsFor(1)); !errors.Is(err, queue.ErrNoCampaign) {
		t.Fatal(err)
	}
}

// TestTimersStaySkiplist: the pin keeps timers out of the listpack
// encoding, and nothing sees it.
func TestTimersStaySkiplist(t *testing.T) {
	if len(timersPin) <= 64 {
		t.Fatalf("timersPin is %d bytes; it must exceed zset-max-listpack-value (64)", len(timersPin))
	}
	q := openTest(t)
	ctx := context.Background()
	q.CreateCampaign(ctx, queue.Campaign{ID: "t", Header: []string{"email"}})
	if enc, err := q.rdb.ObjectEncoding(ctx, q.keys("t").timers).Result(); err != nil || enc != "skiplist" {
		t.Fatalf("timers encoding %q %v", enc, err)
	}
	if _, ok, err := q.NextDue(ctx, "t"); ok || err != nil {
		t.Fatalf("NextDue of an empty campaign: %v %v", ok, err)
	}
	q.Enqueue(ctx, "t", jobsFor(1))
	l := leaseSeqs(t, q, "t", 1)
	if _, ok, _ := q.NextDue(ctx, "t"); !ok {
		t.Fatal("no deadline for the lease")
	}
	q.Settle(ctx, "t", []queue.Settlement{{Seq: 1, Lease: l[0].Lease, State: queue.Sent}})
	if _, ok, _ := q.NextDue(ctx, "t"); ok {
		t.Fatal("the pin counts as due")
	}
	if got := leaseSeqs(t, q, "t", 5); len(got) != 0 {
		t.Fatalf("leased %v", seqsOf(got))
	}
}

// TestStateEncoding pins the documented st layout.
func TestStateEncoding(t *testing.T) {
	q := openTest(t)
	ctx := context.Background()
	q.CreateCampaign(ctx, queue.Campaign{ID: "x", Header: []string{"email"}})
	q.Enqueue(ctx, "x", jobsFor(1))
	k := q.keys("x")
	if n, _ := q.rdb.HLen(ctx, k.st).Result(); n != 0 {
		t.Fatalf("a fresh job has no st field, got %d", n)
	}
	now := time.UnixMilli(1_800_000_000_123)
	l, _ := q.Lease(ctx, "x", now, 1, time.Minute)
	v, _ := q.rdb.HGet(ctx, k.st, "1").Result()
	want := fmt.Sprintf("2:0000:%015d:1800000060123:", l[0].Lease)
	if v != want {
		t.Fatalf("leased: %q, want %q", v, want)
	}
	q.Settle(ctx, "x", []queue.Settlement{{Seq: 1, Lease: l[0].Lease, State: queue.Retry, At: now.Add(time.Hour), CountAttempt: true, Provider: "p", Reply: "451 a\r\nb"}})
	v, _ = q.rdb.HGet(ctx, k.st, "1").Result()
	want = fmt.Sprintf("4:0001:%015d:1800003600123:p\x00451 a\r\nb", l[0].Lease)
	if v != want {
		t.Fatalf("retry: %q, want %q", v, want)
	}
}

// TestBigBatches leases more than 100 jobs at once (the token's place
// digits) and more than maxLease, extends, releases and settles more than
// scriptBatch in one call, and counts attempts past 100.
func TestBigBatches(t *testing.T) {
	q := openTest(t)
	ctx := context.Background()
	fill(t, q, "b", 3200)
	jobs := leaseSeqs(t, q, "b", 5000)
	if len(jobs) != maxLease {
		t.Fatalf("leased %d, want maxLease", len(jobs))
	}
	jobs = append(jobs, leaseSeqs(t, q, "b", 5000)...)
	seen := map[uint64]bool{}
	for i, j := range jobs {
		if seen[j.Lease] || j.Seq != uint64(i+1) {
			t.Fatalf("job %d: seq %d token %d", i, j.Seq, j.Lease)
		}
		seen[j.Lease] = true
	}
	if len(jobs) != 3200 {
		t.Fatalf("%d jobs", len(jobs))
	}
	if lost, err := q.Extend(ctx, "b", jobs, time.Now().Add(2*time.Hour)); err != nil || len(lost) != 0 {
		t.Fatalf("extend: lost %d %v", len(lost), err)
	}
	if err := q.Release(ctx, "b", jobs[3000:]); err != nil {
		t.Fatal(err)
	}
	var s []queue.Settlement
	for _, j := range jobs {
		s = append(s, queue.Settlement{Seq: j.Seq, Lease: j.Lease, State: queue.Sent, CountAttempt: true, Provider: "p", Reply: "250 ok"})
	}
	lost, err := q.Settle(ctx, "b", s)
	if err != nil || len(lost) != 200 || lost[0] != 3001 {
		t.Fatalf("settle: lost %d %v", len(lost), err)
	}
	if n, _ := q.Usage(ctx, "p", time.Now().Add(-time.Hour)); n != 3000 {
		t.Fatalf("usage %d", n)
	}
	// One job retried 150 times keeps counting.
	j := leaseSeqs(t, q, "b", 1)[0]
	for a := 1; a <= 150; a++ {
		if _, err := q.Settle(ctx, "b", []queue.Settlement{{Seq: j.Seq, Lease: j.Lease, State: queue.Retry, At: time.Now().Add(-time.Second), CountAttempt: true}}); err != nil {
			t.Fatal(err)
		}
		j = leaseSeqs(t, q, "b", 1)[0]
		if j.Attempts != a {
			t.Fatalf("attempts %d, want %d", j.Attempts, a)
		}
	}
	walkSeqs(t, q, "b")
}

func TestFNV(t *testing.T) {
	for _, s := range []string{"", "a", "user1@example.com", "李雷@例子.测试"} {
		h := fnv.New64a()
		h.Write([]byte(s))
		if fnv64a(s) != h.Sum64() {
			t.Errorf("fnv64a(%q) = %x, hash/fnv says %x", s, fnv64a(s), h.Sum64())
		}
	}
}

func TestDataRoundTrip(t *testing.T) {
	if strconv.Itoa(dataBucket) != dataBucketLua {
		t.Fatalf("dataBucket %d, the scripts' %s", dataBucket, dataBucketLua)
	}
	for _, j := range []queue.Job{
		{Key: "a@b", Email: "A@b", Fields: []string{"A@b", "", "李雷 Zoë", strings.Repeat("x", 300)}, Enqueued: time.Unix(1_800_000_000, 123)},
		{Key: "k", Email: "e", Fields: []string{}},
		{Key: "e", Email: "e", Fields: []string{"e"}, Enqueued: time.Unix(0, 1)},
		{Key: "", Email: "", Fields: []string{"x"}, Enqueued: time.Unix(-5, 0)},
	} {
		for _, base := range []int64{0, 1_800_000_000_000_000_000, -7} {
			got, err := decodeData(encodeData(j, base), base)
			if err != nil || got.Key != j.Key || got.Email != j.Email || !slices.Equal(got.Fields, j.Fields) || !got.Enqueued.Equal(j.Enqueued) || got.Enqueued.IsZero() != j.Enqueued.IsZero() {
				t.Errorf("%+v -> %+v %v", j, got, err)
			}
		}
	}
	// A job enqueued at its campaign's creation takes one byte for it.
	at := time.Unix(1_800_000_000, 5)
	j := queue.Job{Key: "a@b", Email: "a@b", Fields: []string{"a@b", "x"}, Enqueued: at}
	if short, long := encodeData(j, at.UnixNano()), encodeData(j, 0); len(long)-len(short) != 8 {
		t.Errorf("records of %d and %d bytes", len(short), len(long))
	}
	enc := encodeData(queue.Job{Key: "abc", Email: "abc", Fields: []string{"abc"}, Enqueued: at}, 0)
	for i := 0; i < len(enc); i++ {
		if _, err := decodeData(enc[:i], 0); err == nil {
			t.Errorf("truncated at %d: no error", i)
		}
	}
}

// TestAscendingDuplicates: batches of new lines (ascending, above maxseq)
// that repeat a key, or hold one already stored.
func TestAscendingDuplicates(t *testing.T) {
	q := openTest(t)
	ctx := context.Background()
	q.CreateCampaign(ctx, queue.Campaign{ID: "d", Header: []string{"email"}})
	q.Enqueue(ctx, "d", jobsFor(1, 2, 3))
	b := jobsFor(4, 5, 6, 7)
	b[1].Key = b[0].Key
	b[2].Key = jobsFor(1)[0].Key
	r, err := q.Enqueue(ctx, "d", b)
	if err != nil || r.Added != 2 || r.Existing != 0 || !slices.Equal(r.Duplicates, []queue.Duplicate{{Seq: 5, FirstSeq: 4}, {Seq: 6, FirstSeq: 1}}) {
		t.Fatalf("%+v %v", r, err)
	}
	b = jobsFor(8, 9, 10)
	b[1].Key = b[0].Key
	if r, err = q.Enqueue(ctx, "d", b); err != nil || r.Added != 2 || !slices.Equal(r.Duplicates, []queue.Duplicate{{Seq: 9, FirstSeq: 8}}) {
		t.Fatalf("%+v %v", r, err)
	}
	if r, err = q.Enqueue(ctx, "d", jobsFor(9, 10, 11)); err != nil || r.Added != 2 || r.Existing != 1 || len(r.Duplicates) != 0 {
		t.Fatalf("re-plan over the duplicate line: %+v %v", r, err)
	}
	want := []uint64{1, 2, 3, 4, 7, 8, 9, 10, 11}
	if got, _ := walkSeqs(t, q, "d"); !slices.Equal(got, want) {
		t.Fatalf("Walk %v", got)
	}
	bucket, field := dedupSlot(b[0].Key)
	if seq, _ := q.rdb.HGet(ctx, q.keys("d").prefix+"k:"+strconv.FormatUint(bucket, 10), field).Result(); seq != "8" {
		t.Fatalf("the first occurrence holds the key, got %q", seq)
	}
	if got := seqsOf(leaseSeqs(t, q, "d", 100)); !slices.Equal(got, want) {
		t.Fatalf("Lease %v", got)
	}
}
