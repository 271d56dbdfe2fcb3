package ratelimit_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldmail/herald/internal/redistest"
	"github.com/heraldmail/herald/queue/redisq"
	"github.com/heraldmail/herald/ratelimit"
	"github.com/heraldmail/herald/ratelimit/limitertest"
)

func TestLocal(t *testing.T) {
	limitertest.Run(t, limitertest.Makers{
		Pacer: func(_ *testing.T, p ratelimit.Policy) ratelimit.Pacer { return ratelimit.NewLocalPacer(p) },
		SharedPacer: func(_ *testing.T, p ratelimit.Policy, n int) []ratelimit.Pacer {
			// One process's senders share its one pacer.
			l := ratelimit.NewLocalPacer(p)
			ps := make([]ratelimit.Pacer, n)
			for i := range ps {
				ps[i] = l
			}
			return ps
		},
		Quota: func(_ *testing.T, n int) ratelimit.Quota { return ratelimit.NewLocalQuota(n) },
		Slots: func(_ *testing.T, n int) ratelimit.Slots { return ratelimit.NewLocalSlots(n) },
	})
}

var names atomic.Int64

// name is a provider name no other test uses.
func name() string { return fmt.Sprintf("p%d", names.Add(1)) }

func client(t *testing.T, srv *redistest.Server) redis.UniversalClient {
	t.Helper()
	o, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedis(t *testing.T) {
	srv := redistest.Start(t)
	limitertest.Run(t, redisMakers(func(t *testing.T) redis.UniversalClient { return client(t, srv) }))
}

// TestRedisCluster runs the suite on a Redis Cluster of three masters with
// a replica each, through the client herald's queue opens: a provider's
// keys share its hash slot, the providers spread over the masters.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartReplicatedCluster(t, 3)
	limitertest.Run(t, redisMakers(func(t *testing.T) redis.UniversalClient { return queueClient(t, c.URL()) }))
}

// TestRedisSentinel runs the suite on the master three Sentinels name.
func TestRedisSentinel(t *testing.T) {
	t.Parallel()
	set := redistest.StartSentinelSet(t, "herald-l")
	limitertest.Run(t, redisMakers(func(t *testing.T) redis.UniversalClient { return queueClient(t, set.URL()) }))
}

// queueClient is the client herald's queue opens for url, as herald send
// and herald worker share it with the limits.
func queueClient(t *testing.T, url string) redis.UniversalClient {
	t.Helper()
	q, err := redisq.Open(context.Background(), url, redisq.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q.Client()
}

// redisMakers makes the shared limits on clients from newClient: one
// client for the limits of one process, one client each for processes
// that share a limit.
func redisMakers(newClient func(t *testing.T) redis.UniversalClient) limitertest.Makers {
	return limitertest.Makers{
		Pacer: func(t *testing.T, p ratelimit.Policy) ratelimit.Pacer {
			return ratelimit.NewRedisPacer(newClient(t), "t:", name(), p)
		},
		SharedPacer: func(t *testing.T, p ratelimit.Policy, n int) []ratelimit.Pacer {
			// n processes: a client and a pacer each, one key.
			key := name()
			ps := make([]ratelimit.Pacer, n)
			for i := range ps {
				ps[i] = ratelimit.NewRedisPacer(newClient(t), "t:", key, p)
			}
			return ps
		},
		Quota: func(t *testing.T, n int) ratelimit.Quota {
			return ratelimit.NewRedisQuota(newClient(t), "t:", name(), n)
		},
		Slots: func(t *testing.T, n int) ratelimit.Slots {
			return ratelimit.NewRedisSlots(newClient(t), "t:", name(), n)
		},
	}
}

// TestRedisShared: two processes (two clients) pacing the same provider
// share its rate, its cool-down, its quota and its connection slots; a
// dead process's slot frees itself after SlotTTL.
func TestRedisShared(t *testing.T) {
	srv := redistest.Start(t)
	a, b := client(t, srv), client(t, srv)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	pol := ratelimit.Policy{Rate: 100, Burst: 1, Cooldown: 10 * time.Second}
	pa, pb := ratelimit.NewRedisPacer(a, "t:", "shared", pol), ratelimit.NewRedisPacer(b, "t:", "shared", pol)
	n := 0
	for now := t0; now.Before(t0.Add(time.Second)); now = now.Add(time.Millisecond) {
		for _, p := range []ratelimit.Pacer{pa, pb} {
			if w, err := p.Take(ctx, now); err != nil {
				t.Fatal(err)
			} else if w == 0 {
				n++
			}
		}
	}
	if n < 99 || n > 101 {
		t.Fatalf("two processes at a shared 100/s took %d in a second", n)
	}
	pa.Throttled(ctx, t0.Add(time.Second))
	if w, _ := pb.Take(ctx, t0.Add(2*time.Second)); w < 8*time.Second {
		t.Fatalf("the other process does not see the cool-down: %v", w)
	}
	// Both processes' messages are in the window: 99 went through in a
	// second (under half the 10 s cool-down: a guess), and the pace drops
	// to at most half of what it was.
	if r, _ := pb.Rate(ctx, t0.Add(2*time.Second)); r != 50 {
		t.Fatalf("the other process does not see the pace learned: %v", r)
	}

	qa, qb := ratelimit.NewRedisQuota(a, "t:", "shared", 3), ratelimit.NewRedisQuota(b, "t:", "shared", 3)
	qa.Take(ctx, t0)
	qb.Take(ctx, t0)
	qa.Take(ctx, t0)
	if ok, _, _ := qb.Take(ctx, t0); ok {
		t.Fatal("the quota is not shared")
	}
	if err := qb.Seed(ctx, t0, 100); err != nil {
		t.Fatal(err)
	}
	if used, _ := qa.Used(ctx, t0); used != 3 {
		t.Fatalf("a seed replaced a live quota: used %d", used)
	}

	sa, sb := ratelimit.NewRedisSlots(a, "t:", "shared", 1), ratelimit.NewRedisSlots(b, "t:", "shared", 1)
	if ok, _ := sa.Acquire(ctx, "a1", t0); !ok {
		t.Fatal("first slot refused")
	}
	if ok, _ := sb.Acquire(ctx, "b1", t0); ok {
		t.Fatal("a second process got the only slot")
	}
	sa.Renew(ctx, t0.Add(ratelimit.SlotTTL/2))
	if ok, _ := sb.Acquire(ctx, "b1", t0.Add(ratelimit.SlotTTL)); ok {
		t.Fatal("a renewed slot was taken")
	}
	// Process a dies: it renews no more.
	t1 := t0.Add(ratelimit.SlotTTL*3/2 + time.Millisecond)
	if ok, _ := sb.Acquire(ctx, "b1", t1); !ok {
		t.Fatal("a dead process's slot did not free itself")
	}
	// Waiters are served in turn: a holder that drops its connection and
	// asks again at once queues behind the one already waiting.
	if ok, _ := sa.Acquire(ctx, "a2", t1); ok {
		t.Fatal("a slot beyond the limit")
	}
	if !sa.Contended() {
		t.Fatal("a waiting holder does not make the slots contended")
	}
	sb.Release(ctx, "b1")
	if ok, _ := sb.Acquire(ctx, "b1", t1.Add(time.Millisecond)); ok {
		t.Fatal("the slot went back to its last holder, not to the waiter")
	}
	if ok, _ := sa.Acquire(ctx, "a2", t1.Add(2*time.Millisecond)); !ok {
		t.Fatal("the waiter did not get the freed slot")
	}
}

// TestRedisPacerConcurrent: many goroutines of two processes at real time
// never get more than rate × time + burst.
func TestRedisPacerConcurrent(t *testing.T) {
	srv := redistest.Start(t)
	pol := ratelimit.Policy{Rate: 200, Burst: 5, Cooldown: time.Second}
	ps := []ratelimit.Pacer{ratelimit.NewRedisPacer(client(t, srv), "t:", "conc", pol), ratelimit.NewRedisPacer(client(t, srv), "t:", "conc", pol)}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var n atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for ratelimit.Wait(ctx, ps[i%2], time.Now) == nil {
				n.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if max := int64(pol.Rate*elapsed.Seconds()) + int64(pol.Burst) + 1; n.Load() > max {
		t.Fatalf("%d messages in %v, more than %d", n.Load(), elapsed, max)
	}
	if n.Load() < 50 {
		t.Fatalf("only %d messages in %v at 200/s", n.Load(), elapsed)
	}
}

// TestRedisPacerRateChange: a process configured without a rate shares the
// key with one that has a rate (a configuration change, or two configs for
// one provider name): the one with a rate keeps pacing.
func TestRedisPacerRateChange(t *testing.T) {
	srv := redistest.Start(t)
	rdb := client(t, srv)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	none := ratelimit.NewRedisPacer(rdb, "t:", "change", ratelimit.Policy{Cooldown: time.Second})
	ten := ratelimit.NewRedisPacer(rdb, "t:", "change", ratelimit.Policy{Rate: 10, Burst: 1, Cooldown: time.Second})
	none.Throttled(ctx, t0)
	if w, err := ten.Take(ctx, t0.Add(1500*time.Millisecond)); err != nil || w != 0 {
		t.Fatalf("after the cool-down: %v %v", w, err)
	}
	if w, _ := ten.Take(ctx, t0.Add(1500*time.Millisecond)); w <= 0 || w > time.Second {
		t.Fatalf("the second message at 10/s waits %v, want about 100ms", w)
	}
}

// TestRedisSharedWindow: processes with no rate count their messages
// without asking Redis each time, yet a throttle reply measures them all
// (each adds its count every 100 ms; the one that met the throttle, up to
// its last message), and every process then paces at the one learned
// rate.
func TestRedisSharedWindow(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	pol := ratelimit.Policy{Cooldown: 10 * time.Second}
	ps := []ratelimit.Pacer{
		ratelimit.NewRedisPacer(client(t, srv), "t:", "window", pol),
		ratelimit.NewRedisPacer(client(t, srv), "t:", "window", pol),
		ratelimit.NewRedisPacer(client(t, srv), "t:", "window", pol),
	}
	// 6 s at 150 msgs/s, 50/s from each process.
	start := t0.Add(time.Second)
	for i := range 900 {
		at := start.Add(time.Duration(i) * time.Second / 150)
		if w, err := ps[i%3].Take(ctx, at); err != nil || w != 0 {
			t.Fatalf("message %d: %v %v", i, w, err)
		}
	}
	at := start.Add(6 * time.Second)
	if err := ps[0].Throttled(ctx, at); err != nil {
		t.Fatal(err)
	}
	// What the two others sent since their last read (under 100 ms each)
	// is missing: at most 2 × 5 of 899.
	for i, p := range ps {
		r, err := p.Rate(ctx, at)
		if err != nil {
			t.Fatal(err)
		}
		if want := 0.85 * 899 / 6; r < want*0.98 || r > want*1.001 {
			t.Fatalf("process %d paces at %.2f, want %.2f (0.85 of the 150/s all three sent)", i, r, want)
		}
	}
	// After the pause each process asks Redis for every message: the three
	// share the learned pace.
	end := at.Add(10 * time.Second)
	n := 0
	for now := end; now.Before(end.Add(time.Second)); now = now.Add(time.Millisecond) {
		for _, p := range ps {
			if w, err := p.Take(ctx, now); err != nil {
				t.Fatal(err)
			} else if w == 0 {
				n++
			}
		}
	}
	if r, _ := ps[1].Rate(ctx, end); n < int(r)-1 || n > int(r)+1 {
		t.Fatalf("three processes at a learned %.1f/s took %d in a second", r, n)
	}
}
