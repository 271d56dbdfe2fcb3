package templates

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestUnsubscribeURL(t *testing.T) {
	t.Parallel()
	s, err := Parse(Sources{
		Subject: "Hi {{.name}}",
		Text:    "Bye: {{unsubscribe_url}}\n",
		HTML:    `<a href="{{unsubscribe_url}}">unsubscribe</a> {{unsubscribe_url}}`,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !s.UsesUnsubscribe() {
		t.Fatal("UsesUnsubscribe = false")
	}
	const link = "https://news.example.com/unsubscribe?lang=en&t=abc.def"
	var r Renderer
	out, err := r.RenderLink(s, map[string]string{"name": "Ann"}, link)
	if err != nil {
		t.Fatal(err)
	}
	if out.Text != "Bye: "+link+"\n" {
		t.Errorf("text %q", out.Text)
	}
	escaped := strings.ReplaceAll(link, "&", "&amp;")
	if out.HTML != `<a href="`+escaped+`">unsubscribe</a> `+escaped {
		t.Errorf("html %q", out.HTML)
	}
	// Without a link, a template that needs one fails: no message goes
	// out with an empty link.
	if _, err := r.Render(s, map[string]string{"name": "Ann"}); !errors.Is(err, ErrNoUnsubscribe) {
		t.Errorf("without a link: %v", err)
	}
	// The sample check does not need the campaign's link.
	if err := s.Check([]string{"email", "name"}, []string{"a@example.com", "Ann"}); err != nil {
		t.Errorf("Check: %v", err)
	}
	// A javascript: link would be filtered by html/template, as any value.
	out, _ = r.RenderLink(s, map[string]string{"name": "Ann"}, "javascript:alert(1)")
	if strings.Contains(out.HTML, `href="javascript`) {
		t.Errorf("unsafe URL in href: %q", out.HTML)
	}
}

func TestUsesUnsubscribe(t *testing.T) {
	t.Parallel()
	for tmpl, want := range map[string]bool{
		"plain {{.name}}":                                              false,
		"{{if .vip}}{{unsubscribe_url}}{{end}}":                        true,
		"{{with .x}}{{unsubscribe_url}}{{end}}":                        true,
		"{{range .x}}{{end}}{{printf \"%s\" unsubscribe_url}}":         true,
		"{{define \"f\"}}{{unsubscribe_url}}{{end}}{{template \"f\"}}": true,
		"{{.unsubscribe_url}}":                                         false, // a column, not the function
	} {
		s, err := Parse(Sources{Subject: "s", Text: tmpl})
		if err != nil {
			t.Fatalf("%s: %v", tmpl, err)
		}
		if s.UsesUnsubscribe() != want {
			t.Errorf("%s: UsesUnsubscribe = %v", tmpl, !want)
		}
	}
}

// Many senders render one Set at once, each its own recipient's link.
func TestUnsubscribeURLConcurrent(t *testing.T) {
	t.Parallel()
	s, err := Parse(Sources{Subject: "{{.name}}", Text: "{{.name}} {{unsubscribe_url}}", HTML: `<a href="{{unsubscribe_url}}">{{.name}}</a>`})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			var r Renderer
			other, _ := Parse(Sources{Subject: "x", Text: "{{unsubscribe_url}}"})
			for i := range 200 {
				name := fmt.Sprintf("n%d-%d", g, i)
				link := "https://u.example.com/?t=" + name
				out, err := r.RenderLink(s, map[string]string{"name": name}, link)
				if err != nil || out.Text != name+" "+link || out.HTML != `<a href="`+link+`">`+name+`</a>` {
					errs <- fmt.Errorf("%s: %+v %v", name, out, err)
					return
				}
				// A sender switching between campaigns.
				if out, err := r.RenderLink(other, nil, link+"x"); err != nil || out.Text != link+"x" {
					errs <- fmt.Errorf("other set: %+v %v", out, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
