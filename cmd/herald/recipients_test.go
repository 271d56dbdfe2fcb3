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
