package ratelimit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldmail/herald/internal/redistest"
	"github.com/heraldmail/herald/ratelimit"
)

// The cost of the limits per message, as a sender pays it: every call
// reads the clock (time.Now) and, for the Redis limits, runs its script on
// a real redis-server over a unix socket (go-redis sends EVALSHA, as in a
// real send). The rate is far above what either pacer can take, so that
// Take never waits: what is measured is the bookkeeping, not the pace.
// bench/limits.sh runs them.

// fast is a policy no benchmark can reach: Take always returns 0.
var fast = ratelimit.Policy{Rate: 1e9, Burst: 1e9, Cooldown: time.Minute}

func benchClient(b *testing.B) redis.UniversalClient {
	b.Helper()
	// No persistence: the limiter's own cost, as earlier results measured it.
	srv := redistest.Start(b, "--appendonly", "no")
	o, err := redis.ParseURL(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	c := redis.NewClient(o)
	b.Cleanup(func() { c.Close() })
	return c
}

// perSecond reports the operations a second over the measured time.
func perSecond(b *testing.B, unit string) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, unit)
	}
}

// take is one Take that must not wait.
func take(b *testing.B, ctx context.Context, p ratelimit.Pacer) {
	w, err := p.Take(ctx, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	if w != 0 {
		b.Fatalf("Take waited %v: the benchmark's rate is too low", w)
	}
}

func BenchmarkLocalPacerTake(b *testing.B) {
	ctx := context.Background()
	p := ratelimit.NewLocalPacer(fast)
	for b.Loop() {
		take(b, ctx, p)
	}
	perSecond(b, "takes/s")
}

func BenchmarkRedisPacerTake(b *testing.B) {
	ctx := context.Background()
	p := ratelimit.NewRedisPacer(benchClient(b), "b:", "pace", fast)
	for b.Loop() {
		take(b, ctx, p)
	}
	perSecond(b, "takes/s")
}

// BenchmarkLocalPacerTakeParallel and BenchmarkRedisPacerTakeParallel:
// 4 goroutines per CPU share one pacer (one Redis client and its pool), as
// a worker's senders do (8 connections on 2 CPUs).
func BenchmarkLocalPacerTakeParallel(b *testing.B) {
	takeParallel(b, ratelimit.NewLocalPacer(fast))
}

func BenchmarkRedisPacerTakeParallel(b *testing.B) {
	takeParallel(b, ratelimit.NewRedisPacer(benchClient(b), "b:", "pace", fast))
}

func takeParallel(b *testing.B, p ratelimit.Pacer) {
	ctx := context.Background()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			take(b, ctx, p)
		}
	})
	perSecond(b, "takes/s")
}

// BenchmarkRedisQuotaTake: one message of a daily quota no benchmark can
// spend, counted in the current minute of the rolling window.
func BenchmarkRedisQuotaTake(b *testing.B) {
	ctx := context.Background()
	q := ratelimit.NewRedisQuota(benchClient(b), "b:", "quota", 1<<40)
	for b.Loop() {
		ok, _, err := q.Take(ctx, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if !ok {
			b.Fatal("the quota is spent")
		}
	}
	perSecond(b, "takes/s")
}

// BenchmarkRedisSlotsAcquireRelease: one holder takes a connection slot and
// frees it, while 7 other holders keep theirs (8 connections). A sender
// pays this once per connection, not per message.
func BenchmarkRedisSlotsAcquireRelease(b *testing.B) {
	ctx := context.Background()
	s := ratelimit.NewRedisSlots(benchClient(b), "b:", "conns", 8)
	for i := range 7 {
		if ok, err := s.Acquire(ctx, fmt.Sprintf("other-%d", i), time.Now()); err != nil || !ok {
			b.Fatal("cannot take the other holders' slots", err)
		}
	}
	for b.Loop() {
		ok, err := s.Acquire(ctx, "me", time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if !ok {
			b.Fatal("no slot free")
		}
		if err := s.Release(ctx, "me"); err != nil {
			b.Fatal(err)
		}
	}
	perSecond(b, "pairs/s")
}
