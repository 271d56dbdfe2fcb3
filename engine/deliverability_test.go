package engine_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/heraldmail/herald/config"
	"github.com/heraldmail/herald/engine"
	"github.com/heraldmail/herald/sink"
	"github.com/heraldmail/herald/unsubscribe"
	"github.com/heraldmail/herald/verp"
)

const (
	unsubSecret = "test-secret-0123456789abcdef"
	selector    = "herald2026"
)

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// signingKey is a test key ("rsa": one 2048-bit key for every test) and
// the PEM file holding it, PKCS#8.
func signingKey(t testing.TB, kind string) (crypto.Signer, string) {
	t.Helper()
	var key crypto.Signer
	switch kind {
	case "rsa":
		rsaOnce.Do(func() {
			var err error
			if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				panic(err)
			}
		})
		key = rsaKey
	case "ed25519":
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		key = k
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), kind+".pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return key, path
}

// dnsStub serves the public key's TXT record at
// <selector>._domainkey.example.com, as DNS would.
func dnsStub(key crypto.Signer) func(string) ([]string, error) {
	var rec string
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		der, _ := x509.MarshalPKIXPublicKey(pub)
		rec = "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	case ed25519.PublicKey:
		rec = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	}
	return func(name string) ([]string, error) {
		if name == selector+"._domainkey.example.com" {
			return []string{rec}, nil
		}
		return nil, fmt.Errorf("no TXT record for %s", name)
	}
}

func deliverabilityTOML(keyPath string) string {
	return fmt.Sprintf(`
[unsubscribe]
url = "https://news.example.com/unsubscribe"
mailto = "unsubscribe@example.com"
secret_env = "UNSUB"

[dkim]
domain = "example.com"
selector = %q
private_key = %q
`, selector, keyPath)
}

// campaignKeys go in the [campaign] section of setup's TOML.
const campaignKeys = "list_id = \"Herald News <news.example.com>\"\nverp = true\nbounce_address = \"bounces@example.com\"\n"

// verifyOne checks one delivered message: DKIM verifies and covers the
// list headers, the unsubscribe link names its recipient, the envelope
// sender is its VERP address. It returns the message's link.
func verifyOne(t *testing.T, m sink.Message, lookup func(string) ([]string, error), signer *unsubscribe.Signer) string {
	t.Helper()
	rcpt := m.To[0]
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(m.Data), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "example.com" {
		t.Fatalf("%s: DKIM verification %v %+v\n%s", rcpt, err, vs, m.Data)
	}
	signed := map[string]bool{}
	for _, k := range vs[0].HeaderKeys {
		signed[strings.ToLower(k)] = true
	}
	for _, h := range []string{"from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post", "list-id", "mime-version", "content-type"} {
		if !signed[h] {
			t.Fatalf("%s: h= %v lacks %s", rcpt, vs[0].HeaderKeys, h)
		}
	}
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatal(err)
	}
	h := msg.Header
	if got := h.Get("List-Unsubscribe-Post"); got != "List-Unsubscribe=One-Click" {
		t.Fatalf("%s: List-Unsubscribe-Post %q", rcpt, got)
	}
	if got := h.Get("List-Id"); got != "Herald News <news.example.com>" {
		t.Fatalf("%s: List-Id %q", rcpt, got)
	}
	if got := h.Get("X-Herald-Campaign"); got != "test" {
		t.Fatalf("%s: X-Herald-Campaign %q", rcpt, got)
	}
	lu := h.Get("List-Unsubscribe")
	https, mailto, ok := strings.Cut(lu, ", ")
	if !ok || mailto != "<mailto:unsubscribe@example.com?subject=unsubscribe>" || !strings.HasPrefix(https, "<https://news.example.com/unsubscribe?") || !strings.HasSuffix(https, ">") {
		t.Fatalf("%s: List-Unsubscribe %q", rcpt, lu)
	}
	link := https[1 : len(https)-1]
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := signer.Verify(u.Query().Get(unsubscribe.Param))
	if want := (unsubscribe.Subject{List: "example.com", Key: strings.ToLower(rcpt), Campaign: "test"}); err != nil || sub != want {
		t.Fatalf("%s: token %+v %v, want %+v", rcpt, sub, err, want)
	}
	// VERP: the envelope sender carries campaign and recipient.
	want, err := verp.Encode("bounces@example.com", "test", rcpt)
	if err != nil || m.From != want {
		t.Fatalf("%s: MAIL FROM %q, want %q (%v)", rcpt, m.From, want, err)
	}
	if c, r, err := verp.Decode(m.From, "bounces@example.com"); err != nil || c != "test" || r != rcpt {
		t.Fatalf("%s: Decode(%q) = %q %q %v", rcpt, m.From, c, r, err)
	}
	// The bodies carry the same link (text as is, HTML escaped).
	text, html := bodies(t, msg)
	if !strings.Contains(text, "Unsubscribe: "+link+"\r\n") || !strings.Contains(html, `href="`+strings.ReplaceAll(link, "&", "&amp;")+`"`) {
		t.Fatalf("%s: the bodies lack the link %s:\ntext %q\nhtml %q", rcpt, link, text, html)
	}
	return link
}

// bodies decodes a multipart/alternative message's text and HTML parts.
func bodies(t *testing.T, msg *mail.Message) (text, html string) {
	t.Helper()
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return text, html
		}
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader = p
		if p.Header.Get("Content-Transfer-Encoding") == "quoted-printable" {
			r = quotedprintable.NewReader(p)
		}
		b, _ := io.ReadAll(r)
		if strings.HasPrefix(p.Header.Get("Content-Type"), "text/html") {
			html = string(b)
		} else {
			text = string(b)
		}
	}
}

// TestDeliverabilityHeaders: every message is DKIM-signed over its list
// headers (RSA over a connection without pipelining, Ed25519 with it),
// carries its recipient's one-click link and its VERP envelope sender.
func TestDeliverabilityHeaders(t *testing.T) {
	t.Parallel()
	rcpts := []string{"ann@example.org", "Ann.Lee+news@Example.ORG", "a=b@example.org", "x+y=z@sub.example.net", "first.last@example.com"}
	for _, kind := range []string{"rsa", "ed25519"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			key, path := signingKey(t, kind)
			s := startSink(t, sink.Config{Keep: true, NoPipelining: kind == "rsa"})
			b := setup(t, campaignSpec{
				recipients: rcpts,
				text:       "Dear {{.name}}.\nUnsubscribe: {{unsubscribe_url}}\n",
				html:       `<p>Dear {{.name}}</p><a href="{{unsubscribe_url}}">unsubscribe</a>`,
				providers:  providerTOML("local", s, "connections = 2"),
				extra:      campaignKeys + deliverabilityTOML(path),
				env:        map[string]string{"UNSUB": unsubSecret},
			})
			b.plan()
			if sum, err := b.run(); err != nil || sum.Sent != int64(len(rcpts)) {
				t.Fatalf("run: %+v %v", sum, err)
			}
			signer, _ := unsubscribe.NewSigner([]byte(unsubSecret))
			lookup := dnsStub(key)
			links := map[string]string{}
			for _, m := range s.Messages() {
				links[m.To[0]] = verifyOne(t, m, lookup, signer)
			}
			if len(links) != len(rcpts) {
				t.Fatalf("received %d of %d", len(links), len(rcpts))
			}

			// Altering a signed header breaks the signature: another
			// recipient's link, a changed mailto, a removed one-click.
			m := s.Messages()[0]
			other := links[rcpts[1]]
			if m.To[0] == rcpts[1] {
				other = links[rcpts[0]]
			}
			msg, _ := mail.ReadMessage(bytes.NewReader(m.Data))
			lu := msg.Header.Get("List-Unsubscribe")
			own := lu[1:strings.Index(lu, ">")]
			for name, alter := range map[string]func(string) string{
				"other link": func(d string) string { return strings.Replace(d, own, other, 1) },
				"mailto":     func(d string) string { return strings.Replace(d, "mailto:unsubscribe@", "mailto:unsubscribe2@", 1) },
				"post": func(d string) string {
					return strings.Replace(d, "List-Unsubscribe=One-Click", "List-Unsubscribe=Two-Clicks", 1)
				},
			} {
				altered := alter(string(m.Data))
				if altered == string(m.Data) {
					t.Fatalf("%s: nothing altered", name)
				}
				vs, err := dkim.VerifyWithOptions(strings.NewReader(altered), &dkim.VerifyOptions{LookupTXT: lookup})
				if err != nil || len(vs) != 1 || vs[0].Err == nil {
					t.Errorf("%s: altered List-Unsubscribe still verifies: %v %+v", name, err, vs)
				}
			}
			// The check itself: the unaltered message verifies with the
			// same stub, and not with another key.
			_, wrong, _ := ed25519.GenerateKey(rand.Reader)
			vs, _ := dkim.VerifyWithOptions(bytes.NewReader(m.Data), &dkim.VerifyOptions{LookupTXT: dnsStub(wrong)})
			if len(vs) != 1 || vs[0].Err == nil {
				t.Errorf("verifies with another key: %+v", vs)
			}
		})
	}
}

// TestDKIMManySenders: a few hundred messages signed by 12 senders at once
// (run with -race), every one verifies.
func TestDKIMManySenders(t *testing.T) {
	t.Parallel()
	key, path := signingKey(t, "rsa")
	s := startSink(t, sink.Config{Keep: true})
	rcpts := addresses(300, "race+")
	b := setup(t, campaignSpec{
		recipients: rcpts,
		text:       "Dear {{.name}}.\nUnsubscribe: {{unsubscribe_url}}\n",
		html:       `<p>Dear {{.name}}</p><a href="{{unsubscribe_url}}">unsubscribe</a>`,
		providers:  providerTOML("local", s, "connections = 12\nper_connection = 40"),
		extra:      campaignKeys + deliverabilityTOML(path),
		env:        map[string]string{"UNSUB": unsubSecret},
	})
	b.plan()
	if sum, err := b.run(); err != nil || sum.Sent != 300 {
		t.Fatalf("run: %+v %v", sum, err)
	}
	if st := s.Stats(); st.PeakSessions < 8 {
		t.Fatalf("only %d sessions at once: not the many senders this test is for", st.PeakSessions)
	}
	signer, _ := unsubscribe.NewSigner([]byte(unsubSecret))
	lookup := dnsStub(key)
	seen := map[string]bool{}
	for _, m := range s.Messages() {
		verifyOne(t, m, lookup, signer)
		seen[m.To[0]] = true
	}
	if len(seen) != 300 {
		t.Fatalf("received %d distinct recipients", len(seen))
	}
}

// TestUnsubscribeURLNeedsSection: a template calling unsubscribe_url in a
// campaign without [unsubscribe] is refused before anything is sent.
func TestUnsubscribeURLNeedsSection(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Keep: true})
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "body.txt"), "Bye {{unsubscribe_url}}\n")
	writeFile(t, filepath.Join(dir, "r.csv"), "email\na@example.com\n")
	host, port, _ := strings.Cut(s.Addr(), ":")
	cfg, err := config.Parse(fmt.Sprintf("[campaign]\nid = \"u\"\nfrom = \"a@example.com\"\nsubject = \"s\"\ntext = \"body.txt\"\nrecipients = \"r.csv\"\n[[provider]]\nhost = %q\nport = %s\ntls = \"none\"\n", host, port), dir, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	_, err = engine.New(cfg, nil, engine.Options{})
	var ie *engine.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "unsubscribe_url") || !strings.Contains(err.Error(), "[unsubscribe]") {
		t.Fatalf("New: %v", err)
	}
}

// TestWorkerSigningKeys: a worker signs with the key of its own
// configuration; one without [dkim] and [unsubscribe] does not deliver a
// campaign that needs them (and says why), one with them does.
func TestWorkerSigningKeys(t *testing.T) {
	t.Parallel()
	key, path := signingKey(t, "ed25519")
	s := startSink(t, sink.Config{Keep: true})
	b := setup(t, campaignSpec{
		recipients: addresses(10, "wk"),
		text:       "Dear {{.name}}.\nUnsubscribe: {{unsubscribe_url}}\n",
		html:       `<p>Dear {{.name}}</p><a href="{{unsubscribe_url}}">unsubscribe</a>`,
		providers:  providerTOML("local", s, "connections = 2"),
		extra:      campaignKeys + deliverabilityTOML(path),
		env:        map[string]string{"UNSUB": unsubSecret},
	})
	b.plan()
	stored, err := b.q.Spec(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(stored, []byte(unsubSecret)) || bytes.Contains(stored, []byte("PRIVATE")) {
		t.Fatal("the stored campaign holds a secret")
	}
	spec, _ := engine.DecodeSpec(stored)
	if spec.DKIMDomain != "example.com" || spec.DKIMSelector != selector || spec.UnsubscribeURL == "" || !spec.VERP {
		t.Fatalf("stored spec lacks what a worker needs: %+v", spec)
	}

	work := func(extra string, want int) string {
		t.Helper()
		cfg, err := config.ParseWorker(providerTOML("local", s, "connections = 2")+extra, b.dir, func(k string) string {
			return map[string]string{"UNSUB": unsubSecret}[k]
		})
		if err != nil {
			t.Fatal(err)
		}
		logs := &syncBuffer{}
		w, err := engine.NewWorker(cfg, b.q, engine.Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Timing: engine.Timing{StatusPoll: 50 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, stop := context.WithTimeout(context.Background(), 20*time.Second)
		defer stop()
		go func() {
			for int(s.Stats().Messages) < want && ctx.Err() == nil {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond) // a few looks at the campaigns
			stop()
		}()
		w.Work(ctx, context.Background())
		return logs.String()
	}
	logs := work("", 0)
	if s.Stats().Messages != 0 || !strings.Contains(logs, "cannot deliver campaign") || !strings.Contains(logs, "needs [unsubscribe] secret_env") {
		t.Fatalf("a worker without the secrets: %d sent; logs:\n%s", s.Stats().Messages, logs)
	}
	logs = work("\n[unsubscribe]\nsecret_env = \"UNSUB\"\n", 0)
	if s.Stats().Messages != 0 || !strings.Contains(logs, "needs a [dkim] section") {
		t.Fatalf("a worker without [dkim]: %d sent; logs:\n%s", s.Stats().Messages, logs)
	}
	_, wrongPath := signingKey(t, "ed25519")
	logs = work("\n[unsubscribe]\nsecret_env = \"UNSUB\"\n[dkim]\ndomain = \"example.com\"\nselector = \"other\"\nprivate_key = \""+wrongPath+"\"\n", 0)
	if s.Stats().Messages != 0 || !strings.Contains(logs, "this configuration's [dkim] is d=example.com s=other") {
		t.Fatalf("a worker with another selector: %d sent; logs:\n%s", s.Stats().Messages, logs)
	}
	work("\n[unsubscribe]\nsecret_env = \"UNSUB\"\n[dkim]\ndomain = \"example.com\"\nselector = \""+selector+"\"\nprivate_key = \""+path+"\"\n", 10)
	signer, _ := unsubscribe.NewSigner([]byte(unsubSecret))
	if n := len(s.Messages()); n != 10 {
		t.Fatalf("worker delivered %d of 10", n)
	}
	for _, m := range s.Messages() {
		verifyOne(t, m, dnsStub(key), signer)
	}
}

// TestPlainHeaders: without [unsubscribe], [dkim] and list_id a message
// carries none of their headers, only X-Herald-Campaign; a fixed
// bounce_address is the envelope sender. With VERP, a recipient whose
// address VERP cannot carry (a domain literal) gets the plain bounce
// address.
func TestPlainHeaders(t *testing.T) {
	t.Parallel()
	for _, useVERP := range []bool{false, true} {
		s := startSink(t, sink.Config{Keep: true})
		extra := "bounce_address = \"bounces@example.com\"\n"
		if useVERP {
			extra += "verp = true\n"
		}
		b := setup(t, campaignSpec{
			recipients: []string{"ann@example.org", "lit@[192.0.2.1]"},
			providers:  providerTOML("local", s, ""),
			extra:      extra,
		})
		b.plan()
		if sum, err := b.run(); err != nil || sum.Sent != 2 {
			t.Fatalf("run: %+v %v", sum, err)
		}
		for _, m := range s.Messages() {
			msg, _ := mail.ReadMessage(bytes.NewReader(m.Data))
			for _, h := range []string{"List-Unsubscribe", "List-Unsubscribe-Post", "List-Id", "DKIM-Signature"} {
				if v := msg.Header.Get(h); v != "" {
					t.Errorf("%s: %s: %q", m.To[0], h, v)
				}
			}
			if msg.Header.Get("X-Herald-Campaign") != "test" {
				t.Errorf("%s: no X-Herald-Campaign", m.To[0])
			}
			want := "bounces@example.com"
			if useVERP && m.To[0] == "ann@example.org" {
				want = "bounces+test+ann=example.org@example.com"
			}
			if m.From != want {
				t.Errorf("verp=%v %s: MAIL FROM %q, want %q", useVERP, m.To[0], m.From, want)
			}
		}
	}
}

// TestOneClickFromHeader: the List-Unsubscribe link of a delivered
// message, POSTed as a mail client does (RFC 8058) to the unsubscribe
// endpoint, puts that recipient on the campaign's suppression list.
func TestOneClickFromHeader(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Keep: true})
	b := setup(t, campaignSpec{
		recipients: []string{"ann@example.org", "Bob.Smith+news@Example.net"},
		providers:  providerTOML("local", s, ""),
		extra:      "\n[unsubscribe]\nurl = \"https://news.example.com/unsubscribe\"\nsecret_env = \"UNSUB\"\n",
		env:        map[string]string{"UNSUB": unsubSecret},
	})
	b.plan()
	if sum, err := b.run(); err != nil || sum.Sent != 2 {
		t.Fatalf("run: %+v %v", sum, err)
	}
	signer, _ := unsubscribe.NewSigner([]byte(unsubSecret))
	srv := httptest.NewServer(&unsubscribe.Handler{Signer: signer, Store: b.q})
	defer srv.Close()
	for _, m := range s.Messages() {
		if m.To[0] != "Bob.Smith+news@Example.net" {
			continue
		}
		msg, _ := mail.ReadMessage(bytes.NewReader(m.Data))
		lu := msg.Header.Get("List-Unsubscribe")
		if !strings.HasPrefix(lu, "<https://news.example.com/unsubscribe?t=") || strings.Contains(lu, "mailto:") {
			t.Fatalf("List-Unsubscribe %q", lu)
		}
		link, _ := url.Parse(strings.Trim(lu, "<>"))
		resp, err := http.Post(srv.URL+link.RequestURI(), "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST: %s", resp.Status)
		}
	}
	on, err := b.q.Suppressed(context.Background(), "example.com", "bob.smith+news@example.net", "ann@example.org")
	if err != nil || len(on) != 1 {
		t.Fatalf("suppressed: %+v %v", on, err)
	}
	if _, ok := on["bob.smith+news@example.net"]; !ok {
		t.Fatalf("suppressed: %+v", on)
	}
}
