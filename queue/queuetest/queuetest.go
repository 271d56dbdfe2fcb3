// Package queuetest is the conformance suite every queue backend passes
// unchanged: Run it from the backend's tests with a function that opens a
// fresh, empty queue.
package queuetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldmail/herald/queue"
)

// Run exercises q against the queue.Queue contract.
func Run(t *testing.T, open func(t *testing.T) queue.Queue) {
	tests := map[string]func(*testing.T, *bundle){
		"CampaignRecord":      testCampaignRecord,
		"EnqueueIdempotent":   testEnqueueIdempotent,
		"EnqueueSuppressed":   testEnqueueSuppressed,
		"FieldsPreserved":     testFieldsPreserved,
		"FieldsOrRow":         testFieldsOrRow,
		"LeaseOrder":          testLeaseOrder,
		"LeaseExpiry":         testLeaseExpiry,
		"SettleStates":        testSettleStates,
		"SettleStaleLease":    testSettleStaleLease,
		"Release":             testRelease,
		"PauseAndCancel":      testPauseAndCancel,
		"Usage":               testUsage,
		"ConcurrentLeaseOnce": testConcurrentLeaseOnce,
		"Extend":              testExtend,
		"SpecAndList":         testSpecAndList,
		"RetryFailed":         testRetryFailed,
		"SuppressionLists":    testSuppressionLists,
		"SoftBounce":          testSoftBounce,
	}
	for name, fn := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			q := open(t)
			b := &bundle{t: t, q: q, ctx: context.Background(), id: "qt-" + name, now: time.Unix(1_800_000_000, 0)}
			fn(t, b)
		})
	}
}

type bundle struct {
	t   *testing.T
	q   queue.Queue
	ctx context.Context
	id  string
	now time.Time
}

func (b *bundle) create() {
	b.t.Helper()
	if _, err := b.q.CreateCampaign(b.ctx, queue.Campaign{ID: b.id, Header: []string{"email", "name"}, Created: b.now, Status: queue.Active, List: "news.example", Source: "sha256:00 size:0"}); err != nil {
		b.t.Fatal(err)
	}
}

func job(seq uint64) queue.Job {
	email := fmt.Sprintf("user%d@example.com", seq)
	return queue.Job{Seq: seq, Key: email, Email: email, Fields: []string{email, fmt.Sprint("name ", seq)}, Enqueued: time.Unix(1_800_000_000, 0)}
}

func (b *bundle) enqueue(seqs ...uint64) queue.EnqueueResult {
	b.t.Helper()
	var jobs []queue.Job
	for _, s := range seqs {
		jobs = append(jobs, job(s))
	}
	r, err := b.q.Enqueue(b.ctx, b.id, jobs)
	if err != nil {
		b.t.Fatal(err)
	}
	return r
}

func (b *bundle) lease(n int, at time.Time) []queue.Job {
	b.t.Helper()
	jobs, err := b.q.Lease(b.ctx, b.id, at, n, time.Minute)
	if err != nil {
		b.t.Fatal(err)
	}
	return jobs
}

func (b *bundle) settle(s ...queue.Settlement) []uint64 {
	b.t.Helper()
	lost, err := b.q.Settle(b.ctx, b.id, s)
	if err != nil {
		b.t.Fatal(err)
	}
	return lost
}

// jobs walks the campaign and checks the counters agree with the jobs.
func (b *bundle) jobs() map[uint64]queue.Job {
	b.t.Helper()
	out := map[uint64]queue.Job{}
	var byState queue.Counts
	var last uint64
	err := b.q.Walk(b.ctx, b.id, func(j queue.Job) error {
		if j.Seq <= last && len(out) > 0 {
			return fmt.Errorf("Walk out of order: %d after %d", j.Seq, last)
		}
		last = j.Seq
		out[j.Seq] = j
		byState.Add(j.State, 1)
		return nil
	})
	if err != nil {
		b.t.Fatal(err)
	}
	c, err := b.q.Counts(b.ctx, b.id)
	if err != nil {
		b.t.Fatal(err)
	}
	if c != byState {
		b.t.Fatalf("Counts %+v disagree with the jobs %+v", c, byState)
	}
	return out
}

func seqs(jobs []queue.Job) []uint64 {
	out := make([]uint64, len(jobs))
	for i, j := range jobs {
		out[i] = j.Seq
	}
	return out
}

func equal(a, b []uint64) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func testCampaignRecord(t *testing.T, b *bundle) {
	if _, err := b.q.Campaign(b.ctx, b.id); !errors.Is(err, queue.ErrNoCampaign) {
		t.Fatalf("missing campaign: %v", err)
	}
	b.create()
	c, err := b.q.CreateCampaign(b.ctx, queue.Campaign{ID: b.id, Header: []string{"other"}, Source: "another file"})
	if err != nil || len(c.Header) != 2 || c.Header[1] != "name" || c.Source != "sha256:00 size:0" {
		t.Fatalf("second create must return the stored record: %+v %v", c, err)
	}
	if c, err = b.q.Campaign(b.ctx, b.id); err != nil || c.Source != "sha256:00 size:0" || c.List != "news.example" {
		t.Fatalf("the stored record: %+v %v", c, err)
	}
	if c.Planned {
		t.Fatal("new campaign planned")
	}
	if err := b.q.MarkPlanned(b.ctx, b.id); err != nil {
		t.Fatal(err)
	}
	if c, _ = b.q.Campaign(b.ctx, b.id); !c.Planned || c.Status != queue.Active {
		t.Fatalf("after MarkPlanned: %+v", c)
	}
}

func testEnqueueIdempotent(t *testing.T, b *bundle) {
	b.create()
	if r := b.enqueue(1, 2, 3); r.Added != 3 {
		t.Fatalf("%+v", r)
	}
	if r := b.enqueue(2, 3, 4); r.Added != 1 || r.Existing != 2 || len(r.Duplicates) != 0 {
		t.Fatalf("re-plan: %+v", r)
	}
	dup := job(9)
	dup.Key, dup.Email = "user1@example.com", "User1@example.com"
	inBatch := job(11)
	inBatch.Key = job(10).Key
	r, err := b.q.Enqueue(b.ctx, b.id, []queue.Job{dup, job(10), inBatch})
	if err != nil {
		t.Fatal(err)
	}
	if r.Added != 1 || len(r.Duplicates) != 2 || r.Duplicates[0] != (queue.Duplicate{Seq: 9, FirstSeq: 1}) || r.Duplicates[1] != (queue.Duplicate{Seq: 11, FirstSeq: 10}) {
		t.Fatalf("duplicates: %+v", r)
	}
	if got := len(b.jobs()); got != 5 {
		t.Fatalf("%d jobs", got)
	}
	for key, want := range map[string]bool{job(1).Key: true, "nobody@example.com": false} {
		if got, err := b.q.Recipient(b.ctx, b.id, key); err != nil || got != want {
			t.Fatalf("Recipient(%s) = %v, %v; want %v", key, got, err, want)
		}
	}
	if _, err := b.q.Recipient(b.ctx, "no-such-campaign", job(1).Key); !errors.Is(err, queue.ErrNoCampaign) {
		t.Fatalf("Recipient of a missing campaign: %v", err)
	}
	if _, err := b.q.Enqueue(b.ctx, "no-such-campaign", []queue.Job{job(1)}); !errors.Is(err, queue.ErrNoCampaign) {
		t.Fatalf("enqueue into a missing campaign: %v", err)
	}
}

func testEnqueueSuppressed(t *testing.T, b *bundle) {
	b.create()
	if err := b.q.Suppress(b.ctx, "news.example", "550 5.1.1 no such user", job(2).Key); err != nil {
		t.Fatal(err)
	}
	// Another sending domain's list does not apply to this campaign.
	if err := b.q.Suppress(b.ctx, "other.example", "unsubscribed", job(1).Key); err != nil {
		t.Fatal(err)
	}
	got, err := b.q.Suppressed(b.ctx, "news.example", job(1).Key, job(2).Key)
	if e, ok := got[job(2).Key]; err != nil || len(got) != 1 || !ok || e.Reason != "550 5.1.1 no such user" || e.Key != job(2).Key {
		t.Fatalf("Suppressed: %+v %v", got, err)
	}
	if r := b.enqueue(1, 2); r.Added != 2 || r.Suppressed != 1 {
		t.Fatalf("%+v", r)
	}
	jobs := b.jobs()
	if jobs[2].State != queue.Suppressed || jobs[1].State != queue.Pending {
		t.Fatalf("%+v", jobs)
	}
	if jobs[2].Reply != "on the suppression list: 550 5.1.1 no such user" {
		t.Fatalf("suppressed job's reply: %q", jobs[2].Reply)
	}
	if got := b.lease(10, b.now); !equal(seqs(got), []uint64{1}) {
		t.Fatalf("leased a suppressed job: %v", seqs(got))
	}
}

func testFieldsPreserved(t *testing.T, b *bundle) {
	b.create()
	j := job(7)
	j.Fields = []string{j.Email, "", "Hopper, Grace", "two\r\nlines", "李雷 Zoë", `"quoted"`}
	if _, err := b.q.Enqueue(b.ctx, b.id, []queue.Job{j}); err != nil {
		t.Fatal(err)
	}
	got := b.lease(1, b.now)
	if len(got) != 1 || fmt.Sprintf("%q", got[0].Fields) != fmt.Sprintf("%q", j.Fields) || got[0].Key != j.Key || got[0].Email != j.Email || !got[0].Enqueued.Equal(j.Enqueued) {
		t.Fatalf("leased %+v, enqueued %+v", got, j)
	}
	if w := b.jobs()[7]; fmt.Sprintf("%q", w.Fields) != fmt.Sprintf("%q", j.Fields) {
		t.Fatalf("walk %q", w.Fields)
	}
}

// A job given with both its Fields and its Row comes back with its Fields,
// or with its Row alone (a queue that keeps the place of the row instead),
// in Lease and in Walk; a job given with its Fields only keeps them.
func testFieldsOrRow(t *testing.T, b *bundle) {
	b.create()
	j := job(3)
	j.Row = queue.RowRef{Offset: 1 << 33, Size: 41, Sum: 0xdeadbeef}
	if _, err := b.q.Enqueue(b.ctx, b.id, []queue.Job{j, job(4)}); err != nil {
		t.Fatal(err)
	}
	check := func(what string, got queue.Job) {
		t.Helper()
		fields := fmt.Sprintf("%q", got.Fields) == fmt.Sprintf("%q", j.Fields)
		row := got.Fields == nil && got.Row == j.Row
		if !fields && !row || got.Key != j.Key || got.Email != j.Email || !got.Enqueued.Equal(j.Enqueued) {
			t.Fatalf("%s %+v, enqueued %+v: want its fields or its row", what, got, j)
		}
	}
	got := b.lease(2, b.now)
	if len(got) != 2 || got[1].Seq != 4 || fmt.Sprintf("%q", got[1].Fields) != fmt.Sprintf("%q", job(4).Fields) {
		t.Fatalf("leased %+v", got)
	}
	check("leased", got[0])
	check("walked", b.jobs()[3])
}

func testLeaseOrder(t *testing.T, b *bundle) {
	b.create()
	b.enqueue(5, 1, 3, 2, 4, 6)
	first := b.lease(2, b.now)
	if !equal(seqs(first), []uint64{1, 2}) {
		t.Fatalf("pending jobs must come in Seq order: %v", seqs(first))
	}
	if first[0].State != queue.Leased || first[0].Lease == first[1].Lease || first[0].Lease == 0 {
		t.Fatalf("leases %+v", first)
	}
	// 1 retries later than 2; both become due.
	b.settle(
		queue.Settlement{Seq: 1, Lease: first[0].Lease, State: queue.Retry, At: b.now.Add(20 * time.Second), CountAttempt: true, Reply: "451 try later"},
		queue.Settlement{Seq: 2, Lease: first[1].Lease, State: queue.Retry, At: b.now.Add(10 * time.Second), CountAttempt: true, Reply: "451 try later"},
	)
	if next, ok, err := b.q.NextDue(b.ctx, b.id); err != nil || !ok || !next.Equal(b.now.Add(10*time.Second)) {
		t.Fatalf("NextDue %v %v %v", next, ok, err)
	}
	if got := b.lease(2, b.now.Add(5*time.Second)); !equal(seqs(got), []uint64{3, 4}) {
		t.Fatalf("retries not yet due were leased: %v", seqs(got))
	}
	got := b.lease(3, b.now.Add(30*time.Second))
	if !equal(seqs(got), []uint64{2, 1, 5}) {
		t.Fatalf("due retries first, oldest due first, then pending: %v", seqs(got))
	}
	if got[0].Attempts != 1 || got[0].Reply != "451 try later" {
		t.Fatalf("retry lost its attempts or reply: %+v", got[0])
	}
	b.jobs()
}

func testLeaseExpiry(t *testing.T, b *bundle) {
	b.create()
	b.enqueue(1, 2)
	a := b.lease(1, b.now)
	if got := b.lease(5, b.now.Add(30*time.Second)); !equal(seqs(got), []uint64{2}) {
		t.Fatalf("a live lease was handed out again: %v", seqs(got))
	}
	again := b.lease(5, b.now.Add(61*time.Second))
	if !equal(seqs(again), []uint64{1}) {
		t.Fatalf("the expired lease (and only it) must come back: %v", seqs(again))
	}
	if again[0].Lease == a[0].Lease {
		t.Fatal("a new lease must carry a new token")
	}
	if lost := b.settle(queue.Settlement{Seq: 1, Lease: a[0].Lease, State: queue.Sent}); !equal(lost, []uint64{1}) {
		t.Fatalf("the dead holder's settlement must be refused: %v", lost)
	}
	if b.jobs()[1].State != queue.Leased {
		t.Fatal("a stale settlement changed the job")
	}
}

func testSettleStates(t *testing.T, b *bundle) {
	b.create()
	b.enqueue(1, 2, 3, 4)
	l := b.lease(4, b.now)
	lost := b.settle(
		queue.Settlement{Seq: 1, Lease: l[0].Lease, State: queue.Sent, Reply: "250 2.0.0 queued", Provider: "p1", SentAt: b.now},
		queue.Settlement{Seq: 2, Lease: l[1].Lease, State: queue.Failed, CountAttempt: true, Reply: "550 5.1.1 no such user", Provider: "p1", Suppress: true},
		queue.Settlement{Seq: 3, Lease: l[2].Lease, State: queue.Retry, At: b.now.Add(time.Minute), Reply: "454 Throttling failure", Provider: "p2"},
		queue.Settlement{Seq: 4, Lease: l[3].Lease, State: queue.Failed, CountAttempt: true, Reply: "554 DT:SPM", Provider: "p1"},
	)
	if len(lost) != 0 {
		t.Fatalf("lost %v", lost)
	}
	jobs := b.jobs()
	if j := jobs[1]; j.State != queue.Sent || j.Reply != "250 2.0.0 queued" || j.Provider != "p1" || j.Attempts != 0 {
		t.Fatalf("sent %+v", j)
	}
	if j := jobs[2]; j.State != queue.Failed || j.Attempts != 1 || j.Reply != "550 5.1.1 no such user" {
		t.Fatalf("failed %+v", j)
	}
	supp, err := b.q.Suppressed(b.ctx, "news.example", jobs[2].Key, jobs[4].Key)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := supp[jobs[2].Key]; !ok || e.Reason != "550 5.1.1 no such user" || e.At.IsZero() {
		t.Fatalf("Suppress did not add the key to the campaign's suppression list: %+v", supp)
	}
	if _, ok := supp[jobs[4].Key]; ok {
		t.Fatal("a failure without Suppress suppressed the key")
	}
	if j := jobs[3]; j.State != queue.Retry || j.Attempts != 0 || !j.At.Equal(b.now.Add(time.Minute)) || j.Provider != "p2" {
		t.Fatalf("retry %+v", j)
	}
	if c, _ := b.q.Counts(b.ctx, b.id); c.Open() != 1 || c.Total() != 4 {
		t.Fatalf("counts %+v", c)
	}
}

func testSettleStaleLease(t *testing.T, b *bundle) {
	b.create()
	b.enqueue(1)
	l := b.lease(1, b.now)
	b.settle(queue.Settlement{Seq: 1, Lease: l[0].Lease, State: queue.Sent})
	if lost := b.settle(queue.Settlement{Seq: 1, Lease: l[0].Lease, State: queue.Failed}); !equal(lost, []uint64{1}) {
		t.Fatalf("settling twice: lost %v", lost)
	}
	// The same outcome again (a batch retried after a lost reply) is
	// taken as done, and changes nothing.
	before, _ := b.q.Counts(b.ctx, b.id)
	if lost := b.settle(queue.Settlement{Seq: 1, Lease: l[0].Lease, State: queue.Sent}); len(lost) != 0 {
		t.Fatalf("the same settlement again: lost %v", lost)
	}
	if after, _ := b.q.Counts(b.ctx, b.id); after != before {
		t.Fatalf("the same settlement again moved the counts: %+v, then %+v", before, after)
	}
	if lost := b.settle(queue.Settlement{Seq: 99, Lease: 1, State: queue.Sent}); !equal(lost, []uint64{99}) {
		t.Fatalf("unknown job: lost %v", lost)
	}
	if b.jobs()[1].State != queue.Sent {
		t.Fatal("a stale settlement changed a final job")
	}
}

func testRelease(t *testing.T, b *bundle) {
	b.create()
	b.enqueue(1, 2)
	l := b.lease(2, b.now)
	stale := l[1]
	stale.Lease++
	if err := b.q.Release(b.ctx, b.id, []queue.Job{l[0], stale}); err != nil {
		t.Fatal(err)
	}
	jobs := b.jobs()
	if jobs[1].State != queue.Pending || jobs[1].Attempts != 0 || jobs[2].State != queue.Leased {
		t.Fatalf("%+v", jobs)
	}
	if got := b.lease(5, b.now); !equal(seqs(got), []uint64{1}) {
		t.Fatalf("released job not leased again: %v", seqs(got))
	}
}

func testPauseAndCancel(t *testing.T, b *bundle) {
	b.create()
	b.enqueue(1, 2, 3, 4)
	l := b.lease(2, b.now)
	b.settle(queue.Settlement{Seq: 1, Lease: l[0].Lease, State: queue.Sent})
	if err := b.q.SetStatus(b.ctx, b.id, queue.Paused, "too many policy rejections"); err != nil {
		t.Fatal(err)
	}
	if got := b.lease(5, b.now); len(got) != 0 {
		t.Fatalf("leased while paused: %v", seqs(got))
	}
	if c, _ := b.q.Campaign(b.ctx, b.id); c.Status != queue.Paused || c.Reason != "too many policy rejections" {
		t.Fatalf("%+v", c)
	}
	if err := b.q.SetStatus(b.ctx, b.id, queue.Active, ""); err != nil {
		t.Fatal(err)
	}
	l2 := b.lease(1, b.now)
	b.settle(queue.Settlement{Seq: l2[0].Seq, Lease: l2[0].Lease, State: queue.Retry, At: b.now.Add(time.Hour)})
	if err := b.q.SetStatus(b.ctx, b.id, queue.CampaignCancelled, "by user"); err != nil {
		t.Fatal(err)
	}
	jobs := b.jobs()
	if jobs[1].State != queue.Sent || jobs[2].State != queue.Leased || jobs[3].State != queue.Cancelled || jobs[4].State != queue.Cancelled {
		t.Fatalf("cancel: %+v", jobs)
	}
	if _, ok, _ := b.q.NextDue(b.ctx, b.id); !ok {
		t.Fatal("the leased job's deadline must remain")
	}
	b.settle(queue.Settlement{Seq: 2, Lease: l[1].Lease, State: queue.Sent})
	if _, ok, _ := b.q.NextDue(b.ctx, b.id); ok {
		t.Fatal("a cancelled retry is still due")
	}
	b.jobs()
}

func testUsage(t *testing.T, b *bundle) {
	b.create()
	b.enqueue(1, 2, 3, 4)
	l := b.lease(4, b.now)
	b.settle(
		queue.Settlement{Seq: 1, Lease: l[0].Lease, State: queue.Sent, Provider: "qt-usage-a", SentAt: b.now.Add(-2 * time.Hour)},
		queue.Settlement{Seq: 2, Lease: l[1].Lease, State: queue.Sent, Provider: "qt-usage-a", SentAt: b.now},
		queue.Settlement{Seq: 3, Lease: l[2].Lease, State: queue.Sent, Provider: "qt-usage-b", SentAt: b.now},
		queue.Settlement{Seq: 4, Lease: l[3].Lease, State: queue.Failed, Provider: "qt-usage-a", SentAt: b.now},
	)
	for _, tt := range []struct {
		p     string
		since time.Time
		want  int64
	}{
		{"qt-usage-a", b.now.Add(-24 * time.Hour), 2},
		{"qt-usage-a", b.now.Add(-time.Hour), 1},
		{"qt-usage-b", b.now.Add(-time.Hour), 1},
		{"qt-usage", b.now.Add(-24 * time.Hour), 0},
	} {
		if n, err := b.q.Usage(b.ctx, tt.p, tt.since); err != nil || n != tt.want {
			t.Errorf("Usage(%s, %v) = %d %v, want %d", tt.p, tt.since, n, err, tt.want)
		}
	}
}

func testConcurrentLeaseOnce(t *testing.T, b *bundle) {
	b.create()
	const n = 600
	var all []uint64
	for i := uint64(1); i <= n; i++ {
		all = append(all, i)
	}
	b.enqueue(all...)
	var mu sync.Mutex
	got := map[uint64]int{}
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Go(func() {
			for {
				jobs, err := b.q.Lease(b.ctx, b.id, b.now, 7, time.Hour)
				if err != nil {
					t.Error(err)
					return
				}
				if len(jobs) == 0 {
					return
				}
				var s []queue.Settlement
				for _, j := range jobs {
					s = append(s, queue.Settlement{Seq: j.Seq, Lease: j.Lease, State: queue.Sent})
				}
				lost, err := b.q.Settle(b.ctx, b.id, s)
				if err != nil || len(lost) > 0 {
					t.Errorf("settle: lost %v err %v", lost, err)
					return
				}
				mu.Lock()
				for _, j := range jobs {
					got[j.Seq]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(got) != n {
		t.Fatalf("%d of %d jobs handed out", len(got), n)
	}
	for seq, k := range got {
		if k != 1 {
			t.Fatalf("job %d handed out %d times", seq, k)
		}
	}
	if c, _ := b.q.Counts(b.ctx, b.id); c.Sent != n || c.Open() != 0 {
		t.Fatalf("counts %+v", c)
	}
}

func testExtend(t *testing.T, b *bundle) {
	b.create()
	b.enqueue(1, 2)
	l := b.lease(2, b.now) // until now+1m
	stale := l[1]
	stale.Lease++
	lost, err := b.q.Extend(b.ctx, b.id, []queue.Job{l[0], stale}, b.now.Add(5*time.Minute))
	if err != nil || !equal(lost, []uint64{2}) {
		t.Fatalf("Extend: lost %v err %v", lost, err)
	}
	re := b.lease(5, b.now.Add(2*time.Minute))
	if !equal(seqs(re), []uint64{2}) {
		t.Fatalf("after 2 minutes only the unextended lease may come back: %v", seqs(re))
	}
	b.settle(queue.Settlement{Seq: 2, Lease: re[0].Lease, State: queue.Sent})
	if next, ok, _ := b.q.NextDue(b.ctx, b.id); !ok || next.After(b.now.Add(5*time.Minute)) || next.Before(b.now.Add(3*time.Minute)) {
		t.Fatalf("NextDue %v", next)
	}
	got := b.lease(5, b.now.Add(6*time.Minute))
	if !equal(seqs(got), []uint64{1}) {
		t.Fatalf("the extended lease must come back after its new deadline: %v", seqs(got))
	}
	if lost := b.settle(queue.Settlement{Seq: 1, Lease: l[0].Lease, State: queue.Sent}); !equal(lost, []uint64{1}) {
		t.Fatalf("the old holder settled after losing the lease: %v", lost)
	}
	b.jobs()
}

func testSpecAndList(t *testing.T, b *bundle) {
	if _, err := b.q.Spec(b.ctx, b.id); !errors.Is(err, queue.ErrNoCampaign) {
		t.Fatalf("Spec of a missing campaign: %v", err)
	}
	if err := b.q.SetSpec(b.ctx, b.id, []byte("x")); !errors.Is(err, queue.ErrNoCampaign) {
		t.Fatalf("SetSpec of a missing campaign: %v", err)
	}
	if ids, err := b.q.Campaigns(b.ctx); err != nil || len(ids) != 0 {
		t.Fatalf("Campaigns of an empty queue: %v %v", ids, err)
	}
	spec := []byte("{\"from\":\"a@example.com\"}\x00binary\xff")
	c, err := b.q.CreateCampaign(b.ctx, queue.Campaign{ID: b.id, Header: []string{"email"}, Status: queue.Active, Spec: spec})
	if err != nil || c.Spec != nil {
		t.Fatalf("CreateCampaign must not return the spec: %q %v", c.Spec, err)
	}
	if c, _ := b.q.Campaign(b.ctx, b.id); c.Spec != nil {
		t.Fatalf("Campaign must leave Spec nil: %q", c.Spec)
	}
	if got, err := b.q.Spec(b.ctx, b.id); err != nil || string(got) != string(spec) {
		t.Fatalf("Spec = %q %v", got, err)
	}
	if _, err := b.q.CreateCampaign(b.ctx, queue.Campaign{ID: b.id, Header: []string{"email"}, Spec: []byte("other")}); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.q.Spec(b.ctx, b.id); string(got) != string(spec) {
		t.Fatalf("a second CreateCampaign replaced the spec: %q", got)
	}
	if err := b.q.SetSpec(b.ctx, b.id, []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.q.Spec(b.ctx, b.id); string(got) != "v2" {
		t.Fatalf("after SetSpec: %q", got)
	}
	if _, err := b.q.CreateCampaign(b.ctx, queue.Campaign{ID: b.id + "-a", Header: []string{"email"}}); err != nil {
		t.Fatal(err)
	}
	if got, err := b.q.Spec(b.ctx, b.id+"-a"); err != nil || got != nil {
		t.Fatalf("no spec stored: %q %v", got, err)
	}
	if ids, err := b.q.Campaigns(b.ctx); err != nil || fmt.Sprint(ids) != fmt.Sprint([]string{b.id, b.id + "-a"}) {
		t.Fatalf("Campaigns = %v %v", ids, err)
	}
}

func testRetryFailed(t *testing.T, b *bundle) {
	b.create()
	b.enqueue(1, 2, 3, 4)
	l := b.lease(4, b.now)
	b.settle(
		queue.Settlement{Seq: 1, Lease: l[0].Lease, State: queue.Sent},
		queue.Settlement{Seq: 2, Lease: l[1].Lease, State: queue.Failed, CountAttempt: true, Reply: "554 DT:SPM"},
		queue.Settlement{Seq: 3, Lease: l[2].Lease, State: queue.Failed, CountAttempt: true, Reply: "550 5.1.1 no such user", Suppress: true},
		queue.Settlement{Seq: 4, Lease: l[3].Lease, State: queue.Retry, At: b.now.Add(200 * time.Hour)},
	)
	before, _ := b.q.Counts(b.ctx, b.id)
	later := b.now.Add(100 * time.Hour)
	res, err := b.q.RetryFailed(b.ctx, b.id, later)
	if err != nil || res != (queue.RetryResult{Requeued: 1, Suppressed: 1}) {
		t.Fatalf("RetryFailed = %+v %v", res, err)
	}
	if c, _ := b.q.Counts(b.ctx, b.id); c.Failed != before.Failed-1 || c.Pending != before.Pending+1 || c.Total() != before.Total() {
		t.Fatalf("counts %+v after RetryFailed, %+v before", c, before)
	}
	jobs := b.jobs()
	if j := jobs[2]; j.State != queue.Pending || j.Attempts != 0 || !j.Enqueued.Equal(later) || j.Email != job(2).Email || len(j.Fields) != 2 {
		t.Fatalf("requeued job: %+v", j)
	}
	if jobs[3].State != queue.Failed || jobs[1].State != queue.Sent || jobs[4].State != queue.Retry {
		t.Fatalf("others must not move: %+v", jobs)
	}
	got := b.lease(5, later)
	if !equal(seqs(got), []uint64{2}) || !got[0].Enqueued.Equal(later) {
		t.Fatalf("the requeued job is not leased again: %+v", got)
	}
	if res, err := b.q.RetryFailed(b.ctx, b.id, later); err != nil || res.Requeued != 0 {
		t.Fatalf("second RetryFailed: %+v %v", res, err)
	}
	if _, err := b.q.RetryFailed(b.ctx, "no-such-campaign", later); !errors.Is(err, queue.ErrNoCampaign) {
		t.Fatalf("RetryFailed of a missing campaign: %v", err)
	}
}

func testSuppressionLists(t *testing.T, b *bundle) {
	before := time.Now().Add(-time.Second)
	if err := b.q.Suppress(b.ctx, "a.example", "unsubscribed (one-click)", "x@example.org", "b@example.org"); err != nil {
		t.Fatal(err)
	}
	// A key already on the list keeps its first reason.
	if err := b.q.Suppress(b.ctx, "a.example", "hard bounce 5.1.1", "x@example.org", "c@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := b.q.Suppress(b.ctx, "b.example", "manual", "x@example.org"); err != nil {
		t.Fatal(err)
	}
	var walked []string
	err := b.q.WalkSuppressed(b.ctx, "a.example", func(s queue.Suppression) error {
		if s.At.Before(before) || s.At.After(time.Now().Add(time.Second)) {
			t.Errorf("%s: time %v", s.Key, s.At)
		}
		walked = append(walked, s.Key+"="+s.Reason)
		return nil
	})
	want := []string{"b@example.org=unsubscribed (one-click)", "c@example.org=hard bounce 5.1.1", "x@example.org=unsubscribed (one-click)"}
	if err != nil || fmt.Sprint(walked) != fmt.Sprint(want) {
		t.Fatalf("WalkSuppressed = %v %v, want %v", walked, err, want)
	}
	lists, err := b.q.SuppressionLists(b.ctx)
	if err != nil || fmt.Sprint(lists) != "[a.example b.example]" {
		t.Fatalf("SuppressionLists = %v %v", lists, err)
	}
	n, err := b.q.Unsuppress(b.ctx, "a.example", "x@example.org", "nobody@example.org")
	if err != nil || n != 1 {
		t.Fatalf("Unsuppress = %d %v", n, err)
	}
	got, _ := b.q.Suppressed(b.ctx, "a.example", "x@example.org", "b@example.org")
	if _, ok := got["x@example.org"]; ok || len(got) != 1 {
		t.Fatalf("after Unsuppress: %+v", got)
	}
	if got, _ := b.q.Suppressed(b.ctx, "b.example", "x@example.org"); len(got) != 1 {
		t.Fatal("Unsuppress on one list removed the key from another")
	}
	if _, err := b.q.Unsuppress(b.ctx, "b.example", "x@example.org"); err != nil {
		t.Fatal(err)
	}
	if lists, _ := b.q.SuppressionLists(b.ctx); fmt.Sprint(lists) != "[a.example]" {
		t.Fatalf("an emptied list is still named: %v", lists)
	}
	stop := errors.New("stop")
	calls := 0
	if err := b.q.WalkSuppressed(b.ctx, "a.example", func(queue.Suppression) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("WalkSuppressed did not stop at fn's error: %v after %d calls", err, calls)
	}
}

func testSoftBounce(t *testing.T, b *bundle) {
	for i, id := range []string{"<b1@mx>", "<b2@mx>", "<b1@mx>", "<b3@mx>"} {
		n, err := b.q.SoftBounce(b.ctx, "a.example", "ann@example.org", id)
		want := []int{1, 2, 2, 3}[i]
		if err != nil || n != want {
			t.Fatalf("bounce %d (%s): count %d %v, want %d", i, id, n, err, want)
		}
	}
	if n, _ := b.q.SoftBounce(b.ctx, "b.example", "ann@example.org", "<b1@mx>"); n != 1 {
		t.Fatalf("another list shares the count: %d", n)
	}
	if n, _ := b.q.SoftBounce(b.ctx, "a.example", "bob@example.org", "<b1@mx>"); n != 1 {
		t.Fatalf("another key shares the count: %d", n)
	}
	// Unsuppress forgets the soft bounces: a re-subscribed address starts again.
	if _, err := b.q.Unsuppress(b.ctx, "a.example", "ann@example.org"); err != nil {
		t.Fatal(err)
	}
	if n, _ := b.q.SoftBounce(b.ctx, "a.example", "ann@example.org", "<b4@mx>"); n != 1 {
		t.Fatalf("after Unsuppress the count is %d, want 1", n)
	}
}

// Migrator is a store that keeps, beside its per-domain lists, the single
// suppression list an earlier herald kept for every sending domain.
type Migrator interface {
	queue.Queue
	LegacySuppressions(ctx context.Context) (int, error)
	MigrateSuppressions(ctx context.Context, list string) (int, error)
}

// RunMigration checks that the legacy entries seed writes move onto a
// domain's list with their reasons, and that an address already there keeps
// its entry. seed stores legacy entries (address → reason) in q.
func RunMigration(t *testing.T, q Migrator, seed func(entries map[string]string)) {
	ctx := context.Background()
	seed(map[string]string{"ann@example.org": "550 5.1.1 no such user", "bob@example.org": "unsubscribed"})
	if err := q.Suppress(ctx, "news.example", "manual", "bob@example.org"); err != nil {
		t.Fatal(err)
	}
	if n, err := q.LegacySuppressions(ctx); err != nil || n != 2 {
		t.Fatalf("LegacySuppressions = %d, %v", n, err)
	}
	if n, err := q.MigrateSuppressions(ctx, "news.example"); err != nil || n != 2 {
		t.Fatalf("MigrateSuppressions = %d, %v", n, err)
	}
	got, _ := q.Suppressed(ctx, "news.example", "ann@example.org", "bob@example.org")
	if got["ann@example.org"].Reason != "550 5.1.1 no such user" || got["bob@example.org"].Reason != "manual" {
		t.Fatalf("after the migration: %+v", got)
	}
	if n, _ := q.LegacySuppressions(ctx); n != 0 {
		t.Fatalf("%d legacy entries left", n)
	}
}

// RunVanished checks a backend that can lose a campaign's data (Redis
// without persistence): q has created and read a campaign when lose wipes
// the store; then every call naming the campaign returns a
// *queue.VanishedError (not queue.ErrNoCampaign, which would let a new run
// plan it again and send everything twice) with the counts q had seen,
// and so does other, a second queue on the same store (another process),
// which had never seen the campaign, including CreateCampaign. A campaign
// neither had seen is still merely missing.
func RunVanished(t *testing.T, q, other queue.Queue, lose func()) {
	ctx := context.Background()
	b := &bundle{t: t, q: q, ctx: ctx, id: "vanishing", now: time.Unix(1_800_000_000, 0)}
	b.create()
	b.enqueue(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	leased := b.lease(4, b.now)
	b.settle(queue.Settlement{Seq: leased[0].Seq, Lease: leased[0].Lease, State: queue.Sent},
		queue.Settlement{Seq: leased[1].Seq, Lease: leased[1].Lease, State: queue.Sent})
	if c, err := q.Counts(ctx, b.id); err != nil || c.Sent != 2 {
		t.Fatalf("counts before the loss: %+v %v", c, err)
	}

	lose()

	check := func(who, op string, err error) {
		t.Helper()
		var v *queue.VanishedError
		switch {
		case !errors.Is(err, queue.ErrVanished) || !errors.As(err, &v):
			t.Errorf("%s: %s after the loss: %v, want queue.ErrVanished", who, op, err)
		case errors.Is(err, queue.ErrNoCampaign):
			t.Errorf("%s: %s: %v also matches ErrNoCampaign", who, op, err)
		case v.Campaign != b.id || v.Sent != 2 || v.Total != 10 || v.At.IsZero():
			t.Errorf("%s: %s: %+v, want campaign %s, 2 of 10 sent, a time", who, op, v, b.id)
		}
	}
	s := []queue.Settlement{{Seq: leased[2].Seq, Lease: leased[2].Lease, State: queue.Sent}}
	// The first call to notice writes the tombstone: Settle, as in a run.
	_, err := q.Settle(ctx, b.id, s)
	check("q", "Settle", err)
	for who, qq := range map[string]queue.Queue{"q": q, "other": other} {
		_, err := qq.Lease(ctx, b.id, b.now, 5, time.Minute)
		check(who, "Lease", err)
		_, err = qq.Settle(ctx, b.id, s)
		check(who, "Settle", err)
		_, err = qq.Extend(ctx, b.id, leased[3:], b.now.Add(time.Hour))
		check(who, "Extend", err)
		check(who, "Release", qq.Release(ctx, b.id, leased[3:]))
		_, err = qq.Counts(ctx, b.id)
		check(who, "Counts", err)
		_, err = qq.Campaign(ctx, b.id)
		check(who, "Campaign", err)
		check(who, "Walk", qq.Walk(ctx, b.id, func(queue.Job) error { return nil }))
		_, err = qq.Recipient(ctx, b.id, "user1@example.com")
		check(who, "Recipient", err)
		_, err = qq.Spec(ctx, b.id)
		check(who, "Spec", err)
		check(who, "SetSpec", qq.SetSpec(ctx, b.id, []byte("x")))
		check(who, "SetStatus", qq.SetStatus(ctx, b.id, queue.Paused, "x"))
		check(who, "MarkPlanned", qq.MarkPlanned(ctx, b.id))
		_, err = qq.Enqueue(ctx, b.id, []queue.Job{job(11)})
		check(who, "Enqueue", err)
		_, err = qq.RetryFailed(ctx, b.id, b.now)
		check(who, "RetryFailed", err)
		_, err = qq.CreateCampaign(ctx, queue.Campaign{ID: b.id, Header: []string{"email", "name"}, Created: b.now, Status: queue.Active})
		check(who, "CreateCampaign", err)
	}
	if _, err := other.Campaign(ctx, "never-planned"); !errors.Is(err, queue.ErrNoCampaign) {
		t.Errorf("a campaign never planned: %v, want ErrNoCampaign", err)
	}
}
