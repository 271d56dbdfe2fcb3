package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"

	"github.com/heraldmail/herald/config"
	"github.com/heraldmail/herald/outcome"
	"github.com/heraldmail/herald/ratelimit"
)

// provider is one submission server at run time: its configured go-mail
// client, its limits and its circuit. Safe for concurrent use.
type provider struct {
	// connected: a connection to it was made in this run (a later failure
	// to connect may pass; see diagnose).
	connected atomic.Bool
	// probed: a TLS handshake was tried once, to explain a silent server.
	probed atomic.Bool
	// open counts this process's open connections to it.
	openConns atomic.Int64
	// warmupDay makes a warm-up day's quota (ProviderLimits.WarmupDay).
	warmupDay func(day int, limit int) ratelimit.Quota
	cfg       config.Provider
	t         *Timing      // the engine's
	client    *mail.Client // configured once; senders dial their own connections
	tlsConf   *tls.Config
	auth      func(mechs string) smtp.Auth
	pacer     ratelimit.Pacer
	quota     ratelimit.Quota
	slots     ratelimit.Slots
	circuit   ratelimit.Circuit // shared with other processes (Redis)
	log       *slog.Logger
	checked   atomic.Int64 // unix ns of the last look at the shared circuit

	senders atomic.Int64 // sender goroutines running: 0 once they all gave up
	// Messages this process started through it in the current and the
	// previous weight epoch.
	taken, prevTaken atomic.Int64
	// reserved counts the messages of this process that hold a share of
	// the daily quota (or the warm-up day's cap) and were not tried yet:
	// a share may still come back (quotaBack).
	reserved atomic.Int64
	// throttledAt is when the provider last throttled this process (unix
	// ns); losses counts jobs in a row that met lost connections only.
	throttledAt, losses atomic.Int64
	// lostReplies counts the replies to the end of the data lost in a row
	// (outcome.Attempt.LostReplies).
	lostReplies atomic.Int64

	mu sync.Mutex
	// ctx is the hard stop of the run using the provider: the shared
	// circuit's I/O ends with it.
	ctx    context.Context
	closed string    // why the circuit is open ("" while closed)
	until  time.Time // the circuit closes again at this time (zero: not this run)
}

type connKey struct{}

func newProvider(p config.Provider, tlsOverride *tls.Config, limits Limits) (*provider, error) {
	tlsConf := &tls.Config{ServerName: p.Host, MinVersion: tls.VersionTLS12}
	if p.CAFile != "" {
		pem, err := os.ReadFile(p.CAFile)
		if err != nil {
			return nil, fmt.Errorf("provider %s: ca_file: %w", p.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("provider %s: ca_file %s holds no PEM certificate", p.Name, p.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	if tlsOverride != nil {
		tlsConf = tlsOverride.Clone()
	}
	opts := []mail.Option{
		mail.WithPort(p.Port),
		mail.WithTimeout(p.Timeout.Duration),
		mail.WithTLSConfig(tlsConf),
		// NOOP before and RSET after every message cost two round trips
		// each; we RSET only after an error.
		mail.WithoutNoop(),
		mail.WithoutRset(),
		mail.WithDialContextFunc(dialRecording),
	}
	switch p.TLS {
	case "none":
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	case "starttls":
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	case "tls":
		opts = append(opts, mail.WithSSL(), mail.WithTLSPolicy(mail.NoTLS))
	}
	if p.Helo != "" {
		opts = append(opts, mail.WithHELO(p.Helo))
	}
	client, err := mail.NewClient(p.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("provider %s: %w", p.Name, err)
	}
	pr := &provider{
		cfg:     p,
		client:  client,
		tlsConf: tlsConf,
	}
	l := limits.Provider(p)
	pr.pacer, pr.quota, pr.slots, pr.circuit = l.Pacer, l.Quota, l.Slots, l.Circuit
	pr.warmupDay = l.WarmupDay
	if p.Username != "" {
		user, pass, host := p.Username, p.Password, p.Host
		pr.auth = func(mechs string) smtp.Auth {
			// The go-mail mechanisms refuse to send the password over a
			// connection without TLS, except to loopback.
			if strings.Contains(" "+strings.ToUpper(mechs)+" ", " PLAIN ") {
				return smtp.PlainAuth("", user, pass, host, false)
			}
			return smtp.LoginAuth(user, pass, host, false)
		}
	}
	return pr, nil
}

// dialRecording dials like net.Dialer (and tls.Dialer for implicit TLS)
// and hands the connection to the caller through the context, so that a
// connection whose greeting, EHLO or STARTTLS fails is closed, not leaked,
// and one being dialled when the run stops is cut. Every read from the
// server is bounded (boundedConn).
func dialRecording(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: tcpConnectTimeout}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	slot, ok := ctx.Value(connKey{}).(*connSlot)
	if !ok {
		return newBoundedConn(conn), nil
	}
	if !slot.dialled(conn) {
		return nil, errStopping
	}
	if slot.gate != nil {
		// Below TLS, so that every byte of the session passes it.
		conn = &gatedConn{Conn: conn, g: slot.gate}
	}
	slot.bc = newBoundedConn(conn)
	conn = slot.bc
	if slot.tls != nil {
		tc := tls.Client(conn, slot.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		conn = tc
	}
	slot.conn = conn
	return conn, nil
}

// errStopping is a dial cut because the run stops.
var errStopping = errors.New("stopping")

type connSlot struct {
	conn net.Conn
	tls  *tls.Config // implicit TLS
	gate *gate       // the sender's write gate (durability)
	bc   *boundedConn

	mu      sync.Mutex
	raw     net.Conn // the TCP connection, once dialled
	aborted bool
}

// dialled notes the TCP connection; false when the dial was aborted
// first (c is closed).
func (s *connSlot) dialled(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aborted {
		c.Close()
		return false
	}
	s.raw = c
	return true
}

// abort cuts the connection being opened: the run stops, and nothing is
// in flight on it yet. Closing the TCP connection ends any wait on it (a
// greeting, a TLS handshake, a reply to EHLO or AUTH).
func (s *connSlot) abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.aborted = true
	if s.raw != nil {
		s.raw.Close()
	}
}

// open dials a connection, says EHLO, starts TLS as configured and
// authenticates; a stop of ctx meanwhile cuts it. It also returns the TCP
// connection: closing it is the one way to cut a command in flight
// (go-mail's Client.Close waits for it).
func (p *provider) open(ctx context.Context, g *gate) (*smtp.Client, net.Conn, *outcome.DeliveryError) {
	slot := &connSlot{gate: g}
	if p.cfg.TLS == "tls" {
		// go-mail leaves implicit TLS to a custom dialer: dialRecording.
		slot.tls = p.tlsConf
	}
	stop := context.AfterFunc(ctx, slot.abort)
	c, derr := p.handshake(context.WithValue(ctx, connKey{}, slot), slot)
	if !stop() && derr == nil {
		// The stop came as the connection became ready: it is cut.
		c.Close()
		return nil, nil, outcome.Classify(outcome.StageConnect, errStopping)
	}
	if derr != nil {
		return nil, nil, derr
	}
	p.connected.Store(true)
	return c, slot.raw, nil
}

// handshake is open's SMTP part: dial, EHLO, TLS, AUTH.
func (p *provider) handshake(ctx context.Context, slot *connSlot) (*smtp.Client, *outcome.DeliveryError) {
	c, err := p.client.DialToSMTPClientWithContext(ctx)
	if err != nil {
		if slot.conn != nil {
			slot.conn.Close()
		} else if slot.raw != nil {
			slot.raw.Close()
		}
		return nil, outcome.Classify(outcome.StageConnect, err)
	}
	if err := slot.bc.boundAbove(c); err != nil {
		c.Close()
		return nil, outcome.Classify(outcome.StageConnect, err)
	}
	if p.auth != nil {
		ok, mechs := c.Extension("AUTH")
		if !ok {
			c.Close()
			return nil, &outcome.DeliveryError{Class: outcome.ClassAuth, Stage: outcome.StageAuth, Text: "the server does not offer AUTH, but a username is configured"}
		}
		if err := c.Auth(p.auth(mechs)); err != nil {
			c.Close()
			d := outcome.Classify(outcome.StageAuth, err)
			if errors.Is(err, smtp.ErrUnencrypted) {
				d.Class, d.Text = outcome.ClassAuth, "refusing to send the password over a connection without TLS"
			}
			return nil, d
		}
	}
	return c, nil
}

// Limits makes the limits of providers (pace, daily quota, connection
// slots, circuit) and of recipient domains (pace). By default each process
// keeps its own (LocalLimits); cmd/herald shares them through Redis when
// the queue is Redis.
type Limits interface {
	Provider(p config.Provider) ProviderLimits
	Domain(name string, d config.Domain) ratelimit.Pacer
}

// ProviderLimits are one provider's limits and circuit.
type ProviderLimits struct {
	Pacer   ratelimit.Pacer
	Quota   ratelimit.Quota
	Slots   ratelimit.Slots
	Circuit ratelimit.Circuit
	// WarmupDay makes the quota of warm-up day day (1-based) with its
	// cap (provider.warmup); nil: one in this process.
	WarmupDay func(day int, limit int) ratelimit.Quota
}

// LocalLimits keeps every limit in this process.
type LocalLimits struct{}

func (LocalLimits) Provider(p config.Provider) ProviderLimits {
	return ProviderLimits{ratelimit.NewLocalPacer(Policy(p)), ratelimit.NewLocalQuota(p.Daily), ratelimit.NewLocalSlots(p.Connections), &ratelimit.LocalCircuit{}, nil}
}

func (LocalLimits) Domain(_ string, d config.Domain) ratelimit.Pacer {
	return ratelimit.NewLocalPacer(DomainPolicy(d))
}

// DomainPolicy is the pace a [domain] section asks for.
func DomainPolicy(d config.Domain) ratelimit.Policy {
	return ratelimit.Policy{Rate: d.Rate, Burst: d.Burst, Cooldown: d.Cooldown.Duration}
}

// Policy is the pace a provider's configuration asks for.
func Policy(p config.Provider) ratelimit.Policy {
	return ratelimit.Policy{Rate: p.Rate, Burst: p.Burst, Cooldown: p.Cooldown.Duration}
}

// throttled slows the provider down after a throttle reply.
func (p *provider) throttled(ctx context.Context, log *slog.Logger) {
	if err := p.pacer.Throttled(ctx, time.Now()); err != nil {
		log.Warn("cannot record a throttle reply in the shared rate limit", "error", err)
	}
}

// noteThrottle records a throttle reply at now.
func (p *provider) noteThrottle(now time.Time) { p.throttledAt.Store(now.UnixNano()) }

// lastThrottle is when the provider last throttled this process (zero:
// never).
func (p *provider) lastThrottle() time.Time {
	if n := p.throttledAt.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// state reports why the provider is unusable now, or "".
func (p *provider) state(now time.Time) string {
	p.mu.Lock()
	if p.closed != "" && !p.until.IsZero() && now.After(p.until) {
		p.closed, p.until = "", time.Time{}
	}
	closed := p.closed
	p.mu.Unlock()
	if closed != "" || now.UnixNano()-p.checked.Load() < int64(p.t.CircuitPoll) {
		return closed
	}
	// Another process may have opened the shared circuit.
	p.checked.Store(now.UnixNano())
	ctx, cancel := context.WithTimeout(p.runCtx(), p.t.CircuitPoll)
	defer cancel()
	reason, until, err := p.circuit.State(ctx, now)
	if err != nil || reason == "" {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed == "" {
		p.closed, p.until = reason, until
	}
	return p.closed
}

// bind makes ctx (a run's hard stop) the parent of the provider's I/O.
func (p *provider) bind(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ctx = ctx
}

func (p *provider) runCtx() context.Context {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx == nil {
		return context.Background() // not in a run (herald status)
	}
	return p.ctx
}

// temporary reports whether the open circuit closes at a set time.
func (p *provider) temporary() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed != "" && !p.until.IsZero()
}

// trip opens the circuit with a reason, until t (zero: for this run), in
// this process and for every process sharing the provider.
func (p *provider) trip(reason string, until time.Time) {
	p.mu.Lock()
	first := p.closed == ""
	if first {
		p.closed, p.until = reason, until
	}
	p.mu.Unlock()
	if !first {
		return
	}
	ctx, cancel := context.WithTimeout(p.runCtx(), p.t.StoreTimeout)
	defer cancel()
	if err := p.circuit.Open(ctx, reason, until); err != nil {
		p.log.Warn("cannot share the provider's circuit", "error", err)
	}
}

// deliver runs one mail transaction on c, MAIL with params (e.g.
// " SMTPUTF8"). It returns a nil error and the server's reply after a 250
// to the end of DATA. keep reports whether the connection can carry
// another message. arm is called before each command and each wait for a
// reply: it gives that step the provider's timeout.
func deliver(c *smtp.Client, arm func(), from, rcpt, params string, msg *message) (derr *outcome.DeliveryError, reply string, keep bool) {
	fail := func(stage outcome.Stage, err error) (*outcome.DeliveryError, string, bool) {
		d := outcome.Classify(stage, err)
		if d.Code == 0 || d.Code == 421 {
			return d, "", false // no reply, or the server is closing
		}
		// A refused command leaves a transaction open: RSET it.
		arm()
		if err := c.Reset(); err != nil {
			return d, "", false
		}
		return d, "", true
	}
	if err := checkLine(from); err != nil {
		return outcome.Classify(outcome.StageRender, err), "", true
	}
	if err := checkLine(rcpt); err != nil {
		return outcome.Classify(outcome.StageRender, err), "", true
	}
	arm()
	if err := command(c, 250, mailCommand, from, params); err != nil {
		return fail(outcome.StageMail, err)
	}
	arm()
	if err := command(c, 25, rcptCommand, rcpt); err != nil {
		return fail(outcome.StageRcpt, err)
	}
	arm()
	if err := command(c, 354, "DATA"); err != nil {
		return fail(outcome.StageData, err)
	}
	// The content goes as built: dot-stuffed already, with the final dot.
	// Up to the dot, a failed write leaves the message unsent.
	body, end := msg.wire[:len(msg.wire)-3], msg.wire[len(msg.wire)-3:]
	arm()
	if _, err := c.Text.W.Write(body); err != nil {
		return outcome.Classify(outcome.StageContent, err), "", false
	}
	arm()
	dataEnd := func(err error) (*outcome.DeliveryError, string, bool) {
		d := outcome.Classify(outcome.StageDataEnd, err)
		// After the reply to the final dot the transaction is over.
		return d, "", d.Code != 0 && d.Code != 421
	}
	if _, err := c.Text.W.Write(end); err != nil {
		return dataEnd(err)
	}
	if err := c.Text.W.Flush(); err != nil {
		return dataEnd(err)
	}
	arm()
	code, text, err := c.Text.ReadResponse(250)
	if err != nil {
		return dataEnd(err)
	}
	return nil, fmt.Sprintf("%d %s", code, text), true
}

// command sends one command on c and reads its reply, as go-mail's Client
// does, but writes the line it is given: go-mail's Mail and Rcpt write an
// address without the angle brackets RFC 5321 requires, and add
// parameters of their own.
func command(c *smtp.Client, expect int, format string, args ...any) error {
	id, err := c.Text.Cmd(format, args...)
	if err != nil {
		return err
	}
	c.Text.StartResponse(id)
	defer c.Text.EndResponse(id)
	_, _, err = c.Text.ReadResponse(expect)
	return err
}

// backoff is the delay before redial attempt n (0-based): exponential from
// base up to ceiling, with full jitter in its upper half.
func backoff(n int, base, ceiling time.Duration) time.Duration {
	d := base << min(n, 20)
	if d <= 0 || d > ceiling {
		d = ceiling
	}
	return d/2 + rand.N(d/2+1)
}
