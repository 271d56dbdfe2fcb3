package sink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/time/rate"
)

// Stage is the point of an SMTP transaction a fault applies to.
type Stage uint8

const (
	StageMail Stage = iota + 1
	StageRcpt
	StageData     // after the whole message was read, before the reply
	StageGreeting // the 220 banner; only for Faults.Latencies
	StageAuth     // after AUTH's credentials were found right, before the reply
)

func (s Stage) String() string {
	switch s {
	case StageMail:
		return "mail"
	case StageRcpt:
		return "rcpt"
	case StageData:
		return "data"
	case StageGreeting:
		return "greeting"
	case StageAuth:
		return "auth"
	}
	return "unknown"
}

// Rule injects a fault for transactions whose recipient contains Match.
type Rule struct {
	Match    string // substring of a recipient address, case-insensitive; "" matches all
	Stage    Stage
	Code     int // the reply; ignored with Drop
	Enhanced smtp.EnhancedCode
	Message  string
	Drop     bool // close the connection instead of replying
	// Accept, with Drop at StageData, keeps the message before dropping the
	// connection: the client cannot know it was delivered (a duplicate if
	// it sends again).
	Accept bool
	Times  int // apply only the first Times matches (0: always)

	used atomic.Int64
}

// Event is what a Hook sees.
type Event struct {
	Stage      Stage
	Session    int64
	From       string
	Rcpt       string   // at StageRcpt: the recipient being added
	Recipients []string // accepted so far in this transaction
	Message    int      // 1-based number of this message in its session
	Data       []byte   // at StageData: the message, when the server keeps messages (Keep, Maildir)
}

// Action is a Hook's answer: a reply, a dropped connection, or nothing.
type Action struct {
	Reply  *smtp.SMTPError
	Drop   bool
	Accept bool // with Drop at StageData: keep the message, then drop
}

// Faults make the server misbehave on purpose.
type Faults struct {
	Rules []*Rule
	// Hook, if set, is called at every stage before Rules.
	Hook func(Event) Action
	// AfterMessages answers MAIL with 421 and closes the session once it
	// carried this many messages (0: off).
	AfterMessages int
	// Throttle accepts at most this many messages a second across all
	// sessions, in bursts of up to ThrottleBurst (at least 1); above it MAIL
	// gets 421 4.7.0 and the session closes (0: off).
	Throttle      float64
	ThrottleBurst int
	// Latency delays every reply to MAIL, RCPT and the end of DATA.
	Latency time.Duration
	// Latencies override Latency per stage (StageMail, StageRcpt,
	// StageData); StageGreeting delays the 220 banner. A stage present
	// with 0 has no delay.
	Latencies map[Stage]time.Duration

	// Shares (0..1) of transactions that fail, after Hook and Rules let
	// them through. Which ones is decided by Seed alone: the nth RCPT (or
	// DATA, or end of data) counted across all sessions draws the same
	// number in every run with the same Seed, so one client sees the same
	// faults in the same places, and N recipients give the same count
	// whatever the concurrency.
	RcptTemp float64 // 451 4.3.0 to a RCPT
	RcptPerm float64 // 550 5.1.1 to a RCPT
	// DropBeforeData closes the connection in place of the 354 reply to
	// DATA: the client knows the message was not sent.
	DropBeforeData float64
	DataTemp       float64 // 451 4.3.0 after the data
	DataPerm       float64 // 550 5.7.1 after the data
	// DropAfterData keeps the message, then closes the connection in place
	// of the reply: the client cannot know it was delivered.
	DropAfterData float64
	Seed          int64
}

// Validate reports the first share out of 0..1, or shares of one stage
// that add up to more than 1.
func (f *Faults) Validate() error {
	for _, v := range []struct {
		name string
		v    float64
	}{{"RcptTemp", f.RcptTemp}, {"RcptPerm", f.RcptPerm}, {"DropBeforeData", f.DropBeforeData},
		{"DataTemp", f.DataTemp}, {"DataPerm", f.DataPerm}, {"DropAfterData", f.DropAfterData}} {
		if !(v.v >= 0 && v.v <= 1) {
			return fmt.Errorf("sink: %s %v is not a share between 0 and 1", v.name, v.v)
		}
	}
	if f.RcptTemp+f.RcptPerm > 1 {
		return errors.New("sink: RcptTemp + RcptPerm exceed 1")
	}
	if f.DataTemp+f.DataPerm+f.DropAfterData > 1 {
		return errors.New("sink: DataTemp + DataPerm + DropAfterData exceed 1")
	}
	if f.Throttle < 0 || f.ThrottleBurst < 0 {
		return errors.New("sink: negative Throttle or ThrottleBurst")
	}
	return nil
}

// The limits of every session, go-smtp's and the lean server's alike.
const (
	maxRecipients   = 1000
	maxMessageBytes = 32 << 20
	maxLineLength   = 2000 // go-smtp's default, set all the same
	idleTimeout     = 60 * time.Second
)

// Credentials are the one login the server accepts.
type Credentials struct{ Username, Password string }

// Config configures a Server.
type Config struct {
	Addr        string // default 127.0.0.1:0
	Domain      string // greeting name, default localhost
	Maildir     string // write every accepted message into Maildir/new
	Keep        bool   // keep every accepted message in memory (tests)
	MaxSessions int    // above it a new session gets 421 and is closed
	// SessionLimitReply replaces that 421's line ("421 HL:ICC …").
	SessionLimitReply string
	Faults            Faults
	Auth              *Credentials // AUTH PLAIN required before MAIL
	AllowInsecureAuth bool         // AUTH without TLS
	TLSConfig         *tls.Config  // STARTTLS offered when set
	ImplicitTLS       bool         // TLS from the first byte (port 465 style)
	NoPipelining      bool         // do not advertise PIPELINING (RFC 2920)
	// SMTPUTF8 advertises SMTPUTF8 (RFC 6531): MAIL takes the SMTPUTF8
	// parameter (without it go-smtp answers 504).
	SMTPUTF8 bool
	// MaxMessageBytes is the SIZE advertised (RFC 1870) and enforced: a
	// larger SIZE= in MAIL, or larger data, gets 552 5.3.4. 0: 32 MB.
	MaxMessageBytes int64
	// NoEnhancedStatusCodes neither advertises ENHANCEDSTATUSCODES (RFC
	// 2034) nor puts an x.y.z code in any reply. Like NoPipelining, it
	// rewrites go-smtp's plaintext replies, so it does not apply inside TLS.
	NoEnhancedStatusCodes bool
	// CountOnly skips the per-recipient tally behind Received (a lock and
	// a map update per message): for load tests, where only counts matter.
	// With nothing else asked of the sink (no faults but MaxSessions,
	// NoPipelining and NoEnhancedStatusCodes; no TLS, AUTH, Maildir, Keep,
	// RecordReads, SMTPUTF8 or MaxMessageBytes) a lean SMTP server of its
	// own answers in place of go-smtp (lean.go).
	CountOnly bool
	// BusyPoll: the lean server's event loops (Linux) poll for this long
	// after their last event before they sleep, so that a client on the
	// same machine seldom has to wake them; it costs up to a core each
	// while traffic flows, nothing when idle. 0: sleep at once.
	BusyPoll time.Duration
	// RecordReads keeps every chunk read from clients, to see how their
	// commands arrive: grouped (pipelined) or one by one.
	RecordReads bool
	Logger      *slog.Logger

	// For tests: the lean server's driver ("goroutines": the portable one,
	// on Linux too) and idle timeout (default a minute).
	leanDriver string
	leanIdle   time.Duration
}

// Message is an accepted message, kept with Config.Keep.
type Message struct {
	From    string
	To      []string
	Data    []byte
	Session int64
	At      time.Time // when the server accepted it
}

// Stats are the server's counters; JSON names are stable for scripts.
type Stats struct {
	Sessions          int64 `json:"sessions"`
	PeakSessions      int64 `json:"peak_sessions"`
	Messages          int64 `json:"messages"`
	Recipients        int64 `json:"recipients"`
	Bytes             int64 `json:"bytes"`
	RejectedMail      int64 `json:"rejected_mail"`
	RejectedRcpt      int64 `json:"rejected_rcpt"`
	RejectedData      int64 `json:"rejected_data"`
	DroppedBeforeData int64 `json:"dropped_before_data"`
	DroppedAfterData  int64 `json:"dropped_after_data"`
	RcptTemp          int64 `json:"rcpt_temp"` // of RejectedRcpt: --rcpt-temp
	RcptPerm          int64 `json:"rcpt_perm"` // of RejectedRcpt: --rcpt-perm
	DataTemp          int64 `json:"data_temp"` // of RejectedData: --data-temp
	DataPerm          int64 `json:"data_perm"` // of RejectedData: --data-perm
	Throttled         int64 `json:"throttled"`
	SessionLimited    int64 `json:"session_limited"`
	AuthFailures      int64 `json:"auth_failures"`
}

// Server is a running sink. Its methods are safe for concurrent use.
type Server struct {
	cfg      Config
	srv      *smtp.Server // nil when lean answers
	lean     *leanServer
	ln       net.Listener
	done     chan struct{}
	throttle *rate.Limiter
	log      *slog.Logger

	sessionSeq, active atomic.Int64
	rcptSeq, dataSeq   atomic.Int64 // the draws of the shares
	endSeq             atomic.Int64
	st                 statCounters
	mu                 sync.Mutex
	received           map[string]int
	kept               []Message
	reads              [][]byte
	maildirSeq         atomic.Int64
}

type statCounters struct {
	sessions, peak, messages, recipients, bytes                                    atomic.Int64
	rejMail, rejRcpt, rejData, dropBefore, dropAfter, throttled, limited, authFail atomic.Int64
	rcptTemp, rcptPerm, dataTemp, dataPerm                                         atomic.Int64
}

// Start listens on cfg.Addr and serves in the background.
func Start(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Domain == "" {
		cfg.Domain = "localhost"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.leanIdle == 0 {
		cfg.leanIdle = idleTimeout
	}
	if err := cfg.Faults.Validate(); err != nil {
		return nil, err
	}
	if cfg.ImplicitTLS && cfg.TLSConfig == nil {
		return nil, errors.New("sink: implicit TLS needs a TLS configuration")
	}
	if cfg.Maildir != "" {
		for _, d := range []string{"tmp", "new", "cur"} {
			if err := os.MkdirAll(filepath.Join(cfg.Maildir, d), 0o755); err != nil {
				return nil, fmt.Errorf("sink: maildir: %w", err)
			}
		}
	}
	s := &Server{cfg: cfg, done: make(chan struct{}), received: map[string]int{}, log: cfg.Logger}
	if f := cfg.Faults.Throttle; f > 0 {
		s.throttle = rate.NewLimiter(rate.Limit(f), max(cfg.Faults.ThrottleBurst, 1))
	}
	// No TCP keep-alive: it costs four setsockopt calls per connection,
	// and the read timeout already ends idle sessions.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	if cfg.lean() {
		s.lean = &leanServer{replies: newLeanReplies(&cfg)}
		s.ln = ln
		if err := s.startLean(ln); err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("sink: %w", err)
		}
		return s, nil
	}
	s.srv = smtp.NewServer(s)
	s.srv.Domain = cfg.Domain
	s.srv.MaxRecipients = maxRecipients
	s.srv.MaxMessageBytes = maxMessageBytes
	if cfg.MaxMessageBytes > 0 {
		s.srv.MaxMessageBytes = cfg.MaxMessageBytes
	}
	s.srv.EnableSMTPUTF8 = cfg.SMTPUTF8
	s.srv.MaxLineLength = maxLineLength
	s.srv.ReadTimeout = idleTimeout
	s.srv.WriteTimeout = idleTimeout
	s.srv.AllowInsecureAuth = cfg.AllowInsecureAuth
	s.srv.TLSConfig = cfg.TLSConfig
	s.srv.ErrorLog = errorLog{cfg.Logger}
	ln = &wrapListener{Listener: ln, s: s}
	if cfg.ImplicitTLS {
		ln = tls.NewListener(ln, cfg.TLSConfig)
	}
	s.ln = ln
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			s.log.Error("sink stopped", "error", err)
		}
	}()
	return s, nil
}

// Addr is the address the server listens on, e.g. 127.0.0.1:2525.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server and closes every session.
func (s *Server) Close() error {
	if s.lean != nil {
		s.lean.once.Do(s.lean.stop)
		return nil
	}
	err := s.srv.Close()
	// Serve may not have registered the listener with go-smtp yet.
	_ = s.ln.Close()
	<-s.done
	return err
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.st
	return Stats{
		Sessions: c.sessions.Load(), PeakSessions: c.peak.Load(), Messages: c.messages.Load(),
		Recipients: c.recipients.Load(), Bytes: c.bytes.Load(),
		RejectedMail: c.rejMail.Load(), RejectedRcpt: c.rejRcpt.Load(), RejectedData: c.rejData.Load(),
		DroppedBeforeData: c.dropBefore.Load(), DroppedAfterData: c.dropAfter.Load(),
		RcptTemp: c.rcptTemp.Load(), RcptPerm: c.rcptPerm.Load(), DataTemp: c.dataTemp.Load(), DataPerm: c.dataPerm.Load(),
		Throttled: c.throttled.Load(), SessionLimited: c.limited.Load(), AuthFailures: c.authFail.Load(),
	}
}

// Received is how many accepted messages had rcpt as a recipient.
func (s *Server) Received(rcpt string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received[strings.ToLower(rcpt)]
}

// Messages returns the accepted messages (only with Config.Keep).
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.kept...)
}

// NewSession implements smtp.Backend. go-smtp calls it at the first EHLO
// (or HELO) of a connection, and again after STARTTLS.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	if !s.beginSession() {
		line := "421 4.7.0 Too many connections, closing connection"
		if s.cfg.SessionLimitReply != "" {
			line = s.cfg.SessionLimitReply
		}
		closeWith(c.Conn(), line)
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many connections"}
	}
	raw := rawConn(c.Conn())
	ss := &session{s: s, conn: c.Conn(), raw: raw, id: s.sessionSeq.Add(1)}
	if raw != nil {
		raw.sess.Store(ss)
	}
	return ss, nil
}

// beginSession counts a new session (go-smtp's at its first EHLO, the lean
// server's at its connection): false when it is over MaxSessions, counted
// as limited and not as active; the caller answers 421 and closes.
func (s *Server) beginSession() bool {
	n := s.active.Add(1)
	s.st.sessions.Add(1)
	if lim := s.cfg.MaxSessions; lim > 0 && n > int64(lim) {
		s.active.Add(-1)
		s.st.limited.Add(1)
		return false
	}
	for {
		p := s.st.peak.Load()
		if n <= p || s.st.peak.CompareAndSwap(p, n) {
			return true
		}
	}
}

// closeWith writes a final reply straight to the connection and closes it,
// as a server does when it gives up on a session (421).
func closeWith(conn net.Conn, reply string) {
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(conn, reply+"\r\n")
	_ = conn.Close()
}

var errDropped = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "connection dropped"}

type session struct {
	s        *Server
	conn     net.Conn
	raw      *wrapConn // the TCP connection under conn (nil if unknown)
	id       int64
	authed   bool
	from     string
	rcpts    []string
	messages int
	ended    atomic.Bool
	data     []byte // the message being received (when kept)
	size     int64
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string {
	if ss.s.cfg.Auth == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.s.cfg.Auth == nil || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnsupported
	}
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != ss.s.cfg.Auth.Username || pass != ss.s.cfg.Auth.Password {
			ss.s.st.authFail.Add(1)
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
		}
		if err := ss.fault(StageAuth, ""); err != nil {
			return err
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *session) Reset() {
	ss.from, ss.rcpts = "", ss.rcpts[:0]
}

func (ss *session) Logout() error {
	ss.end()
	return nil
}

// end counts the session as over, once. go-smtp calls Logout only after it
// wrote 221 to QUIT, so a client that waits for 221, closes and opens the
// next session could find the previous one still counted; the connection
// therefore ends its session as it writes 221 or reads EOF, whichever comes
// first (see wrapConn).
func (ss *session) end() {
	if ss.ended.CompareAndSwap(false, true) {
		ss.s.active.Add(-1)
	}
}

// fault decides what happens at a stage: nil to go on, or the error to
// return (the connection is already closed when it is errDropped).
func (ss *session) fault(stage Stage, rcpt string) error {
	f := &ss.s.cfg.Faults
	if d := f.latency(stage); d > 0 {
		time.Sleep(d)
	}
	if f.Hook != nil {
		ev := Event{Stage: stage, Session: ss.id, From: ss.from, Rcpt: rcpt, Recipients: ss.rcpts, Message: ss.messages + 1}
		if stage == StageData {
			ev.Data = ss.data
		}
		a := f.Hook(ev)
		if err := ss.act(stage, a); err != nil {
			return err
		}
	}
	for _, r := range f.Rules {
		if r.Stage != stage || !ss.matches(r, rcpt) {
			continue
		}
		if r.Times > 0 && r.used.Add(1) > int64(r.Times) {
			continue
		}
		a := Action{Drop: r.Drop, Accept: r.Accept}
		if !r.Drop {
			a.Reply = &smtp.SMTPError{Code: r.Code, EnhancedCode: r.Enhanced, Message: r.Message}
			if r.Enhanced == (smtp.EnhancedCode{}) {
				a.Reply.EnhancedCode = smtp.NoEnhancedCode
			}
		}
		return ss.act(stage, a)
	}
	return nil
}

func (ss *session) matches(r *Rule, rcpt string) bool {
	m := strings.ToLower(r.Match)
	if rcpt != "" {
		return strings.Contains(strings.ToLower(rcpt), m)
	}
	for _, to := range ss.rcpts {
		if strings.Contains(strings.ToLower(to), m) {
			return true
		}
	}
	return m == "" && stageBeforeRcpt(r.Stage)
}

func stageBeforeRcpt(s Stage) bool { return s == StageMail || s == StageAuth }

func (ss *session) act(stage Stage, a Action) error {
	switch {
	case a.Drop:
		if stage == StageData && a.Accept {
			ss.accept()
		}
		if stage == StageData {
			ss.s.st.dropAfter.Add(1)
		} else {
			ss.s.st.dropBefore.Add(1)
		}
		ss.drop()
		return errDropped
	case a.Reply != nil:
		switch stage {
		case StageMail:
			ss.s.st.rejMail.Add(1)
		case StageRcpt:
			ss.s.st.rejRcpt.Add(1)
		case StageData:
			ss.s.st.rejData.Add(1)
		}
		if a.Reply.Code == 421 {
			closeWith(ss.conn, fmt.Sprintf("421 %d.%d.%d %s", a.Reply.EnhancedCode[0], a.Reply.EnhancedCode[1], a.Reply.EnhancedCode[2], a.Reply.Message))
		}
		return a.Reply
	}
	return nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.cfg.Auth != nil && !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	f := &ss.s.cfg.Faults
	if f.AfterMessages > 0 && ss.messages >= f.AfterMessages {
		ss.s.st.rejMail.Add(1)
		closeWith(ss.conn, "421 4.7.0 Too many messages in one session, closing connection")
		return errDropped
	}
	if ss.s.throttle != nil && !ss.s.throttle.Allow() {
		ss.s.st.throttled.Add(1)
		closeWith(ss.conn, "421 4.7.0 Try again later, closing connection.")
		return errDropped
	}
	return ss.fault(StageMail, "")
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := ss.fault(StageRcpt, to); err != nil {
		return err
	}
	if f := &ss.s.cfg.Faults; f.RcptTemp+f.RcptPerm > 0 {
		u := draw(f.Seed, streamRcpt, ss.s.rcptSeq.Add(1))
		switch {
		case u < f.RcptPerm:
			ss.s.st.rcptPerm.Add(1)
			ss.s.st.rejRcpt.Add(1)
			return errRcptPerm
		case u < f.RcptPerm+f.RcptTemp:
			ss.s.st.rcptTemp.Add(1)
			ss.s.st.rejRcpt.Add(1)
			return errRcptTemp
		}
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	f := &ss.s.cfg.Faults
	if f.DropBeforeData > 0 && draw(f.Seed, streamDataCmd, ss.s.dataSeq.Add(1)) < f.DropBeforeData {
		// go-smtp wrote 354 before calling Data; it is still in the
		// connection's buffer (nothing was read since), and goes nowhere.
		ss.s.st.dropBefore.Add(1)
		if ss.raw != nil {
			ss.raw.abort()
		} else {
			_ = ss.conn.Close()
		}
		return errDropped
	}
	var data []byte
	var n int64
	var err error
	keep := ss.s.cfg.Keep || ss.s.cfg.Maildir != ""
	if keep {
		data, err = io.ReadAll(r)
		n = int64(len(data))
	} else {
		n, err = io.Copy(io.Discard, r)
	}
	if err != nil {
		return err
	}
	ss.data, ss.size = data, n
	if err := ss.fault(StageData, ""); err != nil {
		return err
	}
	if f.DataTemp+f.DataPerm+f.DropAfterData > 0 {
		u := draw(f.Seed, streamDataEnd, ss.s.endSeq.Add(1))
		switch {
		case u < f.DropAfterData:
			return ss.act(StageData, Action{Drop: true, Accept: true})
		case u < f.DropAfterData+f.DataPerm:
			ss.s.st.dataPerm.Add(1)
			ss.s.st.rejData.Add(1)
			return errDataPerm
		case u < f.DropAfterData+f.DataPerm+f.DataTemp:
			ss.s.st.dataTemp.Add(1)
			ss.s.st.rejData.Add(1)
			return errDataTemp
		}
	}
	if err := ss.accept(); err != nil {
		ss.s.log.Error("maildir", "error", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "cannot store the message"}
	}
	return nil
}

// accept records the current message as delivered.
func (ss *session) accept() error {
	ss.messages++
	st := &ss.s.st
	st.messages.Add(1)
	st.recipients.Add(int64(len(ss.rcpts)))
	st.bytes.Add(ss.size)
	if ss.s.cfg.Maildir != "" {
		if err := ss.s.deliverMaildir(ss.data); err != nil {
			return err
		}
	}
	if ss.s.cfg.CountOnly && !ss.s.cfg.Keep {
		return nil
	}
	ss.s.mu.Lock()
	for _, to := range ss.rcpts {
		ss.s.received[strings.ToLower(to)]++
	}
	if ss.s.cfg.Keep {
		ss.s.kept = append(ss.s.kept, Message{From: ss.from, To: append([]string(nil), ss.rcpts...), Data: ss.data, Session: ss.id, At: time.Now()})
	}
	ss.s.mu.Unlock()
	return nil
}

// deliverMaildir writes a message into tmp/ and renames it into new/.
func (s *Server) deliverMaildir(data []byte) error {
	host, _ := os.Hostname()
	name := fmt.Sprintf("%d.%d_%d.%s", time.Now().UnixNano(), os.Getpid(), s.maildirSeq.Add(1), strings.ReplaceAll(host, "/", "_"))
	tmp := filepath.Join(s.cfg.Maildir, "tmp", name)
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.cfg.Maildir, "new", name))
}

// errorLog sends go-smtp's connection errors (resets, timeouts: routine for
// a test server whose clients are killed on purpose) to the debug log.
type errorLog struct{ l *slog.Logger }

func (e errorLog) Printf(format string, v ...any) { e.l.Debug(fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.l.Debug(fmt.Sprint(v...)) }

// Reads returns the chunks read from clients, with Config.RecordReads.
func (s *Server) Reads() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.reads...)
}
