package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"testing"
	"testing/iotest"
	"time"
)

// rwc is a connection that reads from a byte slice through r and takes
// every write.
type rwc struct{ io.Reader }

func (rwc) Write(p []byte) (int, error) { return len(p), nil }
func (rwc) Close() error                { return nil }

// TestReplyAsTextproto: pipe.reply reads a server's replies as textproto's
// ReadResponse does (the reply as "code text", the same errors, the same
// bytes left to read), whatever the replies and however the bytes come in:
// the usual one-line reply is read without allocating, every other one as
// textproto reads it.
func TestReplyAsTextproto(t *testing.T) {
	t.Parallel()
	inputs := []string{
		"250 2.0.0 Ok: queued as 1234\r\n",
		"250 ok\r\n354 go ahead\r\n",
		"250 ok\n",
		"250 \r\n",
		"250\r\n",
		"25 short\r\n",
		"2500 long\r\n",
		"250-first\r\n250-second\r\n250 last\r\n",
		"250-first\r\n251 other\r\n",
		"251 2.1.5 recipient ok\r\n",
		"260 another 2xx\r\n",
		"150 another 1xx\r\n",
		"354 End data with <CR><LF>.<CR><LF>\r\n",
		"421 4.7.0 closing\r\n",
		"450 4.2.1 try later\r\n550 no\r\n",
		"550-5.7.1 line one\r\n550 5.7.1 line two\r\n",
		"099 too small\r\n",
		"2x0 letters\r\n",
		"-50 sign\r\n",
		"250 no line end",
		"250 cr only\r",
		"",
		"\r\n",
		"250 ok\r\n" + string(bytes.Repeat([]byte("x"), 5000)) + "\r\n",
		"250 " + string(bytes.Repeat([]byte("y"), 5000)) + "\r\n250 next\r\n",
		"550 5.7.1 [IP] Our system has detected an unusual rate of\r\n",
	}
	readers := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"halves":   iotest.HalfReader,
	}
	for _, in := range inputs {
		for _, expect := range []int{250, 25, 2, 354, 5} {
			for name, wrap := range readers {
				want, wantErr, wantRest := textprotoReply(in, expect, wrap)
				c := textproto.NewConn(rwc{wrap(bytes.NewReader([]byte(in)))})
				p := &pipe{text: c}
				line, err := p.reply(expect)
				got := string(line)
				rest, _ := io.ReadAll(c.R)
				if got != want || fmt.Sprint(err) != fmt.Sprint(wantErr) || fmt.Sprintf("%T", err) != fmt.Sprintf("%T", wantErr) || string(rest) != wantRest {
					t.Errorf("%q, expect %d, %s: reply %q, %v (%T), rest %q; textproto: %q, %v (%T), rest %q",
						in, expect, name, got, err, err, rest, want, wantErr, wantErr, wantRest)
				}
				var tp *textproto.Error
				if errors.As(wantErr, &tp) && !errors.As(err, &tp) {
					t.Errorf("%q: %v is not a *textproto.Error", in, err)
				}
			}
		}
	}
}

// textprotoReply is what ReadResponse reads from in.
func textprotoReply(in string, expect int, wrap func(io.Reader) io.Reader) (reply string, err error, rest string) {
	c := textproto.NewConn(rwc{wrap(bytes.NewReader([]byte(in)))})
	code, msg, err := c.ReadResponse(expect)
	if err == nil {
		reply = fmt.Sprintf("%d %s", code, msg)
	}
	b, _ := io.ReadAll(c.R)
	return reply, err, string(b)
}

// TestQuickReplyAllocates: the usual reply costs no allocation.
func TestQuickReplyAllocates(t *testing.T) {
	in := bytes.Repeat([]byte("250 2.0.0 Ok: queued\r\n"), 1000)
	c := textproto.NewConn(rwc{bytes.NewReader(in)})
	p := &pipe{text: c}
	if n := testing.AllocsPerRun(500, func() {
		if _, err := p.reply(250); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per reply", n)
	}
}

// TestArmDeadline: however often arm is called, a wait for a reply that
// starts after it gets the whole timeout (the deadline it sets is never
// sooner than timeout from its call), and still ends.
func TestArmDeadline(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c) // a server that never replies
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	const timeout = 400 * time.Millisecond
	p := &provider{}
	p.cfg.Timeout.Duration = timeout
	cn := &conn{p: p}
	cn.live.Store(&raw)
	var last time.Time
	for end := time.Now().Add(150 * time.Millisecond); time.Now().Before(end); time.Sleep(3 * time.Millisecond) {
		last = time.Now()
		cn.arm()
		if d := cn.deadline; d.Before(last.Add(timeout)) {
			t.Fatalf("deadline %v after arm, less than the timeout %v", d.Sub(last), timeout)
		}
	}
	_, err = raw.Read(make([]byte, 1))
	waited := time.Since(last)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v, want the deadline", err)
	}
	if waited < timeout {
		t.Errorf("the wait ended %v after the last arm; the timeout is %v", waited, timeout)
	}
}
