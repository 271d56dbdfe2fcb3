package unsubscribe_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/heraldmail/herald/queue/boltq"
	"github.com/heraldmail/herald/unsubscribe"
)

type fixture struct {
	srv    *httptest.Server
	q      *boltq.Queue
	signer *unsubscribe.Signer
	base   *url.URL
}

func start(t *testing.T) *fixture {
	t.Helper()
	q, err := boltq.Open(filepath.Join(t.TempDir(), "q.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	signer, err := unsubscribe.NewSigner([]byte("a test secret of enough length"))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/unsubscribe", &unsubscribe.Handler{Signer: signer, Store: q})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	base, _ := url.Parse(srv.URL + "/unsubscribe")
	return &fixture{srv: srv, q: q, signer: signer, base: base}
}

func (f *fixture) suppressed(t *testing.T, list, key string) string {
	t.Helper()
	got, err := f.q.Suppressed(context.Background(), list, key)
	if err != nil {
		t.Fatal(err)
	}
	return got[key].Reason
}

// noRedirects is a client that reports redirects instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// oneClick posts as a mail client does under RFC 8058.
func oneClick(t *testing.T, link string) (*http.Response, string) {
	t.Helper()
	resp, err := noRedirects.Post(link, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestOneClickPost(t *testing.T) {
	f := start(t)
	sub := unsubscribe.Subject{List: "news.example", Key: "ann@example.org", Campaign: "nov"}
	link := f.signer.Link(f.base, sub)

	// A GET (a scanner, or a person before pressing the button) changes nothing.
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `<form method="post"`) || !strings.Contains(string(body), "ann@example.org") {
		t.Fatalf("GET: %d %s", resp.StatusCode, body)
	}
	if r := f.suppressed(t, "news.example", "ann@example.org"); r != "" {
		t.Fatalf("a GET suppressed the address: %q", r)
	}

	resp, body2 := oneClick(t, link)
	if resp.StatusCode != 200 || resp.Header.Get("Location") != "" || len(resp.Cookies()) != 0 {
		t.Fatalf("one-click POST: %d, Location %q, cookies %v", resp.StatusCode, resp.Header.Get("Location"), resp.Cookies())
	}
	if !strings.Contains(body2, "You are unsubscribed") {
		t.Fatalf("POST page: %s", body2)
	}
	if r := f.suppressed(t, "news.example", "ann@example.org"); r != "unsubscribed (one-click) from campaign nov" {
		t.Fatalf("reason %q", r)
	}
	if r := f.suppressed(t, "other.example", "ann@example.org"); r != "" {
		t.Fatal("the unsubscribe reached another list")
	}
	// Again: still 200, still one entry.
	if resp, _ := oneClick(t, link); resp.StatusCode != 200 {
		t.Fatalf("second POST: %d", resp.StatusCode)
	}
}

func TestForgedTokensRefused(t *testing.T) {
	f := start(t)
	other, _ := unsubscribe.NewSigner([]byte("somebody else's secret, long"))
	good := f.signer.Token(unsubscribe.Subject{List: "news.example", Key: "ann@example.org", Campaign: "nov"})
	// Bob's payload under Ann's signature.
	bobPayload, _, _ := strings.Cut(f.signer.Token(unsubscribe.Subject{List: "news.example", Key: "bob@example.org", Campaign: "nov"}), ".")
	_, annMAC, _ := strings.Cut(good, ".")
	forgedKey := bobPayload + "." + annMAC
	for name, tok := range map[string]string{
		"other secret": other.Token(unsubscribe.Subject{List: "news.example", Key: "bob@example.org"}),
		"swapped body": forgedKey,
		"truncated":    good[:len(good)-3],
		"missing":      "",
	} {
		u := *f.base
		u.RawQuery = url.Values{unsubscribe.Param: {tok}}.Encode()
		resp, body := oneClick(t, u.String())
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "not valid") {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
	for _, key := range []string{"ann@example.org", "bob@example.org"} {
		if r := f.suppressed(t, "news.example", key); r != "" {
			t.Errorf("%s suppressed by a refused token: %q", key, r)
		}
	}
	req, _ := http.NewRequest(http.MethodDelete, f.signer.Link(f.base, unsubscribe.Subject{List: "news.example", Key: "ann@example.org"}), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d", resp.StatusCode)
	}
}

// chromium returns the browser's path; it skips only when Chromium is
// absent and CI is unset.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "" {
		t.Skip("Chromium is not installed (CI installs it; apt-get install chromium)")
	}
	t.Fatal("Chromium is not installed, and CI must run the browser test")
	return ""
}

// A person follows the link in the body, sees the confirmation page in a
// real browser and presses the button.
func TestConfirmationPageInChromium(t *testing.T) {
	bin := chromium(t)
	f := start(t)
	link := f.signer.Link(f.base, unsubscribe.Subject{List: "news.example", Key: "cy@example.org", Campaign: "dec"})

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	sel := func(id string) chromedp.CSS { return chromedp.CSS("#" + id) }
	if err := chromedp.Do(ctx, chromedp.Navigate(link), chromedp.WaitVisible(sel("unsubscribe"))); err != nil {
		t.Fatal(err)
	}
	before, err := chromedp.Run(ctx, chromedp.Text(sel("title")))
	if err != nil {
		t.Fatal(err)
	}
	if before != "Unsubscribe" {
		t.Fatalf("page title before the click: %q", before)
	}
	if r := f.suppressed(t, "news.example", "cy@example.org"); r != "" {
		t.Fatalf("opening the page suppressed the address: %q", r)
	}
	if err := chromedp.Do(ctx, chromedp.Click(sel("unsubscribe")), chromedp.WaitNotPresent(sel("unsubscribe"))); err != nil {
		t.Fatal(err)
	}
	after, err := chromedp.Run(ctx, chromedp.Text(sel("title")))
	if err != nil {
		t.Fatal(err)
	}
	message, err := chromedp.Run(ctx, chromedp.Text(sel("message")))
	if err != nil {
		t.Fatal(err)
	}
	if after != "You are unsubscribed" || !strings.Contains(message, "cy@example.org") {
		t.Fatalf("after the click: %q / %q", after, message)
	}
	if r := f.suppressed(t, "news.example", "cy@example.org"); r != "unsubscribed (web page) from campaign dec" {
		t.Fatalf("reason after the click: %q", r)
	}
	// Following the link again shows the state, without the button.
	if err := chromedp.Do(ctx, chromedp.Navigate(link)); err != nil {
		t.Fatal(err)
	}
	again, err := chromedp.Run(ctx, chromedp.Text(sel("title")))
	if err != nil {
		t.Fatal(err)
	}
	if again != "You are unsubscribed" {
		t.Fatalf("second visit: %q", again)
	}
}

// TestPageLanguagesAndOwnTemplate: the built-in pages speak Chinese to a
// reader whose browser asks for it (or when configured), English
// otherwise; an operator's template replaces them, and one whose confirm
// page posts nowhere is refused when it is read.
func TestPageLanguagesAndOwnTemplate(t *testing.T) {
	f := start(t)
	sub := unsubscribe.Subject{List: "news.example", Key: "wang@example.cn", Campaign: "c"}
	link := f.signer.Link(f.base, sub)
	get := func(h http.Handler, lang string) string {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, link, nil)
		if lang != "" {
			req.Header.Set("Accept-Language", lang)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Body.String()
	}
	h := &unsubscribe.Handler{Signer: f.signer, Store: f.q}
	if b := get(h, "zh-CN,zh;q=0.9,en;q=0.8"); !strings.Contains(b, `lang="zh"`) || !strings.Contains(b, "不再向 wang@example.cn 发送来自 news.example 的邮件？") || !strings.Contains(b, ">退订</button>") {
		t.Fatalf("zh-CN reader:\n%s", b)
	}
	if b := get(h, "fr-FR,en;q=0.5"); !strings.Contains(b, "Stop mail from news.example to wang@example.cn?") {
		t.Fatalf("fr/en reader:\n%s", b)
	}
	if b := get(&unsubscribe.Handler{Signer: f.signer, Store: f.q, Language: "zh"}, "en-US"); !strings.Contains(b, "退订") {
		t.Fatalf("language = zh:\n%s", b)
	}

	dir := t.TempDir()
	own := filepath.Join(dir, "page.html")
	os.WriteFile(own, []byte(`<html><body class="{{.Kind}}"><h1>Newsletter — {{.Title}}</h1><p>{{.Message}}</p>{{if .Form}}<form method="post" action="{{.Action}}"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button>{{.Button}}</button></form>{{end}}</body></html>`), 0o644)
	page, err := unsubscribe.ParsePage(own)
	if err != nil {
		t.Fatal(err)
	}
	h = &unsubscribe.Handler{Signer: f.signer, Store: f.q, Page: page}
	if b := get(h, "zh"); !strings.Contains(b, `<body class="confirm"><h1>Newsletter — 退订</h1>`) {
		t.Fatalf("own template:\n%s", b)
	}
	req := httptest.NewRequest(http.MethodPost, link, strings.NewReader("List-Unsubscribe=One-Click"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), `<body class="done">`) || f.suppressed(t, "news.example", "wang@example.cn") == "" {
		t.Fatalf("own template, after the POST: %s", rec.Body.String())
	}

	for body, want := range map[string]string{
		`<p>{{.Message}}</p>`: "no form posting",
		`<p>{{.Mesage}}</p>`:  "Mesage",
		`<p>{{.Message</p>`:   "bad character",
	} {
		os.WriteFile(own, []byte(body), 0o644)
		if _, err := unsubscribe.ParsePage(own); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: want an error with %q, got %v", body, want, err)
		}
	}
}
