package sink

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/wneessen/go-mail/smtp"
)

// raw is a line-by-line SMTP client that shows replies as sent.
type raw struct {
	t *testing.T
	c net.Conn
	r *textproto.Reader
}

func dialRaw(t *testing.T, addr string) *raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := &raw{t: t, c: c, r: textproto.NewReader(newBufReader(c))}
	if code, _, err := r.reply(); err != nil || code != 220 {
		t.Fatalf("greeting: %d %v", code, err)
	}
	return r
}

// reply reads one (possibly multi-line) reply: its code and lines without
// the code.
func (r *raw) reply() (int, []string, error) {
	var lines []string
	for {
		l, err := r.r.ReadLine()
		if err != nil {
			return 0, lines, err
		}
		if len(l) < 4 {
			return 0, lines, fmt.Errorf("short reply %q", l)
		}
		lines = append(lines, l[4:])
		if l[3] == ' ' {
			var code int
			fmt.Sscanf(l[:3], "%d", &code)
			return code, lines, nil
		}
	}
}

func (r *raw) cmd(line string) (int, []string, error) {
	if _, err := io.WriteString(r.c, line+"\r\n"); err != nil {
		return 0, nil, err
	}
	return r.reply()
}

func (r *raw) must(line string, want int) []string {
	r.t.Helper()
	code, lines, err := r.cmd(line)
	if err != nil || code != want {
		r.t.Fatalf("%s: %d %q %v, want %d", line, code, lines, err, want)
	}
	return lines
}

// TestRcptShares: over 1,000 RCPTs the shares fail about as many as asked,
// exactly as many as the stats say, and the same ones again with the same
// seed.
func TestRcptShares(t *testing.T) {
	t.Parallel()
	run := func(seed int64) (string, Stats) {
		s := start(t, Config{Faults: Faults{RcptPerm: 0.2, RcptTemp: 0.05, Seed: seed}})
		c := dialRaw(t, s.Addr())
		c.must("EHLO client", 250)
		var seen strings.Builder
		counts := map[int]int{}
		for i := range 100 {
			c.must("MAIL FROM:<a@example.com>", 250)
			for j := range 10 {
				code, lines, err := c.cmd(fmt.Sprintf("RCPT TO:<u%d.%d@example.com>", i, j))
				if err != nil {
					t.Fatal(err)
				}
				counts[code]++
				fmt.Fprintf(&seen, "%d ", code)
				switch code {
				case 550:
					if !strings.HasPrefix(lines[0], "5.1.1 ") {
						t.Fatalf("550 %q", lines)
					}
				case 451:
					if !strings.HasPrefix(lines[0], "4.3.0 ") {
						t.Fatalf("451 %q", lines)
					}
				}
			}
			c.must("RSET", 250)
		}
		c.must("QUIT", 221)
		st := s.Stats()
		if counts[250]+counts[550]+counts[451] != 1000 || int64(counts[550]) != st.RcptPerm || int64(counts[451]) != st.RcptTemp ||
			st.RejectedRcpt != st.RcptPerm+st.RcptTemp {
			t.Fatalf("client saw %v, stats %+v", counts, st)
		}
		// Binomial(1000, 0.2): sd 12.6; (1000, 0.05): sd 6.9.
		if counts[550] < 140 || counts[550] > 260 || counts[451] < 20 || counts[451] > 80 {
			t.Fatalf("seed %d: %v, want about 200 550s and 50 451s", seed, counts)
		}
		return seen.String(), st
	}
	a, _ := run(7)
	b, _ := run(7)
	c, _ := run(8)
	if a != b {
		t.Fatal("the same seed failed other RCPTs")
	}
	if a == c {
		t.Fatal("another seed failed the same RCPTs")
	}
}

// TestDataShares: data-temp and data-perm answer after the data, and the
// rejected messages are not kept.
func TestDataShares(t *testing.T) {
	t.Parallel()
	s := start(t, Config{Keep: true, Faults: Faults{DataTemp: 0.1, DataPerm: 0.15, Seed: 3}})
	c := dial(t, s)
	counts := map[int]int{}
	for i := range 400 {
		stage, err := send(c, fmt.Sprintf("u%d@example.com", i), "x\r\n")
		if err != nil && stage != "end" {
			t.Fatalf("%s: %v", stage, err)
		}
		counts[code(err)]++
		if code(err) == 550 && !strings.Contains(err.Error(), "5.7.1") || code(err) == 451 && !strings.Contains(err.Error(), "4.3.0") {
			t.Fatalf("reply %v", err)
		}
	}
	st := s.Stats()
	if int64(counts[451]) != st.DataTemp || int64(counts[550]) != st.DataPerm || int64(counts[0]) != st.Messages ||
		len(s.Messages()) != counts[0] || st.RejectedData != st.DataTemp+st.DataPerm {
		t.Fatalf("client saw %v, stats %+v", counts, st)
	}
	// Binomial(400, 0.1): sd 6; (400, 0.15): sd 7.1.
	if counts[451] < 16 || counts[451] > 64 || counts[550] < 30 || counts[550] > 90 {
		t.Fatalf("%v: want about 40 451s and 60 550s", counts)
	}
}

// TestDropShares: a drop before the data comes in place of 354 and keeps
// nothing; a drop after the data keeps the message and sends no reply.
func TestDropShares(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		f     Faults
		stage string // where the client meets the closed connection
	}{
		{"before", Faults{DropBeforeData: 0.3, Seed: 1}, "data"},
		{"after", Faults{DropAfterData: 0.3, Seed: 1}, "end"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, Config{Keep: true, Faults: tt.f})
			dropped, ok := 0, 0
			for i := range 100 {
				c := dial(t, s)
				to := fmt.Sprintf("u%d@example.com", i)
				stage, err := send(c, to, "x\r\n")
				switch {
				case err == nil:
					ok++
					if s.Received(to) != 1 {
						t.Fatalf("%s accepted but not received", to)
					}
				case stage == tt.stage && code(err) == 0:
					dropped++
					want := 0
					if tt.name == "after" {
						want = 1
					}
					if s.Received(to) != want {
						t.Fatalf("%s dropped %s the data: received %d, want %d", to, tt.name, s.Received(to), want)
					}
				default:
					t.Fatalf("%s: %s %v", to, stage, err)
				}
				c.Close()
			}
			st := s.Stats()
			got := st.DroppedBeforeData
			if tt.name == "after" {
				got = st.DroppedAfterData
			}
			if int64(dropped) != got || dropped < 15 || dropped > 45 || len(s.Messages()) != ok+int(st.DroppedAfterData) {
				t.Fatalf("%d dropped, %d ok, stats %+v", dropped, ok, st)
			}
		})
	}
}

var enhancedCode = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3} `)

// TestNoEnhancedStatusCodes: the EHLO reply lacks ENHANCEDSTATUSCODES (and
// PIPELINING with NoPipelining), and no reply carries an x.y.z code; without
// the options both are there.
func TestNoEnhancedStatusCodes(t *testing.T) {
	t.Parallel()
	for _, off := range []bool{false, true} {
		s := start(t, Config{NoEnhancedStatusCodes: off, NoPipelining: off, Faults: Faults{RcptPerm: 0.5, DataPerm: 1}})
		c := dialRaw(t, s.Addr())
		ehlo := strings.Join(c.must("EHLO client", 250), "\n")
		if strings.Contains(ehlo, "ENHANCEDSTATUSCODES") == off || strings.Contains(ehlo, "PIPELINING") == off {
			t.Fatalf("off=%v: EHLO %q", off, ehlo)
		}
		var replies []string
		replies = append(replies, c.must("MAIL FROM:<a@example.com>", 250)...)
		rejected := false
		for i := 0; i < 20; i++ {
			code, lines, err := c.cmd(fmt.Sprintf("RCPT TO:<u%d@example.com>", i))
			if err != nil {
				t.Fatal(err)
			}
			rejected = rejected || code == 550
			replies = append(replies, lines...)
		}
		if !rejected {
			t.Fatal("no RCPT rejected")
		}
		c.must("DATA", 354)
		replies = append(replies, c.must("x\r\n.", 550)...)
		replies = append(replies, c.must("NOOP", 250)...)
		for _, r := range replies {
			if enhancedCode.MatchString(r) == off {
				t.Fatalf("off=%v: reply %q", off, r)
			}
		}
	}
}

// TestStageLatency: the greeting and MAIL wait as long as asked.
func TestStageLatency(t *testing.T) {
	t.Parallel()
	f := Faults{Latency: 0, Latencies: map[Stage]time.Duration{StageGreeting: 150 * time.Millisecond, StageMail: 100 * time.Millisecond}}
	s := start(t, Config{Faults: f})
	t0 := time.Now()
	c := dialRaw(t, s.Addr())
	if d := time.Since(t0); d < 150*time.Millisecond {
		t.Fatalf("greeting after %v", d)
	}
	c.must("EHLO client", 250)
	t0 = time.Now()
	c.must("MAIL FROM:<a@example.com>", 250)
	if d := time.Since(t0); d < 100*time.Millisecond {
		t.Fatalf("MAIL answered after %v", d)
	}
	// Latency is the default; an override of 0 removes it.
	f = Faults{Latency: time.Second, Latencies: map[Stage]time.Duration{StageRcpt: 0}}
	if f.latency(StageMail) != time.Second || f.latency(StageData) != time.Second || f.latency(StageRcpt) != 0 || f.latency(StageGreeting) != 0 {
		t.Fatal("latency overrides")
	}
}

// TestPeakSequential: clients that each wait for 221 and close before the
// next one opens never hold two sessions at once, and the peak says so.
func TestPeakSequential(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	for i := range 200 {
		c := dialRaw(t, s.Addr())
		c.must("EHLO client", 250)
		c.must("MAIL FROM:<a@example.com>", 250)
		c.must(fmt.Sprintf("RCPT TO:<u%d@example.com>", i), 250)
		c.must("DATA", 354)
		c.must("x\r\n.", 250)
		c.must("QUIT", 221)
		c.c.Close()
	}
	if st := s.Stats(); st.PeakSessions != 1 || st.Sessions != 200 || st.Messages != 200 {
		t.Fatalf("stats %+v", st)
	}
	// And the peak counts real concurrency: 5 sessions open at once.
	var wg sync.WaitGroup
	ready := make(chan struct{})
	open := make(chan struct{}, 5)
	for range 5 {
		c := dialRaw(t, s.Addr())
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.WriteString(c.c, "EHLO client\r\n")
			c.reply()
			open <- struct{}{}
			<-ready
			io.WriteString(c.c, "QUIT\r\n")
			c.reply()
		}()
	}
	for range 5 {
		<-open
	}
	close(ready)
	wg.Wait()
	if st := s.Stats(); st.PeakSessions != 5 {
		t.Fatalf("peak %d, want 5", st.PeakSessions)
	}
}

// TestThrottleBurst: a burst of 3 lets 3 messages through at once.
func TestThrottleBurst(t *testing.T) {
	t.Parallel()
	s := start(t, Config{Faults: Faults{Throttle: 0.001, ThrottleBurst: 3}})
	c := dial(t, s)
	for i := range 3 {
		if _, err := send(c, "x@example.com", "x\r\n"); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if stage, err := send(c, "x@example.com", "x\r\n"); stage != "mail" || code(err) != 421 {
		t.Fatalf("fourth: %s %v", stage, err)
	}
}

// TestAuthAfterStartTLS: with TLS on and insecure AUTH off, AUTH is offered
// only after STARTTLS, and works there.
func TestAuthAfterStartTLS(t *testing.T) {
	t.Parallel()
	tc, pool, err := SelfSignedTLS()
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, Config{TLSConfig: tc, Auth: &Credentials{Username: "u", Password: "p"}})
	c := dial(t, s)
	if err := c.Hello("client"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Fatal("AUTH offered before STARTTLS")
	}
	if err := c.StartTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("AUTH"); !ok {
		t.Fatal("AUTH not offered after STARTTLS")
	}
	if err := c.Auth(gosmtp.PlainAuth("", "u", "p", "127.0.0.1", false)); err != nil {
		t.Fatal(err)
	}
	if _, err := send(c, "x@example.com", "x\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Messages != 1 || st.AuthFailures != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestValidateFaults(t *testing.T) {
	t.Parallel()
	for _, f := range []Faults{{RcptPerm: 1.5}, {DataTemp: -0.1}, {RcptTemp: 0.6, RcptPerm: 0.6}, {DataPerm: 0.5, DropAfterData: 0.6}} {
		if _, err := Start(Config{Faults: f}); err == nil {
			t.Errorf("%+v: no error", f)
		}
	}
}

func newBufReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
