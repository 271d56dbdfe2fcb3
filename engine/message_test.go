package engine

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	netmail "net/mail"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"

	"github.com/heraldmail/herald/internal/smtpdata"
	"github.com/heraldmail/herald/sink"

	"github.com/heraldmail/herald/templates"
	"github.com/heraldmail/herald/unsubscribe"
)

// TestComposeAsGoMail: whatever the content (bytes that quoted-printable
// triples, lone line feeds and CRs, long lines, trailing spaces, UTF-8 in
// the subject and the headers, binary attachments, a long link), a message
// is byte for byte what go-mail (which built herald's messages before)
// writes for it, but for the random multipart boundaries; its size is its
// length, and within holds at that size and not one byte below.
func TestComposeAsGoMail(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int, alphabet string) string { return randomText(rng, n, alphabet) }
	bin := make([]byte, 50000)
	for i := range bin {
		bin[i] = byte(rng.IntN(256))
	}
	contents := []string{
		"",
		"plain text\n",
		"no final line break",
		".leading dot\n.\n..\nend.",
		"trailing space \ntrailing tab\t\n \n\t",
		"cr\ronly\r\rand\r\n\r\xff\n=\r",
		strings.Repeat("\xff", 30000), // every byte =XX
		strings.Repeat("\n", 30000),   // every byte a CRLF
		strings.Repeat("=", 30000),    // every byte =3D
		strings.Repeat(" \n", 20000),  // trailing spaces encoded
		strings.Repeat("x", 100000),   // one long line
		strings.Repeat("x", 74) + " \n" + strings.Repeat("y", 75) + "\t\n" + strings.Repeat("z", 73) + "\xfe\n",
		strings.Repeat("用户例子测试", 5000),                  // UTF-8
		random(50000, "\xe4\xbd\xa0 =\t\r\n.x\x00\x80"), // a mix
		random(20000, " \t\r\n.xy="),
	}
	us, _ := unsubscribe.NewSigner([]byte("size-bound-secret-0123456789"))
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("", 3600))
	for i, body := range contents {
		for variant := range 6 {
			spec := Spec{
				From: "新闻 News <news@例子.测试>", ReplyTo: "Réponse <reply@example.com>",
				Subject: "{{.subject}}", ToName: "{{.subject}}", Text: "{{.body}}{{unsubscribe_url}}",
				Headers:        map[string]string{"X-Note": "ünïcödé " + strings.Repeat("é", 500), "Precedence": "bulk", "X-long": strings.Repeat("word ", 40)},
				ListID:         "News <news.example.com>",
				UnsubscribeURL: "https://news.example.com/unsubscribe?" + strings.Repeat("q", 300), UnsubscribeMailto: "unsubscribe@example.com",
				Attachments: []Attachment{{Name: "données " + strings.Repeat("ü", 100) + ".bin", Data: bin}, {Name: "a\"b/c.txt", Data: []byte("x")}},
			}
			switch variant {
			case 1: // text and HTML
				spec.HTML = "<p>{{.body}}</p><a href=\"{{unsubscribe_url}}\">x</a>"
			case 2: // HTML only, no attachments
				spec.Text, spec.HTML, spec.Attachments = "", "<p>{{.body}}</p>", nil
			case 3: // text and HTML, no attachments
				spec.HTML, spec.Attachments = "<p>{{.body}}</p>", nil
			case 4: // the plain campaign: text only, no links, no list, no Reply-To
				spec = Spec{From: "Bench <bench@example.com>", Subject: "Bench {{.subject}}", Text: "{{.body}}"}
			case 5: // a link without mailto, an empty To name
				spec.UnsubscribeMailto, spec.ToName, spec.Attachments = "", "", nil
			}
			set, err := templates.Parse(templates.Sources{Subject: spec.Subject, ToName: spec.ToName, Text: spec.Text, HTML: spec.HTML})
			if err != nil {
				t.Fatal(err)
			}
			keys := keys{}
			if spec.UnsubscribeURL != "" {
				keys.unsub = us
			}
			c, err := newComposer("size", spec, set, keys)
			if err != nil {
				t.Fatal(err)
			}
			subject := strings.ReplaceAll(strings.ReplaceAll(body, "\n", " "), "\r", " ")
			if len(subject) > 2000 {
				subject = subject[:2000]
			}
			data := map[string]string{"subject": subject, "body": body}
			var r templates.Renderer
			m, err := c.build(&r, data, "用户@例子.测试", "用户@xn--fsqu00a.xn--0zwm56d", now)
			if err != nil {
				t.Fatal(err)
			}
			want := withoutBlankFolds(goMailText(t, c, spec, &r, data, "用户@xn--fsqu00a.xn--0zwm56d", "用户@xn--fsqu00a.xn--0zwm56d", now))
			if got := sameBoundaries(string(m.text)); got != sameBoundaries(want) {
				t.Fatalf("content %d, variant %d: not what go-mail writes:\n%s", i, variant, firstDiff(got, sameBoundaries(want)))
			}
			// The server receives a last line without a line end with
			// one (SMTP's data ends with CRLF "." CRLF): RFC 1870 counts it.
			received := len(want)
			if !strings.HasSuffix(want, "\r\n") {
				received += 2
			}
			size := m.Size()
			if size != int64(received) {
				t.Errorf("content %d: size %d, the server receives %d bytes (go-mail wrote %d)", i, size, received, len(want))
			}
			if within, ok := m.within(size); !ok || within != size {
				t.Errorf("content %d: within(%d) = %d, %v", i, size, within, ok)
			}
			if _, ok := m.within(size - 1); ok {
				t.Errorf("content %d: within(%d) for %d bytes", i, size-1, size)
			}
			if got, want := string(m.wire), string(smtpdata.Stuff(bytes.Clone(m.text))); got != want {
				t.Errorf("content %d: the DATA content is not the text dot-stuffed", i)
			}
		}
	}
}

// TestMessageIDAsGoMail: whatever the length of the campaign's ID (the
// Message-ID header fits its line, or is folded before its value), the
// header is what go-mail writes.
func TestMessageIDAsGoMail(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	spec := Spec{From: "Bench <bench@example.com>", Subject: "Bench", Text: "hello\n"}
	set, err := templates.Parse(templates.Sources{Subject: spec.Subject, Text: spec.Text})
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 80; n++ {
		c, err := newComposer(strings.Repeat("c", n), spec, set, keys{})
		if err != nil {
			t.Fatal(err)
		}
		var r templates.Renderer
		m, err := c.build(&r, nil, "user@example.com", "user@example.com", now)
		if err != nil {
			t.Fatal(err)
		}
		want := goMailText(t, c, spec, &r, nil, "user@example.com", "user@example.com", now)
		if got := string(m.text); got != want {
			t.Fatalf("campaign ID of %d bytes: not what go-mail writes:\n%s", n, firstDiff(got, want))
		}
	}
}

// randomText is n bytes drawn from alphabet.
func randomText(rng *rand.Rand, n int, alphabet string) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

// goMailText is the message as herald built it with go-mail, for the
// same rendering.
func goMailText(t *testing.T, c *composer, spec Spec, r *templates.Renderer, data map[string]string, email, key string, now time.Time) string {
	t.Helper()
	link := c.unsubscribeLink(key)
	out, err := r.RenderLink(c.set, data, link)
	if err != nil {
		t.Fatal(err)
	}
	m := mail.NewMsg(mail.WithNoDefaultUserAgent())
	m.SetAddrHeaderFromMailAddress(mail.HeaderFrom, c.from)
	m.ToMailAddress(&netmail.Address{Name: out.ToName, Address: email})
	if c.replyTo != nil {
		m.ReplyToMailAddress(c.replyTo)
	}
	m.Subject(out.Subject)
	m.SetMessageIDWithValue(MessageID(c.campaign, key, c.domain))
	m.SetDateWithValue(now)
	m.SetGenHeader(HeaderCampaign, c.campaign)
	if c.listID != "" {
		m.SetGenHeader(HeaderListID, c.listID)
	}
	if link != "" {
		if c.unsubMailto != "" {
			m.SetGenHeader(HeaderListUnsubscribe, "<"+link+">", c.unsubMailto)
		} else {
			m.SetGenHeader(HeaderListUnsubscribe, "<"+link+">")
		}
		m.SetGenHeader(HeaderListUnsubscribePost, "List-Unsubscribe=One-Click")
	}
	for k, v := range spec.Headers {
		m.SetGenHeader(mail.Header(k), v)
	}
	switch {
	case c.set.HasText() && c.set.HasHTML():
		m.SetBodyString(mail.TypeTextPlain, out.Text)
		m.AddAlternativeString(mail.TypeTextHTML, out.HTML)
	case c.set.HasText():
		m.SetBodyString(mail.TypeTextPlain, out.Text)
	default:
		m.SetBodyString(mail.TypeTextHTML, out.HTML)
	}
	for _, a := range spec.Attachments {
		m.AttachReadSeeker(a.Name, bytes.NewReader(a.Data))
	}
	var buf bytes.Buffer
	if _, err := m.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

var boundaryRE = regexp.MustCompile(`boundary=([0-9a-f]{60})`)

// sameBoundaries names a message's multipart boundaries by their order.
// withoutBlankFolds removes from the header of message s the lines of
// only spaces that go-mail writes when it folds a value ending in spaces
// (strict parsers take such a line for the end of the header); herald
// leaves them out.
func withoutBlankFolds(s string) string {
	head, body, ok := strings.Cut(s, "\r\n\r\n")
	if !ok {
		return s
	}
	var kept []string
	for _, l := range strings.Split(head, "\r\n") {
		if strings.HasPrefix(l, " ") && strings.TrimLeft(l, " ") == "" {
			continue
		}
		kept = append(kept, l)
	}
	return strings.Join(kept, "\r\n") + "\r\n\r\n" + body
}

func sameBoundaries(s string) string {
	for i, b := range boundaryRE.FindAllStringSubmatch(s, -1) {
		s = strings.ReplaceAll(s, b[1], fmt.Sprintf("BOUNDARY-%d", i))
	}
	return s
}

// firstDiff shows where got and want part.
func firstDiff(got, want string) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	from := max(0, i-200)
	return fmt.Sprintf("at byte %d:\ngot  %q\nwant %q", i, got[from:min(len(got), i+100)], want[from:min(len(want), i+100)])
}

// TestWrittenAsBuilt: one built message (text and HTML: multipart, with
// its random boundary; lines that start with a dot), written twice on the plain path and once pipelined, arrives three
// times byte for byte the same: a retry writes what the first try wrote.
func TestWrittenAsBuilt(t *testing.T) {
	t.Parallel()
	s, err := sink.Start(sink.Config{Keep: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	spec := Spec{From: "News <news@example.com>", Subject: "Hi {{.name}}", Text: ".{{.name}}\n..\nno line end", HTML: "<p>{{.name}}</p>\n.<p>"}
	set, err := templates.Parse(templates.Sources{Subject: spec.Subject, Text: spec.Text, HTML: spec.HTML})
	if err != nil {
		t.Fatal(err)
	}
	c, err := newComposer("written", spec, set, keys{})
	if err != nil {
		t.Fatal(err)
	}
	var r templates.Renderer
	msg, err := c.build(&r, map[string]string{"name": ".Ann"}, "ann@example.com", "ann@example.com", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Hello("localhost"); err != nil {
		t.Fatal(err)
	}
	arm := func() {}
	for range 2 {
		if derr, _, _ := deliver(cl, arm, "news@example.com", "ann@example.com", "", msg); derr != nil {
			t.Fatal(derr)
		}
	}
	p := newPipe(cl, arm)
	if err := p.writeEnvelope("news@example.com", "ann@example.com", ""); err != nil {
		t.Fatal(err)
	}
	if err := p.flush(); err != nil {
		t.Fatal(err)
	}
	if derr, _ := p.readEnvelope(); derr != nil {
		t.Fatal(derr)
	}
	if err := p.writeContent(msg); err != nil {
		t.Fatal(err)
	}
	if err := p.flush(); err != nil {
		t.Fatal(err)
	}
	if derr, _, _ := p.readDataEnd(); derr != nil {
		t.Fatal(derr)
	}
	got := s.Messages()
	if len(got) != 3 {
		t.Fatalf("%d messages arrived", len(got))
	}
	want := string(msg.text)
	if !strings.Contains(want, "boundary=") || !strings.Contains(want, "\r\n..Ann\r\n..\r\nno line end\r\n") || !strings.Contains(string(msg.wire), "\r\n...Ann\r\n...\r\n") {
		t.Fatalf("not the message this test means:\n%s", want)
	}
	for i, m := range got {
		if string(m.Data) != want {
			t.Errorf("copy %d:\n%q\nwant\n%q", i, m.Data, want)
		}
	}
}
