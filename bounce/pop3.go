package bounce

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// pop3Box is a POP3 maildrop (RFC 1939) over TLS: implicit (pop3s) or STLS
// (RFC 2595). Deletions take effect at QUIT (Close); a session that ends
// otherwise deletes nothing. Not safe for concurrent use.
type pop3Box struct {
	conn    net.Conn // the TCP connection, for deadlines
	tp      *textproto.Conn
	timeout time.Duration
}

// pop3Error is a -ERR reply.
type pop3Error struct{ cmd, text string }

func (e *pop3Error) Error() string { return e.cmd + ": -ERR " + e.text }

func openPOP3(ctx context.Context, e Endpoint, a Account, tc *tls.Config) (*pop3Box, error) {
	d := net.Dialer{Timeout: a.Timeout}
	conn, err := d.DialContext(ctx, "tcp", e.Host)
	if err != nil {
		return nil, err
	}
	b := &pop3Box{conn: conn, timeout: a.Timeout}
	err = b.do(ctx, func() error {
		var rw io.ReadWriteCloser = conn
		if e.Implicit {
			tconn := tls.Client(conn, tc)
			if err := tconn.HandshakeContext(ctx); err != nil {
				return fmt.Errorf("TLS: %w", err)
			}
			rw = tconn
		}
		b.tp = textproto.NewConn(rw)
		if _, err := b.reply("greeting"); err != nil {
			return err
		}
		if !e.Implicit {
			if _, err := b.cmd("STLS", "STLS"); err != nil {
				return fmt.Errorf("the server does not offer STLS (use pop3s://): %w", err)
			}
			tconn := tls.Client(conn, tc)
			if err := tconn.HandshakeContext(ctx); err != nil {
				return fmt.Errorf("TLS: %w", err)
			}
			b.tp = textproto.NewConn(tconn)
		}
		if _, err := b.cmd("USER", "USER %s", a.Username); err != nil {
			return loginErr(err)
		}
		if _, err := b.cmd("PASS", "PASS %s", a.Password); err != nil {
			return loginErr(err)
		}
		return nil
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	return b, nil
}

func loginErr(err error) error {
	var pe *pop3Error
	if errors.As(err, &pe) {
		return fmt.Errorf("%w: %s", ErrLogin, pe.text)
	}
	return err
}

func (b *pop3Box) do(ctx context.Context, f func() error) error {
	return guarded(ctx, b.conn, b.timeout, f)
}

// cmd sends a command and reads its one-line reply. name is what errors
// call it (never the arguments: PASS carries the password).
func (b *pop3Box) cmd(name, format string, args ...any) (string, error) {
	if err := b.tp.PrintfLine(format, args...); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return b.reply(name)
}

func (b *pop3Box) reply(name string) (string, error) {
	line, err := b.tp.ReadLine()
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	switch {
	case strings.HasPrefix(line, "+OK"):
		return strings.TrimSpace(line[3:]), nil
	case strings.HasPrefix(line, "-ERR"):
		return "", &pop3Error{name, strings.TrimSpace(line[4:])}
	}
	return "", fmt.Errorf("%s: unexpected reply %q", name, trim(line, 80))
}

// List returns the message numbers (RFC 1939 numbers stay valid for the
// session). UIDL is not needed: bounces are counted by their Message-ID.
func (b *pop3Box) List(ctx context.Context) ([]string, error) {
	var ids []string
	err := b.do(ctx, func() error {
		if _, err := b.cmd("LIST", "LIST"); err != nil {
			return err
		}
		lines, err := b.tp.ReadDotLines()
		if err != nil {
			return fmt.Errorf("LIST: %w", err)
		}
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) == 0 {
				continue
			}
			if _, err := strconv.Atoi(f[0]); err != nil {
				return fmt.Errorf("LIST: bad line %q", trim(l, 80))
			}
			ids = append(ids, f[0])
		}
		return nil
	})
	return ids, err
}

func (b *pop3Box) Fetch(ctx context.Context, id string) ([]byte, error) {
	if _, err := strconv.Atoi(id); err != nil {
		return nil, fmt.Errorf("not a POP3 message number: %q", id)
	}
	var raw []byte
	err := b.do(ctx, func() error {
		if _, err := b.cmd("RETR", "RETR %s", id); err != nil {
			return err
		}
		var err error
		// DotReader undoes dot-stuffing and turns CRLF into LF.
		raw, err = io.ReadAll(b.tp.DotReader())
		if err != nil {
			return fmt.Errorf("RETR %s: %w", id, err)
		}
		return nil
	})
	return raw, err
}

func (b *pop3Box) Done(ctx context.Context, id string) error {
	if _, err := strconv.Atoi(id); err != nil {
		return fmt.Errorf("not a POP3 message number: %q", id)
	}
	return b.do(ctx, func() error {
		_, err := b.cmd("DELE", "DELE %s", id)
		return err
	})
}

// Close says QUIT, which makes the deletions take effect.
func (b *pop3Box) Close() error {
	b.conn.SetDeadline(time.Now().Add(b.timeout))
	_, err := b.cmd("QUIT", "QUIT")
	b.tp.Close()
	return err
}
