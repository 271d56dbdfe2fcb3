package loadgen

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmail/herald/outcome"
)

// stage is a timed step of the SMTP conversation.
type stage uint8

const (
	stConnect  stage = iota // dial, TLS for implicit TLS, the 220 greeting
	stEHLO                  // each EHLO, also the one after STARTTLS
	stStartTLS              // STARTTLS and the handshake
	stAuth                  // AUTH PLAIN
	stMail                  // reply to MAIL FROM
	stRcpt                  // reply to each RCPT TO
	stData                  // the 354 to DATA
	stBody                  // from writing the content to the reply to its final dot
	stQuit                  // QUIT and its 221
	numStages
)

var stageNames = [numStages]string{"connect", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "body", "quit"}

// numClasses indexes outcome counts by outcome.Class.
const numClasses = int(outcome.ClassPermanent) + 1

// job is a message to send: its sequence number (1-based, unique in the
// run) and, in open loop, when it was due.
type job struct {
	seq uint64
	due time.Time
}

type runner struct {
	cfg     Config
	addr    string
	tls     *tls.Config
	msg     *messageTemplate
	mailCmd []byte
	authCmd []byte

	ctx       context.Context
	cancel    context.CancelFunc
	seq       atomic.Uint64 // closed loop: the last message taken
	deadline  time.Time     // closed loop with Duration
	jobs      chan job      // open loop
	sessions  atomic.Int64
	pipelined atomic.Bool
	abortMu   sync.Mutex
	aborted   string
}

// live are a worker's counters read by the progress reporter; padded so
// that workers do not share a cache line.
type live struct {
	sent, errs atomic.Int64
	_          [48]byte
}

type worker struct {
	r        *runner
	c        *client
	used     int // messages on this connection
	hist     [numStages]Histogram
	msgHist  Histogram
	outcomes [numClasses]int64
	sent     int64
	rcpts    int64
	live     *live
	env      []byte         // the group being written
	id       [idDigits]byte // this message's Message-ID number
	bufs     net.Buffers    // the pieces of one write
	out      []byte         // one write assembled, where writev is not available (TLS)
	held     held           // with holding: the message whose content goes with the next envelope
	holding  bool
}

// Run generates the load cfg describes and returns what happened. Its
// error is for a run that could not start (bad configuration, a refused
// target); failed messages are counted in the Result. Cancelling ctx stops
// the run after the messages in flight.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	addrs, err := CheckTarget(ctx, cfg.Server, cfg.AllowRemote)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	msg, err := newMessage(cfg.Size, cfg.From, start)
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, addr: addrs[0], msg: msg,
		mailCmd: []byte("MAIL FROM:<" + cfg.From + ">\r\n")}
	if cfg.TLS != TLSNone {
		r.tls = &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.TLSConfig != nil {
			r.tls = cfg.TLSConfig.Clone()
		}
		if r.tls.ServerName == "" {
			r.tls.ServerName, _, _ = net.SplitHostPort(cfg.Server)
		}
	}
	if cfg.AuthUser != "" {
		cred := base64.StdEncoding.EncodeToString([]byte("\x00" + cfg.AuthUser + "\x00" + cfg.AuthPassword))
		r.authCmd = []byte("AUTH PLAIN " + cred + "\r\n")
	}
	r.ctx, r.cancel = context.WithCancel(ctx)
	defer r.cancel()

	workers := make([]*worker, cfg.Connections)
	lives := make([]live, cfg.Connections)
	var wg sync.WaitGroup
	spawn := func(i int) {
		w := &worker{r: r, live: &lives[i]}
		workers[i] = w
		wg.Go(w.run)
	}
	if cfg.Rate > 0 {
		// Connections open as the offered load needs them, up to
		// Connections; the clock goroutine starts them.
		r.jobs = make(chan job)
		wg.Go(func() { r.offer(start, spawn) })
	} else {
		if cfg.Duration > 0 {
			r.deadline = start.Add(cfg.Duration)
		}
		for i := range workers {
			spawn(i)
		}
	}
	done := make(chan struct{})
	var pwg sync.WaitGroup
	if cfg.Progress != nil {
		pwg.Go(func() { r.report(start, lives, done) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(done)
	pwg.Wait()
	return r.result(workers, elapsed), nil
}

// offer is the open loop's clock: message i is due at start + i/rate,
// whether or not a connection is free for it then. A due message goes to
// an idle connection; when none is idle it starts another (spawn), up to
// Connections, and past that it waits for one, its latency running.
func (r *runner) offer(start time.Time, spawn func(int)) {
	defer close(r.jobs)
	n := uint64(r.cfg.Messages)
	if d := r.cfg.Duration; d > 0 {
		byTime := uint64(r.cfg.Rate * d.Seconds())
		if n == 0 || byTime < n {
			n = byTime
		}
	}
	spawned := 0
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for i := uint64(0); i < n; i++ {
		due := start.Add(time.Duration(float64(i) / r.cfg.Rate * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			t.Reset(wait)
			select {
			case <-t.C:
			case <-r.ctx.Done():
				return
			}
		}
		j := job{seq: i + 1, due: due}
		select {
		case r.jobs <- j:
			continue
		default:
		}
		if spawned < r.cfg.Connections {
			spawn(spawned)
			spawned++
		}
		select {
		case r.jobs <- j:
		case <-r.ctx.Done():
			return
		}
	}
}

// report calls cfg.Progress every ProgressEvery until done.
func (r *runner) report(start time.Time, lives []live, done <-chan struct{}) {
	tick := time.NewTicker(r.cfg.ProgressEvery)
	defer tick.Stop()
	var last int64
	lastAt := start
	for {
		select {
		case <-done:
			return
		case now := <-tick.C:
			var p Progress
			for i := range lives {
				p.Sent += lives[i].sent.Load()
				p.Errors += lives[i].errs.Load()
			}
			p.Elapsed = now.Sub(start)
			p.Rate = float64(p.Sent-last) / now.Sub(lastAt).Seconds()
			last, lastAt = p.Sent, now
			r.cfg.Progress(p)
		}
	}
}

// abort stops the run: the server refuses us (auth class), so every other
// message would fail the same way.
func (r *runner) abort(d *outcome.DeliveryError) {
	r.abortMu.Lock()
	if r.aborted == "" {
		r.aborted = d.Error()
	}
	r.abortMu.Unlock()
	r.cancel()
}

func (w *worker) run() {
	r := w.r
	defer w.quit()
	if r.jobs != nil {
		// Started because a message found no idle connection: connect
		// first, then take whichever message is next, so that one does not
		// wait for this setup if another connection frees sooner.
		if d := w.connect(); d != nil && r.ctx.Err() == nil && d.Class == outcome.ClassAuth {
			w.settle(time.Time{}, 0, d) // stops the run
		}
		// Any other failure is no message's: the next one this worker
		// takes connects again and counts it, once.
		for {
			var j job
			var ok bool
			if w.holding {
				// Chain the held content with the next envelope only if
				// that message is already due: never make it wait.
				select {
				case j, ok = <-r.jobs:
				default:
					w.flush()
					j, ok = <-r.jobs
				}
			} else {
				j, ok = <-r.jobs
			}
			if !ok {
				return
			}
			if r.ctx.Err() != nil {
				continue // drain without sending
			}
			w.one(j.seq, j.due)
		}
	}
	for r.ctx.Err() == nil {
		now := time.Now()
		if !r.deadline.IsZero() && !now.Before(r.deadline) {
			return
		}
		seq := r.seq.Add(1)
		if r.cfg.Messages > 0 && seq > uint64(r.cfg.Messages) {
			return
		}
		w.one(seq, now)
	}
}

// one sends message seq; start is when its latency starts.
func (w *worker) one(seq uint64, start time.Time) {
	for attempt := 0; ; attempt++ {
		if w.c == nil {
			if d := w.connect(); d != nil {
				if w.r.ctx.Err() != nil {
					return // the run was stopped while dialling: not this message's failure
				}
				w.settle(start, 0, d)
				if d.Class != outcome.ClassAuth {
					// Do not spin against a server that refuses connections.
					sleepCtx(w.r.ctx, 50*time.Millisecond)
				}
				return
			}
		}
		// A retry happens at most once: only when the previous message's
		// content, sent with this envelope, broke the session, and a new
		// session holds no previous message.
		if !w.transaction(seq, start) || attempt > 0 {
			break
		}
	}
	w.used++
	if w.c != nil && w.r.cfg.Reuse > 0 && w.used >= w.r.cfg.Reuse {
		w.quit()
	}
}

// settle counts a message's outcome: accepted (fail nil) for accepted
// recipients, or failed.
func (w *worker) settle(start time.Time, accepted int, fail *outcome.DeliveryError) {
	if fail != nil {
		w.count(fail)
		if fail.Class == outcome.ClassAuth {
			w.r.abort(fail) // every other message would be refused the same way
		}
		return
	}
	w.msgHist.Record(time.Since(start))
	w.outcomes[outcome.ClassSent]++
	w.sent++
	w.rcpts += int64(accepted)
	w.live.sent.Add(1)
}

func (w *worker) count(d *outcome.DeliveryError) {
	if int(d.Class) < numClasses {
		w.outcomes[d.Class]++
	}
	w.live.errs.Add(1)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// connect opens a session: dial, greeting, EHLO, STARTTLS, AUTH.
func (w *worker) connect() *outcome.DeliveryError {
	r := w.r
	cfg := &r.cfg
	t := time.Now()
	d := net.Dialer{Timeout: cfg.Timeout}
	conn, err := d.DialContext(r.ctx, "tcp", r.addr)
	if err != nil {
		return outcome.Classify(outcome.StageConnect, err)
	}
	_ = conn.SetDeadline(t.Add(cfg.Timeout))
	if cfg.TLS == TLSImplicit {
		tc := tls.Client(conn, r.tls)
		if err := tc.HandshakeContext(r.ctx); err != nil {
			conn.Close()
			return outcome.Classify(outcome.StageConnect, err)
		}
		conn = tc
	}
	c := newClient(conn)
	fail := func(s outcome.Stage, err error) *outcome.DeliveryError {
		conn.Close()
		return outcome.Classify(s, err)
	}
	if _, err := c.readReply(220); err != nil {
		return fail(outcome.StageConnect, err)
	}
	w.hist[stConnect].Record(time.Since(t))
	ehlo := []byte("EHLO " + cfg.Helo + "\r\n")
	hello := func() error {
		t := time.Now()
		if _, err := conn.Write(ehlo); err != nil {
			return err
		}
		err := c.readEHLO()
		if err == nil || isReply(err) {
			w.hist[stEHLO].Record(time.Since(t))
		}
		return err
	}
	if err := hello(); err != nil {
		return fail(outcome.StageConnect, err)
	}
	if cfg.TLS == TLSStartTLS {
		if !c.starttls {
			return fail(outcome.StageConnect, errors.New("server does not support STARTTLS (--tls starttls)"))
		}
		t := time.Now()
		if _, err := conn.Write([]byte("STARTTLS\r\n")); err != nil {
			return fail(outcome.StageConnect, err)
		}
		if _, err := c.readReply(220); err != nil {
			return fail(outcome.StageConnect, err)
		}
		tc := tls.Client(conn, r.tls)
		if err := tc.HandshakeContext(r.ctx); err != nil {
			return fail(outcome.StageConnect, err)
		}
		w.hist[stStartTLS].Record(time.Since(t))
		conn = tc
		c = newClient(conn)
		if err := hello(); err != nil {
			return fail(outcome.StageConnect, err)
		}
	}
	if r.authCmd != nil {
		if !c.authPlain {
			return fail(outcome.StageAuth, errors.New("server does not support AUTH PLAIN"))
		}
		t := time.Now()
		if _, err := conn.Write(r.authCmd); err != nil {
			return fail(outcome.StageAuth, err)
		}
		_, err := c.readReply(235)
		if err == nil || isReply(err) {
			w.hist[stAuth].Record(time.Since(t))
		}
		if err != nil {
			return fail(outcome.StageAuth, err)
		}
	}
	w.c, w.used = c, 0
	r.sessions.Add(1)
	if cfg.Pipelining && c.pipelining {
		r.pipelined.Store(true)
	}
	return nil
}

// drop closes the connection without QUIT: the session is broken.
func (w *worker) drop() {
	if w.holding {
		w.holding = false
		w.settle(w.held.start, 0, outcome.Classify(outcome.StageContent, errors.New("connection closed before the message content was sent")))
	}
	if w.c != nil {
		w.c.conn.Close()
		w.c = nil
	}
}

// quit ends the session politely and times it.
func (w *worker) quit() {
	if w.holding {
		w.quitHeld()
		return
	}
	c := w.c
	if c == nil {
		return
	}
	w.c = nil
	defer c.conn.Close()
	_ = c.conn.SetDeadline(time.Now().Add(w.r.cfg.Timeout))
	t := time.Now()
	if _, err := c.conn.Write([]byte("QUIT\r\n")); err != nil {
		return
	}
	if _, err := c.readReply(0); err == nil {
		w.hist[stQuit].Record(time.Since(t))
	}
}

// quitHeld sends the held content and QUIT in one write (a message is
// held only with pipelining, and RFC 2920 lets QUIT end a group), settles
// the message and ends the session.
func (w *worker) quitHeld() {
	c := w.c
	t, ok := w.sendHeld(quitCmd)
	if !ok {
		return
	}
	if _, err := c.readReply(0); err == nil {
		w.hist[stQuit].Record(time.Since(t))
	}
	w.c = nil
	c.conn.Close()
}

// sendHeld writes the held message's content, then extra (nil, or a
// command that ends the group), in one write, and settles the message by
// the reply to its final dot. ok is false when the connection was dropped;
// t is when the write began.
func (w *worker) sendHeld(extra []byte) (t time.Time, ok bool) {
	h, c := w.held, w.c
	w.holding = false
	_ = c.conn.SetDeadline(time.Now().Add(w.r.cfg.Timeout))
	t = time.Now()
	if err := w.write(true, h.seq, extra); err != nil {
		w.drop()
		w.settle(h.start, h.accepted, outcome.Classify(outcome.StageContent, err))
		return t, false
	}
	err := w.step(true, stBody, nil, 250, &t)
	w.settleBody(h, err)
	if err != nil && fatal(err) {
		w.drop()
		return t, false
	}
	return t, true
}

var (
	dataCmd = []byte("DATA\r\n")
	quitCmd = []byte("QUIT\r\n")
)

// write sends, in one write, message seq's content (when content is set)
// followed by tail, the next commands. The content is the shared template
// around this message's Message-ID number: on TCP the pieces go with one
// writev and nothing is copied; over TLS they are assembled into one
// record's worth of writes.
func (w *worker) write(content bool, seq uint64, tail []byte) error {
	conn := w.c.conn
	if !content {
		_, err := conn.Write(tail)
		return err
	}
	m := w.r.msg
	setID(w.id[:], 0, seq)
	if _, ok := conn.(*net.TCPConn); !ok {
		out := append(w.out[:0], m.wire[:m.idAt]...)
		out = append(out, w.id[:]...)
		out = append(out, m.wire[m.idAt+idDigits:]...)
		out = append(out, tail...)
		w.out = out
		_, err := conn.Write(out)
		return err
	}
	bufs := append(w.bufs[:0], m.wire[:m.idAt], w.id[:], m.wire[m.idAt+idDigits:])
	if len(tail) > 0 {
		bufs = append(bufs, tail)
	}
	w.bufs = bufs
	_, err := bufs.WriteTo(conn) // consumes its own copy of the slice header
	return err
}

// rcptLine appends recipient j of message seq: r<j>-<seq>@domain.
func (w *worker) rcptLine(b []byte, seq uint64, j int) []byte {
	b = append(b, "RCPT TO:<r"...)
	b = strconv.AppendInt(b, int64(j), 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, '@')
	b = append(b, w.r.cfg.ToDomain...)
	return append(b, ">\r\n"...)
}

// step sends one command (unless it went out with its pipelined group),
// reads its reply and times it from *t, the send or the previous reply.
func (w *worker) step(pipe bool, st stage, line []byte, expect int, t *time.Time) error {
	c := w.c
	if !pipe {
		*t = time.Now()
		if _, err := c.conn.Write(line); err != nil {
			return err
		}
	}
	_, err := c.readReply(expect)
	now := time.Now()
	if err == nil || isReply(err) {
		w.hist[st].Record(now.Sub(*t))
	}
	*t = now
	return err
}

// transaction sends message seq over the open session and settles it, or
// leaves it held: with pipelining, the content waits to go out with the
// next envelope (RFC 2920 allows the content to open a group), so a
// message costs one write and one round trip. A held message from before
// is settled here too. It returns true when seq must be tried again on a
// new session: the held message's reply broke the session before seq's
// envelope was answered. A broken session is closed.
func (w *worker) transaction(seq uint64, start time.Time) (retry bool) {
	r := w.r
	c := w.c
	pipe := r.cfg.Pipelining && c.pipelining
	_ = c.conn.SetDeadline(time.Now().Add(r.cfg.Timeout))
	accepted := 0
	var fail *outcome.DeliveryError
	broken := func(s outcome.Stage, err error) bool {
		w.drop()
		if fail == nil {
			fail = outcome.Classify(s, err)
		}
		w.settle(start, accepted, fail)
		return false
	}

	t := time.Now()
	if pipe {
		// RFC 2920: the held content, MAIL, every RCPT and DATA in one write.
		h, held := w.held, w.holding
		w.holding = false
		env := append(w.env[:0], r.mailCmd...)
		for j := range r.cfg.Rcpts {
			env = w.rcptLine(env, seq, j)
		}
		env = append(env, dataCmd...)
		w.env = env
		if err := w.write(held, h.seq, env); err != nil {
			w.drop()
			if held {
				w.settle(h.start, h.accepted, outcome.Classify(outcome.StageContent, err))
				return true
			}
			return broken(outcome.StageMail, err)
		}
		if held {
			err := w.step(true, stBody, nil, 250, &t)
			w.settleBody(h, err)
			if err != nil && fatal(err) {
				w.drop()
				return true
			}
		}
	}
	if err := w.step(pipe, stMail, r.mailCmd, 250, &t); err != nil {
		if fatal(err) {
			return broken(outcome.StageMail, err)
		}
		fail = outcome.Classify(outcome.StageMail, err)
		if !pipe {
			w.settle(start, 0, fail) // no transaction was opened
			return false
		}
	}
	for j := range r.cfg.Rcpts {
		var line []byte
		if !pipe {
			line = w.rcptLine(w.env[:0], seq, j)
			w.env = line
		}
		err := w.step(pipe, stRcpt, line, 25, &t)
		if err == nil {
			accepted++
			continue
		}
		if fatal(err) {
			return broken(outcome.StageRcpt, err)
		}
		if fail == nil { // after a refused MAIL, RCPT replies are its echo
			w.count(outcome.Classify(outcome.StageRcpt, err))
		}
	}
	if !pipe && accepted == 0 {
		// Every recipient refused, each counted: no message failure besides.
		w.reset()
		return false
	}
	if err := w.step(pipe, stData, dataCmd, 354, &t); err != nil {
		if fatal(err) {
			return broken(outcome.StageData, err)
		}
		if fail == nil && accepted > 0 {
			fail = outcome.Classify(outcome.StageData, err)
		}
		if fail != nil {
			w.settle(start, accepted, fail)
		}
		w.reset()
		return false
	}
	if fail != nil || accepted == 0 {
		// DATA accepted although the envelope failed: end the transaction
		// with an empty message (RFC 2920, 3.1).
		if _, err := c.conn.Write([]byte(".\r\n")); err != nil {
			return broken(outcome.StageContent, err)
		}
		if _, err := c.readReply(0); err != nil && fatal(err) {
			return broken(outcome.StageDataEnd, err)
		}
		if fail != nil {
			w.settle(start, accepted, fail)
		}
		return false
	}
	w.held, w.holding = held{seq: seq, start: start, accepted: accepted}, true
	if !pipe {
		w.flush()
	}
	return false
}

// held is a message whose DATA got its 354 and whose content is not
// written yet.
type held struct {
	seq      uint64
	start    time.Time
	accepted int
}

// flush writes the held message's content alone and settles it.
func (w *worker) flush() {
	if w.holding {
		w.sendHeld(nil)
	}
}

// settleBody settles a message by the reply to its final dot.
func (w *worker) settleBody(h held, err error) {
	if err != nil {
		w.settle(h.start, h.accepted, outcome.Classify(outcome.StageDataEnd, err))
		return
	}
	w.settle(h.start, h.accepted, nil)
}

// reset ends a refused transaction with RSET so the session can go on.
func (w *worker) reset() {
	if _, err := w.c.conn.Write([]byte("RSET\r\n")); err != nil {
		w.drop()
		return
	}
	if _, err := w.c.readReply(250); err != nil {
		w.drop()
	}
}
