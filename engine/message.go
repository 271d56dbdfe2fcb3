package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	netmail "net/mail"
	"strings"
	"time"

	"github.com/wneessen/go-mail"

	"github.com/heraldmail/herald/templates"
)

// composer builds one recipient's message. It is safe for concurrent use:
// everything it holds is read-only after newComposer.
type composer struct {
	campaign    string
	from        *netmail.Address
	replyTo     *netmail.Address
	domain      string // of the From address, for Message-IDs
	headers     [][2]string
	attachments []Attachment // read once, shared by every message
	set         *templates.Set
}

func newComposer(id string, s Spec, set *templates.Set) (*composer, error) {
	from, err := netmail.ParseAddress(s.From)
	if err != nil {
		return nil, fmt.Errorf("campaign.from: %w", err)
	}
	c := &composer{campaign: id, from: from, set: set, attachments: s.Attachments}
	if at := strings.LastIndexByte(from.Address, '@'); at >= 0 {
		c.domain = from.Address[at+1:]
	}
	if s.ReplyTo != "" {
		if c.replyTo, err = netmail.ParseAddress(s.ReplyTo); err != nil {
			return nil, fmt.Errorf("campaign.reply_to: %w", err)
		}
	}
	for k, v := range s.Headers {
		c.headers = append(c.headers, [2]string{k, v})
	}
	return c, nil
}

// MessageID derives a recipient's Message-ID from the campaign and the
// recipient's key, so that a resend carries the same ID.
func MessageID(campaign, key, domain string) string {
	sum := sha256.Sum256([]byte(campaign + "\x00" + key))
	return hex.EncodeToString(sum[:16]) + "." + campaign + "@" + domain
}

// compose renders and builds the message for one recipient.
func (c *composer) compose(r *templates.Renderer, data map[string]string, email, key string, now time.Time) (*mail.Msg, error) {
	out, err := r.Render(c.set, data)
	if err != nil {
		return nil, err
	}
	m := mail.NewMsg(mail.WithNoDefaultUserAgent())
	m.SetAddrHeaderFromMailAddress(mail.HeaderFrom, c.from)
	m.ToMailAddress(&netmail.Address{Address: email})
	if c.replyTo != nil {
		m.ReplyToMailAddress(c.replyTo)
	}
	m.Subject(out.Subject)
	m.SetMessageIDWithValue(MessageID(c.campaign, key, c.domain))
	m.SetDateWithValue(now)
	for _, h := range c.headers {
		m.SetGenHeader(mail.Header(h[0]), h[1])
	}
	switch {
	case c.set.HasText() && c.set.HasHTML():
		m.SetBodyString(mail.TypeTextPlain, out.Text)
		m.AddAlternativeString(mail.TypeTextHTML, out.HTML)
	case c.set.HasText():
		m.SetBodyString(mail.TypeTextPlain, out.Text)
	default:
		m.SetBodyString(mail.TypeTextHTML, out.HTML)
	}
	for _, a := range c.attachments {
		m.AttachReadSeeker(a.Name, bytes.NewReader(a.Data))
	}
	return m, nil
}
