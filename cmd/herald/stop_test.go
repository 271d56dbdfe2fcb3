package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/heraldmail/herald/sink"
)

// silentServer accepts connections and never says a word (no banner);
// accepted counts them.
func silentServer(t *testing.T) (addr string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = &atomic.Int64{}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			accepted.Add(1)
			go io.Copy(io.Discard, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String(), accepted
}

// pointAt makes the configuration at path send to addr in place of s.
func pointAt(t *testing.T, path string, s *sink.Server, addr string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, from, _ := strings.Cut(s.Addr(), ":")
	_, to, _ := strings.Cut(addr, ":")
	conf := strings.Replace(string(b), "port = "+from+"\n", "port = "+to+"\n", 1)
	if conf == string(b) {
		t.Fatalf("no port %s in %s", from, path)
	}
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// interruptTwice sends SIGINT twice, 100 ms apart, and returns how long
// the process took to exit after the second; it fails the test past
// limit.
func interruptTwice(t *testing.T, cmd *exec.Cmd, done <-chan struct{}, limit time.Duration, stderr fmt.Stringer) time.Duration {
	t.Helper()
	cmd.Process.Signal(syscall.SIGINT)
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	second := time.Now()
	select {
	case <-done:
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		t.Fatalf("still running %s after the second SIGINT:\n%s", limit, stderr)
	}
	return time.Since(second)
}

// TestSecondSignalWhileBannerAwaited: herald send waits for the banner of
// a server that accepted the connection and says nothing (timeout: the
// default minute). Two Ctrl-C end it within a second or so (before, 56 s),
// exit 3, and nothing is lost: the recipients stay queued.
func TestSecondSignalWhileBannerAwaited(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	addr, accepted := silentServer(t)
	c := newCampaign(t, s, 10, "connections = 2")
	pointAt(t, c.conf, s, addr)
	cmd, _, errb := startSend(t, c.conf)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	waitFor(t, 30*time.Second, func() bool { return accepted.Load() >= 2 })
	time.Sleep(200 * time.Millisecond) // both wait for the banner
	took := interruptTwice(t, cmd, done, 5*time.Second, errb)
	t.Logf("exited %s after the second SIGINT", took.Round(time.Millisecond))
	if code := cmd.ProcessState.ExitCode(); code != exitInterrupted {
		t.Fatalf("exit %d\n%s", code, errb.String())
	}
	code, out, e := runHerald(t, nil, "status", "--config", c.conf, "cmdtest", "--json")
	var st statusReport
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Open != 10 || st.Counts["failed"] != 0 {
		t.Fatalf("after the stop: status %d %s %s", code, out, e)
	}
}

// TestWorkerSecondSignal: a worker on Redis stops within a second or so of
// the second Ctrl-C, whether it waits for a silent server's banner or for
// a Redis that hangs (SIGSTOP) with outcomes to record: it exits, and what
// it had not recorded is recovered as after a kill.
func TestWorkerSecondSignal(t *testing.T) {
	t.Parallel()
	t.Run("banner", func(t *testing.T) {
		t.Parallel()
		c := newCluster(t, nil, sink.Config{})
		addr, accepted := silentServer(t)
		c.campaign("silent", "q", 10, "")
		wconf := c.workerConf("connections = 2")
		pointAt(t, wconf, c.s, addr)
		w := c.startWorker(wconf)
		waitFor(t, 30*time.Second, func() bool { return accepted.Load() >= 2 })
		time.Sleep(200 * time.Millisecond)
		took := interruptTwice(t, w.cmd, w.done, 5*time.Second, &w.err)
		t.Logf("exited %d, %s after the second SIGINT", w.code, took.Round(time.Millisecond))
		if w.code != exitOK {
			t.Fatalf("exit %d, want 0 (stopped as asked)\n%s", w.code, w.err.String())
		}
		if st := c.status(c.dir+"/silent/herald.toml", "silent"); st.Open != 10 || st.Counts["leased"] != 0 {
			t.Fatalf("after the stop: %+v", st)
		}
	})
	t.Run("redis hangs", func(t *testing.T) {
		t.Parallel()
		c := newCluster(t, nil, sink.Config{})
		c.campaign("hang", "r", 100000, "")
		w := c.startWorker(c.workerConf("connections = 2\nrate = 500"))
		waitFor(t, 30*time.Second, func() bool { return c.s.Stats().Messages >= 100 })
		c.rs.Pause()
		defer c.rs.Resume()
		took := interruptTwice(t, w.cmd, w.done, 5*time.Second, &w.err)
		t.Logf("exited %d, %s after the second SIGINT:\n%s", w.code, took.Round(time.Millisecond), w.err.String())
		if w.code != exitInterrupted {
			t.Fatalf("exit %d, want %d: it could not record what it sent", w.code, exitInterrupted)
		}
	})
}
