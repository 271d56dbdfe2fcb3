package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wneessen/go-mail/smtp"

	"github.com/heraldmail/herald/outcome"
	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/recipients"
)

// conn is a sender's connection to its provider.
type conn struct {
	r        *run
	p        *provider
	log      *slog.Logger
	c        *smtp.Client
	pipe     *pipe     // set when the server pipelines and the provider allows it
	armed    *net.Conn // the connection deadline was set on (by arm)
	deadline time.Time // with its monotonic reading
	used     int
	lastUsed time.Time
	live     atomic.Pointer[net.Conn]
	holder   string // names this connection's slot in the provider's Slots
	slot     bool   // a slot is held
	// What the server said in EHLO: it takes UTF-8 addresses (SMTPUTF8,
	// RFC 6531); it advertises SIZE (RFC 1870), and its limit (0: none).
	smtputf8 bool
	sizeExt  bool
	maxSize  int64
	// gate holds back every write on the connection while the outcome of
	// the last message sent is not yet durable (no journal: the settler's
	// group commit acknowledges it).
	gate gate
}

// gate holds back a connection's writes until the acknowledgement pending
// on it (if any) comes. The sender goes on meanwhile (it reads the next
// envelope's replies, renders and buffers the next messages): only bytes
// leaving on the wire wait, so no data of the next message leaves before
// the last one's outcome is durable. Safe for concurrent use.
type gate struct {
	pending atomic.Pointer[ack]
	hard    <-chan struct{} // the run's hard stop
	timeout time.Duration   // the provider's: a write that waited gets it afresh
	// stale: a write that waited set its own deadline since arm set one.
	stale atomic.Bool
}

// errNotDurable is a write the gate refused: the last outcome will not be
// recorded (the queue stayed out of reach) or the run stops hard. Nothing
// of the write left.
var errNotDurable = errors.New("held back: the last message's outcome is not recorded")

// wait blocks until the pending acknowledgement (if any) comes; waited
// says whether it had to.
func (g *gate) wait() (waited bool, err error) {
	a := g.pending.Load()
	if a == nil {
		return false, nil
	}
	select {
	case <-a.done:
	case <-g.hard:
		return true, errNotDurable
	}
	if !a.ok {
		return true, errNotDurable
	}
	g.pending.CompareAndSwap(a, nil)
	return true, nil
}

// gatedConn is a connection whose writes pass its sender's gate.
type gatedConn struct {
	net.Conn
	g *gate
}

func (c *gatedConn) Write(b []byte) (int, error) {
	waited, err := c.g.wait()
	if err != nil {
		return 0, err
	}
	if waited {
		// The wait was the queue's, not the server's.
		c.Conn.SetWriteDeadline(time.Now().Add(c.g.timeout))
		c.g.stale.Store(true)
	}
	return c.Conn.Write(b)
}

// noteSent makes the outcome of a message the server took durable before
// the next message's data leaves this connection: noted in the queue's
// journal at once, or else acknowledged by the settler's next group commit,
// which the connection's gate waits for.
func (cn *conn) noteSent(res *result) {
	if j := cn.r.journal; j != nil {
		err := j.Note(res.c.id, res.s)
		if err == nil {
			return
		}
		if !cn.r.journalFailed.Swap(true) {
			cn.log.Warn("cannot note an outcome in the journal; waiting for the queue's commit instead", "error", err)
		}
	}
	res.ack = newAck()
	cn.gate.pending.Store(res.ack)
}

// waitSlot takes one of the provider's connection slots (the sender then
// keeps it across reconnects, until the connection rotates or idles),
// waiting its turn while other processes hold them all; false when the run
// stops first.
func (cn *conn) waitSlot() bool {
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, 250*time.Millisecond) {
		ok, err := cn.p.slots.Acquire(cn.r.stop, cn.holder, time.Now())
		if err != nil && cn.r.stop.Err() == nil {
			cn.log.Warn("connection slots out of reach", "error", err)
		}
		if ok {
			cn.slot = true
			return true
		}
		if cn.r.stop.Err() != nil {
			return false
		}
		sleepCtx(cn.r.stop, wait/2+rand.N(wait))
	}
}

// perConnection is how many messages a connection carries before a fresh
// one: the provider's per_connection, or at most contendedPerConnection
// while other processes wait for a slot, so that the slots go round.
func (cn *conn) perConnection() int {
	if n := cn.p.cfg.PerConnection; n > contendedPerConnection && cn.p.slots.Contended() {
		return contendedPerConnection
	}
	return cn.p.cfg.PerConnection
}

// idleTimeout is how long an unused connection stays open: the provider's
// idle_timeout, or a second while other processes wait for a slot.
func (cn *conn) idleTimeout() time.Duration {
	if d := cn.p.cfg.IdleTimeout.Duration; !cn.p.slots.Contended() || d < time.Second {
		return d
	}
	return time.Second
}

func (cn *conn) releaseSlot() {
	if !cn.slot {
		return
	}
	cn.slot = false
	ctx, cancel := cn.r.recordCtx()
	defer cancel()
	if err := cn.p.slots.Release(ctx, cn.holder); err != nil {
		cn.log.Warn("cannot free a connection slot; it frees itself soon", "error", err)
	}
}

// open connects, replacing a connection idle for too long.
func (cn *conn) open() *outcome.DeliveryError {
	c, raw, derr := cn.r.connect(cn)
	if derr != nil {
		return derr
	}
	cn.c, cn.used, cn.lastUsed = c, 0, time.Now()
	cn.live.Store(&raw)
	cn.arm()
	cn.r.e.obs.Connections(cn.p.cfg.Name, 1)
	cn.r.connected.Add(1)
	cn.p.openConns.Add(1)
	if cn.r.hard.Err() != nil {
		raw.Close() // the hard stop came while dialling
	}
	cn.pipe = nil
	if ok, _ := c.Extension("PIPELINING"); ok && cn.p.cfg.PipeliningOn() {
		cn.pipe = newPipe(c, cn.arm)
	}
	cn.smtputf8, _ = c.Extension("SMTPUTF8")
	var size string
	cn.sizeExt, size = c.Extension("SIZE")
	cn.maxSize = 0
	if n, err := strconv.ParseInt(strings.TrimSpace(size), 10, 64); err == nil && n > 0 {
		cn.maxSize = n // "SIZE" alone or "SIZE 0": no fixed limit
	}
	return nil
}

// admit says why pr cannot go on this connection, or nil: an address
// SMTP cannot carry; an address that needs SMTPUTF8, which the server does
// not offer; a message larger than the SIZE the server advertises. Each
// fails the job at once (outcome.ClassUnsendable), without retries.
func (cn *conn) admit(pr *prepared) *outcome.DeliveryError {
	for _, a := range []string{pr.envFrom, pr.rcpt} {
		if err := checkLine(a); err != nil {
			return outcome.Classify(outcome.StageRender, err)
		}
	}
	if !cn.smtputf8 {
		switch {
		case recipients.NeedsSMTPUTF8(pr.rcpt):
			return outcome.Unsendable(outcome.StageMail, fmt.Sprintf("%s: the part before @ is not ASCII; it needs SMTPUTF8 (RFC 6531), which %s does not offer; not sent", pr.rcpt, cn.p.cfg))
		case recipients.NeedsSMTPUTF8(pr.envFrom):
			return outcome.Unsendable(outcome.StageMail, fmt.Sprintf("the envelope sender %s is not ASCII before @; it needs SMTPUTF8 (RFC 6531), which %s does not offer; not sent", pr.envFrom, cn.p.cfg))
		}
	}
	if cn.maxSize > 0 {
		if size, ok := pr.msg.within(cn.maxSize); !ok {
			return outcome.Unsendable(outcome.StageMail, fmt.Sprintf("the message is %d bytes, larger than the %d bytes %s takes (its SIZE, RFC 1870); not sent", size, cn.maxSize, cn.p.cfg))
		}
	}
	return nil
}

// mailParams are the parameters of pr's MAIL command: its SIZE when the
// server advertises SIZE, and SMTPUTF8 when an address needs it.
func (cn *conn) mailParams(pr *prepared) string {
	params := ""
	if cn.sizeExt {
		params += " SIZE=" + strconv.FormatInt(pr.msg.Size(), 10)
	}
	if cn.smtputf8 && !(ascii(pr.envFrom) && ascii(pr.rcpt)) {
		params += " SMTPUTF8"
	}
	return params
}

// arm gives the next command, or the next wait for a reply, the
// provider's timeout from now: timeout bounds each step of the
// conversation, never the connection's life. The deadline it sets runs a
// little longer (armSlack), so that the steps of the next messages, a few
// each, need not set it again: each step gets between timeout and
// timeout plus slack.
func (cn *conn) arm() {
	raw := cn.live.Load()
	if raw == nil {
		return
	}
	t := cn.p.cfg.Timeout.Duration
	now := time.Now()
	if raw == cn.armed && !cn.gate.stale.Load() && cn.deadline.Sub(now) >= t {
		return
	}
	until := now.Add(t + armSlack(t))
	cn.gate.stale.Store(false)
	(*raw).SetDeadline(until)
	cn.armed, cn.deadline = raw, until
}

// armSlack is how much longer than timeout a deadline arm sets may run:
// a sixteenth of it, at most a second.
func armSlack(timeout time.Duration) time.Duration { return min(timeout/16, time.Second) }

// cut closes the raw connection: the one way to stop a command in flight,
// as go-mail's Client.Close waits for it.
func (cn *conn) cut() {
	if raw := cn.live.Load(); raw != nil {
		(*raw).Close()
	}
}

// drop closes the connection, with QUIT when quit is set and the run is
// not stopping hard.
func (cn *conn) drop(quit bool) {
	if cn.c == nil {
		return
	}
	if quit && cn.r.hard.Err() == nil {
		cn.arm()
		_ = cn.p.client.CloseWithSMTPClient(cn.c)
	}
	cn.c.Close()
	cn.live.Store(nil)
	cn.r.e.obs.Connections(cn.p.cfg.Name, -1)
	cn.r.connected.Add(-1)
	cn.p.openConns.Add(-1)
	cn.c, cn.pipe, cn.used = nil, nil, 0
}

// after counts a finished transaction and rotates the connection.
func (cn *conn) after(keep bool) {
	if !keep {
		cn.drop(false)
		return
	}
	if cn.pipe == nil {
		cn.used++
	}
	if cn.used >= cn.perConnection() {
		// A fresh connection, and the slot goes to whoever waited.
		cn.drop(true)
		cn.releaseSlot()
	}
}

// afterRefusal keeps or drops the connection after a refused envelope.
func (cn *conn) afterRefusal(keep bool) {
	if !keep {
		cn.drop(false)
	}
}

// errCircuitOpen is what connect returns when the provider's circuit is
// open (another sender or process opened it): no outcome of this
// connection, and not for outcome.Decide.
var errCircuitOpen = &outcome.DeliveryError{Class: outcome.ClassReconnect, Stage: outcome.StageConnect, Text: "provider not in use"}

// connect dials provider p with exponential backoff and jitter. It gives up
// at once on an auth-class failure, after dialTries failures otherwise, and
// when the run stops. A throttled greeting slows the provider down as any
// throttle does (outcome.Decide says so); the dialler only decides how
// soon to try again.
func (r *run) connect(cn *conn) (*smtp.Client, net.Conn, *outcome.DeliveryError) {
	p := cn.p
	var last *outcome.DeliveryError
	for n := 0; n < dialTries; n++ {
		if p.state(time.Now()) != "" {
			return nil, nil, errCircuitOpen
		}
		at := time.Now()
		c, raw, derr := p.open(r.stop, &cn.gate)
		if derr == nil {
			return c, raw, nil
		}
		if d := p.diagnose(r.stop, derr); d != nil && r.stop.Err() == nil {
			return nil, nil, d // more tries would not mend it
		}
		if derr.Class == outcome.ClassAuth {
			if derr.Err != nil {
				derr.Text += certificateHint(derr.Err)
			}
			if strings.Contains(derr.Text, "does not support STARTTLS") {
				derr.Text += "; on port 465 use tls = \"tls\" (TLS from the first byte); tls = \"none\" sends in clear text and only suits a relay on this machine"
			}
			return nil, nil, derr
		}
		last = derr
		if r.stop.Err() != nil {
			break
		}
		if derr.Class == outcome.ClassThrottle {
			d := outcome.Decide(outcome.Attempt{Err: derr, At: at, Open: int(p.openConns.Load())}, queue.Job{}, r.policy(nil, p, ""))
			if d.Provider == outcome.Fewer {
				return nil, nil, derr // the sender gives this connection up (conclude)
			}
			r.affect(cn, d, derr, "")
		}
		if n == dialTries-1 {
			break // no wait after the last try
		}
		d := backoff(n, r.e.t.DialBase, r.e.t.DialCeiling)
		cn.log.Warn("cannot connect; retrying", "error", derr.Reply(), "in", d.Round(time.Millisecond))
		sleepCtx(r.stop, d)
	}
	if r.stop.Err() != nil {
		return nil, nil, &outcome.DeliveryError{Class: outcome.ClassTransient, Stage: outcome.StageConnect, Text: "stopping"}
	}
	return nil, nil, last
}

func describeConnectFailure(d *outcome.DeliveryError) string {
	switch {
	case d.Class == outcome.ClassAuth && d.Stage == outcome.StageAuth:
		return "the server refused the login: " + d.Reply()
	case d.Class == outcome.ClassAuth && d.Stage > outcome.StageAuth:
		return fmt.Sprintf("the server requires a login (set username and password_env): %s", d.Reply())
	case d.Class == outcome.ClassAuth && d.Code == 0:
		return "cannot connect: " + d.Reply()
	case d.Class == outcome.ClassAuth:
		return "the server refused us: " + d.Reply()
	}
	return fmt.Sprintf("cannot connect after %d tries: %s", dialTries, d.Reply())
}

// providersDown explains why no sender is left.
func (r *run) providersDown() string {
	var why []string
	for _, p := range r.e.providers {
		if s := p.state(time.Now()); s != "" {
			why = append(why, s)
		}
	}
	if len(why) == 0 {
		return "all senders stopped"
	}
	return "no provider can send: " + strings.Join(why, "; ")
}
