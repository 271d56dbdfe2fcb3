package engine

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/textproto"

	"github.com/heraldmail/herald/outcome"
	"github.com/wneessen/go-mail/smtp"
)

// RFC 2920 pipelining. go-mail sends one command and waits for its reply;
// over a link with real latency round trips decide the speed, and providers
// cap connections. When the server advertises PIPELINING, herald writes
// MAIL, RCPT and DATA as one group and reads the three replies in order, and
// it sends the end of one message in the same flight as the next envelope.
// These functions drive go-mail's underlying text connection; go-mail still
// dials, says EHLO, starts TLS, authenticates and says QUIT.

// pipe is a pipelining connection's writer and reader.
type pipe struct {
	arm  func() // a fresh deadline for the next write or reply wait
	c    *smtp.Client
	text *textproto.Conn
}

func newPipe(c *smtp.Client, arm func()) *pipe {
	return &pipe{arm: arm, c: c, text: c.Text}
}

// writeEnvelope buffers MAIL (with params, e.g. " SMTPUTF8"), RCPT and
// DATA; nothing is flushed. The paths go in angle brackets, as on the
// path without pipelining (mailCommand, rcptCommand).
func (p *pipe) writeEnvelope(from, rcpt, params string) error {
	if err := checkLine(from); err != nil {
		return err
	}
	if err := checkLine(rcpt); err != nil {
		return err
	}
	_, err := fmt.Fprintf(p.text.W, mailCommand+"\r\n"+rcptCommand+"\r\nDATA\r\n", from, params, rcpt)
	return err
}

// The envelope's commands: the reverse and the forward path in angle
// brackets, always (RFC 5321, 4.1.2), then MAIL's parameters.
const (
	mailCommand = "MAIL FROM:<%s>%s"
	rcptCommand = "RCPT TO:<%s>"
)

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// addressError is an address SMTP cannot carry: the recipient's fault,
// not the connection's.
type addressError struct{ addr string }

func (e *addressError) Error() string {
	return fmt.Sprintf("address %q contains a character not allowed in SMTP", e.addr)
}

func isAddressError(err error) bool {
	var ae *addressError
	return errors.As(err, &ae)
}

func checkLine(s string) error {
	for i := 0; i < len(s); i++ {
		if s[i] == '\r' || s[i] == '\n' || s[i] == '<' || s[i] == '>' {
			return &addressError{s}
		}
	}
	return nil
}

// writeContent buffers the message's DATA content: dot-stuffed, with the
// final dot (message.wire).
func (p *pipe) writeContent(msg *message) error {
	_, err := p.text.W.Write(msg.wire)
	return err
}

func (p *pipe) flush() error { return p.text.W.Flush() }

// readEnvelope reads the replies to MAIL, RCPT and DATA. It returns nil when
// the server is ready for the content. After a refusal it brings the
// session back to a clean state as RFC 2920 section 3.1 asks (a lone dot if
// DATA was accepted anyway, RSET otherwise); keep says whether the
// connection can go on.
func (p *pipe) readEnvelope() (derr *outcome.DeliveryError, keep bool) {
	var first *outcome.DeliveryError
	note := func(stage outcome.Stage, err error) (fatal bool) {
		d := outcome.Classify(stage, err)
		if first == nil {
			first = d
		}
		// No reply, or 421: the session is over.
		return d.Code == 0 || d.Code == 421
	}
	if _, err := p.reply(250); err != nil && note(outcome.StageMail, err) {
		return first, false
	}
	if _, err := p.reply(25); err != nil && note(outcome.StageRcpt, err) {
		return first, false
	}
	_, err := p.reply(354)
	if err == nil && first == nil {
		return nil, true
	}
	if err == nil {
		// DATA accepted although MAIL or RCPT was refused: end the
		// transaction with an empty message (RFC 2920, 3.1).
		p.arm()
		if _, err := io.WriteString(p.text.W, ".\r\n"); err != nil {
			return first, false
		}
		if err := p.flush(); err != nil {
			return first, false
		}
		if _, _, err := p.text.ReadResponse(250); err != nil {
			var tp *textproto.Error
			if !errors.As(err, &tp) || tp.Code == 421 {
				return first, false
			}
		}
		return first, true
	}
	if note(outcome.StageData, err) {
		return first, false
	}
	p.arm()
	if err := p.c.Reset(); err != nil {
		return first, false
	}
	return first, true
}

// readDataEnd reads the reply to the final dot.
func (p *pipe) readDataEnd() (derr *outcome.DeliveryError, reply string, keep bool) {
	line, err := p.reply(250)
	if err != nil {
		d := outcome.Classify(outcome.StageDataEnd, err)
		return d, "", d.Code != 0 && d.Code != 421
	}
	return nil, string(line), true
}

// reply reads the next reply as textproto's ReadResponse(expect) does, and
// returns it as "code text" (the lines of a multiline reply joined by
// "\n") when it is the one expected. The usual reply, one line with the
// expected code, is read from the buffer without allocating: line is only
// valid until the next read.
func (p *pipe) reply(expect int) (line []byte, err error) {
	if line, ok, err := quickReply(p.text.R, expect); ok || err != nil {
		return line, err
	}
	code, msg, err := p.text.ReadResponse(expect)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, "%d %s", code, msg), nil
}

// quickReply takes from r a reply of one line whose code is what expect
// asks (textproto's ReadResponse: 250 is 250, 25 is 25x, 2 is 2xx), when r
// holds it whole, waiting for the first bytes when r holds none. Otherwise
// ok is false and r is left as it was (but filled), for ReadResponse; err
// is a read that failed before anything came, as ReadResponse returns it.
// line is the reply without its line end.
func quickReply(r *bufio.Reader, expect int) (line []byte, ok bool, err error) {
	if r.Buffered() == 0 {
		if _, err := r.Peek(1); err != nil {
			return nil, false, err
		}
	}
	buf, _ := r.Peek(r.Buffered())
	end := bytes.IndexByte(buf, '\n')
	if end < 0 {
		return nil, false, nil
	}
	line = buf[:end]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if len(line) < 4 || line[3] != ' ' || line[0] < '1' || line[0] > '9' ||
		line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' {
		return nil, false, nil // another length, a multiline reply or a bad one
	}
	code := int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	switch {
	case expect >= 100 && code != expect,
		expect >= 10 && expect < 100 && code/10 != expect,
		expect >= 1 && expect < 10 && code/100 != expect:
		return nil, false, nil
	}
	r.Discard(end + 1)
	return line, true, nil
}
