package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldmail/herald/internal/dovecottest"
	"github.com/heraldmail/herald/queue/boltq"
	"github.com/heraldmail/herald/sink"
)

// TestBouncesCommand: a campaign is sent, its bounces arrive in a real
// Dovecot mailbox, herald bounces suppresses the hard bounces on the
// campaign's sending domain, and the next campaign from that domain skips
// them.
func TestBouncesCommand(t *testing.T) {
	t.Parallel()
	srv := dovecottest.Start(t)
	s := startSink(t, sink.Config{})
	host, port, _ := strings.Cut(s.Addr(), ":")
	dir := t.TempDir()
	rcpts := "email\nann@example.org\nbob.gone@gmail.com\ncarol@example.net\nfrank@example.org\nzoe@example.org\n"
	campaign := func(id string) string {
		return fmt.Sprintf(`
[campaign]
id = %q
from = "Herald News <news@example.com>"
subject = "November news"
text = "body.txt"
recipients = "recipients.csv"
[[provider]]
name = "local"
host = %q
port = %s
tls = "none"
[bounces]
url = "imaps://%s/INBOX"
username = %q
password_env = "HERALD_TEST_BOUNCES_PASSWORD"
ca_file = %q
`, id, host, port, srv.IMAPS, srv.User, srv.CAFile)
	}
	for name, content := range map[string]string{
		"recipients.csv": rcpts, "body.txt": "Hello\n",
		"nov.toml": campaign("nov-2026"), "dec.toml": campaign("dec-2026"),
		"wrong.toml": strings.Replace(campaign("nov-2026"), "HERALD_TEST_BOUNCES_PASSWORD", "HERALD_TEST_WRONG_PASSWORD", 1),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"HERALD_TEST_BOUNCES_PASSWORD=" + srv.Password, "HERALD_TEST_WRONG_PASSWORD=not-" + srv.Password}
	conf := filepath.Join(dir, "nov.toml")
	if code, out, errOut := runHerald(t, env, "send", "--config", conf, "--quiet"); code != 0 {
		t.Fatalf("send: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, name := range []string{"postfix-dsn-hard.eml", "gmail-dsn-hard.eml", "office365-ndr.eml", "exim-soft.eml", "out-of-office.eml", "unmatched-dsn.eml"} {
		raw, err := os.ReadFile(filepath.Join("..", "..", "bounce", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		srv.Deliver(raw)
	}

	// A dry run changes nothing.
	code, out, errOut := runHerald(t, env, "bounces", "--config", conf, "--dry-run")
	want := "read 6, hard 3, soft 1, suppressed 3, not bounces 1, unmatched 1, errors 0"
	if code != 0 || !strings.Contains(out, "dry run: nothing changed") || !strings.Contains(out, want) {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, errOut)
	}
	if n := len(srv.Messages("INBOX")); n != 6 {
		t.Fatalf("the dry run moved messages: %d left", n)
	}

	code, out, errOut = runHerald(t, env, "bounces", "--config", conf, "--json")
	var rep bouncesReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("bounces --json: exit %d, %v\n%s\n%s", code, err, out, errOut)
	}
	if rep.Read != 6 || rep.Hard != 3 || rep.Soft != 1 || rep.Suppressed != 3 || rep.NotBounces != 1 || rep.Unmatched != 1 || rep.Errors != 0 || rep.DryRun || len(rep.Messages) != 6 {
		t.Fatalf("summary %+v", rep.Summary)
	}
	if n := len(srv.Messages("INBOX")); n != 1 {
		t.Errorf("INBOX holds %d messages, want the unmatched one", n)
	}
	if n := len(srv.Messages("Processed")); n != 5 {
		t.Errorf("Processed holds %d messages, want 5", n)
	}

	q, err := boltq.Open(filepath.Join(dir, "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := q.Suppressed(context.Background(), "example.com", "ann@example.org", "bob.gone@gmail.com", "carol@example.net", "frank@example.org", "zoe@example.org")
	q.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["ann@example.org"].Reason == "" || got["bob.gone@gmail.com"].Reason == "" || got["carol@example.net"].Reason == "" {
		t.Fatalf("suppressed on example.com: %+v", got)
	}

	// The next campaign from example.com does not write to them.
	code, out, errOut = runHerald(t, env, "send", "--config", filepath.Join(dir, "dec.toml"), "--quiet")
	if code != 0 || !strings.Contains(out, "dec-2026: 2 sent, 0 failed (3 suppressed") {
		t.Fatalf("next campaign: exit %d\n%s\n%s", code, out, errOut)
	}

	// A wrong password (last: Dovecot slows down the logins after it): a clear error, exit 2, the password nowhere.
	code, out, errOut = runHerald(t, env, "bounces", "--config", filepath.Join(dir, "wrong.toml"))
	if code != exitInput || !strings.Contains(errOut, "login refused") || strings.Contains(out+errOut, srv.Password) {
		t.Fatalf("wrong password: exit %d\n%s\n%s", code, out, errOut)
	}
}
