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

// TestBouncesCommand: a campaign is sent with VERP envelope senders, its
// bounces arrive in a real Dovecot mailbox (reports made from the messages
// herald sent, and the samples of bounce/testdata), herald bounces
// suppresses the hard bounces on the campaign's sending domain, and the
// next campaign from that domain skips them.
func TestBouncesCommand(t *testing.T) {
	t.Parallel()
	srv := dovecottest.Start(t)
	s := startSink(t, sink.Config{Keep: true})
	host, port, _ := strings.Cut(s.Addr(), ":")
	dir := t.TempDir()
	rcpts := "email\nann@example.org\nbob.gone@gmail.com\ncarol@example.net\nfrank@example.org\nzoe@example.org\nyan@example.org\nwil@example.org\n"
	campaign := func(id string) string {
		return fmt.Sprintf(`
[campaign]
id = %q
from = "Herald News <news@example.com>"
subject = "November news"
text = "body.txt"
recipients = "recipients.csv"
bounce_address = "bounces@example.com"
verp = true
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
	// Reports on two messages herald sent: one to its VERP envelope sender,
	// one to the plain bounce address (matched by X-Herald-Campaign).
	sent := map[string]sink.Message{}
	for _, m := range s.Messages() {
		sent[m.To[0]] = m
	}
	for rcpt, to := range map[string]string{"zoe@example.org": sent["zoe@example.org"].From, "yan@example.org": "bounces@example.com"} {
		m := sent[rcpt]
		if !strings.HasPrefix(m.From, "bounces+nov-2026+") && rcpt == "zoe@example.org" {
			t.Fatalf("the envelope sender of %s is %q, not a VERP address", rcpt, m.From)
		}
		srv.Deliver(dsn(to, rcpt, m.Data))
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
	want := "read 8, hard 5, soft 1, complaints 0, suppressed 5, not bounces 1, unmatched 1, errors 0"
	if code != 0 || !strings.Contains(out, "dry run: nothing changed") || !strings.Contains(out, want) {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, errOut)
	}
	if n := len(srv.Messages("INBOX")); n != 8 {
		t.Fatalf("the dry run moved messages: %d left", n)
	}

	code, out, errOut = runHerald(t, env, "bounces", "--config", conf, "--json")
	var rep bouncesReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("bounces --json: exit %d, %v\n%s\n%s", code, err, out, errOut)
	}
	if rep.Read != 8 || rep.Hard != 5 || rep.Soft != 1 || rep.Suppressed != 5 || rep.NotBounces != 1 || rep.Unmatched != 1 || rep.Errors != 0 || rep.DryRun || len(rep.Messages) != 8 {
		t.Fatalf("summary %+v", rep.Summary)
	}
	if n := len(srv.Messages("INBOX")); n != 1 {
		t.Errorf("INBOX holds %d messages, want the unmatched one", n)
	}
	if n := len(srv.Messages("Processed")); n != 7 {
		t.Errorf("Processed holds %d messages, want 7", n)
	}

	q, err := boltq.Open(filepath.Join(dir, "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := q.Suppressed(context.Background(), "example.com", "ann@example.org", "bob.gone@gmail.com", "carol@example.net", "frank@example.org", "zoe@example.org", "yan@example.org", "wil@example.org")
	q.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got["ann@example.org"].Reason == "" || got["bob.gone@gmail.com"].Reason == "" || got["carol@example.net"].Reason == "" ||
		!strings.HasPrefix(got["zoe@example.org"].Reason, "hard bounce 5.1.1: 550 5.1.1 <zoe@example.org>") || got["yan@example.org"].Reason == "" {
		t.Fatalf("suppressed on example.com: %+v", got)
	}

	// The next campaign from example.com does not write to them.
	code, out, errOut = runHerald(t, env, "send", "--config", filepath.Join(dir, "dec.toml"), "--quiet")
	if code != 0 || !strings.Contains(out, "dec-2026: 2 sent, 0 failed, 5 skipped (on the suppression list)") {
		t.Fatalf("next campaign: exit %d\n%s\n%s", code, out, errOut)
	}

	// A wrong password (last: Dovecot slows down the logins after it): a clear error, exit 2, the password nowhere.
	code, out, errOut = runHerald(t, env, "bounces", "--config", filepath.Join(dir, "wrong.toml"))
	if code != exitInput || !strings.Contains(errOut, "login refused") || strings.Contains(out+errOut, srv.Password) {
		t.Fatalf("wrong password: exit %d\n%s\n%s", code, out, errOut)
	}
}

// dsn is a Postfix delivery status notification, delivered to to, saying
// that rcpt does not exist, with the returned message.
func dsn(to, rcpt string, returned []byte) []byte {
	return []byte(fmt.Sprintf(`Return-Path: <>
Delivered-To: %[1]s
From: MAILER-DAEMON@mail.example.com (Mail Delivery System)
To: %[1]s
Subject: Undelivered Mail Returned to Sender
Message-Id: <dsn.%[2]s@mail.example.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

This is the mail system at host mail.example.com.

<%[2]s>: host mx.example.org[192.0.2.25] said: 550 5.1.1 <%[2]s>: User unknown

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.example.com

Final-Recipient: rfc822; %[2]s
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <%[2]s>: Recipient address rejected: User unknown

--B
Content-Type: message/rfc822

%[3]s
--B--
`, to, rcpt, returned))
}

// arf is an ARF feedback report (RFC 5965) from a provider's feedback
// loop, delivered to to: rcpt marked the returned message as spam.
func arf(to, rcpt string, returned []byte) []byte {
	return []byte(fmt.Sprintf(`Return-Path: <>
Delivered-To: %[1]s
From: Feedback Loop <fbl@mail.example.net>
To: %[1]s
Subject: FW: November news
Message-Id: <arf.%[2]s@mail.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: text/plain

This is an email abuse report for an email message received from IP 192.0.2.1.

--F
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Mail-From: <bounces@example.com>
Original-Rcpt-To: <%[2]s>
Arrival-Date: Mon, 07 Dec 2026 10:00:00 +0000

--F
Content-Type: message/rfc822

%[3]s
--F--
`, to, rcpt, returned))
}

// TestComplaintFromARF: a feedback report in the bounce mailbox (a real
// Dovecot, over IMAP) suppresses the complainer and counts the complaint;
// one complaint in 20 messages (5%) is past the default
// complaint_threshold (0.3%), so the campaign is paused, and herald status
// shows the rate.
func TestComplaintFromARF(t *testing.T) {
	t.Parallel()
	srv := dovecottest.Start(t)
	s := startSink(t, sink.Config{Keep: true})
	c := newCampaign(t, s, 20, "")
	os.WriteFile(c.conf, []byte(mustRead(t, c.conf)+fmt.Sprintf("[bounces]\nurl = \"imaps://%s/INBOX\"\nusername = %q\npassword_env = \"HERALD_TEST_BOUNCES_PASSWORD\"\nca_file = %q\n", srv.IMAPS, srv.User, srv.CAFile)), 0o644)
	env := []string{"HERALD_TEST_BOUNCES_PASSWORD=" + srv.Password}
	if code, out, e := runHerald(t, env, "send", "--config", c.conf, "--quiet"); code != 0 {
		t.Fatalf("send: %d\n%s\n%s", code, out, e)
	}
	var returned []byte
	for _, m := range s.Messages() {
		if m.To[0] == "u7@example.com" {
			returned = m.Data
		}
	}
	srv.Deliver(arf("abuse@example.com", "u7@example.com", returned))
	code, out, e := runHerald(t, env, "bounces", "--config", c.conf)
	if code != 0 || !strings.Contains(out, "complaints 1, suppressed 1") || !strings.Contains(e, "paused campaign cmdtest: 1 complaints for 20 messages sent (5.00%), above complaint_threshold 0.30%") {
		t.Fatalf("bounces: exit %d\n%s\n%s", code, out, e)
	}
	code, out, _ = runHerald(t, env, "suppress", "list", "--config", c.conf)
	if code != 0 || !strings.Contains(out, "u7@example.com") || !strings.Contains(out, "complaint: feedback-type abuse from ExampleFBL/1.0") {
		t.Fatalf("the complainer is not suppressed: %s", out)
	}
	var st statusReport
	code, out, _ = runHerald(t, env, "status", "--config", c.conf, "--json")
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Status != "paused" || st.Complaints != 1 || st.ComplaintRate != 0.05 {
		t.Fatalf("status: %s", out)
	}
	// The same report read again counts once.
	srv.Deliver(arf("abuse@example.com", "u7@example.com", returned))
	if code, out, _ := runHerald(t, env, "bounces", "--config", c.conf); code != 0 || !strings.Contains(out, "complaints 1") {
		t.Fatalf("again: %s", out)
	}
	if code, out, _ = runHerald(t, env, "status", "--config", c.conf, "--json"); json.Unmarshal([]byte(out), &st) != nil || st.Complaints != 1 {
		t.Fatalf("a complaint read twice counted twice: %s", out)
	}
}
