package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/engine"
	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/recipients"
	"github.com/heraldmail/herald/sink"
	"github.com/heraldmail/herald/templates"
	"github.com/heraldmail/herald/verp"
)

// wire is every byte the server read, in order (one connection).
func wire(s *sink.Server) string { return string(bytes.Join(s.Reads(), nil)) }

var envelopeRE = regexp.MustCompile(`(MAIL FROM|RCPT TO):([^\r\n]*)\r\n`)

var sizeRE = regexp.MustCompile(` SIZE=[1-9][0-9]*`)

// envelopes returns the arguments of every MAIL FROM and RCPT TO sent,
// but for MAIL's SIZE=, which every MAIL must carry (the sinks advertise
// SIZE), and sizes, its values.
func envelopes(t *testing.T, s *sink.Server) (mails, rcpts []string) {
	mails, rcpts, _ = envelopesSized(t, s)
	return mails, rcpts
}

func envelopesSized(t *testing.T, s *sink.Server) (mails, rcpts []string, sizes []int) {
	t.Helper()
	for _, m := range envelopeRE.FindAllStringSubmatch(wire(s), -1) {
		if m[1] == "MAIL FROM" {
			size := sizeRE.FindString(m[2])
			if size == "" {
				t.Fatalf("MAIL FROM:%s without SIZE=", m[2])
			}
			n, _ := strconv.Atoi(size[len(" SIZE="):])
			sizes = append(sizes, n)
			mails = append(mails, strings.Replace(m[2], size, "", 1))
		} else {
			rcpts = append(rcpts, m[2])
		}
	}
	return mails, rcpts, sizes
}

// bothPaths runs fn against a server with and without PIPELINING.
func bothPaths(t *testing.T, fn func(t *testing.T, noPipelining bool)) {
	for _, noPipe := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipelining=%v", !noPipe), func(t *testing.T) {
			t.Parallel()
			fn(t, noPipe)
		})
	}
}

// TestEnvelopeOnTheWire: the paths go in angle brackets on both paths
// (RFC 5321, 4.1.2), and an IDN domain goes as A-labels, in the envelope
// and in the To header, to a server without SMTPUTF8.
func TestEnvelopeOnTheWire(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, noPipe bool) {
		s := startSink(t, sink.Config{Keep: true, RecordReads: true, NoPipelining: noPipe})
		b := setup(t, campaignSpec{
			recipients: []string{"plain@example.com", "user@例子.测试", "Bob@Bücher.de"},
			providers:  providerTOML("local", s, "connections = 1"),
		})
		if res := b.plan(); res.Added != 3 {
			t.Fatalf("planned %+v", res)
		}
		if _, err := b.run(); err != nil {
			t.Fatal(err)
		}
		mails, rcpts := envelopes(t, s)
		if len(mails) != 3 || len(rcpts) != 3 {
			t.Fatalf("MAIL %q, RCPT %q", mails, rcpts)
		}
		for _, m := range mails {
			if m != "<news@example.com>" {
				t.Errorf("MAIL FROM:%s, want <news@example.com>", m)
			}
		}
		want := map[string]bool{"<plain@example.com>": true, "<user@xn--fsqu00a.xn--0zwm56d>": true, "<Bob@xn--bcher-kva.de>": true}
		for _, r := range rcpts {
			if !want[r] {
				t.Errorf("RCPT TO:%s, want one of %v", r, want)
			}
			delete(want, r)
		}
		if !ascii(wire(s)) {
			t.Errorf("non-ASCII bytes went to a server without SMTPUTF8:\n%s", wire(s))
		}
		for _, m := range s.Messages() {
			msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
			if err != nil {
				t.Fatal(err)
			}
			if got := msg.Header.Get("To"); got != "<"+m.To[0]+">" {
				t.Errorf("To: %s for RCPT TO:<%s>", got, m.To[0])
			}
		}
		for email, j := range b.jobs() {
			if j.State != queue.Sent {
				t.Errorf("%s: %+v", email, j)
			}
		}
	})
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// TestSMTPUTF8: an address whose local part is not ASCII is planned with
// a warning naming its line; it goes with SMTPUTF8 to a server that offers
// it, and fails at once (no retry, not suppressed) with the reason through
// one that does not, without a byte of it on the wire.
func TestSMTPUTF8(t *testing.T) {
	t.Parallel()
	for _, offered := range []bool{true, false} {
		t.Run(fmt.Sprintf("offered=%v", offered), func(t *testing.T) {
			t.Parallel()
			bothPaths(t, func(t *testing.T, noPipe bool) {
				s := startSink(t, sink.Config{Keep: true, RecordReads: true, NoPipelining: noPipe, SMTPUTF8: offered})
				b := setup(t, campaignSpec{
					csv:       "email,name\nascii@example.com,A\n用户@example.com,U\nlast@example.com,L\n",
					providers: providerTOML("local", s, "connections = 1"),
				})
				var problems []engine.Problem
				res, err := b.eng.Plan(context.Background(), func(p engine.Problem) { problems = append(problems, p) })
				if err != nil || res.Added != 3 || res.Invalid != 0 {
					t.Fatalf("plan %+v %v", res, err)
				}
				if len(problems) != 1 || problems[0].Line != 3 || !problems[0].Warning || !strings.Contains(problems[0].String(), "line 3: warning: 用户@example.com") || !strings.Contains(problems[0].Reason, "SMTPUTF8") {
					t.Fatalf("want a warning for line 3, got %v", problems)
				}
				sum, err := b.run()
				if err != nil {
					t.Fatal(err)
				}
				jobs := b.jobs()
				for _, e := range []string{"ascii@example.com", "last@example.com"} {
					if jobs[e].State != queue.Sent {
						t.Errorf("%s: %+v", e, jobs[e])
					}
				}
				mails, rcpts := envelopes(t, s)
				u := jobs["用户@example.com"]
				if offered {
					if u.State != queue.Sent || s.Received("用户@example.com") != 1 {
						t.Fatalf("用户@example.com: %+v", u)
					}
					want := []string{"<news@example.com>", "<news@example.com> SMTPUTF8", "<news@example.com>"}
					if strings.Join(mails, "|") != strings.Join(want, "|") || rcpts[1] != "<用户@example.com>" {
						t.Fatalf("MAIL %q, RCPT %q; want SMTPUTF8 with the UTF-8 address only", mails, rcpts)
					}
					for _, m := range s.Messages() {
						if m.To[0] == "用户@example.com" && !bytes.Contains(m.Data, []byte("To: <用户@example.com>\r\n")) {
							t.Fatalf("To header:\n%s", m.Data)
						}
					}
					return
				}
				if u.State != queue.Failed || u.Attempts != 0 || !strings.Contains(u.Reply, "SMTPUTF8") || !strings.Contains(u.Reply, "local (") {
					t.Fatalf("用户@example.com: %+v", u)
				}
				if sum.Counts.Failed != 1 || sum.Counts.Suppressed != 0 || sum.Counts.Sent != 2 {
					t.Fatalf("counts %+v", sum.Counts)
				}
				if len(mails) != 2 || strings.Contains(wire(s), "用户") || !ascii(wire(s)) {
					t.Fatalf("the address reached the server:\n%s", wire(s))
				}
				if supp, err := b.q.Suppressed(context.Background(), engine.SuppressionList("news@example.com"), "用户@example.com"); err != nil || len(supp) != 0 {
					t.Fatalf("suppressed %v %v", supp, err)
				}
			})
		})
	}
}

// TestMessageTooLargeBeforeSending: a template that renders ~1 GB per
// message stops the campaign at planning, naming the key and the line,
// in bounded time and memory, and nothing is planned or sent.
func TestMessageTooLargeBeforeSending(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	b := setup(t, campaignSpec{
		recipients: addresses(3, "big"),
		text:       "{{range 100000}}" + strings.Repeat("0123456789", 1000) + "{{end}}", // 1 GB
		providers:  providerTOML("local", s, ""),
	})
	start := time.Now()
	_, err := b.eng.Plan(context.Background(), func(engine.Problem) {})
	var in *engine.InputError
	if !errors.As(err, &in) || !strings.Contains(err.Error(), "campaign.max_message_size = 10MB (10485760 bytes)") || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("want an InputError naming the key and the line, got %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("planning took %v", d)
	}
	if _, err := b.q.Campaign(context.Background(), "test"); !errors.Is(err, queue.ErrNoCampaign) {
		t.Errorf("the campaign was stored: %v", err)
	}
	if st := s.Stats(); st.Sessions != 0 {
		t.Errorf("%d sessions", st.Sessions)
	}
	// The dry run says the same.
	if _, err := b.eng.DryRun(context.Background(), func(engine.Problem) {}); !errors.As(err, &in) {
		t.Errorf("dry run: %v", err)
	}
}

// TestMessageTooLargeOneRecipient: a row whose message passes
// campaign.max_message_size fails alone, at once, with the reason; the
// dry run reports it with its line; the others go.
func TestMessageTooLargeOneRecipient(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("0123456789", 20000) // 200 KB in one value
	bothPaths(t, func(t *testing.T, noPipe bool) {
		s := startSink(t, sink.Config{RecordReads: true, NoPipelining: noPipe})
		b := setup(t, campaignSpec{
			csv:       "email,name,note\na@example.com,A,short\nhuge@example.com,H," + huge + "\nc@example.com,C,short\n",
			text:      "Dear {{.name}}: {{.note}}\n",
			extra:     `max_message_size = "64KB"`,
			providers: providerTOML("local", s, "connections = 1"),
		})
		var problems []engine.Problem
		if _, err := b.eng.DryRun(context.Background(), func(p engine.Problem) { problems = append(problems, p) }); err != nil {
			t.Fatal(err)
		}
		if len(problems) != 1 || problems[0].Line != 3 || !strings.Contains(problems[0].Reason, "campaign.max_message_size = 64KB") {
			t.Fatalf("dry run problems %v", problems)
		}
		if res := b.plan(); res.Added != 3 {
			t.Fatalf("planned %+v", res)
		}
		sum, err := b.run()
		if err != nil {
			t.Fatal(err)
		}
		j := b.jobs()["huge@example.com"]
		if j.State != queue.Failed || j.Attempts != 0 || !strings.Contains(j.Reply, "larger than campaign.max_message_size = 64KB (65536 bytes)") {
			t.Fatalf("huge: %+v", j)
		}
		if sum.Counts.Sent != 2 || sum.Counts.Failed != 1 || sum.Counts.Suppressed != 0 {
			t.Fatalf("counts %+v", sum.Counts)
		}
		if w := wire(s); strings.Contains(w, "huge@") || strings.Contains(w, "0123456789") {
			t.Fatal("the large message reached the server")
		}
	})
}

// TestServerSize: never above the SIZE the server advertises (RFC 1870):
// a message larger than it fails at once with the reason, unsent, though
// campaign.max_message_size would take it; every message goes with its
// size in MAIL (SIZE=), as the server receives it.
func TestServerSize(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, noPipe bool) {
		s := startSink(t, sink.Config{Keep: true, RecordReads: true, NoPipelining: noPipe, MaxMessageBytes: 30000})
		b := setup(t, campaignSpec{
			csv: "email,name,note\na@example.com,A,short\nbig@example.com,B," + strings.Repeat("abcdefghij", 5000) +
				"\nmid@example.com,M," + strings.Repeat("k", 4000) + "\n",
			text:      "Dear {{.name}}: {{.note}}\n",
			providers: providerTOML("local", s, "connections = 1"),
		})
		b.plan()
		sum, err := b.run()
		if err != nil {
			t.Fatal(err)
		}
		jobs := b.jobs()
		j := jobs["big@example.com"]
		if j.State != queue.Failed || j.Attempts != 0 || !strings.Contains(j.Reply, "larger than the 30000 bytes local (") || !strings.Contains(j.Reply, "SIZE") {
			t.Fatalf("big: %+v", j)
		}
		if jobs["a@example.com"].State != queue.Sent || jobs["mid@example.com"].State != queue.Sent || sum.Counts.Failed != 1 {
			t.Fatalf("jobs %+v", jobs)
		}
		if strings.Contains(wire(s), "abcdefghij") || strings.Contains(wire(s), "big@") {
			t.Fatal("the large message reached the server")
		}
		mails, _, sizes := envelopesSized(t, s)
		got := s.Messages()
		if len(mails) != 2 || mails[0] != "<news@example.com>" || mails[1] != "<news@example.com>" || len(got) != 2 {
			t.Fatalf("MAIL %q, %d messages", mails, len(got))
		}
		for i, m := range got {
			if sizes[i] != len(m.Data) {
				t.Errorf("MAIL SIZE=%d for a message of %d bytes", sizes[i], len(m.Data))
			}
		}
	})
}

// TestVERPOnTheWire: a VERP return path carries the recipient as it is
// sent, its domain in A-labels, so the envelope stays ASCII and a bounce
// to it finds the recipient's key.
func TestVERPOnTheWire(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, noPipe bool) {
		s := startSink(t, sink.Config{Keep: true, RecordReads: true, NoPipelining: noPipe})
		b := setup(t, campaignSpec{
			recipients: []string{"user@例子.测试"},
			extra:      "verp = true\nbounce_address = \"bounces@example.com\"\n",
			providers:  providerTOML("local", s, "connections = 1"),
		})
		b.plan()
		if _, err := b.run(); err != nil {
			t.Fatal(err)
		}
		mails, _ := envelopes(t, s)
		if len(mails) != 1 || mails[0] != "<bounces+test+user=xn--fsqu00a.xn--0zwm56d@example.com>" {
			t.Fatalf("MAIL FROM:%q", mails)
		}
		_, rcpt, err := verp.Decode(s.Messages()[0].From, "bounces@example.com")
		if err != nil || recipients.Key(rcpt) != b.jobs()["user@例子.测试"].Key {
			t.Fatalf("the bounce names %q (%v), the job's key is %q", rcpt, err, b.jobs()["user@例子.测试"].Key)
		}
	})
}

// TestInvalidIDNReportedAtPlanning: a domain with no valid A-label form is
// reported with its line, like any bad address, and never planned.
func TestInvalidIDNReportedAtPlanning(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	b := setup(t, campaignSpec{csv: "email,name\nok@例子.测试,A\nbad@xn--zz.com,B\nbad@例子.-测试,C\n", providers: providerTOML("local", s, "")})
	var problems []engine.Problem
	res, err := b.eng.Plan(context.Background(), func(p engine.Problem) { problems = append(problems, p) })
	if err != nil || res.Added != 1 || res.Invalid != 2 {
		t.Fatalf("plan %+v %v", res, err)
	}
	if len(problems) != 2 || problems[0].Line != 3 || problems[1].Line != 4 || !strings.Contains(problems[0].Reason, "not a valid internationalized domain name") {
		t.Fatalf("problems %v", problems)
	}
}

// TestDotStuffedOnTheWire: a message with lines that start with a dot and
// a last line without a line break goes out dot-stuffed, with a CRLF
// before the final dot, on both paths, and arrives byte for byte as
// herald builds it (WriteMessage) and that CRLF. A retry writes the same bytes: at once
// on a fresh connection (the server closed it in place of the 354), the
// message built for the first try; later (the reply to the data was
// lost), the same message again but for its Date.
func TestDotStuffedOnTheWire(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, noPipe bool) {
		// The first RCPT to again@ closes the connection: the job is tried
		// at once on a fresh one. The first message to later@ is kept and
		// its reply lost: the job is tried again later.
		again := &sink.Rule{Match: "again@", Stage: sink.StageRcpt, Drop: true, Times: 1}
		later := &sink.Rule{Match: "later@", Stage: sink.StageData, Drop: true, Accept: true, Times: 1}
		s := startSink(t, sink.Config{Keep: true, RecordReads: true, NoPipelining: noPipe, Faults: sink.Faults{Rules: []*sink.Rule{again, later}}})
		b := setup(t, campaignSpec{
			csv:       "email,name\nplain@example.com,.Ann\nagain@example.com,.Bob\nlater@example.com,.Cy\n",
			text:      ".{{.name}} starts this line\n..two dots\nmid . dot\n.\n. \nthe last line has no line break.",
			providers: providerTOML("local", s, "connections = 1"),
		})
		if res := b.plan(); res.Added != 3 {
			t.Fatalf("planned %+v", res)
		}
		if _, err := b.run(); err != nil {
			t.Fatal(err)
		}
		for email, j := range b.jobs() {
			if j.State != queue.Sent {
				t.Fatalf("%s: %+v", email, j)
			}
		}
		got := map[string][][]byte{}
		for _, m := range s.Messages() {
			got[m.To[0]] = append(got[m.To[0]], m.Data)
		}
		var r templates.Renderer
		for i, rcpt := range []string{"plain@example.com", "again@example.com", "later@example.com"} {
			var want bytes.Buffer
			if err := b.eng.WriteMessage(&r, []string{"email", "name"}, []string{rcpt, []string{".Ann", ".Bob", ".Cy"}[i]}, &want); err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(want.Bytes(), []byte("\r\n..two dots\r\n")) || !bytes.HasSuffix(want.Bytes(), []byte("\r\nthe last line has no line break.")) {
				t.Fatalf("%s: the message is not as this test means it:\n%q", rcpt, want.Bytes())
			}
			copies := got[rcpt]
			if n := map[bool]int{true: 2, false: 1}[rcpt == "later@example.com"]; len(copies) != n {
				t.Fatalf("%s: %d copies arrived, want %d", rcpt, len(copies), n)
			}
			// SMTP ends the data with CRLF.CRLF: the last line arrives
			// with its CRLF (RFC 5321, 4.1.1.4).
			want.WriteString("\r\n")
			for _, c := range copies {
				if g, w := withoutDate(t, c), withoutDate(t, want.Bytes()); g != w {
					t.Errorf("%s: arrived\n%q\nwant (but for the Date)\n%q", rcpt, g, w)
				}
			}
		}
		w := wire(s)
		for _, stuffed := range []string{"\r\n...Ann starts this line\r\n...two dots\r\nmid . dot\r\n..\r\n..=20\r\nthe last line has no line break.\r\n.\r\n"} {
			if !strings.Contains(w, stuffed) {
				t.Errorf("not on the wire: %q\n%s", stuffed, w)
			}
		}
	})
}

var dateRE = regexp.MustCompile(`(?m)^Date: [^\r\n]*\r\n`)

// withoutDate is a message without its Date header, which must be there.
func withoutDate(t *testing.T, m []byte) string {
	t.Helper()
	if len(dateRE.FindAll(m, -1)) != 1 {
		t.Fatalf("not one Date header:\n%s", m)
	}
	return dateRE.ReplaceAllString(string(m), "")
}

// TestEveryMessageItsOwnBytes: a sender builds each message in the buffer
// of one that is done (written, answered, concluded), from text its
// renderer lends (RenderLinkShared), whose shared end is encoded once
// (qpTails). Messages of many
// lengths on pipelined connections, one connection dropped after a
// message's data (sent again later) and one refused at RCPT (tried again
// at once): every message arrives exactly as it was rendered for its
// recipient, none carrying bytes of another.
func TestEveryMessageItsOwnBytes(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, noPipe bool) {
		again := &sink.Rule{Match: "r7@", Stage: sink.StageRcpt, Drop: true, Times: 1}
		later := &sink.Rule{Match: "r11@", Stage: sink.StageData, Drop: true, Accept: true, Times: 1}
		s := startSink(t, sink.Config{Keep: true, NoPipelining: noPipe, Faults: sink.Faults{Rules: []*sink.Rule{again, later}}})
		const n = 300
		var csv strings.Builder
		csv.WriteString("email,name\n")
		names := make([]string, n)
		for i := range n {
			// Lengths that rise and fall, so that a buffer is reused
			// for a longer message and for a shorter one.
			names[i] = fmt.Sprintf("N%d-%s", i, strings.Repeat(string(rune('a'+i%26)), (i*37)%200))
			fmt.Fprintf(&csv, "r%d@example.com,%s\n", i, names[i])
		}
		b := setup(t, campaignSpec{
			csv: csv.String(),
			// The end is the same for all, and long enough that its
			// encoding is kept and copied (qpTails).
			text:      "Dear {{.name}},\n{{.name}} again.\n" + strings.Repeat("A line that ends the same for all = the end.\n", 12),
			providers: providerTOML("local", s, "connections = 3"),
		})
		if res := b.plan(); res.Added != n {
			t.Fatalf("planned %+v", res)
		}
		sum, err := b.run()
		if err != nil {
			t.Fatal(err)
		}
		// Only r11's reply was lost: a message written with bytes that
		// were not its own (or none) would be another.
		if sum.Sent != n || sum.Ambiguous != 1 {
			t.Fatalf("sent %d, %d possibly twice; want %d and 1 (r11)", sum.Sent, sum.Ambiguous, n)
		}
		got := map[string][][]byte{}
		for _, m := range s.Messages() {
			got[m.To[0]] = append(got[m.To[0]], m.Data)
		}
		var r templates.Renderer
		for i := range n {
			rcpt := fmt.Sprintf("r%d@example.com", i)
			var want bytes.Buffer
			if err := b.eng.WriteMessage(&r, []string{"email", "name"}, []string{rcpt, names[i]}, &want); err != nil {
				t.Fatal(err)
			}
			w := withoutDate(t, want.Bytes())
			copies := got[rcpt]
			if c := map[bool]int{true: 2, false: 1}[i == 11]; len(copies) != c {
				t.Fatalf("%s: %d copies arrived, want %d", rcpt, len(copies), c)
			}
			for _, c := range copies {
				if g := withoutDate(t, c); g != w {
					t.Fatalf("%s: arrived\n%q\nwant (but for the Date)\n%q", rcpt, g, w)
				}
			}
		}
	})
}
