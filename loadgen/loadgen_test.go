package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/sink"
)

func startSink(t *testing.T, cfg sink.Config) *sink.Server {
	t.Helper()
	s, err := sink.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func run(t *testing.T, cfg Config) *Result {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// matchSink checks that what the run reports is what the server received.
func matchSink(t *testing.T, res *Result, s *sink.Server) {
	t.Helper()
	st := s.Stats()
	if res.Messages != st.Messages || res.Recipients != st.Recipients || res.Outcomes["sent"] != st.Messages {
		t.Fatalf("bench says %d messages, %d recipients (sent %d); the server got %d, %d",
			res.Messages, res.Recipients, res.Outcomes["sent"], st.Messages, st.Recipients)
	}
	if res.Message.Count() != uint64(res.Messages) {
		t.Fatalf("%d message latencies for %d messages", res.Message.Count(), res.Messages)
	}
}

func TestClosedLoopCountsMatchServer(t *testing.T) {
	t.Parallel()
	for _, pipe := range []bool{true, false} {
		s := startSink(t, sink.Config{Keep: true})
		res := run(t, Config{Server: s.Addr(), Connections: 4, Messages: 150, Rcpts: 3, Size: 3000, Pipelining: pipe})
		matchSink(t, res, s)
		if res.Messages != 150 || res.Recipients != 450 || res.Errors != 0 || res.Pipelining != pipe || res.Mode != "closed" {
			t.Fatalf("pipelining %v: %+v", pipe, res)
		}
		for _, st := range []string{"connect", "ehlo", "mail", "rcpt", "data", "body", "quit"} {
			if res.Stages[st] == nil || res.Stages[st].Count() == 0 {
				t.Fatalf("no %s latencies", st)
			}
		}
		if n := res.Stages["rcpt"].Count(); n != 450 {
			t.Fatalf("%d RCPT latencies for 450 recipients", n)
		}
		ids := map[string]bool{}
		for _, m := range s.Messages() {
			if len(m.Data) != 3000 || !bytes.Contains(m.Data, []byte("\r\n.\r\n")) || len(m.To) != 3 {
				t.Fatalf("a %d-byte message with %d recipients arrived; want 3000 bytes with its lone-dot line, 3 recipients", len(m.Data), len(m.To))
			}
			i := bytes.Index(m.Data, []byte("Message-ID: "))
			ids[string(m.Data[i:i+40])] = true
		}
		if len(ids) != 150 {
			t.Fatalf("%d distinct Message-IDs in 150 messages", len(ids))
		}
	}
}

func TestDurationBound(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	res := run(t, Config{Server: s.Addr(), Connections: 2, Duration: 300 * time.Millisecond, Pipelining: true})
	matchSink(t, res, s)
	if res.Messages == 0 || res.Duration < 300*time.Millisecond {
		t.Fatalf("%d messages in %v", res.Messages, res.Duration)
	}
}

func TestRefusalsAreClassified(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		rule    *sink.Rule // shared by the subtests: no Times, so its counter does not matter
		rcpts   int
		class   string
		perMsg  int64 // failures counted per message
		sent    bool  // the messages still go to the other recipients
		msgRcpt int64 // accepted recipients per sent message
	}{
		{"no such user", &sink.Rule{Match: "r1-", Stage: sink.StageRcpt, Code: 550, Enhanced: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}, 3, "permanent", 1, true, 2},
		{"too many recipients", &sink.Rule{Match: "r2-", Stage: sink.StageRcpt, Code: 452, Enhanced: smtp.EnhancedCode{4, 5, 3}, Message: "Your message has too many recipients."}, 3, "transient", 1, true, 2},
		{"receiving too quickly", &sink.Rule{Match: "r0-", Stage: sink.StageRcpt, Code: 450, Enhanced: smtp.EnhancedCode{4, 2, 1}, Message: "The user you are trying to contact is receiving mail too quickly."}, 1, "throttle", 1, false, 0},
		{"every recipient refused", &sink.Rule{Stage: sink.StageRcpt, Code: 550, Enhanced: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}, 2, "permanent", 2, false, 0},
		{"content", &sink.Rule{Stage: sink.StageData, Code: 554, Enhanced: smtp.EnhancedCode{5, 7, 1}, Message: "DT:SPM message judged spam"}, 2, "policy", 1, false, 0},
		{"sender", &sink.Rule{Stage: sink.StageMail, Code: 550, Enhanced: smtp.EnhancedCode{5, 4, 5}, Message: "Daily sending quota exceeded."}, 2, "throttle", 1, false, 0},
		{"dropped after the data", &sink.Rule{Stage: sink.StageData, Drop: true}, 1, "ambiguous", 1, false, 0},
	} {
		for _, pipe := range []bool{true, false} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				s := startSink(t, sink.Config{Faults: sink.Faults{Rules: []*sink.Rule{tt.rule}}})
				const n = 20
				res := run(t, Config{Server: s.Addr(), Connections: 2, Messages: n, Rcpts: tt.rcpts, Pipelining: pipe})
				matchSink(t, res, s)
				if res.Outcomes[tt.class] != n*tt.perMsg || res.Errors != n*tt.perMsg {
					t.Fatalf("pipelining %v: outcomes %v errors %d, want %s %d", pipe, res.Outcomes, res.Errors, tt.class, n*tt.perMsg)
				}
				wantSent := int64(0)
				if tt.sent {
					wantSent = n
				}
				if res.Messages != wantSent || res.Recipients != wantSent*tt.msgRcpt {
					t.Fatalf("pipelining %v: %d messages, %d recipients", pipe, res.Messages, res.Recipients)
				}
			})
		}
	}
}

func TestSessionLimitIsThrottle(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{MaxSessions: 1})
	res := run(t, Config{Server: s.Addr(), Connections: 3, Messages: 30, Pipelining: true})
	matchSink(t, res, s)
	if res.Outcomes["throttle"] == 0 || res.Messages+res.Errors != 30 {
		t.Fatalf("outcomes %v, %d sent", res.Outcomes, res.Messages)
	}
}

func TestPipeliningGroupsTheEnvelope(t *testing.T) {
	t.Parallel()
	grouped := func(reads [][]byte) (envelopes, groups int) {
		for _, r := range reads {
			if bytes.Contains(r, []byte("MAIL FROM:")) {
				envelopes++
				if bytes.Contains(r, []byte("RCPT TO:")) && bytes.HasSuffix(r, []byte("DATA\r\n")) {
					groups++
				}
			}
		}
		return
	}
	for _, tt := range []struct {
		name         string
		noPipelining bool // the server does not advertise it
		pipe         bool // asked for
		want         bool
	}{
		{"auto", false, true, true},
		{"off", false, false, false},
		{"not advertised", true, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startSink(t, sink.Config{RecordReads: true, NoPipelining: tt.noPipelining})
			res := run(t, Config{Server: s.Addr(), Connections: 2, Messages: 20, Rcpts: 2, Pipelining: tt.pipe})
			matchSink(t, res, s)
			env, groups := grouped(s.Reads())
			if env != 20 || res.Pipelining != tt.want {
				t.Fatalf("%d MAIL commands seen, result says pipelining %v", env, res.Pipelining)
			}
			if tt.want && groups != 20 {
				t.Fatalf("%d of 20 envelopes arrived as one MAIL+RCPT+DATA group", groups)
			}
			// The content of a message goes with the next envelope: on each
			// connection every envelope but the first follows a final dot.
			chained := 0
			for _, r := range s.Reads() {
				if bytes.Contains(r, []byte("\r\n.\r\nMAIL FROM:")) {
					chained++
				}
			}
			if tt.want && chained != 20-int(res.Sessions) || !tt.want && chained != 0 {
				t.Fatalf("%d envelopes sent with the previous content over %d sessions", chained, res.Sessions)
			}
			// And the last content of a session goes with QUIT.
			quits := 0
			for _, r := range s.Reads() {
				if bytes.HasSuffix(r, []byte("\r\n.\r\nQUIT\r\n")) {
					quits++
				}
			}
			if tt.want && quits != int(res.Sessions) || !tt.want && quits != 0 {
				t.Fatalf("%d of %d sessions ended with content and QUIT in one group", quits, res.Sessions)
			}
			if !tt.want && groups != 0 {
				t.Fatalf("%d envelopes were pipelined", groups)
			}
		})
	}
}

func TestReuse(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ reuse, conns, maxSessions, minSessions int }{
		{1, 3, 30, 30},
		{10, 1, 3, 3},
		{0, 3, 3, 1},
	} {
		s := startSink(t, sink.Config{})
		res := run(t, Config{Server: s.Addr(), Connections: tt.conns, Messages: 30, Reuse: tt.reuse, Pipelining: true})
		matchSink(t, res, s)
		got := s.Stats().Sessions
		if res.Sessions != got || got < int64(tt.minSessions) || got > int64(tt.maxSessions) {
			t.Fatalf("reuse %d: %d sessions (bench says %d), want %d..%d", tt.reuse, got, res.Sessions, tt.minSessions, tt.maxSessions)
		}
		if q := res.Stages["quit"]; q == nil || q.Count() != uint64(got) {
			t.Fatalf("reuse %d: every session ends with a timed QUIT", tt.reuse)
		}
	}
}

func TestOpenLoopRate(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	res := run(t, Config{Server: s.Addr(), Rate: 200, Duration: time.Second, Pipelining: true})
	matchSink(t, res, s)
	// Up to 256 connections by default, but opened only when no open one
	// is idle: a message takes a millisecond or so, one every 5ms is due.
	if res.Connections != DefaultOpenConnections || res.Sessions >= 100 || res.Sessions != s.Stats().Sessions {
		t.Fatalf("%d sessions for 200 messages at 200/s (up to %d connections)", res.Sessions, res.Connections)
	}
	// 200 messages are due at 0, 5ms, ... 995ms: the run cannot be shorter.
	if res.Messages != 200 || res.Errors != 0 || res.Mode != "open" || res.OfferedRate != 200 {
		t.Fatalf("%+v", res)
	}
	if res.Duration < 995*time.Millisecond {
		t.Fatalf("200 messages at 200/s went out in %v: not paced", res.Duration)
	}
}

func TestOpenLoopCountsQueueing(t *testing.T) {
	t.Parallel()
	// Every message takes at least 60ms on the server (MAIL, RCPT and the
	// end of DATA each wait 20ms); offered every 20ms to one connection,
	// they queue. Message 20 is due at 380ms and cannot finish before
	// 20×60ms = 1.2s: measured from its intended start, its latency is at
	// least 820ms, though its own exchange took about 60ms.
	s := startSink(t, sink.Config{Faults: sink.Faults{Latency: 20 * time.Millisecond}})
	res := run(t, Config{Server: s.Addr(), Rate: 50, Messages: 20, Connections: 1, Pipelining: true})
	matchSink(t, res, s)
	if res.Messages != 20 || res.Message.Max() < 820*time.Millisecond {
		t.Fatalf("%d messages, slowest %v: the wait for the connection is not counted", res.Messages, res.Message.Max())
	}
	if res.Stages["body"].Max() > res.Message.Max()/2 {
		t.Fatalf("body stage %v vs message %v", res.Stages["body"].Max(), res.Message.Max())
	}
}

// testCA returns a server TLS config with a fresh self-signed certificate
// for 127.0.0.1 and a client pool that trusts it.
func testCA(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	cfg, pool, err := sink.SelfSignedTLS()
	if err != nil {
		t.Fatal(err)
	}
	return cfg, pool
}

func TestTLSAndAuth(t *testing.T) {
	t.Parallel()
	serverTLS, pool := testCA(t)
	creds := &sink.Credentials{Username: "bench", Password: "s3cret-pw"}
	for _, tt := range []struct {
		name     string
		implicit bool
		mode     TLSMode
		stage    string // a stage only this mode has
	}{
		{"starttls", false, TLSStartTLS, "starttls"},
		{"implicit", true, TLSImplicit, "auth"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startSink(t, sink.Config{TLSConfig: serverTLS, ImplicitTLS: tt.implicit, Auth: creds})
			base := Config{Server: s.Addr(), Connections: 2, Messages: 20, Pipelining: true, TLS: tt.mode,
				TLSConfig: &tls.Config{RootCAs: pool}, AuthUser: "bench", AuthPassword: "s3cret-pw"}
			res := run(t, base)
			matchSink(t, res, s)
			if res.Messages != 20 || res.Errors != 0 || res.Stages[tt.stage] == nil || res.Stages["auth"].Count() != uint64(res.Sessions) {
				t.Fatalf("%+v", res)
			}

			wrong := base
			wrong.AuthPassword = "not-the-password"
			res = run(t, wrong)
			if res.Messages != 0 || res.Outcomes["auth"] == 0 || res.Errors != res.Outcomes["auth"] || res.Aborted == "" {
				t.Fatalf("wrong password: outcomes %v, aborted %q", res.Outcomes, res.Aborted)
			}
			if strings.Contains(res.Aborted, "not-the-password") {
				t.Fatal("the password is in the report")
			}

			untrusted := base
			untrusted.TLSConfig = nil // the system roots do not know the test authority
			res = run(t, untrusted)
			if res.Messages != 0 || res.Outcomes["auth"] == 0 || !strings.Contains(res.Aborted, "certificate") {
				t.Fatalf("untrusted certificate: outcomes %v, aborted %q", res.Outcomes, res.Aborted)
			}

			insecure := base
			insecure.TLSConfig = &tls.Config{InsecureSkipVerify: true}
			insecure.Messages = 5
			res = run(t, insecure)
			if res.Messages != 5 {
				t.Fatalf("--insecure: %v", res.Outcomes)
			}
		})
	}
}

func TestStartTLSNotOffered(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	res := run(t, Config{Server: s.Addr(), Messages: 5, TLS: TLSStartTLS, TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if res.Messages != 0 || s.Stats().Messages != 0 || res.Outcomes["auth"] == 0 || !strings.Contains(res.Aborted, "STARTTLS") {
		t.Fatalf("sent in clear or misreported: outcomes %v aborted %q", res.Outcomes, res.Aborted)
	}
}

func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	res := run(t, Config{Server: addr, Connections: 2, Messages: 6})
	if res.Messages != 0 || res.Outcomes["reconnect"] != 6 || res.Errors != 6 {
		t.Fatalf("outcomes %v", res.Outcomes)
	}
}

func TestRemoteTargetRefused(t *testing.T) {
	t.Parallel()
	// TEST-NET addresses: never dialled, the check refuses them first.
	for _, server := range []string{"192.0.2.1:25", "[2001:db8::1]:25", "10.0.0.1:2525"} {
		if _, err := CheckTarget(context.Background(), server, false); err == nil || !strings.Contains(err.Error(), "--allow-remote") {
			t.Fatalf("%s: %v", server, err)
		}
		if _, err := Run(context.Background(), Config{Server: server, Messages: 1}); err == nil {
			t.Fatalf("%s: Run went ahead", server)
		}
		if _, err := CheckTarget(context.Background(), server, true); err != nil {
			t.Fatalf("%s with allowRemote: %v", server, err)
		}
	}
	addrs, err := CheckTarget(context.Background(), "localhost:2525", false)
	if err != nil || len(addrs) == 0 {
		t.Fatalf("localhost: %v %v", addrs, err)
	}
	if _, err := CheckTarget(context.Background(), "localhost", false); err == nil {
		t.Fatal("no port: want an error")
	}
}

func TestConfigErrorsNameFlags(t *testing.T) {
	t.Parallel()
	_, err := Run(context.Background(), Config{Connections: -1, Rcpts: -2, Size: 10, Reuse: -1, From: "a b"})
	for _, want := range []string{"--connections", "--rcpts", "--size", "--reuse", "--from"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("want an error naming %s, got %v", want, err)
		}
	}
}

func TestCancelStopsAndCountsWhatWasSent(t *testing.T) {
	t.Parallel()
	for _, rate := range []float64{0, 500} {
		s := startSink(t, sink.Config{})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(300*time.Millisecond, cancel)
		res, err := Run(ctx, Config{Server: s.Addr(), Connections: 4, Duration: time.Minute, Rate: rate, Pipelining: true, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		// Messages whose content was held for the next envelope are sent
		// and counted before the sessions end.
		matchSink(t, res, s)
		if res.Messages == 0 || res.Errors != 0 || res.Duration > 20*time.Second {
			t.Fatalf("rate %v: %d messages, %d errors in %v", rate, res.Messages, res.Errors, res.Duration)
		}
	}
}

// In open loop, a connection opened ahead of a message that fails is no
// message's error: each message offered is counted once.
func TestOpenLoopConnectionRefusedCountsEachMessageOnce(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	res := run(t, Config{Server: addr, Rate: 100, Messages: 20, Connections: 4})
	if res.Messages != 0 || res.Errors != 20 || res.Outcomes["reconnect"] != 20 {
		t.Fatalf("20 messages offered to a closed port: %d errors, outcomes %v", res.Errors, res.Outcomes)
	}
}
