package engine

import (
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
	if _, _, err := p.text.ReadResponse(250); err != nil && note(outcome.StageMail, err) {
		return first, false
	}
	if _, _, err := p.text.ReadResponse(25); err != nil && note(outcome.StageRcpt, err) {
		return first, false
	}
	_, _, err := p.text.ReadResponse(354)
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
	code, msg, err := p.text.ReadResponse(250)
	if err != nil {
		d := outcome.Classify(outcome.StageDataEnd, err)
		return d, "", d.Code != 0 && d.Code != 421
	}
	return nil, fmt.Sprintf("%d %s", code, msg), true
}
