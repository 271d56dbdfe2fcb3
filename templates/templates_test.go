package templates

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestRenderAndEscape(t *testing.T) {
	t.Parallel()
	s, err := Parse(Sources{
		Subject: "Hi {{.name | default \"friend\"}} from {{upper .city}}",
		Text:    "Dear {{title .name}},\n{{trim .note}} {{lower .city}} {{date \"2 Jan 2006\" .joined}}",
		HTML:    "<p>{{.name}}</p><p>{{.note}}</p>",
	})
	if err != nil {
		t.Fatal(err)
	}
	var r Renderer
	out, err := r.Render(s, map[string]string{"name": "ada <b>lovelace</b>", "city": "Oslo", "note": "  <script>x</script> ", "joined": "2024-03-01"})
	if err != nil {
		t.Fatal(err)
	}
	if out.Subject != "Hi ada <b>lovelace</b> from OSLO" {
		t.Errorf("subject %q", out.Subject)
	}
	if !strings.Contains(out.Text, "Dear Ada <B>Lovelace</B>,") || !strings.Contains(out.Text, "<script>x</script> oslo 1 Mar 2024") {
		t.Errorf("text %q", out.Text)
	}
	if strings.Contains(out.HTML, "<script>") || !strings.Contains(out.HTML, "&lt;script&gt;") || !strings.Contains(out.HTML, "ada &lt;b&gt;") {
		t.Errorf("html not escaped: %q", out.HTML)
	}
	out, err = r.Render(s, map[string]string{"name": "", "city": "x", "note": "", "joined": ""})
	if err != nil || !strings.HasPrefix(out.Subject, "Hi friend") {
		t.Errorf("default: %q %v", out.Subject, err)
	}
}

func TestFuncs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tmpl, want string
		err        bool
	}{
		{`{{default "x" .v}}`, "x", false},
		{`{{.v | default "x"}}`, "x", false},
		{`{{upper "aé"}}`, "AÉ", false},
		{`{{lower "AÉ"}}`, "aé", false},
		{`{{title "hello wide world"}}`, "Hello Wide World", false},
		{`{{trim "  a b  "}}`, "a b", false},
		{`{{date "2006/01/02" "2026-11-24T10:00:00Z"}}`, "2026/11/24", false},
		{`{{date "Jan 2006" "2026-11-24 10:00"}}`, "Nov 2026", false},
		{`{{date "2006" "yesterday"}}`, "", true},
		{`{{date "2006" now | len}}`, "4", false},
	}
	for _, tt := range tests {
		s, err := Parse(Sources{Subject: "s", Text: tt.tmpl})
		if err != nil {
			t.Fatalf("%s: %v", tt.tmpl, err)
		}
		var r Renderer
		out, err := r.Render(s, map[string]string{"v": ""})
		if tt.err != (err != nil) {
			t.Errorf("%s: err %v", tt.tmpl, err)
			continue
		}
		if !tt.err && out.Text != tt.want {
			t.Errorf("%s = %q, want %q", tt.tmpl, out.Text, tt.want)
		}
	}
}

func TestCheckNamesTemplateLineAndField(t *testing.T) {
	t.Parallel()
	s, err := Parse(Sources{
		Subject:  "Hello {{.name}}",
		Text:     "line one\n{{if .vip}}VIP {{.nmae}}{{end}}\n{{range .list}}{{.inner}}{{end}}{{$.city}}",
		TextName: "welcome.txt",
		HTML:     "<p>{{.name}}</p>\n\n<p>{{.plan}}</p>",
		HTMLName: "welcome.html",
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Check([]string{"email", "name", "vip", "list"}, nil)
	if err == nil {
		t.Fatal("want an error")
	}
	msg := err.Error()
	for _, want := range []string{`welcome.txt:2:`, `"nmae"`, `welcome.txt:3:`, `"city"`, `welcome.html:3:`, `"plan"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not name %s:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, `"inner"`) {
		t.Errorf("a field inside range refers to the element, not a column:\n%s", msg)
	}
	if err := s.Check([]string{"email", "name", "vip", "list", "nmae", "city", "plan"}, nil); err != nil {
		t.Errorf("all columns present: %v", err)
	}
}

func TestCheckRendersSample(t *testing.T) {
	t.Parallel()
	s, err := Parse(Sources{Subject: "x", Text: `{{date "2006" .joined}}`})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check([]string{"email", "joined"}, []string{"a@b.c", "not a date"}); err == nil {
		t.Fatal("a sample that cannot render must fail the check")
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	if _, err := Parse(Sources{Subject: "{{.x", Text: "ok"}); err == nil || !strings.Contains(err.Error(), "subject") {
		t.Errorf("subject syntax error: %v", err)
	}
	if _, err := Parse(Sources{Subject: "ok", Text: "{{nosuchfunc .x}}", TextName: "a.txt"}); err == nil || !strings.Contains(err.Error(), "a.txt") {
		t.Errorf("unknown function: %v", err)
	}
	if _, err := Parse(Sources{Subject: "ok"}); err == nil {
		t.Error("no body accepted")
	}
}

func TestSubjectLineBreakRefused(t *testing.T) {
	t.Parallel()
	s, _ := Parse(Sources{Subject: "Hi {{.name}}", Text: "x"})
	var r Renderer
	if _, err := r.Render(s, map[string]string{"name": "a\r\nBcc: x@example.com"}); !errors.Is(err, ErrHeaderBreak) {
		t.Fatalf("want ErrHeaderBreak, got %v", err)
	}
	if got := s.SubjectFields(); len(got) != 1 || got[0] != "name" {
		t.Fatalf("SubjectFields = %v", got)
	}
}

func FuzzRender(f *testing.F) {
	f.Add("Hello {{.name}}", "ada")
	f.Add("{{upper .name}} {{title .name}}", "x\r\ny")
	f.Add("{{date \"2006\" .name}}", "2026-01-01")
	f.Fuzz(func(t *testing.T, subject, value string) {
		s, err := Parse(Sources{Subject: subject, Text: "{{.name}}", HTML: "<a title=\"{{.name}}\">{{.name}}</a>"})
		if err != nil {
			return
		}
		var r Renderer
		out, err := r.Render(s, map[string]string{"name": value, "email": "a@b.c"})
		if err != nil {
			return
		}
		if strings.ContainsAny(out.Subject, "\r\n") {
			t.Fatalf("line break reached the subject: %q", out.Subject)
		}
		// Only the template's own two tags may hold angle brackets.
		if strings.Count(out.HTML, "<") != 2 || strings.Count(out.HTML, ">") != 2 {
			t.Fatalf("HTML not escaped: %q", out.HTML)
		}
	})
}

// TestMaxSize: rendering stops as soon as a recipient's subject, text and
// HTML together pass Sources.MaxSize, whatever the templates would make: a
// template of a gigabyte costs no more than the bound, in time and memory.
func TestMaxSize(t *testing.T) {
	t.Parallel()
	gigabyte := "{{range 100000}}" + strings.Repeat("0123456789", 1000) + "{{end}}"
	tests := []struct {
		name string
		src  Sources
		ok   bool
	}{
		{"within", Sources{Subject: "0123456789", Text: strings.Repeat("t", 600), HTML: strings.Repeat("h", 500), MaxSize: 1110}, true},
		{"the three together pass", Sources{Subject: "0123456789", Text: strings.Repeat("t", 600), HTML: strings.Repeat("h", 500), MaxSize: 1109}, false},
		{"a gigabyte", Sources{Subject: "s", Text: gigabyte, MaxSize: 1 << 20}, false},
		{"a gigabyte in the subject", Sources{Subject: gigabyte, Text: "t", MaxSize: 1 << 20}, false},
		{"a gigabyte, byte by byte", Sources{Subject: "s", HTML: "{{range 100000}}{{range 10000}}x{{end}}{{end}}", MaxSize: 64 << 10}, false},
		{"a value", Sources{Subject: "s", Text: "{{.big}}", MaxSize: 1 << 20}, false},
		{"no bound", Sources{Subject: "s", Text: "{{range 100}}" + strings.Repeat("0123456789", 1000) + "{{end}}"}, true},
	}
	data := map[string]string{"big": strings.Repeat("b", 1<<20+1)}
	for _, tt := range tests {
		s, err := Parse(tt.src)
		if err != nil {
			t.Fatal(err)
		}
		var r Renderer
		start := time.Now()
		_, err = r.Render(s, data)
		var tl *TooLargeError
		if tt.ok != (err == nil) || (!tt.ok && (!errors.As(err, &tl) || tl.Limit != tt.src.MaxSize)) {
			t.Errorf("%s: %v", tt.name, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: %v to render", tt.name, d)
		}
		if !tt.ok {
			// The Renderer goes on with the next recipient.
			if _, err := r.Render(s, map[string]string{"big": "small"}); tt.name == "a value" && err != nil {
				t.Errorf("%s: the next recipient: %v", tt.name, err)
			}
		}
	}
}

// TestToName: campaign.to_name renders the To: display name from the
// recipient's fields; its fields are checked against the columns like the
// subject's, and a value with a line break is refused.
func TestToName(t *testing.T) {
	s, err := Parse(Sources{Subject: "Hi", ToName: "{{.first}} {{.last | default \"\"}}", Text: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var r Renderer
	out, err := r.Render(s, map[string]string{"first": "王", "last": "小明"})
	if err != nil || out.ToName != "王 小明" {
		t.Fatalf("got %q %v", out.ToName, err)
	}
	if out, _ := r.Render(s, map[string]string{"first": "Ann", "last": ""}); out.ToName != "Ann" {
		t.Fatalf("trailing space kept: %q", out.ToName)
	}
	if _, err := r.Render(s, map[string]string{"first": "a\r\nBcc: x@example.com", "last": ""}); !errors.Is(err, ErrHeaderBreak) || !strings.Contains(err.Error(), "to_name") {
		t.Fatalf("want ErrHeaderBreak naming to_name, got %v", err)
	}
	if err := s.Check([]string{"email", "first"}, nil); err == nil || !strings.Contains(err.Error(), `to_name:1:`) || !strings.Contains(err.Error(), `"last"`) {
		t.Fatalf("a missing column in to_name: %v", err)
	}
	if got := s.SubjectFields(); len(got) != 2 {
		t.Fatalf("to_name's fields reach a header: %v", got)
	}
}

// A template of text and fields is written piece by piece, and renders
// exactly as executing it does: the same text, the same errors.
func TestPlainTemplatesRenderAsExecuted(t *testing.T) {
	cases := []struct {
		subject, text, toName string
		max                   int64
		plain                 bool
	}{
		{"Hello {{.name}}", "Dear {{.name}},\n\nfrom {{ .city }}.\n{{- .city}}", "{{.name}}", 0, true},
		{"{{.name}}{{.name}}", "only text", "", 0, true},
		{"Hi {{.missing}}", "x", "", 0, true},
		{"Hi {{.name}}", "{{.name | upper}}", "", 0, false},
		{"Hi {{.name}}", "{{if .name}}yes{{end}}", "", 0, false},
		{"Hi {{.name}}", "{{define \"x\"}}a{{end}}{{template \"x\"}}", "", 0, false},
		{"Hi {{.name}}", "{{.name}} lives in {{.city}}", "", 20, true},
		{"Hi {{.name}}", "{{/* a comment */}}{{.name}}", "", 0, true},
	}
	data := map[string]string{"name": "Zoë <z>", "city": "Köln"}
	for _, c := range cases {
		set, err := Parse(Sources{Subject: c.subject, Text: c.text, ToName: c.toName, MaxSize: c.max})
		if err != nil {
			t.Fatal(err)
		}
		if (set.plainText != nil) != c.plain {
			t.Errorf("%q: written in pieces: %v, want %v", c.text, set.plainText != nil, c.plain)
		}
		var r1, r2 Renderer
		got, gerr := r1.Render(set, data)
		slow := *set
		slow.plainSubject, slow.plainText, slow.plainToName = nil, nil, nil
		want, werr := r2.Render(&slow, data)
		if got != want || fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Errorf("%q %q: pieces give %+v, %v; executing gives %+v, %v", c.subject, c.text, got, gerr, want, werr)
		}
	}
}

// TestRenderLinkShared: the same parts as RenderLink, for plain templates
// and executed ones, with and without unsubscribe_url, and within the size
// bound alike. Text is the Renderer's own bytes, which its next render
// writes over; every other part is a copy that stays as it was.
func TestRenderLinkShared(t *testing.T) {
	for _, src := range []Sources{
		{Subject: "Hi {{.name}}", ToName: "{{.name}}", Text: "Dear {{.name}},\nthe text.\n", HTML: "<p>{{.name}}</p>"},
		{Subject: "Hi {{.name | upper}}", Text: "Dear {{.name | upper}}: {{unsubscribe_url}}\n", HTML: "<a href=\"{{unsubscribe_url}}\">{{.name}}</a>"},
		{Subject: "Hi", Text: "{{.name}} {{.name}} {{.name}}", MaxSize: 12},
	} {
		s, err := Parse(src)
		if err != nil {
			t.Fatal(err)
		}
		var own, shared Renderer
		data := func(name string) map[string]string { return map[string]string{"name": name} }
		first, err := shared.RenderLinkShared(s, data("Ann"), "https://u.example/1")
		want, werr := own.RenderLink(s, data("Ann"), "https://u.example/1")
		if (err == nil) != (werr == nil) || first != want {
			t.Fatalf("%+v: shared %+v, %v; RenderLink %+v, %v", src, first, err, want, werr)
		}
		if werr != nil {
			continue // over the bound in both
		}
		kept := Rendered{Subject: strings.Clone(first.Subject), ToName: strings.Clone(first.ToName), Text: strings.Clone(first.Text), HTML: strings.Clone(first.HTML)}
		second, err := shared.RenderLinkShared(s, data("Bob"), "https://u.example/2")
		if want, werr := own.RenderLink(s, data("Bob"), "https://u.example/2"); err != nil || werr != nil || second != want {
			t.Fatalf("%+v: second shared %+v, %v; RenderLink %+v, %v", src, second, err, want, werr)
		}
		if first.Subject != kept.Subject || first.ToName != kept.ToName || first.HTML != kept.HTML {
			t.Errorf("%+v: a part other than the text changed with the next render: %+v, was %+v", src, first, kept)
		}
		if first.Text == kept.Text {
			t.Errorf("%+v: the first text %q was not the Renderer's own bytes", src, first.Text)
		}
	}
}
