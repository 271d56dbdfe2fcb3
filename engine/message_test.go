package engine

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/templates"
	"github.com/heraldmail/herald/unsubscribe"
)

// TestSizeBound: whatever the content (bytes that quoted-printable
// triples, lone line feeds, long lines, trailing spaces, UTF-8 in the
// subject and the headers, binary attachments, a long link), the exact
// size of a message never passes its bound, so a message whose bound is
// within a limit need not be counted. The bound stays within a few times
// the size plus its fixed part.
func TestSizeBound(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int, alphabet string) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	bin := make([]byte, 50000)
	for i := range bin {
		bin[i] = byte(rng.IntN(256))
	}
	contents := []string{
		"",
		"plain text\n",
		strings.Repeat("\xff", 30000),                   // every byte =XX
		strings.Repeat("\n", 30000),                     // every byte a CRLF
		strings.Repeat("=", 30000),                      // every byte =3D
		strings.Repeat(" \n", 20000),                    // trailing spaces encoded
		strings.Repeat("x", 100000),                     // one long line
		strings.Repeat("用户例子测试", 5000),                  // UTF-8
		random(50000, "\xe4\xbd\xa0 =\t\r\n.x\x00\x80"), // a mix
	}
	us, _ := unsubscribe.NewSigner([]byte("size-bound-secret-0123456789"))
	for i, body := range contents {
		for _, withHTML := range []bool{false, true} {
			spec := Spec{
				From: "新闻 News <news@例子.测试>", ReplyTo: "Réponse <reply@example.com>",
				Subject: "{{.subject}}", ToName: "{{.subject}}", Text: "{{.body}}{{unsubscribe_url}}",
				Headers:        map[string]string{"X-Note": "ünïcödé " + strings.Repeat("é", 500)},
				ListID:         "News <news.example.com>",
				UnsubscribeURL: "https://news.example.com/unsubscribe?" + strings.Repeat("q", 300), UnsubscribeMailto: "unsubscribe@example.com",
				Attachments: []Attachment{{Name: "données " + strings.Repeat("ü", 100) + ".bin", Data: bin}},
			}
			if withHTML {
				spec.HTML = "<p>{{.body}}</p><a href=\"{{unsubscribe_url}}\">x</a>"
			}
			set, err := templates.Parse(templates.Sources{Subject: spec.Subject, ToName: spec.ToName, Text: spec.Text, HTML: spec.HTML})
			if err != nil {
				t.Fatal(err)
			}
			c, err := newComposer("size", spec, set, keys{unsub: us})
			if err != nil {
				t.Fatal(err)
			}
			subject := strings.ReplaceAll(strings.ReplaceAll(body, "\n", " "), "\r", " ")
			if len(subject) > 2000 {
				subject = subject[:2000]
			}
			var r templates.Renderer
			m, err := c.build(&r, map[string]string{"subject": subject, "body": body}, "用户@例子.测试", "用户@xn--fsqu00a.xn--0zwm56d", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			size, err := m.Size()
			if err != nil {
				t.Fatal(err)
			}
			if size > m.bound {
				t.Errorf("content %d (html %v): %d bytes, above its bound %d", i, withHTML, size, m.bound)
			}
			if m.bound > 5*size+c.fixed {
				t.Errorf("content %d (html %v): bound %d for %d bytes", i, withHTML, m.bound, size)
			}
			if within, ok, _ := m.within(size); !ok || within != size {
				t.Errorf("content %d: within(%d) = %d, %v", i, size, within, ok)
			}
			if _, ok, _ := m.within(size - 1); ok {
				t.Errorf("content %d: within(%d) for %d bytes", i, size-1, size)
			}
		}
	}
}
