package engine_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldmail/herald/engine"
	"github.com/heraldmail/herald/queue"
)

// hostile is a real SMTP server on loopback that misbehaves where its
// script says: a plain, correct session (PIPELINING when pipelining is
// set) except for the steps the script replaces.
type hostile struct {
	ln         net.Listener
	pipelining bool
	// banner writes the greeting; nil: a correct one. It returns false to
	// end the session.
	banner func(c net.Conn) bool
	// mail answers MAIL; nil: 250.
	mail func(c net.Conn) bool
	// dot answers the end of the data; nil: 250.
	dot func(c net.Conn) bool
	// tls, if set, is TLS from the start (implicit) or, with starttls,
	// after STARTTLS; ehloTLS then answers the EHLO over TLS (nil: 250).
	tls      *tls.Config
	starttls bool
	ehloTLS  func(c net.Conn) bool

	sessions atomic.Int64
	wg       sync.WaitGroup
}

func startHostile(t *testing.T, h *hostile) *hostile {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.ln = ln
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.sessions.Add(1)
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				h.session(c)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		h.wg.Wait()
	})
	return h
}

func (h *hostile) addr() string { return h.ln.Addr().String() }

func (h *hostile) session(c net.Conn) {
	if h.tls != nil && !h.starttls {
		c = tls.Server(c, h.tls)
	}
	if h.banner != nil {
		if !h.banner(c) {
			return
		}
	} else if _, err := io.WriteString(c, "220 hostile ESMTP\r\n"); err != nil {
		return
	}
	r := bufio.NewReader(c)
	say := func(s string) bool { _, err := io.WriteString(c, s+"\r\n"); return err == nil }
	secure := h.tls != nil && !h.starttls
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.TrimSpace(line))
		verb, _, _ = strings.Cut(verb, " ")
		ok := true
		switch {
		case verb == "EHLO" && secure && h.ehloTLS != nil:
			ok = h.ehloTLS(c)
		case verb == "EHLO" && h.starttls && !secure:
			ok = say("250-hostile\r\n250 STARTTLS")
		case verb == "STARTTLS":
			if !say("220 go ahead") {
				return
			}
			c = tls.Server(c, h.tls)
			r, secure = bufio.NewReader(c), true
		case verb == "EHLO" && h.pipelining:
			ok = say("250-hostile\r\n250 PIPELINING")
		case verb == "EHLO" || verb == "HELO" || verb == "RSET" || strings.HasPrefix(verb, "RCPT"):
			ok = say("250 ok")
		case strings.HasPrefix(verb, "MAIL"):
			if h.mail != nil {
				ok = h.mail(c)
			} else {
				ok = say("250 ok")
			}
		case verb == "DATA":
			if !say("354 go ahead") {
				return
			}
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			if h.dot != nil {
				ok = h.dot(c)
			} else {
				ok = say("250 2.0.0 queued")
			}
		case verb == "QUIT":
			say("221 bye")
			return
		default:
			ok = say("502 5.5.1 not implemented")
		}
		if !ok {
			return
		}
	}
}

// Misbehaviours.

// silent reads what the client sends and never answers.
func silent(c net.Conn) bool {
	io.Copy(io.Discard, c)
	return false
}

// endless sends prefix, then bytes without a line end until the client
// goes.
func endless(prefix string) func(c net.Conn) bool {
	return func(c net.Conn) bool {
		go io.Copy(io.Discard, c)
		if _, err := io.WriteString(c, prefix); err != nil {
			return false
		}
		chunk := []byte(strings.Repeat("x", 64<<10))
		for {
			if _, err := c.Write(chunk); err != nil {
				return false
			}
		}
	}
}

// endlessLines sends line (a continuation line, CRLF included) again and
// again until the client goes.
func endlessLines(line string) func(c net.Conn) bool {
	return func(c net.Conn) bool {
		go io.Copy(io.Discard, c)
		chunk := []byte(strings.Repeat(line, 1024))
		for {
			if _, err := c.Write(chunk); err != nil {
				return false
			}
		}
	}
}

// dribble sends s one byte a second.
func dribble(s string) func(c net.Conn) bool {
	return func(c net.Conn) bool {
		for i := range len(s) {
			if _, err := c.Write([]byte{s[i]}); err != nil {
				return false
			}
			time.Sleep(time.Second)
		}
		return true
	}
}

func writeLine(s string) func(c net.Conn) bool {
	return func(c net.Conn) bool {
		_, err := io.WriteString(c, s)
		return err == nil
	}
}

func hostileTOML(h *hostile, extra string) string {
	host, port, _ := strings.Cut(h.addr(), ":")
	return fmt.Sprintf("[[provider]]\nname = \"hostile\"\nhost = %q\nport = %s\ntls = \"none\"\ntimeout = \"1s\"\ncooldown = \"50ms\"\n%s\n", host, port, extra)
}

// TestMisbehavingServers runs a campaign against servers that break SMTP
// in each way a hostile or broken server can: each run ends on its own,
// within the bounds the provider's timeout and the retry rules give, with
// the provider reported and no recipient failed or charged an attempt for
// it (retry.max_attempts = 2: a counted attempt would show, two would fail
// the recipient).
func TestMisbehavingServers(t *testing.T) {
	t.Parallel()
	const n = 5
	// A connect-stage fault is retried dialTries (8) times with a backoff
	// of up to 32 s in all, each try bounded by the 1 s timeout.
	const connectBound = 60 * time.Second
	serverTLS, pool := testCA(t)
	cases := []struct {
		name   string
		h      *hostile
		bound  time.Duration
		reason string // the provider's reported failure holds this
		// attempts is how many counted attempts the run may leave in all.
		attempts int
	}{
		{"silent", &hostile{banner: silent}, connectBound, "i/o timeout", 0},
		{"garbage banner", &hostile{banner: writeLine("hello, this is not SMTP\r\n")}, connectBound, "what is not an SMTP reply", 0},
		{"endless banner line", &hostile{banner: endless("220 ")}, connectBound, "reply line longer than 4096 bytes", 0},
		{"endless banner reply", &hostile{banner: endlessLines("220-more\r\n")}, connectBound, "reply of more than 100 lines", 0},
		{"banner one byte a second", &hostile{banner: dribble("220 hostile ESMTP\r\n")}, connectBound, "i/o timeout", 0},
		{"endless reply line to MAIL", &hostile{mail: endless("250 ")}, 30 * time.Second, "reply line longer than 4096 bytes", 0},
		{"endless reply to MAIL, pipelined", &hostile{pipelining: true, mail: endlessLines("250-more\r\n")}, 30 * time.Second, "reply of more than 100 lines", 0},
		{"endless reply line to the data", &hostile{dot: endless("250 ")}, 30 * time.Second, "reply line longer than 4096 bytes", 0},
		// Over TLS: while dialling, the octets are counted; then the
		// replies are bounded above TLS.
		{"TLS, endless reply line to MAIL", &hostile{tls: serverTLS, mail: endless("250 ")}, 30 * time.Second, "reply line longer than 4096 bytes", 0},
		{"STARTTLS, endless EHLO reply over TLS", &hostile{tls: serverTLS, starttls: true, ehloTLS: endless("250 ")}, connectBound, "more than 256 KB during the TLS handshake", 0},
		{"STARTTLS, endless reply to MAIL", &hostile{tls: serverTLS, starttls: true, mail: endlessLines("250-x\r\n")}, 30 * time.Second, "reply of more than 100 lines", 0},
		// A lost reply after the data may be a message the server took: the
		// first of a streak counts (a message that breaks the server must
		// not be sent forever); from the second on it is the provider's.
		{"stall after the data", &hostile{dot: silent}, 30 * time.Second, "replies to the data keep being lost", 1},
		{"stall after the data, pipelined", &hostile{pipelining: true, dot: silent}, 30 * time.Second, "replies to the data keep being lost", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := startHostile(t, tc.h)
			spec := campaignSpec{recipients: addresses(n, "h"), providers: hostileTOML(h, "connections = 1")}
			if tc.h.tls != nil {
				spec.tls = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
				mode := "tls"
				if tc.h.starttls {
					mode = "starttls"
				}
				spec.providers = strings.Replace(spec.providers, `tls = "none"`, `tls = "`+mode+`"`, 1)
			}
			b := setup(t, spec)
			b.cfg.Retry.MaxAttempts = 2
			b.open()
			b.plan()
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 3*tc.bound)
			defer cancel()
			sum, err := b.eng.Run(ctx, ctx)
			took := time.Since(start)
			var stopped *engine.StoppedError
			if !errors.As(err, &stopped) || !strings.Contains(stopped.Reason, tc.reason) {
				t.Fatalf("after %s: %v (want the provider reported: %q); counts %+v", took.Round(time.Millisecond), err, tc.reason, sum.Counts)
			}
			if took > tc.bound {
				t.Fatalf("the run took %s, more than %s", took.Round(time.Millisecond), tc.bound)
			}
			attempts := 0
			for _, j := range b.jobs() {
				attempts += j.Attempts
				if j.State == queue.Failed || j.State == queue.Sent {
					t.Errorf("%s: %s (%s)", j.Email, j.State, j.Reply)
				}
			}
			if attempts > tc.attempts {
				t.Errorf("%d attempts counted, want at most %d", attempts, tc.attempts)
			}
			t.Logf("%s: stopped after %s over %d sessions: %s", tc.name, took.Round(time.Millisecond), h.sessions.Load(), stopped.Reason)
		})
	}
}

// TestEndlessReplyLineMemory: a server that sends "220 " and then bytes
// without a line end (before the bounds, herald grew to 332 MB in 2 s)
// leaves herald's heap where it was, however long it goes on. Not
// parallel: it measures the heap of the whole test process.
func TestEndlessReplyLineMemory(t *testing.T) {
	for _, h := range []*hostile{{banner: endless("220 ")}, {mail: endless("250 ")}, {banner: endlessLines("220-more\r\n")}} {
		h := startHostile(t, h)
		b := setup(t, campaignSpec{recipients: addresses(3, "m"), providers: strings.Replace(hostileTOML(h, "connections = 2"), `timeout = "1s"`, `timeout = "3s"`, 1)})
		b.plan()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapInuse
		var peak atomic.Uint64
		done := make(chan struct{})
		go func() {
			defer close(done)
			var ms runtime.MemStats
			for h.sessions.Load() < 4 {
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-done; cancel() }()
		b.eng.Run(ctx, ctx)
		<-done
		cancel()
		grew := int64(peak.Load()) - int64(base)
		t.Logf("heap grew by %d KB at most over %d sessions", grew>>10, h.sessions.Load())
		if grew > 16<<20 {
			t.Fatalf("the heap grew by %d MB while the server sent endless bytes", grew>>20)
		}
	}
}
