package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
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
	jsonOut := fs.Bool("json", false, "print the counters as JSON on stdout at exit (the summary line goes to stderr)")
	maxSessions := fs.Int("max-sessions", 0, "answer 421 to sessions above this many at once (0: unlimited)")
	after := fs.Int("after-messages", 0, "answer 421 and close a session after N messages (0: off)")
	throttle := fs.Float64("throttle", 0, "answer 421 4.7.0 above this many messages a second (0: off)")
	burst := fs.Int("throttle-burst", 0, "messages --throttle lets through at once (default 1)")
	latency := fs.Duration("latency", 0, "delay every reply to MAIL, RCPT and the end of DATA")
	latGreeting := fs.Duration("latency-greeting", 0, "delay the 220 greeting")
	latMail := fs.Duration("latency-mail", 0, "delay the reply to MAIL (overrides --latency)")
	latRcpt := fs.Duration("latency-rcpt", 0, "delay the reply to RCPT (overrides --latency)")
	latData := fs.Duration("latency-data", 0, "delay the reply at the end of DATA (overrides --latency)")
	rcptTemp := fs.Float64("rcpt-temp", 0, "`share` (0..1) of RCPTs answered 451 4.3.0")
	rcptPerm := fs.Float64("rcpt-perm", 0, "`share` (0..1) of RCPTs answered 550 5.1.1")
	dataTemp := fs.Float64("data-temp", 0, "`share` (0..1) of messages answered 451 4.3.0 after the data")
	dataPerm := fs.Float64("data-perm", 0, "`share` (0..1) of messages answered 550 5.7.1 after the data")
	dropBefore := fs.Float64("drop-before-data", 0, "`share` (0..1) of DATA commands answered by closing the connection (nothing kept)")
	dropAfter := fs.Float64("drop-after-data", 0, "`share` (0..1) of messages kept, then the connection closed without a reply")
	seed := fs.Int64("seed", 1, "seed of the shares: the same seed fails the same RCPTs and messages")
	noEnhanced := fs.Bool("no-enhanced-status-codes", false, "do not advertise ENHANCEDSTATUSCODES; replies carry no x.y.z code")
	noPipelining := fs.Bool("no-pipelining", false, "do not advertise PIPELINING")
	tlsCert := fs.String("tls-cert", "", "offer STARTTLS with this PEM certificate `file` (with --tls-key)")
	tlsKey := fs.String("tls-key", "", "the PEM private key `file` of --tls-cert")
	selfSigned := fs.Bool("tls-self-signed", false, "offer STARTTLS with a self-signed certificate made at start (for 127.0.0.1, ::1 and localhost)")
	implicit := fs.Bool("tls-implicit", false, "TLS from the first byte, as on port 465 (with --tls-self-signed or --tls-cert), instead of STARTTLS")
	certOut := fs.String("tls-cert-out", "", "write the certificate in use (PEM) to `file`, for the client to trust: provider.ca_file")
	authUser := fs.String("auth-user", "", "require AUTH PLAIN with this user name (after STARTTLS, or within implicit TLS, when TLS is on)")
	authPassEnv := fs.String("auth-password-env", "", "environment `variable` holding the password for --auth-user")
	profile := fs.String("profile", "", "answer as a real provider does when its limits are passed or mail is not authenticated: "+strings.Join(sink.Profiles(), "; "))
	profileScale := fs.Float64("profile-scale", 1, "multiply the profile's rates by this factor (e.g. 50, so that a test passes them in seconds)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to `file` (go tool pprof)")
	busyPoll := fs.Duration("busy-poll", 100*time.Microsecond, "without faults, TLS, AUTH or --maildir: keep polling this long after the last event before sleeping, so a client on this machine seldom has to wake the sink (costs up to a core while traffic flows; 0: off)")
	procs := fs.Int("procs", max(1, runtime.NumCPU()/2), "OS threads running Go code (GOMAXPROCS); the default, half the cores, leaves the rest to the client being measured on the same machine")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *procs < 1 {
		fmt.Fprintf(stderr, "herald sink: --procs %d: at least 1\n", *procs)
		return exitInput
	}
	runtime.GOMAXPROCS(*procs)
	stopProfile, err := cpuProfile(*cpuprofile)
	if err != nil {
		fmt.Fprintf(stderr, "herald sink: %v\n", err)
		return exitInput
	}
	defer stopProfile()
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "herald sink: "+format+"\n", a...)
		return exitInput
	}

	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return bad("--listen %q: %v", *listen, err)
	}
	if ip := net.ParseIP(host); !*anyAddr && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return bad("--listen %s is not a loopback address; add --any-address to listen there", *listen)
	}
	for _, s := range []struct {
		name string
		v    float64
	}{{"rcpt-temp", *rcptTemp}, {"rcpt-perm", *rcptPerm}, {"data-temp", *dataTemp}, {"data-perm", *dataPerm},
		{"drop-before-data", *dropBefore}, {"drop-after-data", *dropAfter}} {
		if !(s.v >= 0 && s.v <= 1) {
			return bad("--%s %v: want a share between 0 and 1", s.name, s.v)
		}
	}
	if *rcptTemp+*rcptPerm > 1 {
		return bad("--rcpt-temp + --rcpt-perm exceed 1")
	}
	if *dataTemp+*dataPerm+*dropAfter > 1 {
		return bad("--data-temp + --data-perm + --drop-after-data exceed 1")
	}
	if *throttle < 0 {
		return bad("--throttle %v: want a rate of 0 or more", *throttle)
	}
	if *burst < 0 || (set["throttle-burst"] && *throttle == 0) {
		return bad("--throttle-burst %d: want a positive burst, with --throttle", *burst)
	}
	for name, d := range map[string]time.Duration{"latency": *latency, "latency-greeting": *latGreeting,
		"latency-mail": *latMail, "latency-rcpt": *latRcpt, "latency-data": *latData} {
		if d < 0 {
			return bad("--%s %v: want a duration of 0 or more", name, d)
		}
	}
	if *busyPoll < 0 {
		return bad("--busy-poll %v: want a duration of 0 or more", *busyPoll)
	}
	if *maxSessions < 0 || *after < 0 {
		return bad("--max-sessions and --after-messages want 0 or more")
	}

	cfg := sink.Config{Addr: *listen, Maildir: *maildir, MaxSessions: *maxSessions, AllowInsecureAuth: true,
		NoPipelining: *noPipelining, NoEnhancedStatusCodes: *noEnhanced, CountOnly: true, BusyPoll: *busyPoll,
		Faults: sink.Faults{AfterMessages: *after, Throttle: *throttle, ThrottleBurst: *burst, Latency: *latency,
			Latencies: map[sink.Stage]time.Duration{},
			RcptTemp:  *rcptTemp, RcptPerm: *rcptPerm, DataTemp: *dataTemp, DataPerm: *dataPerm,
			DropBeforeData: *dropBefore, DropAfterData: *dropAfter, Seed: *seed}}
	for _, l := range []struct {
		flag  string
		stage sink.Stage
		d     time.Duration
	}{{"latency-greeting", sink.StageGreeting, *latGreeting}, {"latency-mail", sink.StageMail, *latMail},
		{"latency-rcpt", sink.StageRcpt, *latRcpt}, {"latency-data", sink.StageData, *latData}} {
		if set[l.flag] {
			cfg.Faults.Latencies[l.stage] = l.d
		}
	}
	switch {
	case *selfSigned && (*tlsCert != "" || *tlsKey != ""):
		return bad("--tls-self-signed and --tls-cert/--tls-key exclude each other")
	case (*tlsCert == "") != (*tlsKey == ""):
		return bad("--tls-cert and --tls-key go together")
	case *tlsCert != "":
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return bad("--tls-cert/--tls-key: %v", err)
		}
		cfg.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	case *selfSigned:
		if cfg.TLSConfig, _, err = sink.SelfSignedTLS(); err != nil {
			return bad("--tls-self-signed: %v", err)
		}
	}
	if (*implicit || *certOut != "") && cfg.TLSConfig == nil {
		return bad("--tls-implicit and --tls-cert-out need a certificate: --tls-self-signed, or --tls-cert and --tls-key")
	}
	cfg.ImplicitTLS = *implicit
	if *certOut != "" {
		var buf bytes.Buffer
		for _, der := range cfg.TLSConfig.Certificates[0].Certificate {
			_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: der})
		}
		if err := os.WriteFile(*certOut, buf.Bytes(), 0o644); err != nil {
			return bad("--tls-cert-out: %v", err)
		}
	}
	// With TLS on, AUTH is offered only after STARTTLS, as a submission
	// server does; without, in the clear (loopback).
	cfg.AllowInsecureAuth = cfg.TLSConfig == nil
	if *authUser != "" {
		pass := os.Getenv(*authPassEnv)
		if *authPassEnv == "" || pass == "" {
			return bad("--auth-user needs --auth-password-env naming a set environment variable")
		}
		cfg.Auth = &sink.Credentials{Username: *authUser, Password: pass}
	}
	if *profile != "" {
		if err := cfg.UseProfile(*profile, *profileScale); err != nil {
			return bad("--profile: %v", err)
		}
	} else if set["profile-scale"] {
		return bad("--profile-scale needs --profile")
	}
	s, err := sink.Start(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "herald sink: %v\n", err)
		return exitInput
	}
	mode := ""
	switch {
	case *implicit:
		mode = " (implicit TLS)"
	case cfg.TLSConfig != nil:
		mode = " (STARTTLS)"
	}
	if cfg.Auth != nil {
		mode += ", AUTH required"
	}
	fmt.Fprintf(stderr, "herald sink: listening on %s%s\n", s.Addr(), mode)
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
	summary := stdout
	if *jsonOut {
		summary = stderr
	}
	fmt.Fprintf(summary, "herald sink: %d messages accepted (%d recipients, %d bytes); %d sessions, peak %d at once; "+
		"rejected %d at MAIL, %d at RCPT (%d rcpt-temp, %d rcpt-perm), %d after DATA (%d data-temp, %d data-perm); "+
		"dropped %d before data, %d after data (kept); %d throttled; %d over --max-sessions; %d failed logins\n",
		st.Messages, st.Recipients, st.Bytes, st.Sessions, st.PeakSessions,
		st.RejectedMail, st.RejectedRcpt, st.RcptTemp, st.RcptPerm, st.RejectedData, st.DataTemp, st.DataPerm,
		st.DroppedBeforeData, st.DroppedAfterData, st.Throttled, st.SessionLimited, st.AuthFailures)
	b, _ := json.MarshalIndent(st, "", "  ")
	b = append(b, '\n')
	if *jsonOut {
		_, _ = stdout.Write(b)
	}
	if *statsFile != "" {
		if err := os.WriteFile(*statsFile, b, 0o644); err != nil {
			fmt.Fprintf(stderr, "herald sink: --stats: %v\n", err)
			return exitFailed
		}
	}
	return exitOK
}
