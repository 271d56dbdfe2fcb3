package unsubscribe

import (
	"bytes"
	"fmt"
	"html/template"
	"os"
	"strings"
)

// Page is what a page template is given. Kind says which page it is:
//
//	confirm      a person followed the link: ask, with a button (Form)
//	done         unsubscribed (also when the address already was)
//	invalid      the token is forged, altered or truncated (400)
//	try-again    the store could not record it just now (503)
//	not-allowed  a method other than GET, HEAD and POST (405)
//	bad-request  the POST body could not be read (400)
//
// Title, Message and Button are the built-in texts in Lang ("en" or
// "zh"); Address and List are the recipient and the list (the sending
// domain), empty on the error pages. A template of its own
// (unsubscribe.page) may use any of them; a confirm page must post its
// form to Action with the field List-Unsubscribe=One-Click.
type Page struct {
	Kind, Lang             string
	Title, Message, Button string
	Action                 string
	Form                   bool
	Address, List          string
}

// Kinds of page.
const (
	KindConfirm    = "confirm"
	KindDone       = "done"
	KindInvalid    = "invalid"
	KindTryAgain   = "try-again"
	KindNotAllowed = "not-allowed"
	KindBadRequest = "bad-request"
)

// Languages lists the built-in languages of the pages.
var Languages = []string{"en", "zh"}

// texts are the built-in titles and messages; %[1]s is the address, %[2]s
// the list.
var texts = map[string]map[string][2]string{
	"en": {
		KindConfirm:    {"Unsubscribe", "Stop mail from %[2]s to %[1]s?"},
		KindDone:       {"You are unsubscribed", "%[1]s gets no more mail from %[2]s."},
		KindInvalid:    {"This link is not valid", "The unsubscribe link is incomplete or was altered. Copy the whole link from the message, or reply to it and ask to be removed."},
		KindTryAgain:   {"Please try again", "Your request could not be recorded just now. Please try again in a minute."},
		KindNotAllowed: {"Not allowed", "Use the link in the message."},
		KindBadRequest: {"Bad request", "The request could not be read."},
	},
	"zh": {
		KindConfirm:    {"退订", "不再向 %[1]s 发送来自 %[2]s 的邮件？"},
		KindDone:       {"已退订", "%[1]s 将不再收到来自 %[2]s 的邮件。"},
		KindInvalid:    {"链接无效", "退订链接不完整或已被修改。请从邮件中复制完整的链接，或回复邮件要求退订。"},
		KindTryAgain:   {"请稍后再试", "暂时无法记录您的请求，请一分钟后再试。"},
		KindNotAllowed: {"不允许的操作", "请使用邮件中的链接。"},
		KindBadRequest: {"请求无效", "无法读取该请求。"},
	},
}

var buttons = map[string]string{"en": "Unsubscribe", "zh": "退订"}

// newPage fills the built-in texts of a page in lang.
func newPage(kind, lang, address, list string) Page {
	t := texts[lang][kind]
	msg := t[1]
	if strings.Contains(msg, "%[") {
		msg = fmt.Sprintf(msg, address, list)
	}
	return Page{Kind: kind, Lang: lang, Title: t[0], Message: msg, Button: buttons[lang], Address: address, List: list}
}

// DefaultPage is the built-in page template.
var DefaultPage = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="{{.Lang}}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;line-height:1.5}
button{font-size:1rem;padding:.6rem 1.2rem;cursor:pointer}</style></head>
<body><main>
<h1 id="title">{{.Title}}</h1>
<p id="message">{{.Message}}</p>
{{if .Form}}<form method="post" action="{{.Action}}">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button id="unsubscribe" type="submit">{{.Button}}</button>
</form>{{end}}
</main></body></html>
`))

// ParsePage reads an operator's page template (html/template) and renders
// every kind of page in every language once, so that a mistake shows when
// herald serve starts rather than to a recipient. A confirm page without a
// form posting to its Action is refused: its button would do nothing.
func ParsePage(path string) (*template.Template, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := template.New("page").Parse(string(b))
	if err != nil {
		return nil, err
	}
	for _, lang := range Languages {
		for kind := range texts[lang] {
			p := newPage(kind, lang, "someone@example.com", "example.com")
			if kind == KindConfirm {
				p.Form, p.Action = true, "/unsubscribe?t=check"
			}
			var buf bytes.Buffer
			if err := t.Execute(&buf, p); err != nil {
				return nil, fmt.Errorf("the %s page (%s): %w", kind, lang, err)
			}
			if kind == KindConfirm && !strings.Contains(buf.String(), `action="/unsubscribe?t=check"`) {
				return nil, fmt.Errorf("the confirm page has no form posting to {{.Action}} (with a List-Unsubscribe=One-Click field): its button would do nothing")
			}
		}
	}
	return t, nil
}

// language picks the page's language: the configured one, or the first of
// the reader's Accept-Language that is built in (English otherwise).
func language(configured, accept string) string {
	if configured != "" && configured != "auto" {
		return configured
	}
	for _, part := range strings.Split(accept, ",") {
		tag, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		base, _, _ := strings.Cut(strings.ToLower(tag), "-")
		for _, l := range Languages {
			if base == l {
				return l
			}
		}
	}
	return "en"
}
