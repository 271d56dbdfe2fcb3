package loadgen

import (
	"bufio"
	"errors"
	"net"
	"net/textproto"
	"strings"

	"github.com/heraldmail/herald/outcome"
)

// client is one SMTP connection: the raw connection, for writes of whole
// command groups, and a reader for the replies.
type client struct {
	conn net.Conn
	r    *bufio.Reader
	// What the last EHLO advertised.
	pipelining, starttls, authPlain, auth bool
}

// newClient reads replies through a buffer that holds the longest reply
// line allowed (outcome.MaxReplyLine) and its CRLF: a longer line is a
// protocol error, and so is a reply of more than outcome.MaxReplyLines
// lines, so that whatever a server sends, a connection holds a few KB.
func newClient(conn net.Conn) *client {
	return &client{conn: conn, r: bufio.NewReaderSize(conn, outcome.MaxReplyLine+2)}
}

// codeOK reports whether code matches expect, read as textproto does:
// 2 is any 2xx, 25 any 25x, 250 exactly 250; 0 any code.
func codeOK(code, expect int) bool {
	switch {
	case expect == 0:
		return true
	case expect < 10:
		return code/100 == expect
	case expect < 100:
		return code/10 == expect
	}
	return code == expect
}

// readReply reads one reply, single or multi-line. It returns the code; a
// code that does not match expect is a *textproto.Error with the reply's
// text (the form outcome.Classify reads); a broken connection or a garbled
// reply is another error. A matching reply allocates nothing.
func (c *client) readReply(expect int) (int, error) {
	code := 0
	var msg []string
	for lines := 1; ; lines++ {
		if lines > outcome.MaxReplyLines {
			return 0, outcome.ErrReplyTooLong
		}
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return 0, outcome.ErrReplyLineTooLong
			}
			return 0, err
		}
		line = trimEOL(line)
		if len(line) < 3 || (len(line) > 3 && line[3] != ' ' && line[3] != '-') {
			return 0, textproto.ProtocolError("short or malformed reply: " + string(line))
		}
		n := 0
		for _, d := range line[:3] {
			if d < '0' || d > '9' {
				return 0, textproto.ProtocolError("malformed reply code: " + string(line))
			}
			n = n*10 + int(d-'0')
		}
		if code == 0 {
			code = n
		} else if n != code {
			return 0, textproto.ProtocolError("reply code changed inside a multi-line reply: " + string(line))
		}
		ok := codeOK(code, expect)
		if !ok {
			if len(line) > 4 {
				msg = append(msg, string(line[4:]))
			} else {
				msg = append(msg, "")
			}
		}
		if len(line) == 3 || line[3] == ' ' {
			if !ok {
				return code, &textproto.Error{Code: code, Msg: strings.Join(msg, "\n")}
			}
			return code, nil
		}
	}
}

// readEHLO reads the reply to EHLO and notes the extensions.
func (c *client) readEHLO() error {
	c.pipelining, c.starttls, c.authPlain, c.auth = false, false, false, false
	var msg []string
	code := 0
	for {
		if len(msg) >= outcome.MaxReplyLines {
			return outcome.ErrReplyTooLong
		}
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return outcome.ErrReplyLineTooLong
			}
			return err
		}
		line = trimEOL(line)
		if len(line) < 3 || (len(line) > 3 && line[3] != ' ' && line[3] != '-') {
			return textproto.ProtocolError("malformed EHLO reply: " + string(line))
		}
		n := 0
		for _, d := range line[:3] {
			if d < '0' || d > '9' {
				return textproto.ProtocolError("malformed EHLO reply code: " + string(line))
			}
			n = n*10 + int(d-'0')
		}
		if code == 0 {
			code = n
		}
		text := ""
		if len(line) > 4 {
			text = string(line[4:])
		}
		msg = append(msg, text)
		if len(msg) > 1 { // the first line is the greeting
			kw, rest, _ := strings.Cut(strings.ToUpper(text), " ")
			switch kw {
			case "PIPELINING":
				c.pipelining = true
			case "STARTTLS":
				c.starttls = true
			case "AUTH":
				c.auth = true
				for _, m := range strings.Fields(rest) {
					if m == "PLAIN" {
						c.authPlain = true
					}
				}
			}
		}
		if len(line) == 3 || line[3] == ' ' {
			break
		}
	}
	if code != 250 {
		return &textproto.Error{Code: code, Msg: strings.Join(msg, "\n")}
	}
	return nil
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// fatal reports whether err ends the session: no reply at all, or 421.
func fatal(err error) bool {
	var tp *textproto.Error
	return !errors.As(err, &tp) || tp.Code == 421
}

// isReply reports whether err is a server reply (as opposed to a broken
// connection): its time is a stage latency like a positive reply's.
func isReply(err error) bool {
	var tp *textproto.Error
	return errors.As(err, &tp)
}
