package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldmail/herald/sink"
)

// TestOldLayoutCampaign: a campaign stored by a herald from before the
// Redis layout that holds recipients in buckets (its record names no
// layout) is not read as one of today's: enqueue and send refuse it
// with exit 2 and what to do, a worker logs that it cannot deliver it
// and delivers another campaign, and none of its messages go out.
func TestOldLayoutCampaign(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil, sink.Config{})
	old := c.campaign("old", "o", 20, "")
	// What an earlier herald left: the same record without a layout.
	if _, err := c.rs.Do("HDEL", "herald:{old}:meta", "layout"); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"enqueue", "send"} {
		code, out, e := runHerald(t, nil, cmd, "--config", old)
		if code != exitInput || !strings.Contains(e, "campaign old was planned by an earlier herald") || !strings.Contains(e, "herald cancel") {
			t.Fatalf("%s: exit %d\n%s\n%s", cmd, code, out, e)
		}
	}
	w := c.startWorker(c.workerConf("connections = 2"))
	c.campaign("fresh", "f", 30, "")
	waitFor(t, 30*time.Second, func() bool { return c.sentTo("f", 30) == 30 })
	if code := w.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("worker: exit %d\n%s", code, w.err.String())
	}
	if !strings.Contains(w.err.String(), "cannot deliver campaign") || !strings.Contains(w.err.String(), "layout") {
		t.Errorf("the worker did not say why it skips the old campaign:\n%s", w.err.String())
	}
	if got := c.sentTo("o", 20); got != 0 {
		t.Fatalf("%d messages of the old campaign went out", got)
	}
	if code, out, e := runHerald(t, nil, "cancel", "--config", old); code != 0 {
		t.Fatalf("cancel: exit %d\n%s\n%s", code, out, e)
	}
}
