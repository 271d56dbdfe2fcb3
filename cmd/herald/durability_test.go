package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldmail/herald/internal/redistest"
	"github.com/heraldmail/herald/sink"
)

// volatileRedis is a redis-server that keeps nothing across a restart.
var volatileRedis = []string{"--save", "", "--appendonly", "no"}

// TestRedisWithoutPersistenceRefused: send, enqueue and worker refuse a
// Redis that keeps nothing (exit 2, naming queue.volatile) before
// anything is planned or sent, without showing the URL's password;
// status still reads it; with queue.volatile = true send goes ahead.
func TestRedisWithoutPersistenceRefused(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t, append(volatileRedis, "--requirepass", "pw-s3cret")...)
	s := startSink(t, sink.Config{})
	url := "unix://:pw-s3cret@" + strings.TrimPrefix(rs.URL(), "unix://")
	queueTOML := fmt.Sprintf("[queue]\nbackend = \"redis\"\nurl = %q\n", url)
	c := newCampaignOn(t, s, 20, "", queueTOML)
	w := newCampaignOn(t, s, 1, "", queueTOML)
	for _, args := range [][]string{{"send", "--config", c.conf}, {"enqueue", "--config", c.conf}, {"worker", "--config", w.conf}} {
		code, out, e := runHerald(t, nil, args...)
		if code != exitInput || !strings.Contains(e, "queue.volatile") || !strings.Contains(e, `appendonly no, save ""`) {
			t.Fatalf("%s on a Redis without persistence: exit %d\n%s\n%s", args[0], code, out, e)
		}
		if strings.Contains(out+e, "pw-s3cret") {
			t.Fatalf("%s printed the password:\n%s", args[0], e)
		}
	}
	if st := s.Stats(); st.Sessions != 0 {
		t.Fatalf("refused, yet %d sessions", st.Sessions)
	}
	if code, _, e := runHerald(t, nil, "status", "--config", c.conf); code != exitInput || !strings.Contains(e, "no campaign") {
		t.Fatalf("status reads without the check: exit %d %s", code, e)
	}
	// A dry run plans nothing into the queue: not refused.
	if code, _, e := runHerald(t, nil, "send", "--config", c.conf, "--dry-run"); code != 0 {
		t.Fatalf("dry run: exit %d %s", code, e)
	}

	v := newCampaignOn(t, s, 20, "", queueTOML+"volatile = true\n")
	if code, out, e := runHerald(t, nil, "send", "--config", v.conf); code != 0 || !strings.Contains(out, "20 sent") {
		t.Fatalf("queue.volatile = true: exit %d\n%s\n%s", code, out, e)
	}
}

// TestRedisLostMidCampaign restarts a Redis without persistence (declared
// with queue.volatile) under herald send: the run stops naming the
// campaign instead of retrying a campaign that is gone, running it again
// refuses (exit 2) and sends nothing, and status shows it lost.
func TestRedisLostMidCampaign(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t, volatileRedis...)
	s := startSink(t, sink.Config{})
	const n = 3000
	c := newCampaignOn(t, s, n, "rate = 1000\nburst = 10\nconnections = 4",
		fmt.Sprintf("[queue]\nbackend = \"redis\"\nurl = %q\nlease = \"3s\"\nvolatile = true\n", rs.URL()))
	cmd, out, errb := startSend(t, c.conf)
	waitFor(t, 30*time.Second, func() bool { return s.Stats().Messages >= 500 })
	rs.Restart()
	restarted := time.Now()
	err := waitExit(t, cmd, time.Minute)
	stopped := time.Since(restarted)
	atStop := s.Stats().Messages
	t.Logf("herald send after the restart (stopped %s later, %d messages delivered):\n%s%s", stopped.Round(time.Millisecond), atStop, out.String(), errb.String())
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() == 0 || !strings.Contains(errb.String(), "campaign cmdtest vanished: its data was lost from Redis") {
		t.Fatalf("send when Redis lost the campaign: %v", err)
	}
	if stopped > 30*time.Second { // a queue out of reach is retried for 2 minutes
		t.Errorf("the run took %s to stop: it retried a campaign that is gone", stopped)
	}

	code, o, e := runHerald(t, nil, "send", "--config", c.conf)
	if code != exitInput || !strings.Contains(e, "campaign cmdtest vanished") || !strings.Contains(e, "seen sent") || !strings.Contains(e, "give campaign.id a new value") {
		t.Fatalf("send again: exit %d\n%s\n%s", code, o, e)
	}
	if code, _, e := runHerald(t, nil, "enqueue", "--config", c.conf); code != exitInput || !strings.Contains(e, "vanished") {
		t.Fatalf("enqueue again: exit %d %s", code, e)
	}
	time.Sleep(500 * time.Millisecond) // anything still on its way arrives
	if got := s.Stats().Messages; got != atStop {
		t.Fatalf("%d messages when the run stopped, %d after running it again", atStop, got)
	}
	for i := range n {
		if got := s.Received(fmt.Sprintf("u%d@example.com", i)); got > 1 {
			t.Fatalf("u%d received %d times", i, got)
		}
	}
	code, o, e = runHerald(t, nil, "status", "--config", c.conf, "--json")
	var st statusReport
	if code != 0 || json.Unmarshal([]byte(o), &st) != nil || st.Status != "lost" || !strings.Contains(st.Reason, "vanished") {
		t.Fatalf("status of the lost campaign: %d %s %s", code, o, e)
	}
	if code, _, e := runHerald(t, nil, "resume", "--config", c.conf); code != exitInput || !strings.Contains(e, "vanished") {
		t.Fatalf("resume of the lost campaign: %d %s", code, e)
	}
}

// TestWorkerStopsWhenCampaignLost: two workers deliver a campaign from a
// Redis without persistence (queue.volatile) that restarts: both stop,
// naming the campaign, rather than log lost leases; a worker started
// afterwards skips the lost campaign and delivers a new one.
func TestWorkerStopsWhenCampaignLost(t *testing.T) {
	t.Parallel()
	c := newCluster(t, volatileRedis, sink.Config{})
	c.queue += "volatile = true\n"
	const n = 4000
	c.campaign("gone", "g", n, "")
	wconf := c.workerConf("connections = 4\nrate = 800\nburst = 10")
	workers := []*worker{c.startWorker(wconf), c.startWorker(wconf)}
	waitFor(t, time.Minute, func() bool { return c.s.Stats().Messages >= 800 })
	c.rs.Restart()
	for i, w := range workers {
		select {
		case <-w.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("worker %d still runs after Redis lost its campaign:\n%s", i, w.err.String())
		}
		t.Logf("worker %d: exit %d\n%s", i, w.code, w.err.String())
		if w.code == 0 || !strings.Contains(w.err.String(), "worker stopped: campaign gone vanished") {
			t.Fatalf("worker %d: exit %d\n%s", i, w.code, w.err.String())
		}
		if strings.Contains(w.err.String(), "leases lost to another worker") {
			t.Errorf("worker %d took the loss for lost leases", i)
		}
	}
	atStop := c.s.Stats().Messages
	after := c.startWorker(wconf)
	c.campaign("fresh", "f", 50, "")
	waitFor(t, 30*time.Second, func() bool { return c.sentTo("f", 50) == 50 })
	if code := after.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("the later worker: exit %d\n%s", code, after.err.String())
	}
	if got := c.sentTo("g", n); int64(got) != atStop {
		t.Fatalf("the lost campaign was delivered further: %d, then %d", atStop, got)
	}
	dups := duplicatesOf(t, c.s, "f", 50)
	if dups != 0 {
		t.Fatalf("%d duplicates in the new campaign", dups)
	}
}

// waitExit waits for cmd to exit, killing it after d.
func waitExit(t *testing.T, cmd *exec.Cmd, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		t.Fatalf("herald did not stop within %s", d)
		return nil
	}
}
