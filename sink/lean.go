package sink

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// The lean server answers SMTP itself, in place of go-smtp, when a sink has
// nothing to do but count: Config.CountOnly, and no faults, TLS, AUTH,
// maildir, Keep or RecordReads (Config.lean). It is what `herald sink`
// runs for a load test, where the sink's own CPU use per message is taken
// from the client it measures on the same machine. Per session it keeps
// one read buffer (pooled) and one reply buffer, and it
//
//   - parses every complete command line in what one read returned, and
//     writes the replies to all of them with one write, just before it
//     reads again (RFC 2920 pipelining: a server must not wait for more
//     input with replies unsent);
//   - finds the end of the data with one bytes.Index for "\r\n.\r\n" over
//     what was read, instead of reading the message a byte at a time, and
//     counts the dot-stuffed lines to report the size go-smtp would;
//   - writes replies from a table made at start.
//
// It speaks what a load test needs: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP,
// VRFY, QUIT, with PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES and SIZE
// advertised (no CHUNKING), the same limits as the go-smtp path (1,000
// recipients, 32 MiB messages, 2,000-octet command and data lines, a
// minute idle),
// MaxSessions, NoPipelining and NoEnhancedStatusCodes. A session counts from
// its connection (go-smtp's from its EHLO) to its 221, EOF or error.

const (
	leanBufSize       = 64 << 10
	leanErrorsAllowed = 3
)

var dataEnd = []byte("\r\n.\r\n")

// leanReplies are the server's answers, made once by Start.
type leanReplies struct {
	greeting, ehlo, helo, mailOK, rcptOK, dataGo, dataOK, rset, noop, vrfy, quit                  []byte
	needHelo, nestedMail, needMail, needRcpt, mailSyntax, rcptSyntax, tooManyRcpts                []byte
	heloSyntax, dataArgs, tooBig, notImpl, unknown, badCommand, badSyntax, tooLong, tooManyErrors []byte
	busy, dataTooLong                                                                             []byte
}

func newLeanReplies(cfg *Config) *leanReplies {
	r := func(s string) []byte {
		b := []byte(s + "\r\n")
		if cfg.NoEnhancedStatusCodes {
			b = stripEnhanced(b)
		}
		return b
	}
	ehlo := "250-" + cfg.Domain + "\r\n"
	if !cfg.NoPipelining {
		ehlo += "250-PIPELINING\r\n"
	}
	ehlo += "250-8BITMIME\r\n"
	if !cfg.NoEnhancedStatusCodes {
		ehlo += "250-ENHANCEDSTATUSCODES\r\n"
	}
	ehlo += fmt.Sprintf("250 SIZE %d\r\n", maxMessageBytes)
	return &leanReplies{
		greeting:      r("220 " + cfg.Domain + " ESMTP Service Ready"),
		ehlo:          []byte(ehlo),
		helo:          r("250 2.0.0 " + cfg.Domain),
		mailOK:        r("250 2.1.0 Sender OK"),
		rcptOK:        r("250 2.1.5 Recipient OK"),
		dataGo:        r("354 Go ahead. End your data with <CR><LF>.<CR><LF>"),
		dataOK:        r("250 2.0.0 OK: queued"),
		rset:          r("250 2.0.0 Session reset"),
		noop:          r("250 2.0.0 I have successfully done nothing"),
		vrfy:          r("252 2.5.0 Cannot VRFY user, but will accept message"),
		quit:          r("221 2.0.0 Bye"),
		needHelo:      r("502 5.5.1 Please introduce yourself first."),
		nestedMail:    r("503 5.5.1 Nested MAIL command"),
		needMail:      r("502 5.5.1 Missing MAIL FROM command."),
		needRcpt:      r("502 5.5.1 Missing RCPT TO command."),
		mailSyntax:    r("501 5.5.2 Was expecting MAIL arg syntax of FROM:<address>"),
		rcptSyntax:    r("501 5.5.2 Was expecting RCPT arg syntax of TO:<address>"),
		tooManyRcpts:  r(fmt.Sprintf("452 4.5.3 Maximum limit of %d recipients reached", maxRecipients)),
		heloSyntax:    r("501 5.5.2 Domain/address argument required for HELO"),
		dataArgs:      r("501 5.5.4 DATA command should not have any arguments"),
		tooBig:        r("552 5.3.4 Max message size exceeded"),
		notImpl:       r("502 5.5.1 Command not implemented"),
		unknown:       r("500 5.5.2 Syntax error, command unrecognized"),
		badCommand:    r("501 5.5.2 Bad command"),
		badSyntax:     r("500 5.5.2 Error: bad syntax"),
		tooLong:       r("500 5.4.0 Too long line, closing connection"),
		tooManyErrors: r("500 5.5.1 Too many errors. Quiting now"),
		busy:          r("421 4.7.0 Too many connections, closing connection"),
		dataTooLong:   r("554 5.0.0 Error: transaction failed: too long a line in the data"),
	}
}

// lean reports whether the configuration leaves the sink nothing to do but
// count, so the lean server can answer in place of go-smtp.
func (c *Config) lean() bool {
	f := &c.Faults
	for _, d := range f.Latencies {
		if d > 0 {
			return false
		}
	}
	return c.CountOnly && !c.Keep && c.Maildir == "" && !c.RecordReads && c.TLSConfig == nil && c.Auth == nil && !c.SMTPUTF8 && c.MaxMessageBytes == 0 &&
		len(f.Rules) == 0 && f.Hook == nil && f.AfterMessages == 0 && f.Throttle == 0 && f.Latency == 0 &&
		f.RcptTemp == 0 && f.RcptPerm == 0 && f.DataTemp == 0 && f.DataPerm == 0 &&
		f.DropBeforeData == 0 && f.DropAfterData == 0
}

// leanServer is the running lean driver: stop ends it and every session,
// and waits.
type leanServer struct {
	replies *leanReplies
	stop    func()
	once    sync.Once // Close calls stop once
}

var leanBufs = sync.Pool{New: func() any { b := make([]byte, leanBufSize); return &b }}

// leanSession is one session's protocol state. A driver reads into
// buf[w:], calls feed, and sends out; it never blocks the session on
// anything but its own connection.
type leanSession struct {
	s    *Server
	rp   *leanReplies
	bp   *[]byte // buf's pool entry
	buf  []byte
	r, w int // buf[r:w] is read and not yet answered
	out  []byte

	helo, mail  bool
	rcpts, errs int
	// In the data: buf[dStart:w] is still to be searched for "\r\n.\r\n";
	// dSize and dDots count the octets and "\r\n." before it.
	inData       bool
	dStart       int
	dSize, dDots int64
	// buf[dScan:] is still to be checked for data lines longer than
	// maxLineLength, as go-smtp refuses them; dLine is the octets of the
	// current line before it.
	dScan, dLine int

	ended   bool
	closing bool // close once out is sent
}

// newLeanSession starts a counted session (beginSession) with the greeting
// in out. Its buffer is the driver's to give.
func (s *Server) newLeanSession() *leanSession {
	ls := &leanSession{s: s, rp: s.lean.replies, out: make([]byte, 0, 512)}
	ls.out = append(ls.out, ls.rp.greeting...)
	return ls
}

// release ends the session, if QUIT did not, and gives its buffer back.
func (ls *leanSession) release() {
	ls.end()
	if ls.bp != nil {
		leanBufs.Put(ls.bp)
		ls.bp, ls.buf = nil, nil
	}
}

// sent empties out once the socket took it all, letting go of a buffer
// that a burst of pipelined commands made large: an idle session keeps
// little.
func (ls *leanSession) sent() {
	if cap(ls.out) > 4<<10 {
		ls.out = make([]byte, 0, 512)
		return
	}
	ls.out = ls.out[:0]
}

// end counts the session as over, once: at QUIT before 221 is sent (a
// client that opens its next session on 221 must not find this one still
// counted), or when the connection ends.
func (ls *leanSession) end() {
	if !ls.ended {
		ls.ended = true
		ls.s.active.Add(-1)
	}
}

// space is where the next read goes: it moves what is unanswered to the
// front of the buffer first.
func (ls *leanSession) space() []byte {
	if ls.r > 0 {
		ls.w = copy(ls.buf, ls.buf[ls.r:ls.w])
		if ls.inData {
			ls.dStart -= ls.r
			ls.dScan -= ls.r
		}
		ls.r = 0
	}
	return ls.buf[ls.w:]
}

// feed answers everything complete in buf[r:w]: command lines, and the
// data after an accepted DATA. What remains is the start of a line, or
// the last octets of the data, which may begin its end.
func (ls *leanSession) feed() {
	for !ls.closing {
		if ls.inData {
			if !ls.data() {
				return
			}
			continue
		}
		i := bytes.IndexByte(ls.buf[ls.r:ls.w], '\n')
		if i < 0 {
			if ls.w-ls.r > maxLineLength {
				ls.out = append(ls.out, ls.rp.tooLong...)
				ls.closing = true
			}
			return
		}
		line := ls.buf[ls.r : ls.r+i]
		ls.r += i + 1
		if i > maxLineLength {
			ls.out = append(ls.out, ls.rp.tooLong...)
			ls.closing = true
			return
		}
		ls.command(bytes.TrimSuffix(line, []byte{'\r'}))
	}
}

// command answers one command line, without its line ending.
func (ls *leanSession) command(line []byte) {
	verb, arg := line, []byte(nil)
	if i := bytes.IndexByte(line, ' '); i >= 0 {
		verb, arg = line[:i], bytes.TrimSpace(line[i+1:])
	}
	rp := ls.rp
	switch {
	case len(verb) == 0:
		ls.protocolError(rp.badSyntax)
	case len(verb) != 4 && !eqFold(verb, "STARTTLS"):
		ls.protocolError(rp.badCommand)
	case eqFold(verb, "EHLO"), eqFold(verb, "HELO"):
		if len(arg) == 0 {
			ls.out = append(ls.out, rp.heloSyntax...)
			return
		}
		ls.helo, ls.mail, ls.rcpts = true, false, 0
		if eqFold(verb, "EHLO") {
			ls.out = append(ls.out, rp.ehlo...)
		} else {
			ls.out = append(ls.out, rp.helo...)
		}
	case eqFold(verb, "MAIL"):
		switch {
		case !ls.helo:
			ls.out = append(ls.out, rp.needHelo...)
		case ls.mail:
			ls.out = append(ls.out, rp.nestedMail...)
		case !pathArg(arg, "FROM:", true):
			ls.out = append(ls.out, rp.mailSyntax...)
		default:
			ls.mail, ls.rcpts = true, 0
			ls.out = append(ls.out, rp.mailOK...)
		}
	case eqFold(verb, "RCPT"):
		switch {
		case !ls.mail:
			ls.out = append(ls.out, rp.needMail...)
		case !pathArg(arg, "TO:", false):
			ls.out = append(ls.out, rp.rcptSyntax...)
		case ls.rcpts >= maxRecipients:
			ls.out = append(ls.out, rp.tooManyRcpts...)
		default:
			ls.rcpts++
			ls.out = append(ls.out, rp.rcptOK...)
		}
	case eqFold(verb, "DATA"):
		switch {
		case len(arg) > 0:
			ls.out = append(ls.out, rp.dataArgs...)
		case !ls.mail || ls.rcpts == 0:
			ls.out = append(ls.out, rp.needRcpt...)
		default:
			ls.out = append(ls.out, rp.dataGo...)
			// The search for "\r\n.\r\n" starts at the DATA line's
			// own ending (made CRLF if it was a bare LF), so an
			// empty message is found too; ls.r >= 5 here.
			ls.buf[ls.r-2], ls.buf[ls.r-1] = '\r', '\n'
			ls.inData, ls.dStart, ls.dSize, ls.dDots = true, ls.r-2, -2, 0
			ls.dScan, ls.dLine = ls.r, 0
		}
	case eqFold(verb, "RSET"):
		ls.mail, ls.rcpts = false, 0
		ls.out = append(ls.out, rp.rset...)
	case eqFold(verb, "NOOP"):
		ls.out = append(ls.out, rp.noop...)
	case eqFold(verb, "VRFY"):
		ls.out = append(ls.out, rp.vrfy...)
	case eqFold(verb, "QUIT"):
		ls.end()
		ls.closing = true
		ls.out = append(ls.out, rp.quit...)
	case eqFold(verb, "STARTTLS"), eqFold(verb, "AUTH"), eqFold(verb, "BDAT"), eqFold(verb, "HELP"),
		eqFold(verb, "EXPN"), eqFold(verb, "SEND"), eqFold(verb, "SOML"), eqFold(verb, "SAML"), eqFold(verb, "TURN"):
		// Not offered (go-smtp answers AUTH without TLS 523).
		ls.out = append(ls.out, rp.notImpl...)
	default:
		ls.protocolError(rp.unknown)
	}
}

// protocolError answers an unknown or empty command; after a few the
// session is closed, as go-smtp does.
func (ls *leanSession) protocolError(reply []byte) {
	ls.out = append(ls.out, reply...)
	if ls.errs++; ls.errs > leanErrorsAllowed {
		ls.out = append(ls.out, ls.rp.tooManyErrors...)
		ls.closing = true
	}
}

// data looks for the end of the message in what was read: true when it
// found it (and answered), false when it needs more input.
func (ls *leanSession) data() bool {
	win := ls.buf[ls.dStart:ls.w]
	i := bytes.Index(win, dataEnd)
	upto := ls.w
	if i >= 0 {
		upto = ls.dStart + i + 2 // the last line's CRLF; the end line after it
	}
	if !ls.dataLines(upto) {
		// As go-smtp: the transaction fails, then the session for the
		// line.
		ls.out = append(ls.out, ls.rp.dataTooLong...)
		ls.out = append(ls.out, ls.rp.tooLong...)
		ls.inData, ls.closing = false, true
		return true
	}
	if i >= 0 {
		ls.dSize += int64(i + 2)
		ls.dDots += int64(bytes.Count(win[:i+3], dataEnd[:3]))
		ls.r = ls.dStart + i + len(dataEnd)
		ls.inData = false
		// Less the dot-stuffing: every "\r\n." but the end line's.
		if size := ls.dSize - (ls.dDots - 1); size > maxMessageBytes {
			ls.out = append(ls.out, ls.rp.tooBig...)
		} else {
			st := &ls.s.st
			st.messages.Add(1)
			st.recipients.Add(int64(ls.rcpts))
			st.bytes.Add(size)
			ls.out = append(ls.out, ls.rp.dataOK...)
		}
		ls.mail, ls.rcpts = false, 0
		return true
	}
	// Keep the last 4 octets, which may begin the end line; count the
	// rest, and the "\r\n." that start in it.
	if keep := ls.w - 4; keep > ls.dStart {
		ls.dSize += int64(keep - ls.dStart)
		ls.dDots += int64(bytes.Count(ls.buf[ls.dStart:keep+2], dataEnd[:3]))
		ls.dStart = keep
	}
	ls.r = ls.dStart
	return false
}

// dataLines checks the data's lines in buf[dScan:upto]: false when one is
// longer than maxLineLength.
func (ls *leanSession) dataLines(upto int) bool {
	for ls.dScan < upto {
		j := bytes.IndexByte(ls.buf[ls.dScan:upto], '\n')
		if j < 0 {
			ls.dLine += upto - ls.dScan
			ls.dScan = upto
			break
		}
		if ls.dLine+j > maxLineLength {
			return false
		}
		ls.dLine, ls.dScan = 0, ls.dScan+j+1
	}
	return ls.dLine <= maxLineLength
}

// eqFold reports whether b is the ASCII command name upper, in any case.
func eqFold(b []byte, upper string) bool {
	if len(b) != len(upper) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if b[i]&^0x20 != upper[i] {
			return false
		}
	}
	return true
}

// pathArg checks "FROM:<path> [params]" (or "TO:"): the keyword in any case,
// optional spaces, then a path in angle brackets, or a bare address as
// go-smtp and Postfix accept it (go-mail's client sends one); "<>" only
// where empty is allowed (the reverse path).
func pathArg(arg []byte, keyword string, emptyOK bool) bool {
	if len(arg) < len(keyword) || !strings.EqualFold(string(arg[:len(keyword)]), keyword) {
		return false
	}
	p := bytes.TrimLeft(arg[len(keyword):], " ")
	if len(p) == 0 {
		return false
	}
	if p[0] != '<' {
		return p[0] != '>'
	}
	end := bytes.IndexByte(p, '>')
	if end < 0 || (end == 1 && !emptyOK) {
		return false
	}
	return end+1 == len(p) || p[end+1] == ' '
}

// startLeanGoroutines is the portable driver: a goroutine per connection,
// reading and writing through net.Conn.
func (s *Server) startLeanGoroutines(ln net.Listener) {
	var (
		mu     sync.Mutex
		conns  = map[net.Conn]struct{}{}
		closed bool
		wg     sync.WaitGroup
		done   = make(chan struct{})
	)
	go func() {
		defer close(done)
		var delay time.Duration
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				// Out of descriptors, say: wait and try again, as
				// net/http and go-smtp do, 5 ms doubling to a second.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("sink: accept", "error", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			delay = 0
			mu.Lock()
			if closed {
				mu.Unlock()
				_ = c.Close()
				return
			}
			conns[c] = struct{}{}
			wg.Add(1)
			mu.Unlock()
			go func() {
				defer func() {
					_ = c.Close()
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					wg.Done()
				}()
				s.leanConn(c)
			}()
		}
	}()
	s.lean.stop = func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		closed = true
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

// leanConn runs one session on c until it ends.
func (s *Server) leanConn(c net.Conn) {
	if !s.beginSession() {
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write(s.lean.replies.busy)
		return
	}
	ls := s.newLeanSession()
	ls.bp = leanBufs.Get().(*[]byte)
	ls.buf = *ls.bp
	defer ls.release()
	var moved time.Time
	for {
		// Move the deadline a minute on at most once a second: each
		// move costs a timer update.
		if now := time.Now(); now.Sub(moved) > time.Second {
			moved = now
			_ = c.SetDeadline(now.Add(s.cfg.leanIdle))
		}
		ls.feed()
		if len(ls.out) > 0 {
			if _, err := c.Write(ls.out); err != nil {
				return
			}
			ls.sent()
		}
		if ls.closing {
			return
		}
		n, err := c.Read(ls.space())
		ls.w += n
		if n == 0 && err != nil {
			return
		}
	}
}
