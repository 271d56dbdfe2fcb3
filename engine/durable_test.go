package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldmail/herald/engine"
	"github.com/heraldmail/herald/internal/redistest"
	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/queue/boltq"
	"github.com/heraldmail/herald/queue/redisq"
	"github.com/heraldmail/herald/sink"
)

// durableWatch checks, as the server reads each message, that the outcome
// of the message before it on the same connection is already in the
// store: what herald promises when it cannot note outcomes in a journal
// (the previous message's outcome is durable before the next one's data
// leaves). It checks only previous messages that check(seq) selects.
type durableWatch struct {
	q     *boltq.Queue // set once the store is open
	check func(seq uint64) bool

	mu       sync.Mutex
	last     map[int64]string // session: recipient of its last message
	checked  int
	problems []string
}

func newDurableWatch(check func(uint64) bool) *durableWatch {
	return &durableWatch{check: check, last: map[int64]string{}}
}

var errFound = errors.New("found")

func (w *durableWatch) hook(ev sink.Event) sink.Action {
	if ev.Stage != sink.StageData || len(ev.Recipients) != 1 {
		return sink.Action{}
	}
	w.mu.Lock()
	prev := w.last[ev.Session]
	w.last[ev.Session] = ev.Recipients[0]
	w.mu.Unlock()
	if prev == "" {
		return sink.Action{}
	}
	var job queue.Job
	err := w.q.Walk(context.Background(), "test", func(j queue.Job) error {
		if j.Email == prev {
			job = j
			return errFound
		}
		return nil
	})
	if !errors.Is(err, errFound) || !w.check(job.Seq) {
		return sink.Action{}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.checked++
	if job.State != queue.Sent {
		w.problems = append(w.problems, fmt.Sprintf("session %d, message %d: the data came while %s (the message before) was %s in the store", ev.Session, ev.Message, prev, job.State))
	}
	return sink.Action{}
}

// verify fails t if a message came before its predecessor's outcome was
// stored, or if fewer than min messages were checked at all.
func (w *durableWatch) verify(t *testing.T, min int) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.problems) > 0 {
		t.Errorf("%d of %d messages left before the last outcome was durable; first: %s", len(w.problems), w.checked, w.problems[0])
	}
	if w.checked < min {
		t.Errorf("only %d messages checked, want at least %d: the test did not exercise the path", w.checked, min)
	}
}

// sendAll plans and runs b's campaign of n recipients, watched, through
// server s: everyone is delivered once, and at least half the messages
// were checked.
func (w *durableWatch) sendAll(t *testing.T, b *bundle, s *sink.Server, n int) {
	t.Helper()
	w.q = b.q
	b.plan()
	sum, err := b.run()
	if err != nil || sum.Counts.Sent != int64(n) || sum.Sent != int64(n) {
		t.Fatalf("err %v summary %+v", err, sum)
	}
	if st := s.Stats(); st.Messages != int64(n) {
		t.Fatalf("%d messages for %d recipients", st.Messages, n)
	}
	w.verify(t, n/2)
}

// TestAcknowledgedWithoutJournal: on a queue with no outcome journal each
// sender waits for the group commit of its last message before the next
// one's data leaves; every recipient is delivered once, with and without
// pipelining, and the queue agrees. The server checks the order as it
// reads each message.
func TestAcknowledgedWithoutJournal(t *testing.T) {
	t.Parallel()
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			t.Parallel()
			watch := newDurableWatch(func(uint64) bool { return true })
			s := startSink(t, sink.Config{Faults: sink.Faults{Hook: watch.hook}})
			const n = 600
			b := setup(t, campaignSpec{recipients: addresses(n, "ack"), providers: providerTOML("local", s, fmt.Sprintf("connections = 4\npipelining = %v", pipelining))})
			if _, ok := engine.Queue(b.q).(engine.Journal); !ok {
				t.Fatal("the embedded queue keeps no journal: this test would not change the path")
			}
			b.wrap = func(q *boltq.Queue) engine.Queue { return withoutJournal{q} }
			b.open()
			if _, ok := engine.Queue(withoutJournal{b.q}).(engine.Journal); ok {
				t.Fatal("the wrapper still offers the journal")
			}
			watch.sendAll(t, b, s, n)
		})
	}
}

// failingJournal is the embedded queue whose outcome journal stops
// taking records after the first `after`, as a journal on a disk that
// filled up does (the real journal then refuses every later record too).
type failingJournal struct {
	*boltq.Queue
	after  int64
	notes  atomic.Int64
	failed sync.Map // seq: its record was refused
}

func (f *failingJournal) Note(campaign string, s queue.Settlement) error {
	if f.notes.Add(1) > f.after {
		f.failed.Store(s.Seq, true)
		return errors.New("outcome journal: write herald.db.outcomes.0: no space left on device")
	}
	return f.Queue.Note(campaign, s)
}

// TestJournalFailureFallsBackToGroupCommit: when the journal stops taking
// records mid-campaign, the engine says so once and waits for the queue's
// commit instead: no message's data leaves before the outcome of the one
// before it is in the store, and everyone is delivered once.
func TestJournalFailureFallsBackToGroupCommit(t *testing.T) {
	t.Parallel()
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			t.Parallel()
			fj := &failingJournal{after: 100}
			watch := newDurableWatch(func(seq uint64) bool { _, ok := fj.failed.Load(seq); return ok })
			s := startSink(t, sink.Config{Faults: sink.Faults{Hook: watch.hook}})
			const n = 600
			b := setup(t, campaignSpec{recipients: addresses(n, "jf"), providers: providerTOML("local", s, fmt.Sprintf("connections = 4\npipelining = %v", pipelining))})
			b.wrap = func(q *boltq.Queue) engine.Queue { fj.Queue = q; return fj }
			b.open()
			watch.sendAll(t, b, s, n)
			if c := strings.Count(b.logs.String(), "cannot note an outcome in the journal"); c != 1 {
				t.Errorf("the journal's failure was logged %d times, want once:\n%s", c, b.logs.String())
			}
		})
	}
}

// TestGateHoldsDataWhileQueueOutOfReach: on Redis, with the server
// stopped mid-campaign (SIGSTOP), no connection sends more than the one
// message whose outcome was pending: the gate refuses the next message's
// data (errNotDurable) until the run gives up on the queue. Once Redis
// is back, a new run delivers the rest, each recipient at least once and
// at most one message per connection twice.
func TestGateHoldsDataWhileQueueOutOfReach(t *testing.T) {
	t.Parallel()
	const n, conns = 3000, 4
	rs := redistest.Start(t)
	s := startSink(t, sink.Config{Keep: true})
	b := setup(t, campaignSpec{recipients: addresses(n, "gate"), providers: providerTOML("local", s, fmt.Sprintf("connections = %d", conns)),
		extra: "[queue]\nlease = \"3s\"\n"})
	ctx := context.Background()
	rq, err := redisq.Open(ctx, rs.URL(), redisq.Options{Prefix: "gate:"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rq.Close() })
	timing := engine.Timing{StoreTimeout: 300 * time.Millisecond, QueueOutage: time.Second, StatusPoll: 50 * time.Millisecond}
	newEngine := func() *engine.Engine {
		eng, err := engine.New(b.cfg, rq, engine.Options{Logger: slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Timing: timing, LeaseTTL: b.cfg.Queue.Lease.Duration})
		if err != nil {
			t.Fatal(err)
		}
		return eng
	}
	eng := newEngine()
	if _, err := eng.Plan(ctx, func(p engine.Problem) { t.Logf("problem: %s", p) }); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := eng.Run(runCtx, runCtx)
		done <- err
	}()
	for s.Stats().Messages < n/5 {
		select {
		case err := <-done:
			t.Fatalf("the run ended before Redis was stopped: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	rs.Pause()
	paused := time.Now()
	atPause := s.Stats().Messages
	err = <-done
	took := time.Since(paused)
	t.Logf("the run stopped %v after Redis did", took.Round(time.Millisecond))
	// Each store call is bounded by StoreTimeout (300 ms here) and the run
	// gives up after QueueOutage (1 s): a few seconds. A client that
	// waited out its read timeout and retries on a hung server, instead
	// of its context, took 20 s.
	if took > 10*time.Second {
		t.Errorf("the run went on %v after Redis stopped answering, want it to give up within a few seconds", took)
	}
	var stopped *engine.StoppedError
	if !errors.As(err, &stopped) || !strings.Contains(err.Error(), "queue") {
		rs.Resume()
		t.Fatalf("the run with Redis stopped ended with %v, want a stop naming the queue", err)
	}
	after := s.Stats().Messages - atPause
	t.Logf("Redis stopped at %d messages; %d more arrived before the run stopped (%v)", atPause, after, err)
	if after > conns {
		t.Errorf("%d messages arrived after Redis stopped answering, want at most one per connection (%d)", after, conns)
	}
	rs.Resume()
	runCtx, cancel = context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := newEngine().Run(runCtx, runCtx); err != nil {
		t.Fatalf("the run after Redis came back: %v\n%s", err, b.logs.String()[max(0, len(b.logs.String())-6000):])
	}
	got := map[string]int{}
	for _, m := range s.Messages() {
		for _, r := range m.To {
			got[r]++
		}
	}
	dups := 0
	for _, a := range addresses(n, "gate") {
		switch c := got[a]; {
		case c == 0:
			t.Errorf("%s was never delivered", a)
		case c > 1:
			dups += c - 1
		}
	}
	t.Logf("%d duplicates", dups)
	if dups > conns {
		t.Errorf("%d duplicates, want at most one per connection (%d)", dups, conns)
	}
}
