package main

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldmail/herald/internal/redistest"
	"github.com/heraldmail/herald/queue/redisq"
	"github.com/heraldmail/herald/sink"
)

// The failover tests run two worker processes against a replicated Redis
// (a Redis Cluster; a master, its replica and Sentinels), kill the master
// holding the campaign mid-campaign and let its replica take over. Every
// recipient must get the message; deliveries may stop while the failover
// lasts and a few seconds more, no longer; and no more messages go twice
// than were on their way when the master died (one per connection).
const (
	failoverN     = 3000 // recipients
	failoverConns = 4    // connections per worker
	failoverSlack = 5 * time.Second
)

// newFailoverCluster is a cluster of processes (see worker_test.go) on the
// Redis at url.
func newFailoverCluster(t *testing.T, url string) *cluster {
	// A lease longer than the failover: the workers' leases, renewed
	// every third of it, outlast the time the queue is out of reach.
	return &cluster{t: t, s: startSink(t, sink.Config{}), dir: t.TempDir(),
		queue: fmt.Sprintf("[queue]\nbackend = \"redis\"\nurl = %q\nlease = \"10s\"\n", url)}
}

// deliveries samples the sink's message count until stop is called.
type deliveries struct {
	mu      sync.Mutex
	at      []time.Time
	n       []int64
	stopped chan struct{}
	done    sync.WaitGroup
}

func watchDeliveries(s *sink.Server) *deliveries {
	d := &deliveries{stopped: make(chan struct{})}
	d.done.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-d.stopped:
				return
			case now := <-tick.C:
				d.mu.Lock()
				d.at, d.n = append(d.at, now), append(d.n, s.Stats().Messages)
				d.mu.Unlock()
			}
		}
	})
	return d
}

func (d *deliveries) stop() {
	close(d.stopped)
	d.done.Wait()
}

// firstAt is when the first message arrived.
func (d *deliveries) firstAt() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, n := range d.n {
		if n > 0 {
			return d.at[i]
		}
	}
	return time.Time{}
}

// longestStall is the longest time during which no message arrived, from
// the first message to the last, and when it began.
func (d *deliveries) longestStall() (stall time.Duration, began time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	last := -1 // the sample where the count last changed
	for i := range d.n {
		if d.n[i] == 0 || i > 0 && d.n[i] == d.n[i-1] {
			continue
		}
		if last >= 0 {
			if gap := d.at[i].Sub(d.at[last]); gap > stall {
				stall, began = gap, d.at[last]
			}
		}
		last = i
	}
	return stall, began
}

// failover runs the campaign with two workers, calls kill once a third of
// it is delivered, and checks what the workers did. kill returns once the
// replica serves as the master.
func (c *cluster) failover(id, prefix string, kill func()) {
	t := c.t
	t.Helper()
	conf := c.campaign(id, prefix, failoverN, "")
	// At most 1,000 messages a second for both workers together (the
	// pace is shared through Redis): a few seconds of sending, the
	// failover after the first third.
	wconf := c.workerConf(fmt.Sprintf("connections = %d\nrate = 1000\nburst = 10", failoverConns))
	d := watchDeliveries(c.s)
	start := time.Now()
	workers := []*worker{c.startWorker(wconf), c.startWorker(wconf)}
	waitFor(t, time.Minute, func() bool { return c.s.Stats().Messages >= failoverN/3 })
	atKill := c.s.Stats().Messages
	killed := time.Now()
	kill()
	promoted := time.Since(killed)
	waitFor(t, time.Minute, func() bool { return c.sentTo(prefix, failoverN) >= failoverN })
	delivered := time.Since(start)
	// Every outcome recorded: none was lost with the old master (the
	// workers would send those messages again).
	waitFor(t, 30*time.Second, func() bool { return c.status(conf, id).Open == 0 })
	d.stop()
	for i, w := range workers {
		if code := w.stop(t, syscall.SIGTERM); code != 0 {
			t.Fatalf("worker %d: exit %d\n%s", i, code, w.err.String())
		}
	}
	dups := duplicatesOf(t, c.s, prefix, failoverN)
	stall, began := d.longestStall()
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	t.Logf("first message %s after the workers started; master killed %s later, at %d of %d delivered; the replica served as master %s after the kill; deliveries stopped for %s at most (from %s after the kill); all %d delivered %s after the kill, %d duplicates",
		ms(d.firstAt().Sub(start)), ms(killed.Sub(d.firstAt())), atKill, failoverN, ms(promoted), ms(stall), ms(began.Sub(killed)),
		failoverN, ms(delivered-killed.Sub(start)), dups)
	if stall > promoted+failoverSlack {
		t.Errorf("deliveries stopped for %s: more than the failover (%s) and %s", stall.Round(time.Millisecond), promoted.Round(time.Millisecond), failoverSlack)
	}
	if dups > 2*failoverConns {
		t.Errorf("%d duplicates: more than the %d messages two workers of %d connections have on their way", dups, 2*failoverConns, failoverConns)
	}
	if st := c.status(conf, id); st.Counts["sent"] != failoverN {
		t.Errorf("status after the failover: %+v", st.Counts)
	}
}

// TestWorkersSurviveClusterFailover: on a Redis Cluster of three masters
// with a replica each, the master holding the campaign's slot is killed
// while two workers deliver it; its replica takes over.
func TestWorkersSurviveClusterFailover(t *testing.T) {
	t.Parallel()
	rc := redistest.StartReplicatedCluster(t, 3)
	c := newFailoverCluster(t, rc.URL())
	const id = "cluster-failover"
	c.failover(id, "cf", func() {
		slot := rc.KeySlot(redisq.Prefix + "{" + id + "}:meta")
		master := rc.MasterOf(slot)
		master.Kill()
		rc.WaitPromoted(slot, master, 30*time.Second)
	})
}

// TestWorkersSurviveSentinelFailover: the master three Sentinels watch is
// killed while two workers deliver a campaign; the Sentinels promote its
// replica.
func TestWorkersSurviveSentinelFailover(t *testing.T) {
	t.Parallel()
	set := redistest.StartSentinelSet(t, "herald-f")
	c := newFailoverCluster(t, set.URL())
	c.failover("sentinel-failover", "sf", func() {
		set.Master.Kill()
		set.WaitMaster(set.Replica, 30*time.Second)
	})
}
