package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/heraldmail/herald/sink"
)

func cmdSink(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("sink", "--listen ADDR [--maildir DIR] [fault flags]", stderr)
	listen := fs.String("listen", "127.0.0.1:2525", "`address` to listen on (loopback unless --any-address)")
	anyAddr := fs.Bool("any-address", false, "allow listening on a non-loopback address")
	maildir := fs.String("maildir", "", "write every accepted message into `DIR`/new (maildir)")
	statsFile := fs.String("stats", "", "write the counters as JSON to `file` at exit")
	maxSessions := fs.Int("max-sessions", 0, "answer 421 to sessions above this many at once (0: unlimited)")
	after := fs.Int("after-messages", 0, "answer 421 and close a session after N messages (0: off)")
	throttle := fs.Float64("throttle", 0, "answer 421 4.7.0 above this many messages a second (0: off)")
	latency := fs.Duration("latency", 0, "delay every reply to MAIL, RCPT and the end of DATA")
	authUser := fs.String("auth-user", "", "require AUTH PLAIN with this user name")
	authPassEnv := fs.String("auth-password-env", "", "environment `variable` holding the password for --auth-user")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		fmt.Fprintf(stderr, "herald sink: --listen %q: %v\n", *listen, err)
		return exitInput
	}
	if ip := net.ParseIP(host); !*anyAddr && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		fmt.Fprintf(stderr, "herald sink: --listen %s is not a loopback address; add --any-address to listen there\n", *listen)
		return exitInput
	}
	cfg := sink.Config{Addr: *listen, Maildir: *maildir, MaxSessions: *maxSessions, AllowInsecureAuth: true,
		Faults: sink.Faults{AfterMessages: *after, Throttle: *throttle, Latency: *latency}}
	if *authUser != "" {
		pass := os.Getenv(*authPassEnv)
		if *authPassEnv == "" || pass == "" {
			fmt.Fprintln(stderr, "herald sink: --auth-user needs --auth-password-env naming a set environment variable")
			return exitInput
		}
		cfg.Auth = &sink.Credentials{Username: *authUser, Password: pass}
	}
	s, err := sink.Start(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "herald sink: %v\n", err)
		return exitInput
	}
	fmt.Fprintf(stderr, "herald sink: listening on %s\n", s.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	var last int64
	for running := true; running; {
		select {
		case <-sig:
			running = false
		case <-tick.C:
			st := s.Stats()
			if st.Messages != last {
				fmt.Fprintf(stderr, "herald sink: %d messages (%.0f/s), %d sessions, peak %d at once\n", st.Messages, float64(st.Messages-last)/5, st.Sessions, st.PeakSessions)
				last = st.Messages
			}
		}
	}
	s.Close()
	st := s.Stats()
	fmt.Fprintf(stdout, "herald sink: %d messages, %d recipients, %d bytes; %d sessions (peak %d at once); rejected %d at MAIL, %d at RCPT, %d after DATA; %d dropped; %d throttled\n",
		st.Messages, st.Recipients, st.Bytes, st.Sessions, st.PeakSessions, st.RejectedMail, st.RejectedRcpt, st.RejectedData, st.DroppedBeforeData+st.DroppedAfterData, st.Throttled)
	if *statsFile != "" {
		b, _ := json.MarshalIndent(st, "", "  ")
		if err := os.WriteFile(*statsFile, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(stderr, "herald sink: --stats: %v\n", err)
			return exitFailed
		}
	}
	return exitOK
}
