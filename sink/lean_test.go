package sink

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/textproto"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/wneessen/go-mail/smtp"
)

// leanDrivers are the lean server's drivers to test: the portable one
// everywhere, and epoll on Linux, parking or busy polling.
func leanDrivers() []string {
	if runtime.GOOS == "linux" {
		return []string{"epoll", "epoll+busy-poll", "goroutines"}
	}
	return []string{"goroutines"}
}

// startLean starts a count-only sink on the given driver and checks that
// it is the lean server that answers.
func startLean(t *testing.T, driver string, cfg Config) *Server {
	t.Helper()
	cfg.CountOnly = true
	cfg.leanDriver = driver
	if driver == "epoll+busy-poll" {
		cfg.leanDriver, cfg.BusyPoll = "epoll", 100*time.Microsecond
	}
	s := start(t, cfg)
	if s.lean == nil {
		t.Fatal("the lean server is not answering")
	}
	return s
}

// eachLeanDriver runs f as a parallel subtest for every driver.
func eachLeanDriver(t *testing.T, f func(t *testing.T, driver string)) {
	for _, d := range leanDrivers() {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			f(t, d)
		})
	}
}

// step is what a client sends at once, and how many replies it waits for.
type step struct {
	send    string
	replies int
}

// leanScripts cover the commands, their order, their syntax, pipelining
// and the data's end; every one is run against go-smtp too.
var leanScripts = []struct {
	name   string
	steps  []step
	closes bool // the server closes the connection after the last step
}{
	{"one message", []step{{"EHLO c\r\n", 1}, {"MAIL FROM:<a@example.com>\r\n", 1}, {"RCPT TO:<b@example.com>\r\n", 1},
		{"DATA\r\n", 1}, {"Subject: x\r\n\r\n..dot\r\nline\r\n.\r\n", 1}, {"QUIT\r\n", 1}}, true},
	{"pipelined", []step{{"EHLO c\r\n", 1},
		{"MAIL FROM:<a@example.com> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n", 4},
		{"hi\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<d@example.com>\r\nDATA\r\n", 4}, {".\r\nQUIT\r\n", 2}}, true},
	{"out of order", []step{{"MAIL FROM:<a@example.com>\r\n", 1}, {"HELO c\r\n", 1}, {"RCPT TO:<b@example.com>\r\n", 1},
		{"DATA\r\n", 1}, {"MAIL FROM:<a@example.com>\r\n", 1}, {"DATA\r\n", 1}, {"RSET\r\n", 1},
		{"RCPT TO:<b@example.com>\r\n", 1}, {"NOOP\r\nVRFY x\r\nHELP\r\nSTARTTLS\r\n", 4}, {"QUIT\r\n", 1}}, true},
	{"bad syntax", []step{{"EHLO\r\n", 1}, {"EHLO c\r\n", 1}, {"MAIL TO:<a@example.com>\r\n", 1},
		{"MAIL FROM:\r\n", 1}, {"MAIL FROM:a@example.com\r\nRSET\r\n", 2}, {"mail from:<a@example.com>\r\n", 1}, {"RCPT TO:<>\r\n", 1},
		{"RCPT FROM:<b@example.com>\r\n", 1}, {"rcpt to: <b@example.com>\r\n", 1}, {"DATA now\r\n", 1}, {"data\r\n", 1},
		{".\r\n", 1}}, false},
	{"bare LF", []step{{"EHLO c\n", 1}, {"MAIL FROM:<a@example.com>\n", 1}, {"RCPT TO:<b@example.com>\n", 1},
		{"DATA\n", 1}, {".\r\n", 1}, {"MAIL FROM:<a@example.com>\nRCPT TO:<b@example.com>\nDATA\n", 3}, {"x\r\n.\r\n", 1}}, false},
	{"empty and stuffed", []step{{"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n", 4},
		{".\r\n", 1}, {"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n", 3},
		{"..\r\n...x\r\n.y\r\n\r\n.\r\n", 1}, {"QUIT\r\n", 1}}, true},
	{"unknown commands", []step{{"EHLO c\r\n", 1}, {"FOOO\r\n", 1}, {"BAR x\r\n", 1}, {"\r\n", 1}, {"QUX\r\n", 2}}, true},
	{"mangled commands", []step{{"EHLO c\r\n", 1}, {"FOO\r\n", 1}, {"NOOPX\r\n", 1}, {"NOOP\r\n", 1}, {"MAILFROM:<a@example.com>\r\n", 1}, {"QUITTING\r\n", 2}}, true},
	{"long line", []step{{"EHLO c\r\n", 1}, {"NOOP " + strings.Repeat("x", 3000) + "\r\n", 1}}, true},
	{"long data line", []step{{"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n", 4},
		{"Subject: x\r\n\r\n" + strings.Repeat("x", 3000) + "\r\n.\r\n", 2}}, true},
	{"longest data line", []step{{"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n", 4},
		{strings.Repeat("x", 1990) + "\r\n.\r\n", 1}, {"QUIT\r\n", 1}}, true},
	{"ehlo resets", []step{{"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n", 3},
		{"EHLO c\r\n", 1}, {"DATA\r\n", 1}, {"RCPT TO:<b@example.com>\r\n", 1}}, false},
}

// runScript plays a script and returns the reply codes, the greeting's
// first, and whether the server closed the connection afterwards.
func runScript(t *testing.T, addr string, steps []step, closes bool) []int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := &raw{t: t, c: c, r: textproto.NewReader(bufio.NewReader(c))}
	var codes []int
	read := func(n int) {
		for range n {
			code, lines, err := r.reply()
			if err != nil {
				t.Fatalf("after %v: %v (%q)", codes, err, lines)
			}
			codes = append(codes, code)
		}
	}
	read(1)
	for _, s := range steps {
		if _, err := io.WriteString(c, s.send); err != nil {
			t.Fatal(err)
		}
		read(s.replies)
	}
	if closes {
		if l, err := r.r.ReadLine(); err != io.EOF {
			t.Fatalf("after %v: %q %v, want the connection closed", codes, l, err)
		}
	}
	return codes
}

// TestLeanMatchesGoSMTP: every script gets the same reply codes and the
// same counts from the lean server as from go-smtp (the sink with a
// per-recipient tally).
func TestLeanMatchesGoSMTP(t *testing.T) {
	t.Parallel()
	for _, sc := range leanScripts {
		ref := start(t, Config{})
		want := runScript(t, ref.Addr(), sc.steps, sc.closes)
		wst := ref.Stats()
		for _, d := range leanDrivers() {
			t.Run(sc.name+"/"+d, func(t *testing.T) {
				s := startLean(t, d, Config{})
				got := runScript(t, s.Addr(), sc.steps, sc.closes)
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("codes %v, go-smtp %v", got, want)
				}
				gst := s.Stats()
				if gst.Messages != wst.Messages || gst.Recipients != wst.Recipients || gst.Bytes != wst.Bytes {
					t.Errorf("stats %+v, go-smtp %+v", gst, wst)
				}
			})
		}
	}
}

// TestLeanDataBoundaries: whatever way the data arrives (a byte at a time,
// cut at random, the end line split), every message is found, counted
// with the octets it has after dot-unstuffing, and the commands after it
// are answered.
func TestLeanDataBoundaries(t *testing.T) {
	t.Parallel()
	eachLeanDriver(t, func(t *testing.T, d string) {
		rng := rand.New(rand.NewPCG(7, 11))
		s := startLean(t, d, Config{})
		r := dialRaw(t, s.Addr())
		r.must("EHLO c", 250)
		var want int64
		const messages = 60
		for m := range messages {
			content, wire := randomMessage(rng, m)
			want += int64(len(content))
			r.must("MAIL FROM:<a@example.com>", 250)
			r.must("RCPT TO:<b@example.com>", 250)
			r.must("DATA", 354)
			b := []byte(wire + ".\r\n")
			for len(b) > 0 {
				n := 1 + rng.IntN(min(len(b), 1+rng.IntN(300)))
				if m%5 == 0 {
					n = 1 // a byte at a time
				}
				if _, err := r.c.Write(b[:n]); err != nil {
					t.Fatal(err)
				}
				b = b[n:]
				if rng.IntN(4) == 0 {
					time.Sleep(50 * time.Microsecond)
				}
			}
			if code, lines, err := r.reply(); code != 250 || err != nil {
				t.Fatalf("message %d: %d %q %v", m, code, lines, err)
			}
		}
		r.must("QUIT", 221)
		if st := s.Stats(); st.Messages != messages || st.Bytes != want || st.Recipients != messages {
			t.Fatalf("stats %+v, want %d messages of %d octets", st, messages, want)
		}
	})
}

// randomMessage makes a message of short lines rich in dots and its form on
// the wire (dot-stuffed, CRLF).
func randomMessage(rng *rand.Rand, m int) (content, wire string) {
	var c, w strings.Builder
	lines := rng.IntN(40)
	if m%7 == 0 {
		lines = 0
	}
	for range lines {
		var l strings.Builder
		for range rng.IntN(6) {
			l.WriteByte(".x\r"[rng.IntN(3)])
		}
		line := strings.TrimSuffix(l.String(), "\r") // no CR before the LF
		c.WriteString(line + "\r\n")
		if strings.HasPrefix(line, ".") {
			w.WriteString(".")
		}
		w.WriteString(line + "\r\n")
	}
	return c.String(), w.String()
}

// TestLeanConcurrentClients: go-mail's client over 8 connections at once,
// 2 recipients a message; every message counted, the peak no more than 8.
func TestLeanConcurrentClients(t *testing.T) {
	t.Parallel()
	eachLeanDriver(t, func(t *testing.T, d string) {
		s := startLean(t, d, Config{})
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := gosmtp.Dial(s.Addr())
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				for i := range 50 {
					if err := c.Mail("from@example.com"); err != nil {
						errs <- err
						return
					}
					for _, to := range []string{"a@example.com", "b@example.com"} {
						if err := c.Rcpt(to); err != nil {
							errs <- err
							return
						}
					}
					w, err := c.Data()
					if err != nil {
						errs <- err
						return
					}
					fmt.Fprintf(w, "Subject: %d/%d\r\n\r\n.leading dot\r\nbody\r\n", g, i)
					if err := w.Close(); err != nil {
						errs <- err
						return
					}
				}
				errs <- c.Quit()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		st := s.Stats()
		if st.Messages != 400 || st.Recipients != 800 || st.Sessions != 8 || st.PeakSessions > 8 || st.PeakSessions < 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestLeanSessions: the lean server's session count, peak, MaxSessions,
// idle timeout and Close.
func TestLeanSessions(t *testing.T) {
	t.Parallel()
	eachLeanDriver(t, func(t *testing.T, d string) {
		s := startLean(t, d, Config{MaxSessions: 2, leanIdle: 300 * time.Millisecond})
		// Sequential sessions never overlap, even when the next
		// one opens on the 221.
		for range 50 {
			runScript(t, s.Addr(), []step{{"EHLO c\r\n", 1}, {"QUIT\r\n", 1}}, true)
		}
		if st := s.Stats(); st.PeakSessions != 1 || st.Sessions != 50 {
			t.Fatalf("stats %+v", st)
		}
		a, b := dialRaw(t, s.Addr()), dialRaw(t, s.Addr())
		a.must("EHLO a", 250)
		b.must("EHLO b", 250)
		// A third at once gets 421 for a greeting, and is closed.
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		if l, err := br.ReadString('\n'); !strings.HasPrefix(l, "421 ") {
			t.Fatalf("third session: %q %v", l, err)
		}
		if _, err := br.ReadString('\n'); err != io.EOF {
			t.Fatalf("third session not closed: %v", err)
		}
		if st := s.Stats(); st.PeakSessions != 2 || st.SessionLimited != 1 {
			t.Fatalf("stats %+v", st)
		}
		// Idle sessions are closed after leanIdle (a sweep a second).
		start := time.Now()
		if _, err := a.r.ReadLine(); err != io.EOF {
			t.Fatalf("idle session: %v", err)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("idle session closed after %v", el)
		}
		if _, err := b.r.ReadLine(); err != io.EOF {
			t.Fatalf("idle session: %v", err)
		}
		// Close ends the open sessions and the listener.
		e := dialRaw(t, s.Addr())
		e.must("EHLO e", 250)
		done := make(chan error, 1)
		go func() { done <- s.Close() }()
		if _, err := e.r.ReadLine(); err != io.EOF {
			t.Fatalf("open session after Close: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not return")
		}
		if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
			c.Close()
			t.Fatal("still listening after Close")
		}
	})
}

// TestLeanOptions: NoPipelining and NoEnhancedStatusCodes change the EHLO
// reply and the codes; faults, Keep and the rest keep go-smtp answering.
func TestLeanOptions(t *testing.T) {
	t.Parallel()
	eachLeanDriver(t, func(t *testing.T, d string) {
		s := startLean(t, d, Config{NoPipelining: true, NoEnhancedStatusCodes: true, Domain: "sink.test"})
		r := dialRaw(t, s.Addr())
		ehlo := strings.Join(r.must("EHLO c", 250), "\n")
		if strings.Contains(ehlo, "PIPELINING") || strings.Contains(ehlo, "ENHANCEDSTATUSCODES") || !strings.HasPrefix(ehlo, "sink.test") {
			t.Fatalf("EHLO reply %q", ehlo)
		}
		if l := r.must("MAIL FROM:<a@example.com>", 250); strings.HasPrefix(l[0], "2.") {
			t.Fatalf("enhanced code in %q", l)
		}
		// A nested MAIL is refused (RFC 5321 3.3; go-smtp starts over).
		r.must("MAIL FROM:<a@example.com>", 503)
		r.must("AUTH PLAIN", 502) // not offered
	})
	for _, cfg := range []Config{{}, {CountOnly: true, Keep: true}, {CountOnly: true, Faults: Faults{RcptTemp: 0.1}},
		{CountOnly: true, Faults: Faults{Latencies: map[Stage]time.Duration{StageGreeting: time.Millisecond}}},
		{CountOnly: true, RecordReads: true}, {CountOnly: true, Maildir: t.TempDir()}} {
		if s := start(t, cfg); s.lean != nil {
			t.Errorf("%+v: the lean server answers", cfg)
		}
	}
	if s := start(t, Config{CountOnly: true, MaxSessions: 3, NoPipelining: true,
		Faults: Faults{Latencies: map[Stage]time.Duration{StageMail: 0}}}); s.lean == nil {
		t.Error("count-only without faults: go-smtp answers")
	}
}

// TestLeanIdleSessionsAreSmall: on epoll, a session between commands holds
// what it has not answered, not a read buffer, and lets go of the reply
// buffer a burst made large: 300 open sessions, each after 1,000 pipelined
// NOOPs (45 KB of replies) and halfway through a command line, cost the
// process (both ends of every connection) under 8 KiB each.
func TestLeanIdleSessionsAreSmall(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the epoll driver is Linux's")
	}
	s := startLean(t, "epoll", Config{})
	const n = 300
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	burst := "EHLO c\r\n" + strings.Repeat("NOOP\r\n", 1000)
	var reply [4096]byte
	for range n {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, burst); err != nil {
			t.Fatal(err)
		}
		// the greeting, the EHLO reply and 1,000 NOOP replies: 1,001
		// lines begin "250 "
		var got []byte
		for finals := 0; finals < 1001; {
			m, err := c.Read(reply[:])
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, reply[:m]...)
			finals = strings.Count("\n"+string(got), "\n250 ")
		}
		if _, err := io.WriteString(c, "MAIL FROM:<a@exa"); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	if st := s.Stats(); st.Sessions != n || st.PeakSessions != n {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("%d bytes of heap per open session", per)
	if per > 8<<10 {
		t.Fatalf("%d bytes of heap per open session", per)
	}
}

// TestLeanBackpressure: a client pipelines 200,000 NOOPs and reads nothing
// for a while, so the server's writes would block: it keeps what the socket
// did not take, stops reading until it can write, and in the end every
// command has its reply, in order, and QUIT its 221.
func TestLeanBackpressure(t *testing.T) {
	t.Parallel()
	eachLeanDriver(t, func(t *testing.T, d string) {
		s := startLean(t, d, Config{})
		r := dialRaw(t, s.Addr())
		r.c.SetDeadline(time.Now().Add(30 * time.Second))
		const n = 200000
		wrote := make(chan error, 1)
		go func() {
			_, err := io.WriteString(r.c, "EHLO c\r\n"+strings.Repeat("NOOP\r\n", n)+"QUIT\r\n")
			wrote <- err
		}()
		time.Sleep(300 * time.Millisecond)
		if code, _, err := r.reply(); code != 250 || err != nil {
			t.Fatalf("EHLO: %d %v", code, err)
		}
		for i := range n {
			if code, lines, err := r.reply(); code != 250 || err != nil {
				t.Fatalf("NOOP %d: %d %q %v", i, code, lines, err)
			}
		}
		if code, _, err := r.reply(); code != 221 || err != nil {
			t.Fatalf("QUIT: %d %v", code, err)
		}
		if err := <-wrote; err != nil {
			t.Fatal(err)
		}
	})
}

// TestLeanAcceptRetries: when accepting fails for want of file descriptors,
// the server tries again (every driver), and a client that comes once
// descriptors are free is greeted. Not parallel: it lowers the process's
// limit on open files for a moment.
func TestLeanAcceptRetries(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("RLIMIT_NOFILE as Linux has it")
	}
	for _, d := range leanDrivers() {
		t.Run(d, func(t *testing.T) {
			s := startLean(t, d, Config{})
			var lim syscall.Rlimit
			if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
				t.Fatal(err)
			}
			fds, err := os.ReadDir("/proc/self/fd")
			if err != nil {
				t.Fatal(err)
			}
			low := lim
			low.Cur = uint64(len(fds) + 4)
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
				t.Fatal(err)
			}
			var held []net.Conn
			for range 8 { // until a descriptor is short on one side or the other
				c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
				if err != nil {
					break
				}
				held = append(held, c)
			}
			time.Sleep(100 * time.Millisecond) // the server meets EMFILE
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
				t.Fatal(err)
			}
			for _, c := range held {
				c.Close()
			}
			r := dialRaw(t, s.Addr()) // fails the test without a greeting in 10 s
			r.must("EHLO c", 250)
		})
	}
}
