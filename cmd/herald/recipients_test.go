package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/heraldmail/herald/sink"
)

// The recipients file, read right: damage that would make rows vanish, or
// text in another encoding, is refused before anything is sent.

func (c *campaignDir) write(name, content string) {
	c.t.Helper()
	if err := os.WriteFile(filepath.Join(c.dir, name), []byte(content), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// configure adds TOML lines to the [campaign] section.
func (c *campaignDir) configure(lines string) {
	c.t.Helper()
	conf := mustRead(c.t, c.conf)
	c.write("herald.toml", strings.Replace(conf, `recipients = "recipients.csv"`, "recipients = \"recipients.csv\"\n"+lines, 1))
}

func TestStrayQuoteRefused(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	c := newCampaign(t, s, 0, "")
	// The file: 20 rows, line 6 opens a quote it never closes.
	var csv strings.Builder
	csv.WriteString("email,name\n")
	for i := 1; i <= 20; i++ {
		if i == 5 {
			csv.WriteString("user5@example.com,\"Broken quote,City5\n")
			continue
		}
		fmt.Fprintf(&csv, "user%d@example.com,City%d\n", i, i)
	}
	c.write("recipients.csv", csv.String())
	for _, args := range [][]string{
		{"send", "--config", c.conf, "--dry-run"},
		{"preview", "--config", c.conf},
		{"enqueue", "--config", c.conf},
		{"send", "--config", c.conf},
	} {
		code, out, errOut := runHerald(t, nil, args...)
		if code != exitInput {
			t.Errorf("%s: exit %d, want %d\n%s\n%s", args[0], code, exitInput, out, errOut)
		}
		for _, w := range []string{"recipients.csv: line 6:", "swallowing the 15 lines after this one", "fix the file"} {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s %v: the error does not say %q:\n%s", args[0], args[3:], w, errOut)
			}
		}
	}
	if n := s.Stats().Messages; n != 0 {
		t.Fatalf("%d messages sent from a file with rows unread", n)
	}
}

func TestGBKRecipients(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Keep: true})
	c := newCampaign(t, s, 0, "")
	names := []string{"李雷", "韩梅梅", "王芳"}
	var text strings.Builder
	text.WriteString("email,name\n")
	for i, n := range names {
		fmt.Fprintf(&text, "u%d@example.com,%s\n", i, n)
	}
	// What Excel on Chinese Windows saves.
	file, err := simplifiedchinese.GBK.NewEncoder().String(text.String())
	if err != nil {
		t.Fatal(err)
	}
	c.write("recipients.csv", file)
	c.write("body.txt", "亲爱的{{.name}}，欢迎！\n")
	conf := strings.Replace(mustRead(t, c.conf), `subject = "Hi {{.name}}"`, `subject = "你好，{{.name}}"`, 1)
	c.write("herald.toml", conf)

	// Read as UTF-8, the default: refused, with the key to set.
	for _, args := range [][]string{{"send", "--config", c.conf, "--dry-run"}, {"send", "--config", c.conf}} {
		code, out, errOut := runHerald(t, nil, args...)
		if code != exitInput || !strings.Contains(errOut, "recipients.csv: line 2 is not valid UTF-8") || !strings.Contains(errOut, `set campaign.encoding = "gb18030"`) {
			t.Fatalf("%v: exit %d\n%s\n%s", args, code, out, errOut)
		}
	}
	if s.Stats().Sessions != 0 {
		t.Fatal("a GBK file read as UTF-8 reached the server")
	}

	// An encoding herald does not know is a configuration error.
	c.configure(`encoding = "gbk-ish"`)
	if code, _, errOut := runHerald(t, nil, "send", "--config", c.conf); code != exitInput || !strings.Contains(errOut, `campaign.encoding: "gbk-ish" is not an encoding herald knows`) {
		t.Fatalf("unknown encoding: exit %d\n%s", code, errOut)
	}

	c.write("herald.toml", conf)
	c.configure(`encoding = "gbk"`)
	code, out, errOut := runHerald(t, nil, "send", "--config", c.conf)
	if code != 0 || !strings.Contains(out, "3 sent") {
		t.Fatalf("with campaign.encoding = \"gbk\": exit %d\n%s\n%s", code, out, errOut)
	}
	got := map[string]string{}
	for _, m := range s.Messages() {
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		if err != nil {
			t.Fatal(err)
		}
		var body io.Reader = msg.Body
		switch cte := strings.ToLower(msg.Header.Get("Content-Transfer-Encoding")); cte {
		case "quoted-printable":
			body = quotedprintable.NewReader(body)
		case "base64":
			body = base64.NewDecoder(base64.StdEncoding, body)
		}
		b, err := io.ReadAll(body)
		if err != nil {
			t.Fatal(err)
		}
		if ct := msg.Header.Get("Content-Type"); !strings.Contains(strings.ToLower(ct), "charset=utf-8") {
			t.Errorf("Content-Type %q", ct)
		}
		got[m.To[0]] = subject + " | " + strings.TrimSpace(strings.ReplaceAll(string(b), "\r\n", "\n"))
	}
	for i, n := range names {
		to := fmt.Sprintf("u%d@example.com", i)
		if want := "你好，" + n + " | 亲爱的" + n + "，欢迎！"; got[to] != want {
			t.Errorf("%s got %q, want %q", to, got[to], want)
		}
	}
}

func TestChangedRecipientsFileSaysSo(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	c := newCampaign(t, s, 5, "")
	if code, out, errOut := runHerald(t, nil, "send", "--config", c.conf); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	orig := mustRead(t, filepath.Join(c.dir, "recipients.csv"))
	c.write("recipients.csv", orig+"late@example.com,Late\n")
	code, out, errOut := runHerald(t, nil, "send", "--config", c.conf)
	if code != exitInput || !strings.Contains(errOut, "campaign cmdtest was planned from") || !strings.Contains(errOut, "the file has changed since") {
		t.Fatalf("a changed file: exit %d\n%s\n%s", code, out, errOut)
	}
	if s.Received("late@example.com") != 0 || s.Stats().Messages != 5 {
		t.Fatalf("%+v", s.Stats())
	}
	c.write("recipients.csv", orig)
	if code, out, errOut := runHerald(t, nil, "send", "--config", c.conf); code != 0 || !strings.Contains(errOut+out, "resuming cmdtest: 5 sent") {
		t.Fatalf("the file as planned: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestFileChangedWhileSending: herald send delivers while it plans the
// rest of the file. A file that changes meanwhile (here a line added, one
// that cannot be read) stops the plan and the run with it: exit 3, as
// messages went out, with an error that says the file changed and what to
// do; what went out is recorded. Run again on the changed file, it is
// refused (exit 2) and sends nothing; with the file put back, the same
// command sends the rest: every recipient once.
func TestFileChangedWhileSending(t *testing.T) {
	t.Parallel()
	// Slow replies on one connection, a file of 150,000 rows with 2,000
	// addresses: seconds of planning, few messages sent meanwhile.
	slow := startSink(t, sink.Config{Faults: sink.Faults{Latency: 20 * time.Millisecond}})
	const unique, rows = 2000, 150_000
	c := newCampaign(t, slow, 0, "connections = 1")
	var csv strings.Builder
	csv.WriteString("email,name\n")
	for i := range rows {
		fmt.Fprintf(&csv, "u%d@example.com,User %d\n", i%unique, i)
	}
	orig := csv.String()
	c.write("recipients.csv", orig)

	cmd, out, errb := startSend(t, c.conf)
	for deadline := time.Now().Add(time.Minute); slow.Stats().Messages == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("nothing sent in a minute\n%s", errb)
		}
	}
	f, err := os.OpenFile(filepath.Join(c.dir, "recipients.csv"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("late@example.com,\"Open quote\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	err = cmd.Wait()
	code := cmd.ProcessState.ExitCode()
	if strings.Contains(out.String(), "planned cmdtest:") {
		t.Fatalf("the plan ended before the file changed (exit %d, %v): the test needs a larger file\n%s", code, err, errb)
	}
	if code != exitInterrupted || !strings.Contains(errb.String(), "recipients.csv changed while it was being planned") ||
		!strings.Contains(errb.String(), "cmdtest is under way: run the same command again") {
		t.Fatalf("exit %d\n%s", code, errb)
	}
	sent := slow.Stats().Messages
	if line := firstLine(out.String(), "cmdtest: "); !strings.HasPrefix(line, fmt.Sprintf("cmdtest: %d sent, 0 failed", sent)) || sent >= unique {
		t.Fatalf("the server took %d; herald says %q", sent, line)
	}

	code, _, errOut := runHerald(t, nil, "send", "--config", c.conf)
	if code != exitInput || !strings.Contains(errOut, fmt.Sprintf("line %d", rows+2)) || slow.Stats().Messages != sent {
		t.Fatalf("the changed file: exit %d, %d sent (%d before)\n%s", code, slow.Stats().Messages, sent, errOut)
	}

	c.write("recipients.csv", orig)
	fast := startSink(t, sink.Config{})
	pointAt(t, c.conf, slow, fast.Addr())
	code, stdout, errOut := runHerald(t, nil, "send", "--config", c.conf)
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("cmdtest: %d sent, 0 failed", unique)) {
		t.Fatalf("the file put back: exit %d\n%s\n%s", code, firstLine(stdout, "cmdtest: "), errOut)
	}
	for i := range unique {
		rcpt := fmt.Sprintf("u%d@example.com", i)
		if n := slow.Received(rcpt) + fast.Received(rcpt); n != 1 {
			t.Fatalf("%s got %d messages", rcpt, n)
		}
	}
	t.Logf("%d sent before the file changed, %d after it was put back", sent, fast.Stats().Messages)
}
