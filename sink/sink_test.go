package sink

import (
	"errors"
	"io"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
	gosmtp "github.com/wneessen/go-mail/smtp"
)

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t *testing.T, s *Server) *gosmtp.Client {
	t.Helper()
	c, err := gosmtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// send runs one transaction and returns the first error with its stage.
func send(c *gosmtp.Client, to, body string) (string, error) {
	if err := c.Mail("from@example.com"); err != nil {
		return "mail", err
	}
	if err := c.Rcpt(to); err != nil {
		return "rcpt", err
	}
	w, err := c.Data()
	if err != nil {
		return "data", err
	}
	io.WriteString(w, body)
	if err := w.Close(); err != nil {
		return "end", err
	}
	return "", nil
}

func code(err error) int {
	var tp *textproto.Error
	if errors.As(err, &tp) {
		return tp.Code
	}
	return 0
}

func TestAcceptKeepAndMaildir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := start(t, Config{Keep: true, Maildir: dir})
	c := dial(t, s)
	body := "Subject: hi\r\n\r\nhello\r\n"
	for _, to := range []string{"a@example.com", "B@example.com"} {
		if stage, err := send(c, to, body); err != nil {
			t.Fatalf("%s: %v", stage, err)
		}
	}
	if s.Received("a@example.com") != 1 || s.Received("b@example.com") != 1 || s.Stats().Messages != 2 {
		t.Fatalf("stats %+v", s.Stats())
	}
	msgs := s.Messages()
	if len(msgs) != 2 || string(msgs[0].Data) != body || msgs[0].From != "from@example.com" {
		t.Fatalf("kept %+v", msgs)
	}
	files, _ := os.ReadDir(filepath.Join(dir, "new"))
	if len(files) != 2 {
		t.Fatalf("maildir has %d files", len(files))
	}
	data, _ := os.ReadFile(filepath.Join(dir, "new", files[0].Name()))
	if string(data) != body {
		t.Fatalf("maildir content %q", data)
	}
}

func TestRules(t *testing.T) {
	t.Parallel()
	s := start(t, Config{Faults: Faults{Rules: []*Rule{
		{Match: "mail-fail", Stage: StageMail, Code: 451, Message: "never"}, // no recipients yet at MAIL: never matches
		{Match: "nouser@", Stage: StageRcpt, Code: 550, Enhanced: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"},
		{Match: "spam@", Stage: StageData, Code: 554, Message: "DT:SPM"},
		{Match: "once@", Stage: StageRcpt, Code: 451, Enhanced: smtp.EnhancedCode{4, 3, 0}, Message: "try later", Times: 1},
	}}})
	c := dial(t, s)
	if stage, err := send(c, "nouser@example.com", "x\r\n"); stage != "rcpt" || code(err) != 550 || !strings.Contains(err.Error(), "5.1.1") {
		t.Fatalf("%s %v", stage, err)
	}
	c.Reset()
	if stage, err := send(c, "spam@example.com", "x\r\n"); stage != "end" || code(err) != 554 {
		t.Fatalf("%s %v", stage, err)
	}
	if stage, err := send(c, "once@example.com", "x\r\n"); stage != "rcpt" || code(err) != 451 {
		t.Fatalf("first: %s %v", stage, err)
	}
	c.Reset()
	if _, err := send(c, "once@example.com", "x\r\n"); err != nil {
		t.Fatalf("Times=1 must apply once: %v", err)
	}
	st := s.Stats()
	if st.RejectedRcpt != 2 || st.RejectedData != 1 || st.Messages != 1 || s.Received("spam@example.com") != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDrops(t *testing.T) {
	t.Parallel()
	s := start(t, Config{Faults: Faults{Rules: []*Rule{
		{Match: "cut-rcpt@", Stage: StageRcpt, Drop: true},
		{Match: "cut-data@", Stage: StageData, Drop: true},
		{Match: "kept-data@", Stage: StageData, Drop: true, Accept: true},
	}}})
	for _, tt := range []struct {
		to, stage string
		received  int
	}{{"cut-rcpt@example.com", "rcpt", 0}, {"cut-data@example.com", "end", 0}, {"kept-data@example.com", "end", 1}} {
		c := dial(t, s)
		stage, err := send(c, tt.to, "x\r\n")
		if stage != tt.stage || err == nil || code(err) != 0 {
			t.Fatalf("%s: want a dropped connection at %s, got %s %v", tt.to, tt.stage, stage, err)
		}
		if got := s.Received(tt.to); got != tt.received {
			t.Fatalf("%s: received %d", tt.to, got)
		}
	}
	if st := s.Stats(); st.DroppedBeforeData != 1 || st.DroppedAfterData != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestHook(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var stages []Stage
	s := start(t, Config{Faults: Faults{Hook: func(ev Event) Action {
		mu.Lock()
		stages = append(stages, ev.Stage)
		mu.Unlock()
		if ev.Stage == StageRcpt && ev.Rcpt == "hooked@example.com" {
			return Action{Reply: &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "too many recipients"}}
		}
		return Action{}
	}}})
	c := dial(t, s)
	if _, err := send(c, "ok@example.com", "x\r\n"); err != nil {
		t.Fatal(err)
	}
	if stage, err := send(c, "hooked@example.com", "x\r\n"); stage != "rcpt" || code(err) != 452 {
		t.Fatalf("%s %v", stage, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(stages) != 5 || stages[0] != StageMail || stages[2] != StageData || stages[4] != StageRcpt {
		t.Fatalf("hook saw %v", stages)
	}
}

func TestSessionLimits(t *testing.T) {
	t.Parallel()
	s := start(t, Config{MaxSessions: 1, Faults: Faults{AfterMessages: 2}})
	c := dial(t, s)
	if err := c.Hello("client"); err != nil {
		t.Fatal(err)
	}
	// A second session while the first is open gets 421 at EHLO.
	c2, err := gosmtp.Dial(s.Addr())
	if err == nil {
		err = c2.Hello("client2")
		c2.Close()
	}
	if code(err) != 421 {
		t.Fatalf("second session: %v", err)
	}
	for i := range 2 {
		if _, err := send(c, "x@example.com", "x\r\n"); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if stage, err := send(c, "x@example.com", "x\r\n"); stage != "mail" || code(err) != 421 || !strings.Contains(err.Error(), "Too many messages") {
		t.Fatalf("third message: %s %v", stage, err)
	}
	if st := s.Stats(); st.PeakSessions != 1 || st.SessionLimited != 1 || st.Messages != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestThrottle(t *testing.T) {
	t.Parallel()
	s := start(t, Config{Faults: Faults{Throttle: 0.001, ThrottleBurst: 1}})
	c := dial(t, s)
	if _, err := send(c, "x@example.com", "x\r\n"); err != nil {
		t.Fatal(err)
	}
	if stage, err := send(c, "x@example.com", "x\r\n"); stage != "mail" || code(err) != 421 {
		t.Fatalf("above the rate: %s %v", stage, err)
	}
	if s.Stats().Throttled != 1 {
		t.Fatalf("stats %+v", s.Stats())
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	s := start(t, Config{Auth: &Credentials{Username: "u", Password: "p"}, AllowInsecureAuth: true})
	c := dial(t, s)
	// go-smtp answers an unauthenticated MAIL itself: 502 5.7.0.
	if stage, err := send(c, "x@example.com", "x\r\n"); stage != "mail" || code(err) != 502 || !strings.Contains(err.Error(), "authenticate") {
		t.Fatalf("unauthenticated MAIL: %s %v", stage, err)
	}
	if err := c.Auth(gosmtp.PlainAuth("", "u", "wrong", "127.0.0.1", false)); code(err) != 535 {
		t.Fatalf("wrong password: %v", err)
	}
	c = dial(t, s)
	if err := c.Auth(gosmtp.PlainAuth("", "u", "p", "127.0.0.1", false)); err != nil {
		t.Fatal(err)
	}
	if _, err := send(c, "x@example.com", "x\r\n"); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.AuthFailures != 1 || st.Messages != 1 {
		t.Fatalf("stats %+v", st)
	}
}
