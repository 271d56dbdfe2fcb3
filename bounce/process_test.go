package bounce

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/internal/dovecottest"
	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/queue/boltq"
	"github.com/heraldmail/herald/verp"
)

const (
	testCampaign = "nov-2026"
	testList     = "example.com" // the domain of the campaign's From
	bounceAddr   = "bounces@example.com"
)

// samples is every message of testdata, by file name.
var samples = []string{
	"postfix-dsn-hard.eml", "gmail-dsn-hard.eml", "office365-ndr.eml", "exchange-legacy-text.eml",
	"qmail-hard.eml", "sendmail-old.eml", "postfix-qq-mailbox-not-found.eml",
	"exim-soft.eml", "postfix-dsn-mailbox-full.eml",
	"postfix-dsn-delayed.eml", "exim-delay.eml", "out-of-office.eml",
	"unmatched-dsn.eml",
}

// hardKeys are the recipients the hard bounces among samples name.
var hardKeys = []string{"ann@example.org", "bob.gone@gmail.com", "carol@example.net", "dave.old@corp.example.net",
	"erin@example.net", "ivan@example.net", "10001234@qq.com"}

type bundle struct {
	srv *dovecottest.Server
	q   *boltq.Queue
}

func setup(t *testing.T) bundle {
	t.Helper()
	srv := dovecottest.Start(t)
	q, err := boltq.Open(filepath.Join(t.TempDir(), "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	createCampaign(t, q, sampleRecipients(t)...)
	return bundle{srv: srv, q: q}
}

// createCampaign stores the test campaign with a job for each address.
func createCampaign(t testing.TB, q *boltq.Queue, addrs ...string) {
	t.Helper()
	ctx := context.Background()
	if _, err := q.CreateCampaign(ctx, queue.Campaign{ID: testCampaign, List: testList, Status: queue.Active, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var jobs []queue.Job
	for i, a := range addrs {
		jobs = append(jobs, queue.Job{Seq: uint64(i + 2), Key: strings.ToLower(a), Email: a})
	}
	if _, err := q.Enqueue(ctx, testCampaign, jobs); err != nil {
		t.Fatal(err)
	}
}

var addressRE = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]+`)

// sampleRecipients are the addresses the samples in testdata name: the
// test campaign mailed them all.
func sampleRecipients(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.eml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("testdata: %v", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addressRE.FindAllString(string(b), -1) {
			if k := strings.ToLower(a); !seen[k] {
				seen[k] = true
				out = append(out, a)
			}
		}
	}
	return out
}

func (b bundle) account(url string) Account {
	return Account{URL: url, Username: b.srv.User, Password: b.srv.Password, CAFile: b.srv.CAFile, Timeout: 10 * time.Second}
}

// run opens the mailbox, processes it and closes it.
func (b bundle) run(t *testing.T, a Account, opts Options) Summary {
	t.Helper()
	ctx := context.Background()
	mb, err := Open(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if opts.BounceAddresses == nil {
		opts.BounceAddresses = []string{"news@example.com", bounceAddr}
	}
	sum, err := Process(ctx, mb, b.q, QueueLists(b.q), opts)
	if err != nil {
		t.Fatalf("process: %v (summary %+v)", err, sum)
	}
	if err := mb.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return sum
}

func (b bundle) deliverSamples(t *testing.T) {
	for _, s := range samples {
		b.srv.Deliver(readSample(t, s))
	}
}

// suppressed returns the reasons of the keys on the test list.
func (b bundle) suppressed(t *testing.T, keys ...string) map[string]queue.Suppression {
	t.Helper()
	got, err := b.q.Suppressed(context.Background(), testList, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// checkTLSLogins checks in the server's log that every login was over TLS
// (Dovecot accepts a plain-text login from 127.0.0.1, which it counts as
// secure, so the log is the proof that STARTTLS and STLS were used).
func (b bundle) checkTLSLogins(t *testing.T) {
	t.Helper()
	n := 0
	for _, l := range strings.Split(b.srv.Log(), "\n") {
		if strings.Contains(l, "-login: Info: Login:") {
			n++
			if !strings.Contains(l, ", TLS,") {
				t.Errorf("a login without TLS: %s", l)
			}
		}
	}
	if n == 0 {
		t.Error("no login in the server's log")
	}
}

func counts(s Summary) string {
	return fmt.Sprintf("read %d hard %d soft %d suppressed %d not %d unmatched %d errors %d",
		s.Read, s.Hard, s.Soft, s.Suppressed, s.NotBounces, s.Unmatched, s.Errors)
}

func bodies(ms []dovecottest.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, string(bytes.ReplaceAll(m.Data, []byte("\r\n"), []byte("\n"))))
	}
	sort.Strings(out)
	return out
}

// checkAfterRun checks the outcome of processing every sample once.
func (b bundle) checkAfterRun(t *testing.T, sum Summary) {
	t.Helper()
	want := "read 13 hard 7 soft 2 suppressed 7 not 3 unmatched 1 errors 0"
	if got := counts(sum); got != want {
		t.Errorf("summary %s, want %s\n%+v", got, want, sum.Messages)
	}
	got := b.suppressed(t, append(hardKeys, "frank@example.org", "kim@example.org", "someone@example.org", "gina@example.org")...)
	for _, k := range hardKeys {
		e, ok := got[k]
		if !ok {
			t.Errorf("%s is not suppressed", k)
			continue
		}
		if !strings.HasPrefix(e.Reason, "hard bounce 5.") {
			t.Errorf("%s: reason %q", k, e.Reason)
		}
	}
	if e := got["ann@example.org"]; !strings.Contains(e.Reason, "hard bounce 5.1.1: 550 5.1.1 <ann@example.org>: Recipient address rejected: User unknown") {
		t.Errorf("ann's reason %q", e.Reason)
	}
	for _, k := range []string{"frank@example.org", "kim@example.org", "someone@example.org", "gina@example.org"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s is suppressed (%q)", k, got[k].Reason)
		}
	}
}

// TestIMAPProcess processes every sample over IMAPS: hard bounces suppress,
// everything recognised moves to Processed (created), the unmatched report
// stays in the INBOX unread.
func TestIMAPProcess(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.deliverSamples(t)
	sum := b.run(t, b.account("imaps://"+b.srv.IMAPS+"/INBOX"), Options{})
	b.checkAfterRun(t, sum)

	inbox := b.srv.Messages("INBOX")
	if len(inbox) != 1 || !bytes.Equal(bytes.ReplaceAll(inbox[0].Data, []byte("\r\n"), []byte("\n")), readSample(t, "unmatched-dsn.eml")) {
		t.Fatalf("INBOX holds %d messages, want only the unmatched one", len(inbox))
	}
	if strings.ContainsAny(inbox[0].Flags, "ST") {
		t.Errorf("the unmatched message was marked (flags %q)", inbox[0].Flags)
	}
	var want []string
	for _, s := range samples[:len(samples)-1] {
		want = append(want, string(readSample(t, s)))
	}
	sort.Strings(want)
	if got := bodies(b.srv.Messages("Processed")); strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("Processed holds %d messages, want the %d recognised ones", len(got), len(want))
	}

	// Again: nothing left but the unmatched report, nothing changes.
	sum = b.run(t, b.account("imaps://"+b.srv.IMAPS+"/INBOX"), Options{})
	if got, want := counts(sum), "read 1 hard 0 soft 0 suppressed 0 not 0 unmatched 1 errors 0"; got != want {
		t.Errorf("second run: %s, want %s", got, want)
	}
}

// TestIMAPDelete reads over imap:// (STARTTLS) and deletes what it
// processed instead of moving it.
func TestIMAPDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.deliverSamples(t)
	a := b.account("imap://" + b.srv.IMAP)
	a.Delete = true
	sum := b.run(t, a, Options{})
	b.checkAfterRun(t, sum)
	if n := len(b.srv.Messages("INBOX")); n != 1 {
		t.Errorf("INBOX holds %d messages, want 1 (the unmatched one)", n)
	}
	if n := len(b.srv.Messages("Processed")); n != 0 {
		t.Errorf("Processed holds %d messages; nothing should move with delete", n)
	}
	b.checkTLSLogins(t)
}

// TestPOP3 processes every sample over pop3s and over pop3 with STLS:
// processed messages are deleted, the unmatched one stays.
func TestPOP3(t *testing.T) {
	t.Parallel()
	for _, tls := range []string{"pop3s", "pop3"} {
		t.Run(tls, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.deliverSamples(t)
			host := b.srv.POP3S
			if tls == "pop3" {
				host = b.srv.POP3
			}
			sum := b.run(t, b.account(tls+"://"+host), Options{})
			b.checkAfterRun(t, sum)
			b.checkTLSLogins(t)
			inbox := b.srv.Messages("INBOX")
			if len(inbox) != 1 || !strings.Contains(string(inbox[0].Data), "Invoice 1127") {
				t.Fatalf("INBOX holds %d messages, want only the unmatched one", len(inbox))
			}
		})
	}
}

// softBounce is the mailbox-full report for kim with its own Message-ID.
func softBounce(t *testing.T, n int) []byte {
	raw := readSample(t, "postfix-dsn-mailbox-full.eml")
	return bytes.Replace(raw, []byte("<20261125120000.FULL@mail.example.com>"), fmt.Appendf(nil, "<20261125120000.FULL%d@mail.example.com>", n), 1)
}

// TestSoftLimit: a recipient is suppressed at the soft_limit-th distinct
// soft bounce; a copy of a bounce already counted does not count again.
func TestSoftLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.account("pop3s://" + b.srv.POP3S)
	for i, step := range []struct {
		raw        []byte
		count      int
		suppressed bool
	}{
		{softBounce(t, 1), 1, false},
		{softBounce(t, 1), 1, false}, // the same report delivered twice
		{softBounce(t, 2), 2, false},
		{softBounce(t, 3), 3, true},
	} {
		b.srv.Deliver(step.raw)
		sum := b.run(t, a, Options{SoftLimit: 3})
		if sum.Soft != 1 || len(sum.Messages) != 1 || len(sum.Messages[0].Recipients) != 1 {
			t.Fatalf("step %d: %s %+v", i, counts(sum), sum.Messages)
		}
		rr := sum.Messages[0].Recipients[0]
		if rr.SoftCount != step.count || rr.Suppressed != step.suppressed || rr.Address != "kim@example.org" || rr.List != testList {
			t.Errorf("step %d: %+v, want count %d suppressed %v", i, rr, step.count, step.suppressed)
		}
		_, on := b.suppressed(t, "kim@example.org")["kim@example.org"]
		if on != step.suppressed {
			t.Errorf("step %d: on the list: %v, want %v", i, on, step.suppressed)
		}
	}
	e := b.suppressed(t, "kim@example.org")["kim@example.org"]
	if e.Reason != "3 soft bounces, last 5.2.2: 552 5.2.2 <kim@example.org>: Mailbox full" {
		t.Errorf("reason %q", e.Reason)
	}
}

// crashingBox is a real mailbox whose marking fails, as if herald died
// after storing the outcome and before marking the message.
type crashingBox struct{ Mailbox }

var errCrash = errors.New("simulated crash before marking")

func (crashingBox) Done(context.Context, string) error { return errCrash }

// TestCrashBeforeMark: a run that stored the outcome but did not mark the
// message is run again; the message is processed again without counting
// its soft bounce twice, and then marked.
func TestCrashBeforeMark(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	url := "imaps://" + b.srv.IMAPS + "/INBOX"
	b.srv.Deliver(softBounce(t, 1))
	b.srv.Deliver(readSample(t, "postfix-dsn-hard.eml"))

	mb, err := Open(ctx, b.account(url))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := Process(ctx, crashingBox{mb}, b.q, QueueLists(b.q), Options{BounceAddresses: []string{bounceAddr}, SoftLimit: 2})
	if !errors.Is(err, errCrash) {
		t.Fatalf("process: %v, want the crash", err)
	}
	mb.Close()
	if sum.Read != 1 || sum.Errors != 1 {
		t.Fatalf("crashed run: %s", counts(sum))
	}
	if n := len(b.srv.Messages("INBOX")); n != 2 {
		t.Fatalf("INBOX holds %d messages after the crash, want 2", n)
	}

	// The next run sees the soft bounce again: still one bounce (limit 2,
	// so a double count would suppress kim).
	sum = b.run(t, b.account(url), Options{SoftLimit: 2})
	if got, want := counts(sum), "read 2 hard 1 soft 1 suppressed 1 not 0 unmatched 0 errors 0"; got != want {
		t.Fatalf("run after the crash: %s, want %s", got, want)
	}
	if rr := sum.Messages[0].Recipients[0]; rr.SoftCount != 1 || rr.Suppressed {
		t.Errorf("after the crash: %+v, want count 1, not suppressed", rr)
	}
	if _, on := b.suppressed(t, "kim@example.org")["kim@example.org"]; on {
		t.Error("kim was suppressed: the re-processed bounce counted twice")
	}
	if n := len(b.srv.Messages("INBOX")); n != 0 {
		t.Errorf("INBOX holds %d messages, want 0", n)
	}
	// A second distinct bounce now reaches the limit.
	b.srv.Deliver(softBounce(t, 2))
	sum = b.run(t, b.account(url), Options{SoftLimit: 2})
	if rr := sum.Messages[0].Recipients[0]; rr.SoftCount != 2 || !rr.Suppressed {
		t.Errorf("second bounce: %+v, want count 2, suppressed", rr)
	}
}

// TestDryRun changes nothing: no suppression, no message moved.
func TestDryRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.deliverSamples(t)
	sum := b.run(t, b.account("imaps://"+b.srv.IMAPS), Options{DryRun: true})
	if got, want := counts(sum), "read 13 hard 7 soft 2 suppressed 7 not 3 unmatched 1 errors 0"; got != want {
		t.Errorf("dry run: %s, want %s", got, want)
	}
	if got := b.suppressed(t, hardKeys...); len(got) != 0 {
		t.Errorf("dry run suppressed %v", got)
	}
	if n := len(b.srv.Messages("INBOX")); n != len(samples) {
		t.Errorf("INBOX holds %d messages after a dry run, want %d", n, len(samples))
	}
	for _, m := range b.srv.Messages("INBOX") {
		if strings.ContainsAny(m.Flags, "ST") {
			t.Errorf("dry run marked %s (%q)", m.Name, m.Flags)
		}
	}
}

// TestLoginErrors: a wrong password is a clear error that does not carry
// the password; a server certificate not signed by a trusted CA is refused.
// (Dovecot delays each further failed login from an address, so each
// protocol has its own server and one wrong password.)
func TestLoginErrors(t *testing.T) {
	t.Parallel()
	for _, proto := range []string{"imap", "pop3"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := context.Background()
			plain, implicit := "imap://"+b.srv.IMAP, "imaps://"+b.srv.IMAPS
			if proto == "pop3" {
				plain, implicit = "pop3://"+b.srv.POP3, "pop3s://"+b.srv.POP3S
			}
			a := b.account(plain)
			a.Password = "wrong-" + b.srv.Password
			_, err := Open(ctx, a)
			if !errors.Is(err, ErrLogin) {
				t.Fatalf("%s: %v, want ErrLogin", plain, err)
			}
			if strings.Contains(err.Error(), a.Password) || strings.Contains(err.Error(), b.srv.Password) {
				t.Errorf("%s: the error shows the password: %v", plain, err)
			}
			if !strings.Contains(err.Error(), "login refused") || !strings.Contains(err.Error(), plain) {
				t.Errorf("%s: unclear error %v", plain, err)
			}
			for _, url := range []string{plain, implicit} {
				a := b.account(url)
				a.CAFile = ""
				_, err = Open(ctx, a)
				if err == nil || !strings.Contains(err.Error(), "certificate") {
					t.Errorf("%s without the test CA: %v, want a certificate error", url, err)
				}
			}
		})
	}
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"imaps://imap.example.com/INBOX":   "imaps://imap.example.com:993/INBOX",
		"imaps://imap.example.com":         "imaps://imap.example.com:993/INBOX",
		"imap://127.0.0.1:1143/Bounces":    "imap://127.0.0.1:1143/Bounces",
		"pop3s://pop.example.com":          "pop3s://pop.example.com:995",
		"pop3://[::1]:1110":                "pop3://[::1]:1110",
		"imaps://u@imap.example.com/a%20b": "imaps://imap.example.com:993/a b",
	} {
		e, err := ParseURL(in)
		if err != nil || e.String() != want {
			t.Errorf("ParseURL(%q) = %v, %v; want %s", in, e, err, want)
		}
	}
	for in, want := range map[string]string{
		"http://example.com":            "scheme",
		"imaps://u:hunter2@example.com": "password_env",
		"pop3s://pop.example.com/INBOX": "one mailbox",
		"imaps:///INBOX":                "no host",
	} {
		_, err := ParseURL(in)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ParseURL(%q) = %v, want an error about %s", in, err, want)
		}
	}
}

func TestDecodeVERP(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ addr, campaign, rcpt string }{
		{"bounces+nov-2026+ann=example.org@example.com", "nov-2026", "ann@example.org"},
		{"Bounces+nov-2026+ann.lee+news=mail.example.org@EXAMPLE.com", "nov-2026", "ann.lee+news@mail.example.org"},
		{"bounces+x+a=b=c.example@example.com", "x", "a=b@c.example"},
		{"bounces@example.com", "", ""},
		{"bounces+nov-2026@example.com", "", ""},
		{"bounces+nov-2026+ann=example.org@example.net", "", ""},
		{"other+nov-2026+ann=example.org@example.com", "", ""},
		{"bounces+nov-2026+ann@example.com", "", ""},
	} {
		c, r, err := decodeVERP(tt.addr, bounceAddr)
		if c != tt.campaign || r != tt.rcpt || (err == nil) != (tt.campaign != "") {
			t.Errorf("decodeVERP(%q) = %q, %q, %v; want %q, %q", tt.addr, c, r, err, tt.campaign, tt.rcpt)
		}
	}
	// What the engine encodes as the envelope sender, match reads back
	// from a report delivered to it.
	for _, rcpt := range []string{"ann@example.org", "o'brien+tag@mail.example.net", "x=y@example.org"} {
		env, err := verp.Encode(bounceAddr, testCampaign, rcpt)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := match(&Report{Envelope: []string{bounceAddr, env}}, bounceAddr)
		if err != nil || len(ms) != 1 || ms[0] != (Match{Campaign: testCampaign, Recipient: rcpt, By: "verp"}) {
			t.Errorf("match of %s = %+v, %v", env, ms, err)
		}
	}
}

// TestNoMessageID: a report without a Message-ID is known by a hash of
// its content, the same over POP3 and IMAP, so seeing it again through
// the other protocol after a crash does not count it twice.
func TestNoMessageID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	raw := bytes.Replace(softBounce(t, 1), []byte("Message-Id: <20261125120000.FULL1@mail.example.com>\n"), nil, 1)
	if bytes.Contains(raw, []byte("Message-Id")) {
		t.Fatal("the sample still has its Message-ID")
	}
	b.srv.Deliver(raw)
	mb, err := Open(ctx, b.account("pop3s://"+b.srv.POP3S))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := Process(ctx, crashingBox{mb}, b.q, QueueLists(b.q), Options{BounceAddresses: []string{bounceAddr}})
	mb.Close()
	if !errors.Is(err, errCrash) || !strings.HasPrefix(sum.Messages[0].BounceID, "sha256:") {
		t.Fatalf("crashed run: %v %+v", err, sum.Messages)
	}
	sum = b.run(t, b.account("imaps://"+b.srv.IMAPS), Options{})
	if rr := sum.Messages[0].Recipients[0]; rr.SoftCount != 1 {
		t.Errorf("over IMAP after POP3: %+v, want count 1", rr)
	}
}

// BenchmarkProcess processes b.N hard bounces (distinct recipients) from a
// real Dovecot over IMAPS and POP3S into a bbolt queue, moving or deleting
// each: the whole cost per report, round trips included.
func BenchmarkProcess(b *testing.B) {
	for _, proto := range []string{"imaps", "pop3s"} {
		b.Run(proto, func(b *testing.B) {
			srv := dovecottest.Start(b)
			q, err := boltq.Open(filepath.Join(b.TempDir(), "herald.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			ctx := context.Background()
			addrs := make([]string, b.N)
			for i := range addrs {
				addrs[i] = fmt.Sprintf("u%d@example.org", i)
			}
			createCampaign(b, q, addrs...)
			raw, err := os.ReadFile(filepath.Join("testdata", "postfix-dsn-hard.eml"))
			if err != nil {
				b.Fatal(err)
			}
			for i := range b.N {
				m := bytes.ReplaceAll(raw, []byte("ann=example.org"), fmt.Appendf(nil, "u%d=example.org", i))
				m = bytes.Replace(m, []byte("4Xk2Lr0sQmz9vBn@"), fmt.Appendf(nil, "%d@", i), 1)
				srv.Deliver(m)
			}
			host := srv.IMAPS
			if proto == "pop3s" {
				host = srv.POP3S
			}
			a := Account{URL: proto + "://" + host, Username: srv.User, Password: srv.Password, CAFile: srv.CAFile}
			b.ResetTimer()
			mb, err := Open(ctx, a)
			if err != nil {
				b.Fatal(err)
			}
			sum, err := Process(ctx, mb, q, QueueLists(q), Options{BounceAddresses: []string{bounceAddr}})
			if err == nil {
				err = mb.Close()
			}
			if err != nil || sum.Hard != b.N || sum.Suppressed != b.N {
				b.Fatalf("%v: %s", err, counts(sum))
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// A report that names someone the campaign never mailed (anyone can send
// the bounce mailbox a report quoting the campaign id of a message they
// received) suppresses nobody and stays in the mailbox, unmatched.
func TestForgedReportForAStranger(t *testing.T) {
	t.Parallel()
	srv := dovecottest.Start(t)
	q, err := boltq.Open(filepath.Join(t.TempDir(), "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	b := bundle{srv: srv, q: q}
	createCampaign(t, q, "someone-else@example.org")   // not ann
	srv.Deliver(readSample(t, "postfix-dsn-hard.eml")) // a hard bounce for ann, by VERP
	sum := b.run(t, b.account(fmt.Sprintf("imaps://%s/INBOX", srv.IMAPS)), Options{SoftLimit: 3})
	if sum.Unmatched != 1 || sum.Hard != 0 || sum.Suppressed != 0 {
		t.Fatalf("summary %s\n%+v", counts(sum), sum.Messages)
	}
	if !strings.Contains(sum.Messages[0].Note, "ann@example.org: not a recipient of campaign") {
		t.Errorf("note %q", sum.Messages[0].Note)
	}
	if got := b.suppressed(t, "ann@example.org"); len(got) != 0 {
		t.Fatalf("a stranger was suppressed: %+v", got)
	}
	if n := len(srv.Messages("INBOX")); n != 1 {
		t.Fatalf("%d messages left in INBOX, want the report left alone", n)
	}
}
