package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/sink"
)

// TestMessageTooLargeExits2: a template that renders ~1 GB per message is
// refused before the first message, with exit 2 and an error naming the
// key and the size, in seconds (it took 1.5 GB and 40 s before).
func TestMessageTooLargeExits2(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	c := newCampaign(t, s, 5, "")
	if err := os.WriteFile(filepath.Join(c.dir, "body.txt"), []byte("{{range 100000}}"+strings.Repeat("0123456789", 1000)+"{{end}}"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, out, errOut := runHerald(t, nil, "send", "--config", c.conf)
	if code != exitInput || !strings.Contains(errOut, "line 2, the first recipient: the message is larger than campaign.max_message_size = 10MB (10485760 bytes); nothing was sent") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v", d)
	}
	if st := s.Stats(); st.Sessions != 0 {
		t.Fatalf("%d sessions", st.Sessions)
	}
}

// TestSMTPUTF8WarningAndFailure: a non-ASCII local part is warned of by
// line when planning (a warning: the dry run still exits 0); through a
// server without SMTPUTF8 that recipient fails with the reason, the others
// go.
func TestSMTPUTF8WarningAndFailure(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	c := newCampaign(t, s, 3, "")
	if err := os.WriteFile(filepath.Join(c.dir, "recipients.csv"), []byte("email,name\na@example.com,A\n用户@example.com,U\nb@例子.测试,B\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runHerald(t, nil, "send", "--config", c.conf, "--dry-run")
	if code != exitOK || !strings.Contains(errOut, "recipients.csv: line 3: warning: 用户@example.com: the part before @ is not ASCII") || !strings.Contains(out, "3 would be sent, 0 invalid") {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runHerald(t, nil, "send", "--config", c.conf)
	if code != exitFailed || !strings.Contains(out, "2 sent, 1 failed") || !strings.Contains(errOut, "line 3: warning:") {
		t.Fatalf("send: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runHerald(t, nil, "report", "--config", c.conf, "--failed")
	if code != 0 || !strings.Contains(out, "用户@example.com,failed,0,local,") || !strings.Contains(out, "needs SMTPUTF8") {
		t.Fatalf("report: exit %d\n%s", code, out)
	}
	if s.Received("b@xn--fsqu00a.xn--0zwm56d") != 1 {
		t.Fatal("the IDN recipient was not sent as A-labels")
	}
}
