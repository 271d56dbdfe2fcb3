package bounce

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"

	"golang.org/x/text/encoding/htmlindex"
)

// Kind is what a message says about one recipient.
type Kind uint8

const (
	// NotBounce: an auto-reply, a delay notice, a delivery report of
	// success, or mail that is not a report at all. Nothing to record.
	NotBounce Kind = iota
	// Soft: delivery failed for a reason that may pass (4.x.x, a full
	// mailbox, a message too large, a policy or spam rejection, an
	// expired queue lifetime). Counted; suppresses after bounces.soft_limit.
	Soft
	// Hard: the address does not work (no such user, no such domain, a
	// disabled mailbox). Suppresses at once.
	Hard
	// Complaint: the recipient marked the message as spam (an ARF
	// feedback report, RFC 5965, from a provider's feedback loop).
	// Suppresses at once and counts toward complaint_threshold.
	Complaint
)

var kindNames = [...]string{"not a bounce", "soft", "hard", "complaint"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Recipient is one failed (or delayed) recipient of a report.
type Recipient struct {
	// Address is the recipient as herald sent it: the DSN's
	// Original-Recipient, else its Final-Recipient, else the address the
	// text names.
	Address string
	// Action is the DSN's Action field in lower case (failed, delayed,
	// delivered, relayed, expanded); "failed" or "delayed" for a text bounce.
	Action string
	// Status is the enhanced status code (RFC 3463) such as "5.1.1", from
	// the DSN or found in the text; empty when there is none.
	Status string
	// Diagnostic is the remote server's reply or the reporting MTA's
	// explanation, on one line.
	Diagnostic string
	Kind       Kind
}

// Report is what Parse makes of one message of the bounce mailbox.
type Report struct {
	// Format names how the message was recognised: "dsn", "qmail", "exim",
	// "postfix", "sendmail", "exchange", "gmail", "text" (another plain-text
	// bounce), "auto-reply", or "" (nothing recognised).
	Format    string
	MessageID string // of the report itself, without <>
	Subject   string
	// Envelope lists the addresses the report was delivered to
	// (Delivered-To, X-Original-To, Envelope-To, X-Envelope-To, To), where a
	// VERP address shows the campaign and the recipient.
	Envelope []string
	// Original is the header of the returned message (message/rfc822,
	// text/rfc822-headers, or a copy inline in the text); nil if none.
	Original   mail.Header
	Recipients []Recipient
	// Note says why a message is not a bounce ("delay notice", "auto-reply",
	// "delivery report without failures", "not a delivery report").
	Note string
}

// Kind is the strongest kind among the recipients.
func (r *Report) Kind() Kind {
	k := NotBounce
	for _, rc := range r.Recipients {
		k = max(k, rc.Kind)
	}
	return k
}

// maxDepth bounds MIME nesting.
const maxDepth = 8

// Parse reads one message of the bounce mailbox. It fails only when the
// message is not a mail message at all; anything it does not recognise is
// a Report of Kind NotBounce.
func Parse(raw []byte) (*Report, error) {
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("not a mail message: %w", err)
	}
	r := &Report{
		MessageID: strings.Trim(strings.TrimSpace(m.Header.Get("Message-Id")), "<>"),
		Subject:   decodeWords(m.Header.Get("Subject")),
	}
	for _, h := range []string{"Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To"} {
		for _, v := range m.Header[textproto.CanonicalMIMEHeaderKey(h)] {
			if list, err := mail.ParseAddressList(v); err == nil {
				for _, a := range list {
					r.Envelope = append(r.Envelope, a.Address)
				}
			} else if a := strings.Trim(strings.TrimSpace(v), "<>"); strings.Contains(a, "@") {
				r.Envelope = append(r.Envelope, a)
			}
		}
	}
	r.Envelope = dedupe(r.Envelope)
	var w walker
	w.walk(textproto.MIMEHeader(m.Header), m.Body, 0)
	r.Original = w.original
	if len(w.texts) == 0 {
		w.texts = w.html // an HTML-only report
	}

	if len(w.feedback) > 0 {
		parseARF(r, w.feedback[0])
	}
	if len(w.dsn) > 0 && len(r.Recipients) == 0 {
		parseDSN(r, w.dsn)
	}
	text := strings.Join(w.texts, "\n")
	if len(r.Recipients) == 0 {
		parseText(r, text)
	}
	if r.Original == nil {
		r.Original = inlineOriginal(text)
	}
	if len(r.Recipients) == 0 && r.Format == "" && autoReply(m.Header, r.Subject) {
		r.Format, r.Note = "auto-reply", "auto-reply"
	}
	if r.Note == "" && r.Kind() == NotBounce {
		switch {
		case len(r.Recipients) == 0:
			r.Note = "not a delivery report"
		case allActions(r.Recipients, "delayed"):
			r.Note = "delay notice"
		default:
			r.Note = "delivery report without failures"
		}
	}
	return r, nil
}

func allActions(rs []Recipient, action string) bool {
	for _, rc := range rs {
		if rc.Action != action {
			return false
		}
	}
	return true
}

// walker collects the parts that matter from a MIME tree.
type walker struct {
	dsn      [][]byte    // message/delivery-status bodies
	feedback [][]byte    // message/feedback-report bodies (ARF)
	texts    []string    // text/plain parts, decoded to UTF-8 (text/html stripped, when no plain)
	html     []string    // text/html parts, stripped
	original mail.Header // the first returned message's header
}

func (w *walker) walk(h textproto.MIMEHeader, body io.Reader, depth int) {
	ct, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || ct == "" {
		ct, params = "text/plain", map[string]string{}
	}
	if strings.HasPrefix(ct, "multipart/") {
		if depth >= maxDepth || params["boundary"] == "" {
			return
		}
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				break
			}
			w.walk(p.Header, p, depth+1)
		}
		if ct == "multipart/alternative" && len(w.texts) == 0 && len(w.html) > 0 {
			w.texts = append(w.texts, w.html...)
			w.html = nil
		}
		return
	}
	data, err := io.ReadAll(decodeTransfer(h.Get("Content-Transfer-Encoding"), body))
	if err != nil && len(data) == 0 {
		return
	}
	switch ct {
	case "message/delivery-status", "message/global-delivery-status":
		w.dsn = append(w.dsn, data)
	case "message/feedback-report":
		w.feedback = append(w.feedback, data)
	case "message/rfc822", "message/global", "text/rfc822-headers":
		if w.original == nil {
			w.original = readHeader(data)
		}
	case "text/plain":
		w.texts = append(w.texts, toUTF8(data, params["charset"]))
	case "text/html":
		w.html = append(w.html, stripHTML(toUTF8(data, params["charset"])))
	}
}

func decodeTransfer(cte string, r io.Reader) io.Reader {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, &lineJoiner{r: r})
	case "quoted-printable":
		return quotedprintable.NewReader(r)
	}
	return r
}

// lineJoiner drops CR, LF and spaces, which base64 bodies carry between
// lines.
type lineJoiner struct{ r io.Reader }

func (l *lineJoiner) Read(p []byte) (int, error) {
	for {
		n, err := l.r.Read(p)
		j := 0
		for _, c := range p[:n] {
			if c != '\r' && c != '\n' && c != ' ' && c != '\t' {
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

// toUTF8 converts text in a declared charset (GB2312, GBK, ISO-8859-1, …).
func toUTF8(b []byte, charset string) string {
	cs := strings.ToLower(strings.TrimSpace(charset))
	if cs == "" || cs == "utf-8" || cs == "us-ascii" || cs == "utf8" {
		return string(b)
	}
	enc, err := htmlindex.Get(cs)
	if err != nil {
		return string(b)
	}
	out, err := enc.NewDecoder().Bytes(b)
	if err != nil {
		return string(b)
	}
	return string(out)
}

var wordDecoder = &mime.WordDecoder{CharsetReader: func(charset string, r io.Reader) (io.Reader, error) {
	enc, err := htmlindex.Get(strings.ToLower(charset))
	if err != nil {
		return nil, err
	}
	return enc.NewDecoder().Reader(r), nil
}}

// decodeWords decodes RFC 2047 encoded words in a header value.
func decodeWords(s string) string {
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		return d
	}
	return s
}

var (
	tagRe   = regexp.MustCompile(`(?s)<(script|style)[^>]*>.*?</(script|style)>|<[^>]*>`)
	blockRe = regexp.MustCompile(`(?i)<(br|/p|/div|/tr|/li|p|div)\b[^>]*>`)
)

// stripHTML turns an HTML part into text good enough to search.
func stripHTML(s string) string {
	s = blockRe.ReplaceAllString(s, "\n$0")
	s = tagRe.ReplaceAllString(s, "")
	r := strings.NewReplacer("&nbsp;", " ", "&lt;", "<", "&gt;", ">", "&amp;", "&", "&quot;", `"`, "&#39;", "'")
	return r.Replace(s)
}

// readHeader reads a message header tolerantly: it stops at the first
// blank line or at the first line that is not a header field.
func readHeader(b []byte) mail.Header {
	h := mail.Header{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var key string
	started := false
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			if started {
				break
			}
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && key != "" {
			vs := h[key]
			vs[len(vs)-1] += " " + strings.TrimSpace(line)
			continue
		}
		i := strings.IndexByte(line, ':')
		if i <= 0 || strings.ContainsAny(line[:i], " \t") {
			if started {
				break
			}
			return nil
		}
		started = true
		key = textproto.CanonicalMIMEHeaderKey(line[:i])
		h[key] = append(h[key], strings.TrimSpace(line[i+1:]))
	}
	if !started {
		return nil
	}
	return h
}

// parseDSN reads the per-recipient fields of RFC 3464 reports.
func parseDSN(r *Report, bodies [][]byte) {
	for _, body := range bodies {
		for i, block := range dsnBlocks(body) {
			if i == 0 && block.Get("Final-Recipient") == "" {
				continue // the per-message fields
			}
			addr := addrField(block.Get("Original-Recipient"))
			if addr == "" {
				addr = addrField(block.Get("Final-Recipient"))
			}
			if addr == "" {
				continue
			}
			rc := Recipient{
				Address:    addr,
				Action:     strings.ToLower(strings.TrimSpace(block.Get("Action"))),
				Diagnostic: oneLine(typedField(block.Get("Diagnostic-Code"))),
			}
			if f := strings.Fields(block.Get("Status")); len(f) > 0 && statusRe.MatchString(f[0]) {
				rc.Status = f[0]
			}
			rc.Kind = classify(rc.Action, rc.Status, rc.Diagnostic)
			r.Recipients = append(r.Recipients, rc)
		}
	}
	if len(r.Recipients) > 0 {
		r.Format = "dsn"
	}
}

// parseARF reads an ARF feedback report (RFC 5965): a complaint by the
// recipient in Original-Rcpt-To, or in the returned message's To: when the
// provider redacted the field. A not-spam or authentication-failure report
// is no complaint.
func parseARF(r *Report, body []byte) {
	r.Format = "arf"
	blocks := dsnBlocks(body)
	if len(blocks) == 0 {
		r.Note = "feedback report without fields"
		return
	}
	f := blocks[0]
	typ := strings.ToLower(strings.TrimSpace(f.Get("Feedback-Type")))
	switch typ {
	case "abuse", "fraud", "virus", "other", "":
	default: // not-spam, auth-failure, …
		r.Note = "feedback report of type " + typ + ": not a complaint"
		return
	}
	addr := addrField(f.Get("Original-Rcpt-To"))
	if addr == "" && r.Original != nil {
		if list, err := mail.ParseAddressList(r.Original.Get("To")); err == nil && len(list) > 0 {
			addr = list[0].Address
		}
	}
	if addr == "" {
		r.Note = "feedback report that names no recipient"
		return
	}
	diag := "feedback-type " + or(typ, "abuse")
	if ua := oneLine(f.Get("User-Agent")); ua != "" {
		diag += " from " + ua
	}
	r.Recipients = append(r.Recipients, Recipient{Address: addr, Action: "complaint", Diagnostic: diag, Kind: Complaint})
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// dsnBlocks splits a delivery-status body into its groups of fields.
func dsnBlocks(body []byte) []textproto.MIMEHeader {
	var blocks []textproto.MIMEHeader
	text := strings.ReplaceAll(string(body), "\r\n", "\n")
	for _, chunk := range blankLineRe.Split(text, -1) {
		chunk = strings.TrimLeft(chunk, "\n")
		if strings.TrimSpace(chunk) == "" {
			continue
		}
		h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(chunk + "\n\n"))).ReadMIMEHeader()
		if err != nil && len(h) == 0 {
			continue
		}
		blocks = append(blocks, h)
	}
	return blocks
}

// typedField drops the type of a DSN field: "rfc822; a@b" → "a@b".
func typedField(v string) string {
	if i := strings.IndexByte(v, ';'); i >= 0 && !strings.ContainsAny(v[:i], " @") {
		return strings.TrimSpace(v[i+1:])
	}
	return strings.TrimSpace(v)
}

func addrField(v string) string {
	a := strings.Trim(typedField(v), "<> \t")
	if !strings.Contains(a, "@") {
		return ""
	}
	return a
}

var (
	spaceRe     = regexp.MustCompile(`\s+`)
	blankLineRe = regexp.MustCompile(`\n[ \t]*\n`)
)

func oneLine(s string) string { return strings.TrimSpace(spaceRe.ReplaceAllString(s, " ")) }

// inlineMarkers introduce a copy of the returned message in a text bounce.
var inlineMarkers = []string{
	"--- Below this line is a copy of the message.",                           // qmail
	"--- Enclosed are the original headers of the message.",                   // qmail
	"------ This is a copy of the message, including all the headers. ------", // Exim
	"------ This is a copy of the message's headers. ------",                  // Exim
	"----- Original message follows -----",                                    // Sendmail
	"----- Message header follows -----",                                      // Sendmail
	"----- Original message headers follow -----",
	"Original message headers:", // Exchange
	"------ Original message ------",
}

// inlineOriginal finds the header of a returned message copied into the
// text of a bounce.
func inlineOriginal(text string) mail.Header {
	for _, m := range inlineMarkers {
		if i := strings.Index(text, m); i >= 0 {
			if h := readHeader([]byte(text[i+len(m):])); h != nil {
				return h
			}
		}
	}
	return nil
}

// autoReply reports RFC 3834 auto-replies and common out-of-office mail.
func autoReply(h mail.Header, subject string) bool {
	as := strings.ToLower(h.Get("Auto-Submitted"))
	if strings.HasPrefix(as, "auto-replied") || strings.HasPrefix(as, "auto-generated") {
		return true
	}
	if h.Get("X-Autoreply") != "" || h.Get("X-Autorespond") != "" {
		return true
	}
	if p := strings.ToLower(h.Get("Precedence")); p == "auto_reply" {
		return true
	}
	s := strings.ToLower(subject)
	for _, w := range []string{"out of office", "out of the office", "automatic reply", "auto reply", "autoreply", "auto-reply", "abwesenheit", "自动回复", "absence"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// dedupe drops repeated addresses (case-insensitive), keeping the order.
func dedupe(list []string) []string {
	seen := map[string]bool{}
	out := list[:0]
	for _, a := range list {
		k := strings.ToLower(a)
		if !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	return out
}
