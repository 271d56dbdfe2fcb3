package templates

import (
	"bytes"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"math"
	"sort"
	"strings"
	texttemplate "text/template"
	"text/template/parse"
	"time"
	"unsafe"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"
)

// Sources are the template texts of one campaign.
type Sources struct {
	Subject  string
	ToName   string // text/template of To:'s display name; optional
	Text     string // text/template; may be empty when HTML is set
	HTML     string // html/template; optional
	TextName string // names used in errors, e.g. the file name
	HTMLName string
	// MaxSize bounds what one recipient's subject, To: name, text and HTML
	// render to, together, in bytes: rendering stops with a *TooLargeError as
	// soon as it passes (0: no bound). A template that would render a
	// gigabyte costs no more than MaxSize.
	MaxSize int64
}

// Set is a campaign's parsed templates. Parse once per campaign; Render is
// safe for concurrent use.
type Set struct {
	subject *texttemplate.Template
	text    *texttemplate.Template
	html    *htmltemplate.Template
	toName  *texttemplate.Template // nil: To: is the bare address
	names   [4]string
	// unsub: a template calls unsubscribe_url. Its value is the
	// recipient's, so such a Set is never executed itself: each Renderer
	// executes its own clone, whose unsubscribe_url reads the Renderer's
	// link (html/template cannot be cloned once executed).
	unsub bool
	max   int64 // Sources.MaxSize
	// plain are the subject's, text's and to_name's templates as pieces,
	// when they are nothing but text and fields ({{.name}}); nil when not
	// (see plainOf).
	plainSubject, plainText, plainToName []piece
}

// piece is text, or a field's value (field != "").
type piece struct{ text, field string }

// plainOf returns t as pieces when it is one template of text and
// actions that print a field ({{.name}}), nothing else: most campaigns'
// subjects and text parts. Executing it then is writing the pieces, the
// fields' values as they are, which is what text/template does with a
// map of strings, at a tenth of the cost.
func plainOf(t *texttemplate.Template) []piece {
	if t == nil || len(t.Templates()) != 1 || t.Tree == nil || t.Tree.Root == nil {
		return nil
	}
	var out []piece
	for _, n := range t.Tree.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			out = append(out, piece{text: string(n.Text)})
		case *parse.ActionNode:
			p := n.Pipe
			if p == nil || len(p.Decl) > 0 || p.IsAssign || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
				return nil
			}
			f, ok := p.Cmds[0].Args[0].(*parse.FieldNode)
			if !ok || len(f.Ident) != 1 {
				return nil
			}
			out = append(out, piece{field: f.Ident[0]})
		default:
			return nil
		}
	}
	return out
}

// TooLargeError is returned by rendering that passed Sources.MaxSize.
type TooLargeError struct{ Limit int64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("the rendered subject and body pass %d bytes", e.Limit)
}

// Rendered is one recipient's message content.
type Rendered struct {
	Subject string
	ToName  string
	Text    string
	HTML    string
}

// ErrHeaderBreak is returned by Render when the subject or the To: name
// would contain a line break (header injection).
var ErrHeaderBreak = errors.New("contains a line break")

// Funcs is the documented function set available in every template:
//
//	default D V   V, or D when V is empty:        {{.name | default "friend"}}
//	upper V       upper case:                     {{upper .city}}
//	lower V       lower case
//	title V       first letter of each word upper: {{title .name}}
//	trim V        without leading and trailing space
//	now           the time the message is rendered
//	date L V      V (a time, or a string such as 2026-03-01 or RFC 3339)
//	              formatted with Go layout L:      {{date "2 Jan 2006" .signup}}
//	unsubscribe_url  the recipient's one-click unsubscribe link (an error
//	              when the campaign has no [unsubscribe]): <a href="{{unsubscribe_url}}">
func Funcs() map[string]any {
	title := cases.Title(language.Und)
	return map[string]any{
		"default": func(d string, v ...string) string {
			if len(v) == 0 || v[0] == "" {
				return d
			}
			return v[0]
		},
		"upper": strings.ToUpper,
		"lower": strings.ToLower,
		"title": func(s string) string { return title.String(s) },
		"trim":  strings.TrimSpace,
		"now":   time.Now,
		"date":  formatDate,
		// Bound per Renderer (see Renderer.RenderLink); this one says
		// why there is no link.
		UnsubscribeFunc: func() (string, error) { return "", ErrNoUnsubscribe },
	}
}

// UnsubscribeFunc is the name of the template function that gives the
// recipient's unsubscribe link.
const UnsubscribeFunc = "unsubscribe_url"

// ErrNoUnsubscribe is returned by rendering a template that calls
// unsubscribe_url without a link for the recipient.
var ErrNoUnsubscribe = errors.New(UnsubscribeFunc + ": this campaign has no unsubscribe link (configure [unsubscribe])")

var dateLayouts = []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"}

func formatDate(layout string, v any) (string, error) {
	switch t := v.(type) {
	case time.Time:
		return t.Format(layout), nil
	case string:
		s := strings.TrimSpace(t)
		if s == "" {
			return "", nil
		}
		for _, l := range dateLayouts {
			if tm, err := time.Parse(l, s); err == nil {
				return tm.Format(layout), nil
			}
		}
		return "", fmt.Errorf("date: %q is not a date (use 2006-01-02 or RFC 3339)", s)
	}
	return "", fmt.Errorf("date: cannot format a %T", v)
}

// Parse parses the campaign's templates with missingkey=error.
func Parse(src Sources) (*Set, error) {
	s := &Set{names: [4]string{"subject", or(src.TextName, "text"), or(src.HTMLName, "html"), "to_name"}, max: src.MaxSize}
	var errs []error
	var err error
	if strings.TrimSpace(src.Subject) == "" {
		errs = append(errs, errors.New("subject: empty"))
	}
	s.subject, err = texttemplate.New(s.names[0]).Funcs(Funcs()).Option("missingkey=error").Parse(src.Subject)
	if err != nil {
		errs = append(errs, err)
	}
	if src.ToName != "" {
		// unsubscribe_url is not bound here (see Renderer.clonesOf): a
		// display name has no use for it, and calling it fails.
		s.toName, err = texttemplate.New(s.names[3]).Funcs(Funcs()).Option("missingkey=error").Parse(src.ToName)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if src.Text != "" {
		s.text, err = texttemplate.New(s.names[1]).Funcs(Funcs()).Option("missingkey=error").Parse(src.Text)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if src.HTML != "" {
		s.html, err = htmltemplate.New(s.names[2]).Funcs(Funcs()).Option("missingkey=error").Parse(src.HTML)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if src.Text == "" && src.HTML == "" {
		errs = append(errs, errors.New("no body: a text or an HTML template is required"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("templates: %w", errors.Join(errs...))
	}
	var trees []*parse.Tree
	for _, t := range s.subject.Templates() {
		trees = append(trees, t.Tree)
	}
	if s.text != nil {
		for _, t := range s.text.Templates() {
			trees = append(trees, t.Tree)
		}
	}
	if s.html != nil {
		for _, t := range s.html.Templates() {
			trees = append(trees, t.Tree)
		}
	}
	for _, tr := range trees {
		s.unsub = s.unsub || calls(tr, UnsubscribeFunc)
	}
	s.plainSubject, s.plainText, s.plainToName = plainOf(s.subject), plainOf(s.text), plainOf(s.toName)
	return s, nil
}

// UsesUnsubscribe reports whether a template calls unsubscribe_url.
func (s *Set) UsesUnsubscribe() bool { return s.unsub }

// calls reports whether tree (or a template it defines) calls function fn.
func calls(tr *parse.Tree, fn string) bool {
	if tr == nil || tr.Root == nil {
		return false
	}
	found := false
	var visit func(n parse.Node)
	visit = func(n parse.Node) {
		if found || n == nil {
			return
		}
		switch n := n.(type) {
		case *parse.IdentifierNode:
			found = n.Ident == fn
		case *parse.ListNode:
			if n != nil {
				for _, c := range n.Nodes {
					visit(c)
				}
			}
		case *parse.ActionNode:
			visit(n.Pipe)
		case *parse.PipeNode:
			if n != nil {
				for _, c := range n.Cmds {
					visit(c)
				}
			}
		case *parse.CommandNode:
			for _, a := range n.Args {
				visit(a)
			}
		case *parse.ChainNode:
			visit(n.Node)
		case *parse.IfNode:
			visit(n.Pipe)
			visit(n.List)
			visit(n.ElseList)
		case *parse.RangeNode:
			visit(n.Pipe)
			visit(n.List)
			visit(n.ElseList)
		case *parse.WithNode:
			visit(n.Pipe)
			visit(n.List)
			visit(n.ElseList)
		case *parse.TemplateNode:
			visit(n.Pipe)
		}
	}
	visit(tr.Root)
	return found
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// HasText and HasHTML say which body parts the campaign has.
func (s *Set) HasText() bool { return s.text != nil }
func (s *Set) HasHTML() bool { return s.html != nil }

// Reference is a use of a recipient field in a template.
type Reference struct {
	Template string
	Field    string
	Where    string // "name:line:col"
}

// References lists the fields each template reads from the recipient (as
// .field or $.field), outside range and with blocks, in template order.
func (s *Set) References() []Reference {
	var refs []Reference
	add := func(name string, tr *parse.Tree) {
		if tr == nil || tr.Root == nil {
			return
		}
		walk(tr.Root, func(n parse.Node, field string) {
			loc, _ := tr.ErrorContext(n)
			refs = append(refs, Reference{Template: name, Field: field, Where: loc})
		})
	}
	add(s.names[0], s.subject.Tree)
	if s.text != nil {
		add(s.names[1], s.text.Tree)
	}
	if s.html != nil {
		add(s.names[2], s.html.Tree)
	}
	if s.toName != nil {
		add(s.names[3], s.toName.Tree)
	}
	return refs
}

// SubjectFields are the fields the subject and to_name read: their values
// reach a header.
func (s *Set) SubjectFields() []string {
	var out []string
	for _, r := range s.References() {
		if r.Template == s.names[0] || r.Template == s.names[3] {
			out = append(out, r.Field)
		}
	}
	return out
}

func walk(n parse.Node, fn func(parse.Node, string)) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walk(c, fn)
		}
	case *parse.ActionNode:
		walk(n.Pipe, fn)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			walk(c, fn)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			walk(a, fn)
		}
	case *parse.FieldNode:
		fn(n, n.Ident[0])
	case *parse.VariableNode:
		if len(n.Ident) > 1 && n.Ident[0] == "$" {
			fn(n, n.Ident[1])
		}
	case *parse.ChainNode:
		walk(n.Node, fn)
	case *parse.IfNode:
		walk(n.Pipe, fn)
		walk(n.List, fn)
		walk(n.ElseList, fn)
	case *parse.RangeNode:
		// Inside the body dot is the element, not the recipient.
		walk(n.Pipe, fn)
		walk(n.ElseList, fn)
	case *parse.WithNode:
		walk(n.Pipe, fn)
		walk(n.ElseList, fn)
	case *parse.TemplateNode:
		walk(n.Pipe, fn)
	}
}

// Check verifies the templates against the recipients' header row and one
// sample row before anything is sent: every field a template reads must be
// a column, and the sample must render. The error names template, line and
// field; every missing field is reported.
func (s *Set) Check(header []string, sample []string) error {
	cols := make(map[string]bool, len(header))
	for _, h := range header {
		cols[h] = true
	}
	var errs []error
	for _, r := range s.References() {
		if !cols[r.Field] {
			errs = append(errs, fmt.Errorf("%s: field %q is not a column of the recipients file (columns: %s)", r.Where, r.Field, strings.Join(sortedCopy(header), ", ")))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if sample != nil {
		var r Renderer
		// Whether the campaign has links is its composer's to check; here
		// any link will do.
		if _, err := r.RenderLink(s, Data(header, sample), "https://example.invalid/unsubscribe?t=check"); err != nil {
			return fmt.Errorf("rendering the first recipient: %w", err)
		}
	}
	return nil
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

// Data pairs header names with a record's values for rendering.
func Data(header, fields []string) map[string]string {
	m := make(map[string]string, len(header))
	for i, h := range header {
		if i < len(fields) {
			m[h] = fields[i]
		}
	}
	return m
}

// Renderer holds the buffers of one sender; it is not safe for concurrent
// use, but many Renderers may share one Set.
type Renderer struct {
	out  output
	link string // the current recipient's unsubscribe link
	// text holds the text part's bytes when RenderLinkShared rendered
	// it; lending is set while that part renders.
	text    bytes.Buffer
	lending bool
	// own are this Renderer's clones of Sets that call unsubscribe_url.
	own map[*Set]*clones
}

// clones are a Set's templates with unsubscribe_url bound to a Renderer.
type clones struct {
	subject, text *texttemplate.Template
	html          *htmltemplate.Template
}

// maxClones bounds the Sets a Renderer keeps clones of (a worker's
// campaigns come and go).
const maxClones = 16

// Render executes every template for one recipient.
func (r *Renderer) Render(s *Set, data map[string]string) (Rendered, error) {
	return r.RenderLink(s, data, "")
}

// RenderLinkShared is RenderLink whose Text is the Renderer's own bytes,
// not a copy: it is valid until the Renderer renders again, and whoever
// keeps it longer keeps a copy (strings.Clone). A sender that encodes
// each message's text at once saves a copy of its largest part.
func (r *Renderer) RenderLinkShared(s *Set, data map[string]string, unsubscribe string) (Rendered, error) {
	return r.render(s, data, unsubscribe, true)
}

// RenderLink is Render with the recipient's unsubscribe link, the value of
// unsubscribe_url ("" for none: a template that calls it fails).
func (r *Renderer) RenderLink(s *Set, data map[string]string, unsubscribe string) (Rendered, error) {
	return r.render(s, data, unsubscribe, false)
}

// render is RenderLink, lending the text part when lend is set
// (RenderLinkShared).
func (r *Renderer) render(s *Set, data map[string]string, unsubscribe string, lend bool) (Rendered, error) {
	subject, text, html := s.subject, s.text, s.html
	if s.unsub {
		c, err := r.clonesOf(s)
		if err != nil {
			return Rendered{}, err
		}
		subject, text, html = c.subject, c.text, c.html
		r.link = unsubscribe
	}
	var out Rendered
	var err error
	r.out.limit, r.out.left = s.max, s.max
	if s.max <= 0 {
		r.out.left = math.MaxInt64
	}
	if out.Subject, err = r.execPlain(s.plainSubject, subject.Execute, data); err != nil {
		return out, err
	}
	if strings.ContainsAny(out.Subject, "\r\n") {
		return out, fmt.Errorf("the subject %w", ErrHeaderBreak)
	}
	if s.toName != nil {
		if out.ToName, err = r.execPlain(s.plainToName, s.toName.Execute, data); err != nil {
			return out, err
		}
		if strings.ContainsAny(out.ToName, "\r\n") {
			return out, fmt.Errorf("the To: name (to_name) %w", ErrHeaderBreak)
		}
		out.ToName = strings.TrimSpace(out.ToName)
	}
	if text != nil {
		if lend {
			// Into the text's own buffer, which the next parts do not
			// overwrite: out.Text points into it.
			r.out.buf, r.text = r.text, r.out.buf
			r.lending = true
		}
		out.Text, err = r.execPlain(s.plainText, text.Execute, data)
		if lend {
			r.out.buf, r.text = r.text, r.out.buf
			r.lending = false
		}
		if err != nil {
			return out, err
		}
	}
	if html != nil {
		if out.HTML, err = r.exec(html.Execute, data); err != nil {
			return out, err
		}
	}
	return out, nil
}

// clonesOf returns this Renderer's clones of s, made on first use.
func (r *Renderer) clonesOf(s *Set) (*clones, error) {
	if c, ok := r.own[s]; ok {
		return c, nil
	}
	if r.own == nil || len(r.own) >= maxClones {
		r.own = map[*Set]*clones{}
	}
	fn := map[string]any{UnsubscribeFunc: func() (string, error) {
		if r.link == "" {
			return "", ErrNoUnsubscribe
		}
		return r.link, nil
	}}
	c := &clones{}
	var err error
	if c.subject, err = s.subject.Clone(); err != nil {
		return nil, err
	}
	c.subject.Funcs(fn)
	if s.text != nil {
		if c.text, err = s.text.Clone(); err != nil {
			return nil, err
		}
		c.text.Funcs(fn)
	}
	if s.html != nil {
		if c.html, err = s.html.Clone(); err != nil {
			return nil, err
		}
		c.html.Funcs(fn)
	}
	r.own[s] = c
	return c, nil
}

// execPlain writes pieces, the template as plainOf gave it, or executes
// it when there are none or a field is missing (for the template's own
// error).
func (r *Renderer) execPlain(pieces []piece, execute func(io.Writer, any) error, data map[string]string) (string, error) {
	if pieces == nil {
		return r.exec(execute, data)
	}
	o := &r.out
	o.buf.Reset()
	for _, p := range pieces {
		v := p.text
		if p.field != "" {
			var ok bool
			if v, ok = data[p.field]; !ok {
				return r.exec(execute, data)
			}
		}
		if err := o.writeString(v); err != nil {
			return "", err
		}
	}
	o.left -= int64(o.buf.Len())
	return r.result(), nil
}

// result is what the last part rendered: a copy, or while the text of a
// RenderLinkShared renders, the buffer's own bytes.
func (r *Renderer) result() string {
	b := r.out.buf.Bytes()
	if r.lending && len(b) > 0 {
		return unsafe.String(&b[0], len(b))
	}
	return string(b)
}

func (r *Renderer) exec(execute func(io.Writer, any) error, data map[string]string) (string, error) {
	o := &r.out
	o.buf.Reset()
	if err := execute(o, data); err != nil {
		return "", err
	}
	o.left -= int64(o.buf.Len())
	return r.result(), nil
}

// output is what templates execute into: a buffer, within what is left of
// the Set's size bound for the recipient.
type output struct {
	buf   bytes.Buffer
	left  int64 // bytes the recipient's rendering may still add
	limit int64 // the Set's bound, for the error
}

func (o *output) writeString(s string) error {
	if int64(len(s)) > o.left-int64(o.buf.Len()) {
		return &TooLargeError{Limit: o.limit}
	}
	o.buf.WriteString(s)
	return nil
}

func (o *output) Write(p []byte) (int, error) {
	if int64(len(p)) > o.left-int64(o.buf.Len()) {
		return 0, &TooLargeError{Limit: o.limit}
	}
	return o.buf.Write(p)
}
