package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/mail"
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

// TestRehearse163Locally plays the README's rehearsal of a 163/QQ
// campaign: herald sink with implicit TLS (port 465 style), a self-signed
// certificate written out for provider.ca_file, and AUTH; herald send with
// preset = "163" pointed at it delivers everyone, with the recipient's
// name in To: (campaign.to_name, RFC 2047 for non-ASCII), read back from
// the maildir. A wrong authorization code stops the provider with 163's
// hint and fails no one.
func TestRehearse163Locally(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	maildir := filepath.Join(dir, "maildir")
	h := startHeraldSink(t, []string{"SINK_PW=auth-code-0123"}, "--tls-implicit", "--tls-self-signed",
		"--tls-cert-out", filepath.Join(dir, "sink.pem"), "--auth-user", "12345@163.com", "--auth-password-env", "SINK_PW", "--maildir", maildir)
	_, port, _ := net.SplitHostPort(h.addr)
	files := map[string]string{
		"recipients.csv": "email,name\nu0@example.com,王小明\nu1@example.com,Ann Lee\nu2@example.com,\"Lee, Bo\"\n",
		"body.txt":       "Hello {{.name}}\n",
		"herald.toml": fmt.Sprintf(`[campaign]
id = "rehearsal"
from = "News <12345@163.com>"
subject = "Hello {{.name}}"
to_name = "{{.name}}"
text = "body.txt"
recipients = "recipients.csv"

[[provider]]
preset = "163"
host = "127.0.0.1"   # the rehearsal: herald sink; remove for smtp.163.com
port = %s
tls = "tls"
ca_file = "sink.pem" # the rehearsal's certificate; remove for smtp.163.com
username = "12345@163.com"
password_env = "HERALD_163_PASSWORD"
rate = 0             # the rehearsal only: 163's preset sends one message every 20 s
daily = 0
`, port),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "herald.toml")
	code, o, e := runHerald(t, []string{"HERALD_163_PASSWORD=wrong"}, "send", "--config", conf)
	if code != exitInput || !strings.Contains(e, "refused the login") || !strings.Contains(e, "163") || strings.Contains(e+o, "wrong") {
		t.Fatalf("a wrong authorization code: exit %d\n%s\n%s", code, o, e)
	}
	code, o, e = runHerald(t, []string{"HERALD_163_PASSWORD=auth-code-0123"}, "send", "--config", conf)
	if code != 0 {
		t.Fatalf("send to the rehearsal sink: exit %d\n%s\n%s", code, o, e)
	}
	st := h.stop()
	if st.Messages != 3 || st.AuthFailures < 1 {
		t.Fatalf("sink: %+v", st)
	}
	entries, err := os.ReadDir(filepath.Join(maildir, "new"))
	if err != nil || len(entries) != 3 {
		t.Fatalf("maildir: %d messages, %v", len(entries), err)
	}
	names := map[string]string{}
	for _, ent := range entries {
		f, err := os.Open(filepath.Join(maildir, "new", ent.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m, err := mail.ReadMessage(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		to, err := mail.ParseAddress(m.Header.Get("To"))
		if err != nil {
			t.Fatalf("To: %q: %v", m.Header.Get("To"), err)
		}
		names[to.Address] = to.Name
		if to.Address == "u0@example.com" && !strings.HasPrefix(m.Header.Get("To"), "=?") {
			t.Errorf("a non-ASCII name must be RFC 2047 encoded: %q", m.Header.Get("To"))
		}
	}
	want := map[string]string{"u0@example.com": "王小明", "u1@example.com": "Ann Lee", "u2@example.com": "Lee, Bo"}
	for a, n := range want {
		if names[a] != n {
			t.Errorf("To: of %s: name %q, want %q", a, names[a], n)
		}
	}
}
