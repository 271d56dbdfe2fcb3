package bounce

import (
	"net/mail"
	"regexp"
	"strings"
)

// A textFormat recognises one MTA's plain-text bounce.
type textFormat struct {
	name    string
	markers []string // any of these in the text (or, for subjects, the subject)
	subject bool     // markers are matched against the subject
	delay   []string // any of these (text or subject) makes it a delay notice
}

// textFormats in the order they are tried; the first whose marker is
// present wins.
var textFormats = []textFormat{
	{name: "qmail", markers: []string{"This is the qmail-send program", "I'm afraid I wasn't able to deliver your message"}},
	{name: "exim", markers: []string{"This message was created automatically by mail delivery software", "A message that you sent could not be delivered"},
		delay: []string{"has not yet been delivered", "Warning: message"}},
	{name: "postfix", markers: []string{"This is the mail system at host", "This is the Postfix program at host"},
		delay: []string{"This is a warning only", "Delayed Mail (still being retried)", "is still being retried"}},
	{name: "sendmail", markers: []string{"The following addresses had permanent fatal errors", "----- Transcript of session follows -----"},
		delay: []string{"THIS IS A WARNING MESSAGE ONLY", "Warning: could not send message for past"}},
	{name: "exchange", markers: []string{"Delivery has failed to these recipients or groups", "Delivery is delayed to these recipients or groups", "Your message couldn't be delivered"},
		delay: []string{"Delivery is delayed to these recipients or groups"}},
	{name: "gmail", markers: []string{"Delivery to the following recipient failed permanently", "Your message wasn't delivered to", "Technical details of permanent failure", "Delivery to the following recipient has been delayed", "Delivery Status Notification (Failure)", "Delivery Status Notification (Delay)"},
		delay: []string{"Delivery to the following recipient has been delayed", "Delivery Status Notification (Delay)", "Delivery incomplete"}},
	{name: "text", subject: true, markers: []string{"Undelivered Mail Returned to Sender", "Undeliverable", "Mail delivery failed", "Delivery failure", "failure notice", "Returned mail", "Delivery Status Notification", "Non remis", "Unzustellbar", "退信", "无法投递", "投递失败", "Mail System Error"},
		delay: []string{"Delayed Mail", "Delivery delayed", "delayed"}},
}

var (
	emailRe   = regexp.MustCompile(`[A-Za-z0-9._%+\-=!#$&'*/?^{|}~]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}`)
	addrLine  = regexp.MustCompile(`^<?([^<>\s:()]+@[^<>\s:()]+)>?:?(?:\s+(.*))?$`)
	gmailTo   = regexp.MustCompile(`wasn't delivered to (\S+@[^\s,]+?)[ ,.]`)
	chineseTo = regexp.MustCompile(`收件人[：:]\s*<?(\S+@[A-Za-z0-9.\-]+)`)
)

// parseText recognises a plain-text bounce and reads its recipients.
func parseText(r *Report, text string) {
	var f *textFormat
	for i := range textFormats {
		tf := &textFormats[i]
		hay := text
		if tf.subject {
			hay = r.Subject
		}
		if containsAny(hay, tf.markers) || (tf.name == "gmail" && containsAny(r.Subject, tf.markers)) {
			f = tf
			break
		}
	}
	if f == nil {
		return
	}
	r.Format = f.name
	action := "failed"
	if containsAny(text, f.delay) || containsAny(r.Subject, f.delay) {
		action = "delayed"
	}
	body := text
	for _, m := range inlineMarkers {
		if i := strings.Index(body, m); i >= 0 {
			body = body[:i]
		}
	}
	if f.name == "exchange" {
		// The part for administrators pairs each address with the reply.
		if i := strings.Index(body, "Diagnostic information for administrators"); i >= 0 {
			body = body[i:]
		}
	}
	rcpts := addressBlocks(body)
	if len(rcpts) == 0 {
		for _, re := range []*regexp.Regexp{gmailTo, chineseTo} {
			for _, m := range re.FindAllStringSubmatch(body, -1) {
				rcpts = append(rcpts, Recipient{Address: m[1]})
			}
		}
	}
	if len(rcpts) == 0 && f.name == "exchange" {
		for _, m := range emailRe.FindAllString(text[strings.Index(text, f.markers[0])+1:], 1) {
			rcpts = append(rcpts, Recipient{Address: m})
		}
	}
	if len(rcpts) == 0 {
		if to := originalTo(r.Original, text); to != "" {
			rcpts = append(rcpts, Recipient{Address: to})
		}
	}
	fallback := statusLine(body)
	seen := map[string]bool{}
	for _, rc := range rcpts {
		key := strings.ToLower(rc.Address)
		if seen[key] {
			continue
		}
		seen[key] = true
		if rc.Diagnostic == "" {
			rc.Diagnostic = fallback
		}
		rc.Action = action
		rc.Status = findStatus(rc.Diagnostic)
		if strings.HasSuffix(rc.Status, ".0.0") && userUnknownRe.MatchString(rc.Diagnostic) && rc.Status[0] == '5' {
			rc.Status = "5.1.1"
		}
		rc.Kind = classify(rc.Action, rc.Status, rc.Diagnostic)
		r.Recipients = append(r.Recipients, rc)
	}
}

// addressBlocks reads the "address, then what happened" blocks that
// qmail, Exim, Postfix, Sendmail and Exchange write: a line that is an
// address (bare, in <>, with a colon, or followed by the reply), then the
// lines up to the next blank line.
func addressBlocks(body string) []Recipient {
	var out []Recipient
	var cur *Recipient
	var diag []string
	flush := func() {
		if cur != nil {
			cur.Diagnostic = oneLine(strings.Join(diag, " "))
			out = append(out, *cur)
		}
		cur, diag = nil, nil
	}
	for _, line := range strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n") {
		t := strings.TrimSpace(line)
		if t == "" {
			flush()
			continue
		}
		if m := addrLine.FindStringSubmatch(t); m != nil && !strings.HasPrefix(t, "(") {
			flush()
			cur = &Recipient{Address: strings.Trim(m[1], "<>")}
			if m[2] != "" {
				diag = append(diag, m[2])
			}
			continue
		}
		if cur != nil {
			if r, ok := strings.CutPrefix(t, "(reason: "); ok { // Sendmail
				t = strings.TrimSuffix(r, ")")
			}
			diag = append(diag, t)
		}
	}
	flush()
	return out
}

// statusLine is the first line of a bounce that carries a reply or status
// code, with the line after it when the reply goes on.
func statusLine(body string) string {
	lines := strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n")
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if statusInTextRe.MatchString(t) || replyCodeRe.MatchString(t) && strings.ContainsAny(t, " ") && len(t) > 6 {
			if i+1 < len(lines) && strings.HasPrefix(lines[i+1], " ") {
				t += " " + strings.TrimSpace(lines[i+1])
			}
			return oneLine(t)
		}
	}
	return ""
}

// originalTo is the first address of the returned message's To.
func originalTo(h mail.Header, text string) string {
	if h == nil {
		h = inlineOriginal(text)
	}
	if h == nil {
		return ""
	}
	list, err := mail.ParseAddressList(h.Get("To"))
	if err != nil || len(list) == 0 {
		return ""
	}
	return list[0].Address
}

func containsAny(s string, subs []string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}
