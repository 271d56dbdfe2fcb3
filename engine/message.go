package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	netmail "net/mail"
	"net/url"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/wneessen/go-mail"

	"github.com/heraldmail/herald/config"
	"github.com/heraldmail/herald/recipients"
	"github.com/heraldmail/herald/templates"
	"github.com/heraldmail/herald/unsubscribe"
	"github.com/heraldmail/herald/verp"
)

// Headers herald sets for deliverability.
const (
	HeaderCampaign            = "X-Herald-Campaign" // the campaign id; bounce processing matches quoted headers by it
	HeaderListID              = "List-Id"           // RFC 2919
	HeaderListUnsubscribe     = "List-Unsubscribe"  // RFC 2369
	HeaderListUnsubscribePost = "List-Unsubscribe-Post"
)

// keys are what a process's own configuration holds to sign messages: the
// unsubscribe secret and the DKIM private key. They never travel in the
// queue: a worker reads them from its own configuration, as it reads the
// providers' passwords.
type keys struct {
	unsub *unsubscribe.Signer // nil: no [unsubscribe]
	dkim  *config.DKIM        // nil: no [dkim]
}

func keysFrom(cfg *config.Config) (keys, error) {
	var k keys
	if u := cfg.Unsubscribe; u != nil && len(u.Secret) > 0 {
		s, err := unsubscribe.NewSigner(u.Secret)
		if err != nil {
			return k, fmt.Errorf("unsubscribe.secret_env: %w", err)
		}
		k.unsub = s
	}
	if d := cfg.DKIM; d != nil && d.Key != nil {
		k.dkim = d
	}
	return k, nil
}

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

	listID string
	// One-click unsubscribe: set when the campaign has links.
	unsub       *unsubscribe.Signer
	unsubBase   *url.URL
	unsubMailto string // the whole "<mailto:…>" item, or ""
	list        string // the suppression list the links name: the From domain, lower case
	// Envelope sender.
	bounce string // "" : the From address
	verp   bool
	// dkim is read-only: each message gets its own dkim.Signer from it.
	dkim *dkim.SignOptions
	// fixed bounds what a message holds besides the recipient's rendered
	// content, address and link (see sizeBound).
	fixed int64
}

func newComposer(id string, s Spec, set *templates.Set, k keys) (*composer, error) {
	from, err := netmail.ParseAddress(s.From)
	if err != nil {
		return nil, fmt.Errorf("campaign.from: %w", err)
	}
	c := &composer{campaign: id, from: from, set: set, attachments: s.Attachments,
		listID: s.ListID, bounce: s.BounceAddress, verp: s.VERP}
	c.list = SuppressionList(from.Address) // the list the unsubscribe endpoint adds to
	// Domains go in A-labels, in the headers as in the envelope.
	if from.Address, err = recipients.ASCIIDomain(from.Address); err != nil {
		return nil, fmt.Errorf("campaign.from: %w", err)
	}
	if at := strings.LastIndexByte(from.Address, '@'); at >= 0 {
		c.domain = from.Address[at+1:]
	}
	if s.ReplyTo != "" {
		if c.replyTo, err = netmail.ParseAddress(s.ReplyTo); err != nil {
			return nil, fmt.Errorf("campaign.reply_to: %w", err)
		}
		if c.replyTo.Address, err = recipients.ASCIIDomain(c.replyTo.Address); err != nil {
			return nil, fmt.Errorf("campaign.reply_to: %w", err)
		}
	}
	if c.bounce, err = recipients.ASCIIDomain(c.bounce); err != nil {
		return nil, fmt.Errorf("campaign.bounce_address: %w", err)
	}
	for k, v := range s.Headers {
		c.headers = append(c.headers, [2]string{k, v})
	}
	if c.verp && c.bounce == "" {
		return nil, fmt.Errorf("campaign.verp: needs campaign.bounce_address")
	}

	switch {
	case s.UnsubscribeURL != "":
		if k.unsub == nil {
			return nil, fmt.Errorf("campaign %s has one-click unsubscribe links: this configuration needs [unsubscribe] secret_env (the secret of the unsubscribe endpoint)", id)
		}
		if c.unsubBase, err = url.Parse(s.UnsubscribeURL); err != nil {
			return nil, fmt.Errorf("unsubscribe.url: %w", err)
		}
		c.unsub = k.unsub
		if s.UnsubscribeMailto != "" {
			c.unsubMailto = "<mailto:" + s.UnsubscribeMailto + "?subject=unsubscribe>"
		}
	case set.UsesUnsubscribe():
		return nil, fmt.Errorf("the templates call %s, but the campaign has no [unsubscribe] section (url, mailto, secret_env)", templates.UnsubscribeFunc)
	}

	if s.DKIMDomain != "" {
		d := k.dkim
		if d == nil {
			return nil, fmt.Errorf("campaign %s is DKIM-signed (d=%s s=%s): this configuration needs a [dkim] section with that domain, selector and private_key", id, s.DKIMDomain, s.DKIMSelector)
		}
		if !strings.EqualFold(d.Domain, s.DKIMDomain) || !strings.EqualFold(d.Selector, s.DKIMSelector) {
			return nil, fmt.Errorf("campaign %s is DKIM-signed as d=%s s=%s, but this configuration's [dkim] is d=%s s=%s", id, s.DKIMDomain, s.DKIMSelector, d.Domain, d.Selector)
		}
		signed := []string{"From", "To", "Subject", "Date", "Message-ID"}
		if c.replyTo != nil {
			signed = append(signed, "Reply-To")
		}
		if c.unsub != nil {
			signed = append(signed, HeaderListUnsubscribe, HeaderListUnsubscribePost)
		}
		if c.listID != "" {
			signed = append(signed, HeaderListID)
		}
		signed = append(signed, "MIME-Version", "Content-Type")
		c.dkim = &dkim.SignOptions{
			Domain: s.DKIMDomain, Selector: s.DKIMSelector, Signer: d.Key,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             signed,
		}
		// Fail here, not at the first message, on a key the signer refuses.
		if _, err := c.sign([]byte("From: a@example.com\r\n\r\ncheck\r\n")); err != nil {
			return nil, err
		}
	}
	c.fixed = 16 << 10
	for _, a := range []string{from.String(), s.ReplyTo, c.listID, c.unsubMailto, c.campaign, c.campaign, c.domain} {
		c.fixed += 4 * int64(len(a))
	}
	for _, h := range c.headers {
		c.fixed += 4 * int64(len(h[0])+len(h[1])+4)
	}
	for _, a := range c.attachments {
		c.fixed += 2*int64(len(a.Data)) + 4*int64(len(a.Name)) + 1024
	}
	return c, nil
}

// sizeBound is an upper bound of the size of the message built from out
// for email with the unsubscribe link: go-mail writes a body in
// quoted-printable (at most 3.12 bytes for one: "=XX" and a soft line
// break "=\r\n" every 76 characters), a header value in MIME encoded
// words (at most 3.72 bytes for one, with their framing and folding), an
// attachment in base64 (1.37); fixed holds the rest. A message whose bound
// is within a limit need not be counted.
func (c *composer) sizeBound(out templates.Rendered, email, link string) int64 {
	// The link is in a header and may be in the body twice (text, HTML).
	return c.fixed + 4*int64(len(out.Subject)+len(out.ToName)+len(out.Text)+len(out.HTML)+len(email)+3*len(link))
}

// MessageID derives a recipient's Message-ID from the campaign and the
// recipient's key, so that a resend carries the same ID.
func MessageID(campaign, key, domain string) string {
	sum := sha256.Sum256([]byte(campaign + "\x00" + key))
	return hex.EncodeToString(sum[:16]) + "." + campaign + "@" + domain
}

// unsubscribeLink is the recipient's one-click link, or "" when the
// campaign has none.
func (c *composer) unsubscribeLink(key string) string {
	if c.unsub == nil {
		return ""
	}
	return c.unsub.Link(c.unsubBase, unsubscribe.Subject{List: c.list, Key: key, Campaign: c.campaign})
}

// envelope is the envelope sender (MAIL FROM) for recipient email: with
// VERP the campaign and recipient encoded into the bounce address, else
// the bounce address, else the From address. An address VERP cannot carry
// (a quoted local part) gets the plain bounce address: its bounce is still
// matched through the X-Herald-Campaign header it quotes.
func (c *composer) envelope(email string) string {
	if c.verp {
		if a, err := verp.Encode(c.bounce, c.campaign, email); err == nil {
			return a
		}
	}
	if c.bounce != "" {
		return c.bounce
	}
	return c.from.Address
}

// compose renders and builds the message for one recipient; bound is an
// upper bound of its size (sizeBound). The To header has the address's
// domain in A-labels, as the envelope has (a local part that is not ASCII
// stays as it is: such a message goes only with SMTPUTF8, RFC 6531 and
// 6532).
func (c *composer) compose(r *templates.Renderer, data map[string]string, email, key string, now time.Time) (m *mail.Msg, bound int64, err error) {
	if email, err = recipients.ASCIIDomain(email); err != nil {
		return nil, 0, fmt.Errorf("%s: the domain is not a valid internationalized domain name (%w)", email, err)
	}
	link := c.unsubscribeLink(key)
	out, err := r.RenderLink(c.set, data, link)
	if err != nil {
		return nil, 0, err
	}
	m = mail.NewMsg(mail.WithNoDefaultUserAgent())
	m.SetAddrHeaderFromMailAddress(mail.HeaderFrom, c.from)
	m.ToMailAddress(&netmail.Address{Name: out.ToName, Address: email})
	if c.replyTo != nil {
		m.ReplyToMailAddress(c.replyTo)
	}
	m.Subject(out.Subject)
	m.SetMessageIDWithValue(MessageID(c.campaign, key, c.domain))
	m.SetDateWithValue(now)
	m.SetGenHeader(HeaderCampaign, c.campaign)
	if c.listID != "" {
		m.SetGenHeader(HeaderListID, c.listID)
	}
	if link != "" {
		if c.unsubMailto != "" {
			m.SetGenHeader(HeaderListUnsubscribe, "<"+link+">", c.unsubMailto)
		} else {
			m.SetGenHeader(HeaderListUnsubscribe, "<"+link+">")
		}
		m.SetGenHeader(HeaderListUnsubscribePost, "List-Unsubscribe=One-Click")
	}
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
	return m, c.sizeBound(out, email, link), nil
}

// build composes the message and, when the campaign is DKIM-signed, signs
// it: what it returns is written as is, once or again on a retry.
func (c *composer) build(r *templates.Renderer, data map[string]string, email, key string, now time.Time) (*message, error) {
	m, bound, err := c.compose(r, data, email, key, now)
	if err != nil {
		return nil, err
	}
	if c.dkim == nil {
		return &message{body: m, bound: bound}, nil
	}
	var buf bytes.Buffer
	if _, err := m.WriteTo(&buf); err != nil {
		return nil, err
	}
	signed, err := c.sign(buf.Bytes())
	if err != nil {
		return nil, err
	}
	return &message{body: signed, bound: int64(len(signed)), size: int64(len(signed))}, nil
}

// message is a built message, written as is once or again on a retry,
// and what is known of its size: the bytes WriteTo writes, CRLF line ends
// and no dot-stuffing, as RFC 1870 counts them. Not safe for concurrent
// use (one sender has it at a time).
type message struct {
	body  io.WriterTo
	bound int64 // the message is no larger than this
	size  int64 // its exact size, once known (0: not yet)
}

func (m *message) WriteTo(w io.Writer) (int64, error) { return m.body.WriteTo(w) }

// Size is the message's exact size. Unless known, it is counted by
// writing the message out once (nothing is kept).
func (m *message) Size() (int64, error) {
	if m.size == 0 {
		var n counter
		if _, err := m.body.WriteTo(&n); err != nil {
			return 0, err
		}
		m.size = int64(n)
	}
	return m.size, nil
}

// within reports whether the message is no larger than limit, and its
// size when it had to be counted (the bound passed the limit) or was
// known; 0 otherwise.
func (m *message) within(limit int64) (size int64, ok bool, err error) {
	if m.size == 0 && m.bound <= limit {
		return 0, true, nil
	}
	size, err = m.Size()
	return size, err == nil && size <= limit, err
}

// counter counts what is written to it.
type counter int64

func (c *counter) Write(p []byte) (int, error) {
	*c += counter(len(p))
	return len(p), nil
}

// sign prepends a DKIM-Signature to raw. Safe for concurrent use: the
// signer is made per message from read-only options.
func (c *composer) sign(raw []byte) (signedMessage, error) {
	s, err := dkim.NewSigner(c.dkim)
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	if _, err := s.Write(raw); err != nil {
		s.Close()
		return nil, fmt.Errorf("dkim: %w", err)
	}
	if err := s.Close(); err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	sig := s.Signature()
	out := make(signedMessage, 0, len(sig)+len(raw))
	return append(append(out, sig...), raw...), nil
}

// signedMessage is a message's final bytes.
type signedMessage []byte

func (m signedMessage) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(m)
	return int64(n), err
}
