package loadgen

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/outcome"
)

func clientOn(s string) *client {
	return &client{r: bufio.NewReader(strings.NewReader(s))}
}

func TestReadReply(t *testing.T) {
	t.Parallel()
	// Gmail's multi-line refusal (shared/reference/smtp-replies.md #5).
	c := clientOn("550-5.1.1 The email account that you tried to reach does not exist.\r\n550-5.1.1 Please try\r\n550 5.1.1 double-checking the recipient's email address.\r\n250 2.1.5 Ok\r\n250\r\n")
	code, err := c.readReply(25)
	var tp *textproto.Error
	if code != 550 || !errors.As(err, &tp) || tp.Code != 550 || !strings.HasPrefix(tp.Msg, "5.1.1 The email account") || strings.Count(tp.Msg, "\n") != 2 {
		t.Fatalf("code %d err %#v", code, err)
	}
	if d := outcome.Classify(outcome.StageRcpt, err); d.Class != outcome.ClassPermanent || d.Enhanced != "5.1.1" {
		t.Fatalf("classified %v %q", d.Class, d.Enhanced)
	}
	if code, err := c.readReply(25); code != 250 || err != nil {
		t.Fatalf("next reply: %d %v", code, err)
	}
	if code, err := c.readReply(250); code != 250 || err != nil {
		t.Fatalf("bare code: %d %v", code, err)
	}
	if _, err := c.readReply(250); !errors.Is(err, io.EOF) || !fatal(err) {
		t.Fatalf("end of stream: %v", err)
	}
	for _, bad := range []string{"25\r\n", "2x0 ok\r\n", "250~ok\r\n", "250-a\r\n251 b\r\n"} {
		if _, err := clientOn(bad).readReply(250); err == nil || isReply(err) || !fatal(err) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
	if _, err := clientOn("421 4.7.0 Try again later, closing connection.\r\n").readReply(250); !isReply(err) || !fatal(err) {
		t.Fatalf("421 ends the session: %v", err)
	}
}

func TestReadEHLO(t *testing.T) {
	t.Parallel()
	c := clientOn("250-mx.example.com greets you\r\n250-SIZE 35882577\r\n250-pipelining\r\n250-AUTH LOGIN PLAIN XOAUTH2\r\n250 STARTTLS\r\n")
	if err := c.readEHLO(); err != nil || !c.pipelining || !c.starttls || !c.auth || !c.authPlain {
		t.Fatalf("%v %+v", err, c)
	}
	c = clientOn("250-localhost\r\n250 AUTH LOGIN\r\n")
	if err := c.readEHLO(); err != nil || c.pipelining || c.starttls || c.authPlain {
		t.Fatalf("%v %+v", err, c)
	}
	var tp *textproto.Error
	if err := clientOn("554 5.7.1 go away\r\n").readEHLO(); !errors.As(err, &tp) || tp.Code != 554 {
		t.Fatalf("refusal: %v", err)
	}
}

// TestReplyBounds: a reply of more than outcome.MaxReplyLines lines, or a
// line longer than outcome.MaxReplyLine, is a protocol error at once (not
// a wait for the timeout while the lines pile up), and the lines it read
// are not kept.
func TestReplyBounds(t *testing.T) {
	t.Parallel()
	many := strings.Repeat("250-x\r\n", outcome.MaxReplyLines)
	if _, err := clientOn(many + "250 ok\r\n").readReply(250); !errors.Is(err, outcome.ErrReplyTooLong) {
		t.Fatalf("%d lines: %v", outcome.MaxReplyLines+1, err)
	}
	if _, err := clientOn(strings.Repeat("550-x\r\n", outcome.MaxReplyLines-1) + "550 no\r\n").readReply(250); !isReply(err) {
		t.Fatalf("%d lines: %v", outcome.MaxReplyLines, err)
	}
	if err := clientOn(many + "250 ok\r\n").readEHLO(); !errors.Is(err, outcome.ErrReplyTooLong) {
		t.Fatalf("EHLO of %d lines: %v", outcome.MaxReplyLines+1, err)
	}
	long := "250 " + strings.Repeat("x", outcome.MaxReplyLine-4) + "\r\n"
	c := &client{r: bufio.NewReaderSize(strings.NewReader(long+"250 "+long), outcome.MaxReplyLine+2)}
	if _, err := c.readReply(250); err != nil {
		t.Fatalf("a line of %d octets: %v", outcome.MaxReplyLine, err)
	}
	if _, err := c.readReply(250); !errors.Is(err, outcome.ErrReplyLineTooLong) {
		t.Fatalf("a longer line: %v", err)
	}
	if d := outcome.Classify(outcome.StageMail, outcome.ErrReplyTooLong); d.Class != outcome.ClassReconnect || !d.Protocol {
		t.Fatalf("classified %+v", d)
	}
}

// TestEndlessReplies runs the load generator against servers that answer
// EHLO, or MAIL, with lines that never end a reply, or a line that never
// ends: each connection fails at once, far within the 20 s timeout.
func TestEndlessReplies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, ehlo, mail string }{
		{"EHLO, endless reply", "250-x\r\n", ""},
		{"EHLO, endless line", "250 x", ""},
		{"MAIL, endless reply", "", "250-x\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			endless := func(c net.Conn, s string) {
				chunk := []byte(strings.Repeat(s, 1000))
				if !strings.HasSuffix(s, "\n") {
					c.Write([]byte(s))
					chunk = []byte(strings.Repeat("x", 64<<10))
				}
				for {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						r := bufio.NewReader(c)
						c.Write([]byte("220 hostile\r\n"))
						for {
							l, err := r.ReadString('\n')
							if err != nil {
								return
							}
							switch {
							case strings.HasPrefix(l, "EHLO") && tc.ehlo != "":
								go io.Copy(io.Discard, r)
								endless(c, tc.ehlo)
								return
							case strings.HasPrefix(l, "EHLO"):
								c.Write([]byte("250 hostile\r\n"))
							case strings.HasPrefix(l, "MAIL"):
								go io.Copy(io.Discard, r)
								endless(c, tc.mail)
								return
							}
						}
					}()
				}
			}()
			start := time.Now()
			res, err := Run(context.Background(), Config{Server: ln.Addr().String(), Connections: 1, Messages: 3, Timeout: 20 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			if res.Messages != 0 || res.Outcomes["reconnect"] == 0 || took > 10*time.Second {
				t.Fatalf("after %s: %d messages, outcomes %v", took, res.Messages, res.Outcomes)
			}
			t.Logf("%s: done in %s, outcomes %v", tc.name, took.Round(time.Millisecond), res.Outcomes)
		})
	}
}
