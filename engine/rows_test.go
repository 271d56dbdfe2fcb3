package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldmail/herald/engine"
	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/sink"
)

// The embedded store keeps where each row is in the file, not the row:
// every message is still made of its own row's fields, whatever the file
// holds around them (a byte order mark, CRLF, quoted commas and quotes,
// a field over two lines, blank lines, rows left out as invalid or
// duplicate).
func TestRowsReadBackFromFile(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Keep: true})
	var csv strings.Builder
	csv.WriteString("\ufeffemail,name,note\r\n")
	want := map[string]string{} // address → "name|note"
	for i := range 700 {
		email := fmt.Sprintf("r%d@example.com", i)
		name, note := fmt.Sprintf("Name %d", i), fmt.Sprintf("note %d", i)
		switch i % 7 {
		case 1:
			name = fmt.Sprintf("Doe, Jane %d", i)
			fmt.Fprintf(&csv, "%s,\"%s\",%s\r\n", email, name, note)
		case 2:
			note = fmt.Sprintf("say \"hi\"\nline two %d", i)
			fmt.Fprintf(&csv, "  %s  ,%s,\"say \"\"hi\"\"\nline two %d\"\r\n", email, name, i)
		case 3:
			csv.WriteString("\r\nnot-an-address,x,y\r\n") // a blank line, an invalid row
			fmt.Fprintf(&csv, "%s,%s,%s\r\n", email, name, note)
		case 4:
			name = fmt.Sprintf("Zoë 李雷 %d", i)
			fmt.Fprintf(&csv, "%s,%s,%s\r\n", email, name, note)
			fmt.Fprintf(&csv, "%s,Duplicate,dup\r\n", strings.ToUpper(email))
		default:
			fmt.Fprintf(&csv, "%s,%s,%s\r\n", email, name, note)
		}
		want[email] = name + "|" + note
	}
	b := setup(t, campaignSpec{
		csv:       csv.String(),
		subject:   "For {{.name}}",
		text:      "<<{{.email}}|{{.name}}|{{.note}}>>\n",
		providers: providerTOML("local", s, "connections = 4"),
	})
	if res := b.plan(); res.Added != 700 {
		t.Fatalf("planned %+v", res)
	}
	for _, j := range b.jobs() {
		if j.Fields != nil || j.Row.Size == 0 {
			t.Fatalf("job %d stored with fields %q, row %+v: want its place in the file only", j.Seq, j.Fields, j.Row)
		}
	}
	sum, err := b.run()
	if err != nil || sum.Sent != 700 {
		t.Fatalf("%+v %v", sum, err)
	}
	msgs := s.Messages()
	if len(msgs) != 700 {
		t.Fatalf("server got %d messages", len(msgs))
	}
	for _, m := range msgs {
		head, body, _ := strings.Cut(strings.ReplaceAll(string(m.Data), "\r\n", "\n"), "\n\n")
		if strings.Contains(head, "quoted-printable") {
			b, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(body)))
			if err != nil {
				t.Fatal(err)
			}
			body = string(b)
		}
		w, ok := want[m.To[0]]
		if !ok {
			t.Fatalf("message to %s", m.To[0])
		}
		if !strings.Contains(body, "<<"+m.To[0]+"|"+w+">>") {
			t.Fatalf("message to %s does not carry its row %q:\n%s", m.To[0], w, body)
		}
		delete(want, m.To[0])
	}
}

// A row changed after the campaign was planned (the file edited while it
// is sent) is never sent with what the row says now: the run stops and
// the campaign is paused, naming the file and the line; nothing is sent to
// that row.
func TestChangedRowNotSent(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Keep: true})
	b := setup(t, campaignSpec{recipients: addresses(300, "c"), text: "Dear {{.name}}\n", providers: providerTOML("local", s, "")})
	b.plan()
	path := filepath.Join(b.dir, "recipients.csv")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Line 41, c39@example.com: another name of the same length, and
	// the addresses of two rows swapped: both would go to the wrong
	// person if the rows were taken from the file as it is now.
	changed := bytes.Replace(orig, []byte("c39@example.com,Name 39\n"), []byte("c39@example.com,Evil 39\n"), 1)
	if bytes.Equal(changed, orig) {
		t.Fatal("the test's row is not in the file")
	}
	if err := os.WriteFile(path, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = b.run()
	var stopped *engine.StoppedError
	if !errors.As(err, &stopped) {
		t.Fatalf("run: want it stopped, got %v", err)
	}
	for _, w := range []string{path + ": line 41 is not the row the campaign was planned from", "nothing was sent to it", "put the file back"} {
		if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(w)) {
			t.Errorf("%q does not say %q", err, w)
		}
	}
	for _, m := range s.Messages() {
		if m.To[0] == "c39@example.com" || bytes.Contains(m.Data, []byte("Evil")) {
			t.Fatalf("sent to the changed row: %s", m.Data)
		}
	}
	ctx := context.Background()
	c, err := b.q.Campaign(ctx, "test")
	if err != nil || c.Status != queue.Paused || !strings.Contains(c.Reason, "line 41") {
		t.Fatalf("campaign %+v %v: want it paused, naming line 41", c, err)
	}
	if j := b.jobs()["c39@example.com"]; j.State != queue.Pending {
		t.Fatalf("the changed row's job is %s, want pending", j.State)
	}
	// Put back, it is sent as planned.
	if err := os.WriteFile(path, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := b.q.SetStatus(ctx, "test", queue.Active, ""); err != nil {
		t.Fatal(err)
	}
	if sum, err := b.run(); err != nil || sum.Counts.Sent != 300 {
		t.Fatalf("%+v %v", sum, err)
	}
	if n := len(s.Messages()); n != 300 {
		t.Fatalf("server got %d messages, want 300", n)
	}
}
