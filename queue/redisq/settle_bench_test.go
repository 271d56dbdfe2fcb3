package redisq

import (
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/heraldmail/herald/internal/redistest"
	"github.com/heraldmail/herald/queue"
)

// cpuSeconds is this process's user+system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// redisCPU is the server's used_cpu_user + used_cpu_sys.
func redisCPU(b *testing.B, q *Queue) float64 {
	info, err := q.rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var s float64
	for _, k := range []string{"used_cpu_user", "used_cpu_sys"} {
		v, _ := infoField(info, k)
		f, _ := strconv.ParseFloat(v, 64)
		s += f
	}
	return s
}

// BenchmarkSettleEach settles leased jobs one at a time, as a sender that
// waits for each outcome's acknowledgement before its next message makes
// the settler do: the cost of one acknowledgement, in this process's CPU
// and the server's (per 1,000 settlements).
func BenchmarkSettleEach(b *testing.B) {
	srv := redistest.Start(b, "--appendonly", "no")
	q, err := Open(context.Background(), srv.URL(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	fill(b, q, "b", 200000)
	now := time.Now()
	var jobs []queue.Job
	for len(jobs) < 100000 {
		l, err := q.Lease(ctx, "b", now, 2000, time.Hour)
		if err != nil || len(l) == 0 {
			b.Fatal("lease", err)
		}
		jobs = append(jobs, l...)
	}
	n := 0
	q.rdb.ConfigResetStat(ctx)
	c0, r0 := cpuSeconds(), redisCPU(b, q)
	for b.Loop() {
		if len(jobs) == 0 {
			b.Fatal("ran out of leased jobs: use -benchtime 100000x or less")
		}
		j := jobs[0]
		jobs = jobs[1:]
		s := []queue.Settlement{{Seq: j.Seq, Lease: j.Lease, State: queue.Sent, CountAttempt: true, Reply: "250 2.0.0 Ok: queued as 4Bx7Yk2zQpz1", Provider: "sink", SentAt: now}}
		if lost, err := q.Settle(ctx, "b", s); err != nil || len(lost) > 0 {
			b.Fatal(lost, err)
		}
		n++
	}
	c1, r1 := cpuSeconds(), redisCPU(b, q)
	if info, err := q.rdb.Info(ctx, "commandstats").Result(); err == nil {
		b.Log(info) // -v: what the scripts cost the server
	}
	b.ReportMetric((c1-c0)/float64(n)*1000*1000, "client-ms/1k")
	b.ReportMetric((r1-r0)/float64(n)*1000*1000, "redis-ms/1k")
}
