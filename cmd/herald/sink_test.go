package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/wneessen/go-mail/smtp"

	"github.com/heraldmail/herald/sink"
)

// heraldSink runs `herald sink` on a free loopback port until the test
// ends; stop sends SIGTERM and returns the --json counters.
type heraldSink struct {
	t    *testing.T
	addr string
	cmd  *exec.Cmd
	out  bytes.Buffer
	errb bytes.Buffer
}

func startHeraldSink(t *testing.T, env []string, args ...string) *heraldSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := &heraldSink{t: t, addr: addr}
	h.cmd = exec.Command(herald, append([]string{"sink", "--listen", addr, "--json"}, args...)...)
	h.cmd.Env = append(os.Environ(), env...)
	h.cmd.Stdout, h.cmd.Stderr = &h.out, &h.errb
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.cmd.Process.Kill(); h.cmd.Wait() })
	waitFor(t, 10*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return h
}

func (h *heraldSink) stop() sink.Stats {
	h.t.Helper()
	h.cmd.Process.Signal(syscall.SIGTERM)
	if err := h.cmd.Wait(); err != nil {
		h.t.Fatalf("herald sink: %v: %s", err, h.errb.String())
	}
	var st sink.Stats
	if err := json.Unmarshal(h.out.Bytes(), &st); err != nil {
		h.t.Fatalf("--json: %v: %q", err, h.out.String())
	}
	return st
}

// TestSinkRcptPermFlag: --rcpt-perm 0.2 --seed 5 over 1,000 RCPTs fails
// about 200, as many as the JSON says; --no-enhanced-status-codes leaves
// the codes out of the EHLO and of the replies.
func TestSinkRcptPermFlag(t *testing.T) {
	t.Parallel()
	h := startHeraldSink(t, nil, "--rcpt-perm", "0.2", "--seed", "5", "--no-enhanced-status-codes", "--no-pipelining")
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := textproto.NewConn(conn)
	defer c.Close()
	expect := func(want int, format string, a ...any) string {
		t.Helper()
		id, err := c.Cmd(format, a...)
		if err != nil {
			t.Fatal(err)
		}
		c.StartResponse(id)
		defer c.EndResponse(id)
		_, msg, err := c.ReadResponse(want)
		if err != nil {
			t.Fatalf("%s: %v", fmt.Sprintf(format, a...), err)
		}
		return msg
	}
	if _, _, err := c.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	if ehlo := expect(250, "EHLO client"); strings.Contains(ehlo, "ENHANCEDSTATUSCODES") || strings.Contains(ehlo, "PIPELINING") {
		t.Fatalf("EHLO %q", ehlo)
	}
	rejected := 0
	for i := range 100 {
		expect(250, "MAIL FROM:<a@example.com>")
		for j := range 10 {
			id, _ := c.Cmd("RCPT TO:<u%d.%d@example.com>", i, j)
			c.StartResponse(id)
			code, msg, err := c.ReadResponse(250)
			c.EndResponse(id)
			if code == 550 {
				rejected++
				if strings.HasPrefix(msg, "5.1.1") {
					t.Fatalf("550 with an enhanced code: %q", msg)
				}
			} else if err != nil {
				t.Fatal(err)
			}
		}
		expect(250, "RSET")
	}
	expect(221, "QUIT")
	st := h.stop()
	if int64(rejected) != st.RcptPerm || st.RejectedRcpt != st.RcptPerm || rejected < 140 || rejected > 260 {
		t.Fatalf("client saw %d rejections, herald sink %+v", rejected, st)
	}
}

// TestSinkDropAfterDataFlag: the message is in the maildir, the client got
// no reply; the JSON counts it.
func TestSinkDropAfterDataFlag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := startHeraldSink(t, nil, "--drop-after-data", "1", "--maildir", dir)
	c, err := gosmtp.Dial(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("a@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@example.com"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(w, "Subject: kept\r\n\r\nbody\r\n")
	if err := w.Close(); err == nil {
		t.Fatal("the message got a reply")
	}
	st := h.stop()
	files, _ := os.ReadDir(filepath.Join(dir, "new"))
	if len(files) != 1 || st.DroppedAfterData != 1 || st.Messages != 1 {
		t.Fatalf("%d files in the maildir, %+v", len(files), st)
	}
}

// TestSinkTLSAuthFlags: --tls-self-signed with --auth-user: AUTH after
// STARTTLS; sessions one after the other give a peak of 1; the greeting
// waits --latency-greeting.
func TestSinkTLSAuthFlags(t *testing.T) {
	t.Parallel()
	h := startHeraldSink(t, []string{"SINK_PW=secret"}, "--tls-self-signed", "--auth-user", "news", "--auth-password-env", "SINK_PW",
		"--latency-greeting", "100ms")
	for range 3 {
		t0 := time.Now()
		c, err := gosmtp.Dial(h.addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Hello("client"); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(t0); d < 100*time.Millisecond {
			t.Fatalf("greeting after %v", d)
		}
		if ok, _ := c.Extension("AUTH"); ok {
			t.Fatal("AUTH offered before STARTTLS")
		}
		if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
			t.Fatal(err)
		}
		if err := c.Auth(gosmtp.PlainAuth("", "news", "secret", "127.0.0.1", false)); err != nil {
			t.Fatal(err)
		}
		if err := c.Mail("a@example.com"); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("b@example.com"); err != nil {
			t.Fatal(err)
		}
		w, _ := c.Data()
		fmt.Fprint(w, "x\r\n")
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
	}
	if st := h.stop(); st.Messages != 3 || st.PeakSessions != 1 || st.AuthFailures != 0 {
		t.Fatalf("%+v", st)
	}
}

// TestSinkLeanUnderBench: herald sink without faults answers with its own
// lean SMTP server; it takes herald bench's pipelined load over 8
// connections, reused every 50 messages, and counts every message and
// recipient, with busy polling (the default) and without.
func TestSinkLeanUnderBench(t *testing.T) {
	t.Parallel()
	for _, poll := range []string{"100us", "0"} {
		h := startHeraldSink(t, nil, "--busy-poll", poll)
		code, out, errOut := runHerald(t, nil, "bench", "--server", h.addr, "--connections", "8", "--messages", "3000",
			"--rcpts", "2", "--size", "3000", "--reuse", "50", "--json", "--quiet")
		if code != 0 {
			t.Fatalf("--busy-poll %s: herald bench exit %d: %s", poll, code, errOut)
		}
		var rep struct {
			Messages, Errors int64
			Pipelining       bool
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		st := h.stop()
		if rep.Messages != 3000 || rep.Errors != 0 || !rep.Pipelining || st.Messages != 3000 || st.Recipients != 6000 ||
			// 60 sessions of 50, up to one short one per connection, and
			// the readiness probe's connection.
			st.Sessions < 3000/50 || st.Sessions > 3000/50+8+1 || st.PeakSessions > 8 || st.Bytes < 3000*3000 {
			t.Fatalf("--busy-poll %s: bench %+v, sink %+v", poll, rep, st)
		}
	}
	if code, _, errOut := runHerald(t, nil, "sink", "--busy-poll", "-1s"); code != exitInput || !strings.Contains(errOut, "--busy-poll") {
		t.Fatalf("--busy-poll -1s: exit %d %q", code, errOut)
	}
}
