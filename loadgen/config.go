package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// TLSMode is how a connection is secured.
type TLSMode uint8

const (
	TLSNone     TLSMode = iota // plain SMTP
	TLSStartTLS                // STARTTLS after the first EHLO (RFC 3207); refused servers are an error
	TLSImplicit                // TLS from the first byte (port 465 style)
)

// ParseTLSMode reads none, starttls or tls.
func ParseTLSMode(s string) (TLSMode, error) {
	switch s {
	case "none":
		return TLSNone, nil
	case "starttls":
		return TLSStartTLS, nil
	case "tls":
		return TLSImplicit, nil
	}
	return 0, fmt.Errorf("--tls %q: want none, starttls or tls", s)
}

func (m TLSMode) String() string {
	return [...]string{"none", "starttls", "tls"}[m]
}

// Config is one load run. The zero values of the optional fields take the
// defaults in withDefaults.
type Config struct {
	Server      string        // host:port
	AllowRemote bool          // permit a target that is not loopback
	Connections int           // closed loop: connections sending back to back; open loop: at most this many, opened as needed
	Messages    int           // messages in all; 0 with Duration: until Duration ends
	Duration    time.Duration // 0: until Messages are sent
	Rate        float64       // open loop: messages offered per second; 0 is closed loop
	Size        int           // bytes of each message, headers and body
	Rcpts       int           // recipients per message
	Reuse       int           // messages per connection before QUIT (0: unlimited)
	TLS         TLSMode
	TLSConfig   *tls.Config // roots or InsecureSkipVerify; ServerName defaults to the host
	// AUTH PLAIN when AuthUser is set. The password goes only on the wire.
	AuthUser, AuthPassword string
	Pipelining             bool // use PIPELINING (RFC 2920) when the server advertises it
	From                   string
	ToDomain               string // recipients are r<j>-<n>@ToDomain
	Helo                   string
	Timeout                time.Duration // per message (and per connection setup)
	// Progress, if set, is called every ProgressEvery (default 1s) from
	// one goroutine while the run lasts.
	Progress      func(Progress)
	ProgressEvery time.Duration
}

// Progress is a snapshot of a running load.
type Progress struct {
	Elapsed time.Duration
	Sent    int64   // messages accepted so far
	Errors  int64   // failures so far
	Rate    float64 // messages accepted per second since the last snapshot
}

// Defaults.
const (
	DefaultServer          = "127.0.0.1:25"
	DefaultConnections     = 16
	DefaultOpenConnections = 256
	DefaultMessages        = 1000
	DefaultSize            = 2000
	DefaultFrom            = "bench@example.com"
	DefaultToDomain        = "example.com"
	DefaultHelo            = "localhost"
	DefaultTimeout         = 30 * time.Second
)

// withDefaults returns a copy of c with the defaults applied.
func (c Config) withDefaults() Config {
	if c.Server == "" {
		c.Server = DefaultServer
	}
	if c.Connections == 0 {
		c.Connections = DefaultConnections
		if c.Rate > 0 {
			c.Connections = DefaultOpenConnections
		}
	}
	if c.Messages == 0 && c.Duration == 0 {
		c.Messages = DefaultMessages
	}
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	if c.Rcpts == 0 {
		c.Rcpts = 1
	}
	if c.From == "" {
		c.From = DefaultFrom
	}
	if c.ToDomain == "" {
		c.ToDomain = DefaultToDomain
	}
	if c.Helo == "" {
		c.Helo = DefaultHelo
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = time.Second
	}
	return c
}

// validate reports every problem at once, each naming its flag.
func (c Config) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if _, _, err := net.SplitHostPort(c.Server); err != nil {
		bad("--server %q: want host:port", c.Server)
	}
	if c.Connections < 1 {
		bad("--connections %d: must be at least 1", c.Connections)
	}
	if c.Messages < 0 {
		bad("--messages %d: must not be negative", c.Messages)
	}
	if c.Duration < 0 {
		bad("--duration %s: must not be negative", c.Duration)
	}
	if c.Rate < 0 {
		bad("--rate %g: must not be negative", c.Rate)
	}
	if c.Rcpts < 1 || c.Rcpts > 1000 {
		bad("--rcpts %d: must be between 1 and 1000", c.Rcpts)
	}
	if c.Reuse < 0 {
		bad("--reuse %d: must not be negative", c.Reuse)
	}
	if c.Timeout < 0 {
		bad("--timeout %s: must not be negative", c.Timeout)
	}
	for flag, v := range map[string]string{"--from": c.From, "--to-domain": c.ToDomain, "--helo": c.Helo} {
		if strings.ContainsAny(v, "\r\n<> \t") {
			bad("%s %q: contains a character not allowed in SMTP", flag, v)
		}
	}
	if !strings.Contains(c.From, "@") {
		bad("--from %q: want an address, user@domain", c.From)
	}
	if h := headerBytes(c.From); c.Size < h {
		bad("--size %d: smaller than the message headers (%d bytes)", c.Size, h)
	}
	if c.AuthUser != "" && c.AuthPassword == "" {
		bad("--auth-user needs a password (--auth-password-env naming a set variable)")
	}
	if strings.ContainsAny(c.AuthUser, "\x00\r\n") {
		bad("--auth-user: contains a NUL or line break")
	}
	return errors.Join(errs...)
}

// CheckTarget resolves server (host:port) and returns its addresses. Every
// address must be loopback unless allowRemote: a load test aimed at
// someone else's server is a denial of service.
func CheckTarget(ctx context.Context, server string, allowRemote bool) ([]string, error) {
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		return nil, fmt.Errorf("--server %q: want host:port", server)
	}
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else {
		addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("--server %s: %w", server, err)
		}
		for _, a := range addrs {
			ips = append(ips, a.IP)
		}
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("--server %s: no address", server)
	}
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		if !allowRemote && !ip.IsLoopback() {
			return nil, fmt.Errorf("--server %s: %s is not a loopback address; add --allow-remote to load a remote server (only one you run)", server, ip)
		}
		out = append(out, net.JoinHostPort(ip.String(), port))
	}
	return out, nil
}
