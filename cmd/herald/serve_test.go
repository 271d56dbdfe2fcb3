package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldmail/herald/sink"
	"github.com/heraldmail/herald/unsubscribe"
)

const testSecret = "serve-test-secret-0123456789"

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServe runs herald serve until the test ends.
func startServe(t *testing.T, conf string) string {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(herald, "serve", "--config", conf, "--listen", addr)
	cmd.Env = append(os.Environ(), "HERALD_UNSUBSCRIBE_SECRET="+testSecret)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("herald serve said:\n%s", errb.String())
		}
	})
	waitFor(t, 10*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

// local points an unsubscribe link at herald serve's address.
func local(t *testing.T, link, addr string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil || u.Scheme != "https" || u.Host != "news.example" {
		t.Fatalf("link %q", link)
	}
	u.Scheme, u.Host = "http", addr
	return u.String()
}

func post(t *testing.T, link string) int {
	t.Helper()
	resp, err := http.Post(link, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// A one-click POST to the link in a message's List-Unsubscribe header, sent
// while herald send holds the embedded store, keeps its recipient from the
// rest of that campaign and from the next one.
func TestServeUnsubscribesDuringCampaign(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Keep: true})
	const n = 200
	unsub := "[unsubscribe]\nurl = \"https://news.example/unsubscribe\"\nmailto = \"unsubscribe@example.com\"\nsecret_env = \"HERALD_UNSUBSCRIBE_SECRET\"\n"
	c := newCampaignOn(t, s, n, "rate = 20\nburst = 1", unsub)
	addr := startServe(t, c.conf)
	env := []string{"HERALD_UNSUBSCRIBE_SECRET=" + testSecret}

	send := exec.Command(herald, "send", "--config", c.conf, "--quiet")
	send.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	send.Stdout, send.Stderr = &out, &errb
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() bool { return s.Received("u0@example.com") == 1 })
	var first *sink.Message
	for _, m := range s.Messages() {
		if m.To[0] == "u0@example.com" {
			first = &m
		}
	}
	msg, err := mail.ReadMessage(bytes.NewReader(first.Data))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" {
		t.Fatalf("List-Unsubscribe-Post: %q", msg.Header.Get("List-Unsubscribe-Post"))
	}
	var https string
	for _, part := range strings.Split(msg.Header.Get("List-Unsubscribe"), ",") {
		part = strings.Trim(strings.TrimSpace(part), "<>")
		if strings.HasPrefix(part, "https://") {
			https = part
		}
	}
	// u0 through its own header; the last recipient, not leased for
	// another nine seconds, with a link signed the same way.
	if code := post(t, local(t, https, addr)); code != 200 {
		t.Fatalf("one-click POST for u0: %d", code)
	}
	signer, _ := unsubscribe.NewSigner([]byte(testSecret))
	base, _ := url.Parse("https://news.example/unsubscribe")
	last := fmt.Sprintf("u%d@example.com", n-1)
	if code := post(t, local(t, signer.Link(base, unsubscribe.Subject{List: "example.com", Key: last, Campaign: "cmdtest"}), addr)); code != 200 {
		t.Fatalf("one-click POST for %s: %d", last, code)
	}
	if err := send.Wait(); err != nil {
		t.Fatalf("send: %v\n%s\n%s", err, out.String(), errb.String())
	}
	if got := s.Received(last); got != 0 {
		t.Fatalf("%s unsubscribed during the campaign and still received %d", last, got)
	}
	if s.Stats().Messages != n-1 {
		t.Fatalf("server got %d messages, want %d", s.Stats().Messages, n-1)
	}
	code, list, e := runHerald(t, env, "suppress", "list", "--config", c.conf)
	if code != 0 || !strings.Contains(list, "u0@example.com\t") || !strings.Contains(list, last+"\t") || !strings.Contains(list, "unsubscribed (one-click) from campaign cmdtest") {
		t.Fatalf("suppress list: %d\n%s\n%s", code, list, e)
	}

	// The next campaign from the same domain skips both.
	conf, _ := os.ReadFile(c.conf)
	next := strings.Replace(strings.Replace(string(conf), `id = "cmdtest"`, `id = "cmdtest-2"`, 1), "rate = 20\n", "", 1)
	os.WriteFile(c.conf, []byte(next), 0o644)
	code, o, e := runHerald(t, env, "send", "--config", c.conf, "--quiet")
	if code != 0 || !strings.Contains(o+e, "2 suppressed") {
		t.Fatalf("second campaign: %d\n%s\n%s", code, o, e)
	}
	if s.Received("u0@example.com") != 1 || s.Received(last) != 0 || s.Received("u1@example.com") != 2 {
		t.Fatalf("second campaign: u0 %d, %s %d, u1 %d", s.Received("u0@example.com"), last, s.Received(last), s.Received("u1@example.com"))
	}
}

// TestServeOwnPage: herald serve answers with the operator's page
// template (unsubscribe.page) in the configured language, and refuses at
// start a template whose confirm page has no form (exit 2, naming the key).
func TestServeOwnPage(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	unsub := "[unsubscribe]\nurl = \"https://news.example/unsubscribe\"\nsecret_env = \"HERALD_UNSUBSCRIBE_SECRET\"\npage = \"page.html\"\nlanguage = \"zh\"\n"
	c := newCampaignOn(t, s, 1, "", unsub)
	page := filepath.Join(c.dir, "page.html")
	os.WriteFile(page, []byte(`<p>{{.Message}}</p>`), 0o644)
	code, _, e := runHerald(t, []string{"HERALD_UNSUBSCRIBE_SECRET=" + testSecret}, "serve", "--config", c.conf, "--listen", freeAddr(t))
	if code != exitInput || !strings.Contains(e, "unsubscribe.page:") || !strings.Contains(e, "no form") {
		t.Fatalf("a page without a form: exit %d\n%s", code, e)
	}
	os.WriteFile(page, []byte(`<h1 class="{{.Kind}}">{{.Title}}</h1><p>{{.Message}}</p>{{if .Form}}<form method="post" action="{{.Action}}"><button>{{.Button}}</button></form>{{end}}`), 0o644)
	addr := startServe(t, c.conf)
	signer, _ := unsubscribe.NewSigner([]byte(testSecret))
	base, _ := url.Parse("https://news.example/unsubscribe")
	resp, err := http.Get(local(t, signer.Link(base, unsubscribe.Subject{List: "example.com", Key: "u0@example.com", Campaign: "cmdtest"}), addr))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `<h1 class="confirm">退订</h1>`) || !strings.Contains(string(b), "u0@example.com") {
		t.Fatalf("own page, zh: %d\n%s", resp.StatusCode, b)
	}
}
