package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/heraldmail/herald/loadgen"
)

// cmdBench is herald bench: an SMTP load generator (package loadgen).
func cmdBench(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("bench", "--server HOST:PORT [--connections C] [--messages N | --duration D] [--rate R] [flags]", stderr)
	var cfg loadgen.Config
	fs.StringVar(&cfg.Server, "server", loadgen.DefaultServer, "SMTP server to load, `host:port` (loopback unless --allow-remote)")
	fs.StringVar(&cfg.Server, "target", loadgen.DefaultServer, "the same as --server")
	fs.BoolVar(&cfg.AllowRemote, "allow-remote", false, "allow a server that is not on a loopback address (only a server you run)")
	fs.IntVar(&cfg.Connections, "connections", 0, fmt.Sprintf("concurrent connections (default %d; %d with --rate)", loadgen.DefaultConnections, loadgen.DefaultOpenConnections))
	fs.IntVar(&cfg.Messages, "messages", 0, fmt.Sprintf("messages to send in all (default %d unless --duration)", loadgen.DefaultMessages))
	fs.DurationVar(&cfg.Duration, "duration", 0, "send for this long (with --messages: whichever ends first)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "open loop: offer this many messages a second on a fixed schedule (0: closed loop, as fast as the server takes them)")
	fs.IntVar(&cfg.Size, "size", loadgen.DefaultSize, "message size in `bytes`, headers and body")
	fs.IntVar(&cfg.Rcpts, "rcpts", 1, "recipients per message")
	fs.IntVar(&cfg.Reuse, "reuse", 0, "messages per connection before QUIT and a new connection (0: unlimited; 1: a connection per message)")
	tlsMode := fs.String("tls", "none", "none, starttls or tls (implicit TLS, port 465 style)")
	insecure := fs.Bool("insecure", false, "do not verify the server's certificate (self-signed test servers)")
	caFile := fs.String("ca", "", "trust the PEM certificate authorities in `file` for the server's certificate")
	fs.StringVar(&cfg.AuthUser, "auth-user", "", "AUTH PLAIN as this user")
	passEnv := fs.String("auth-password-env", "", "environment `variable` holding the password for --auth-user")
	pipelining := fs.String("pipelining", "auto", "auto: MAIL, RCPT and DATA in one write when the server advertises PIPELINING (RFC 2920); off: one command at a time")
	fs.StringVar(&cfg.From, "from", loadgen.DefaultFrom, "envelope and header sender")
	fs.StringVar(&cfg.ToDomain, "to-domain", loadgen.DefaultToDomain, "domain of the generated recipients (r<j>-<n>@domain)")
	fs.StringVar(&cfg.Helo, "helo", loadgen.DefaultHelo, "name to say in EHLO")
	fs.DurationVar(&cfg.Timeout, "timeout", loadgen.DefaultTimeout, "give up on a message (or a connection setup) after this long")
	jsonOut := fs.Bool("json", false, "print the results as one JSON object on stdout")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the run to `file`")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "herald bench: unexpected argument %q\n", fs.Arg(0))
		return exitInput
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "herald bench: "+format+"\n", a...)
		return exitInput
	}
	mode, err := loadgen.ParseTLSMode(*tlsMode)
	if err != nil {
		return bad("%v", err)
	}
	cfg.TLS = mode
	switch *pipelining {
	case "auto":
		cfg.Pipelining = true
	case "off":
	default:
		return bad("--pipelining %q: want auto or off", *pipelining)
	}
	if (*insecure || *caFile != "") && mode == loadgen.TLSNone {
		return bad("--insecure and --ca need --tls starttls or tls")
	}
	if mode != loadgen.TLSNone {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: *insecure}
		if *caFile != "" {
			pem, err := os.ReadFile(*caFile)
			if err != nil {
				return bad("--ca: %v", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return bad("--ca %s: no PEM certificate in it", *caFile)
			}
		}
		cfg.TLSConfig = tc
	}
	switch {
	case cfg.AuthUser != "" && *passEnv == "":
		return bad("--auth-user needs --auth-password-env naming the variable that holds the password")
	case cfg.AuthUser == "" && *passEnv != "":
		return bad("--auth-password-env needs --auth-user")
	case *passEnv != "":
		cfg.AuthPassword = os.Getenv(*passEnv)
		if cfg.AuthPassword == "" {
			return bad("--auth-password-env %s: the variable is not set or empty", *passEnv)
		}
	}
	if !*quiet {
		cfg.Progress = func(p loadgen.Progress) {
			fmt.Fprintf(stderr, "herald bench: %5.0fs %9d msgs %9.0f msgs/s %6d errors\n", p.Elapsed.Seconds(), p.Sent, p.Rate, p.Errors)
		}
	}
	stopProfile, err := cpuProfile(*cpuprofile)
	if err != nil {
		return bad("%v", err)
	}
	defer stopProfile()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return bad("%v", indent(err.Error()))
	}
	if *jsonOut {
		if err := res.WriteJSON(stdout); err != nil {
			fmt.Fprintf(stderr, "herald bench: %v\n", err)
			return exitFailed
		}
	} else {
		res.WriteText(stdout)
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "herald bench: interrupted; the report covers the messages sent until then")
	}
	if res.Aborted != "" {
		fmt.Fprintf(stderr, "herald bench: stopped early: %s\n", res.Aborted)
	}
	if res.Errors > 0 {
		return exitFailed
	}
	return exitOK
}
