package loadgen

import (
	"bufio"
	"errors"
	"io"
	"net/textproto"
	"strings"
	"testing"

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
