package main

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/sink"
)

// peakRSS is a running process's peak resident set (VmHWM), in KB.
func peakRSS(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kb
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestEndlessBannerLine: a server greets with "220 " and then bytes
// without a line end, as fast as loopback takes them. herald send closes
// each connection at 4 KB of the line: after 3 s its peak RSS is that of
// any run (before the bounds: 343 MB after 4 s), and the recipients stay
// queued.
func TestEndlessBannerLine(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		chunk := []byte(strings.Repeat("x", 64<<10))
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte("220 "))
				for {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
	}()
	s := startSink(t, sink.Config{})
	c := newCampaign(t, s, 10, "connections = 2\ntimeout = \"10s\"")
	pointAt(t, c.conf, s, ln.Addr().String())
	cmd, _, errb := startSend(t, c.conf)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	time.Sleep(3 * time.Second)
	kb := peakRSS(t, cmd.Process.Pid)
	if kb > 150<<10 {
		cmd.Process.Kill()
		<-done
		t.Fatalf("peak RSS %d MB after 3 s (the test binary is built with -race)", kb>>10)
	}
	took := interruptTwice(t, cmd, done, 5*time.Second, errb)
	t.Logf("peak RSS %d MB after 3 s of an endless banner line; exited %s after the second SIGINT", kb>>10, took.Round(time.Millisecond))
	if !strings.Contains(errb.String(), "reply line longer than 4096 bytes") {
		t.Errorf("the protocol error is not said:\n%s", errb.String())
	}
}
