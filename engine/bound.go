package engine

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync/atomic"

	"github.com/wneessen/go-mail/smtp"

	"github.com/heraldmail/herald/outcome"
)

// go-mail reads replies with net/textproto, which buffers a line until its
// end, however long: a server that sent "220 " and then bytes without a
// line end took herald to 332 MB in 2 s. Every read from a server passes a
// replyBound instead, which refuses a line longer than
// outcome.MaxReplyLine and a reply of more than outcome.MaxReplyLines
// lines: a protocol error that closes the connection.
//
// In clear text the bound sits on the connection itself (boundedConn).
// Once TLS starts on it, what it reads is ciphertext: until the dial is
// done (the handshake, and the greeting and EHLO over TLS) the connection
// only counts the octets, at most tlsBudget, and then a replyBound goes
// above TLS, in go-mail's reader (boundAbove).

// tlsBudget is how many octets a server may send from the TLS handshake
// to the end of its EHLO reply over TLS: a certificate chain and an EHLO
// reply take a few KB.
const tlsBudget = 256 << 10

// errTLSBudget is a server that sent more than tlsBudget before the
// connection was ready.
var errTLSBudget = &outcome.ProtocolError{Text: fmt.Sprintf("server sent more than %d KB during the TLS handshake and greeting", tlsBudget>>10)}

// replyBound reads a server's replies from r and passes on complete lines
// only: a line still coming is held back (at most outcome.MaxReplyLine
// octets and its line end), so that a read that fails mid-line (a timeout,
// a line or a reply past the bounds) never hands textproto a piece of a
// line to take for a whole one. Past a bound it fails for good. Not safe
// for concurrent use.
type replyBound struct {
	r io.Reader
	// buf[out:done] is complete lines not yet read, buf[done:] the
	// current line so far.
	buf       []byte
	out, done int
	line      int  // octets of the current line so far, without its LF
	fourth    byte // the current line's fourth octet: '-' continues the reply
	cont      int  // continuation lines of the current reply so far
	err       error
	pending   error // r's error, passed on once the lines before it are read
}

// boundBuf holds the longest line allowed and a read.
const boundBuf = outcome.MaxReplyLine + 2 + 4096

func (b *replyBound) Read(p []byte) (int, error) {
	for b.out == b.done {
		if b.err != nil {
			return 0, b.err
		}
		if err := b.pending; err != nil {
			b.pending = nil
			return 0, err
		}
		if b.buf == nil {
			b.buf = make([]byte, 0, boundBuf)
		}
		// Only the current line is left: move it to the front.
		k := copy(b.buf, b.buf[b.out:])
		b.buf, b.out, b.done = b.buf[:k], 0, 0
		from := len(b.buf)
		n, err := b.r.Read(b.buf[from:cap(b.buf)])
		b.buf = b.buf[:from+n]
		b.err = b.scan(from)
		b.pending = err
	}
	n := copy(p, b.buf[b.out:b.done])
	b.out += n
	return n, nil
}

// scan follows the lines of buf[from:], moving done past each complete
// one; it returns the fault of a line or reply past the bounds.
func (b *replyBound) scan(from int) error {
	for i := from; i < len(b.buf); i++ {
		c := b.buf[i]
		if c == '\n' {
			if b.line >= 4 && b.fourth == '-' {
				if b.cont++; b.cont >= outcome.MaxReplyLines {
					return outcome.ErrReplyTooLong
				}
			} else {
				b.cont = 0
			}
			b.line, b.done = 0, i+1
			continue
		}
		b.line++
		if b.line == 4 {
			b.fourth = c
		}
		if b.line > outcome.MaxReplyLine+1 { // +1: the CR of CRLF
			return outcome.ErrReplyLineTooLong
		}
	}
	return nil
}

// boundedConn is a connection to a server whose reads are bounded: by a
// replyBound while they are clear text; once TLS starts on it (the client
// writes a handshake record while dialling), by tlsBudget until the reader
// above TLS takes over.
type boundedConn struct {
	net.Conn
	b       replyBound
	tls     atomic.Bool  // TLS started: the octets are ciphertext
	above   atomic.Bool  // a replyBound reads above TLS: nothing to count here
	dialled atomic.Bool  // the dial is done: TLS can no longer start
	spent   atomic.Int64 // ciphertext octets read while dialling
}

func newBoundedConn(c net.Conn) *boundedConn {
	bc := &boundedConn{Conn: c}
	bc.b.r = c
	return bc
}

func (c *boundedConn) Write(p []byte) (int, error) {
	// 0x16 opens a TLS handshake record; no SMTP command starts with it.
	if len(p) > 0 && p[0] == 0x16 && !c.dialled.Load() {
		c.tls.Store(true)
	}
	return c.Conn.Write(p)
}

func (c *boundedConn) Read(p []byte) (int, error) {
	if !c.tls.Load() {
		return c.b.Read(p)
	}
	if c.above.Load() {
		return c.Conn.Read(p)
	}
	left := tlsBudget - c.spent.Load()
	if left <= 0 {
		return 0, errTLSBudget
	}
	n, err := c.Conn.Read(p[:min(int64(len(p)), left)])
	c.spent.Add(int64(n))
	return n, err
}

// boundAbove is called once the dial is done: on a TLS connection the
// replies are bounded above TLS from now on, in c's reader. It fails when
// the server sent more than tlsBudget meanwhile: textproto may then have
// taken the piece of a line it had when the reads failed for a whole reply
// (bufio passes a read error on only with nothing buffered).
func (c *boundedConn) boundAbove(sc *smtp.Client) error {
	c.dialled.Store(true)
	if !c.tls.Load() {
		return nil
	}
	if c.spent.Load() >= tlsBudget {
		return errTLSBudget
	}
	sc.Text.Reader.R = bufio.NewReader(&replyBound{r: sc.Text.Reader.R})
	c.above.Store(true)
	return nil
}
