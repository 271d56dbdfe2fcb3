package engine

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	netmail "net/mail"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/heraldmail/herald/config"
	"github.com/heraldmail/herald/internal/smtpdata"
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
	campaign string
	from     *netmail.Address
	replyTo  *netmail.Address
	domain   string // of the From address, for Message-IDs
	set      *templates.Set

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

	// What every message of the campaign holds, written once (layout):
	// the headers before From in their order (a header that differs from
	// message to message has no line), From, Reply-To, each body part's
	// headers, the attachments whole.
	head        []headerLine
	fromLine    []byte
	replyToLine []byte
	textPart    []byte
	htmlPart    []byte
	attachments [][]byte // each part's headers, a blank line and its base64 lines
	fixedLen    int      // the length of all of the above
	date        atomic.Pointer[date]
	// The ends the text and the HTML parts of its messages share, in
	// quoted-printable.
	textTail, htmlTail qpTails
}

// headerLine is one header of the message's head: its whole text, or
// (line nil) a header appendMessage writes for each message.
type headerLine struct {
	key  string
	line []byte
}

func newComposer(id string, s Spec, set *templates.Set, k keys) (*composer, error) {
	from, err := netmail.ParseAddress(s.From)
	if err != nil {
		return nil, fmt.Errorf("campaign.from: %w", err)
	}
	c := &composer{campaign: id, from: from, set: set,
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
	c.layout(s)
	return c, nil
}

// MessageID derives a recipient's Message-ID from the campaign and the
// recipient's key, so that a resend carries the same ID.
func MessageID(campaign, key, domain string) string {
	sum := sha256.Sum256([]byte(campaign + "\x00" + key))
	return hex.EncodeToString(sum[:16]) + "." + campaign + "@" + domain
}

// appendMessageID appends the Message-ID header for key: the header
// appendHeader writes for MessageID, without building the ID as a string
// first when it fits on the header's line.
func (c *composer) appendMessageID(dst []byte, key string) []byte {
	const name = "Message-ID"
	n := len("<") + 32 + len(".") + len(c.campaign) + len("@") + len(c.domain) + len(">")
	if maxHeaderLine-4-len(name)-n <= 1 {
		return appendHeader(dst, name, "<"+MessageID(c.campaign, key, c.domain)+">")
	}
	var buf [128]byte
	in := append(append(append(buf[:0], c.campaign...), 0), key...)
	sum := sha256.Sum256(in)
	dst = append(dst, name+": <"...)
	dst = hex.AppendEncode(dst, sum[:16])
	dst = append(append(append(append(dst, '.'), c.campaign...), '@'), c.domain...)
	return append(dst, ">\r\n"...)
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

// layout writes what every message holds: the headers in the order go-mail
// wrote them (the generic ones sorted by name, then From, To, Reply-To,
// then the body's), each value encoded and folded as go-mail did.
func (c *composer) layout(s Spec) {
	lines := map[string][]byte{
		"Date":         nil,
		"MIME-Version": appendHeader(nil, "MIME-Version", "1.0"),
		"Message-ID":   nil,
		"Subject":      nil,
		HeaderCampaign: appendHeader(nil, HeaderCampaign, headerEncoding(c.campaign)),
	}
	if c.listID != "" {
		lines[HeaderListID] = appendHeader(nil, HeaderListID, headerEncoding(c.listID))
	}
	if c.unsub != nil {
		lines[HeaderListUnsubscribe] = nil
		lines[HeaderListUnsubscribePost] = appendHeader(nil, HeaderListUnsubscribePost, "List-Unsubscribe=One-Click")
	}
	for k, v := range s.Headers {
		lines[k] = appendHeader(nil, k, headerEncoding(v))
	}
	keys := make([]string, 0, len(lines))
	for k := range lines {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c.head = append(c.head, headerLine{key: k, line: lines[k]})
		c.fixedLen += len(k) + len(lines[k])
	}
	c.fromLine = appendHeader(nil, "From", c.from.String())
	if c.replyTo != nil {
		c.replyToLine = appendHeader(nil, "Reply-To", c.replyTo.String())
	}
	c.textPart = []byte("Content-Transfer-Encoding: quoted-printable\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n")
	c.htmlPart = []byte("Content-Transfer-Encoding: quoted-printable\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n")
	for _, a := range s.Attachments {
		typ := mime.TypeByExtension(filepath.Ext(a.Name))
		if typ == "" {
			typ = "application/octet-stream"
		}
		name := headerEncoding(sanitizeFilename(a.Name))
		// The part's headers in multipart.Writer's order (sorted).
		p := []byte("Content-Disposition: attachment; filename=\"" + name + "\"\r\n" +
			"Content-Transfer-Encoding: base64\r\n" +
			"Content-Type: " + typ + "; name=\"" + name + "\"\r\n\r\n")
		p = append(p, base64Lines(a.Data)...)
		c.attachments = append(c.attachments, p)
		c.fixedLen += len(p)
	}
	c.fixedLen += len(c.fromLine) + len(c.replyToLine) + len(c.textPart) + len(c.htmlPart)
}

// compose renders and writes the message for one recipient, unsigned:
// RFC 5322 text with CRLF line ends, not dot-stuffed.
// The To header has the address's domain in A-labels, as the envelope has
// (a local part that is not ASCII stays as it is: such a message goes only
// with SMTPUTF8, RFC 6531 and 6532).
func (c *composer) compose(r *templates.Renderer, data map[string]string, email, key string, now time.Time) (m text, err error) {
	return c.composeInto(nil, r, data, email, key, now)
}

// composeInto is compose into dst's room when it is large enough.
func (c *composer) composeInto(dst text, r *templates.Renderer, data map[string]string, email, key string, now time.Time) (m text, err error) {
	if email, err = recipients.ASCIIDomain(email); err != nil {
		return nil, fmt.Errorf("%s: the domain is not a valid internationalized domain name (%w)", email, err)
	}
	link := c.unsubscribeLink(key)
	// out.Text is the renderer's own: encoded into the message below,
	// kept nowhere (qpTails keeps a copy).
	out, err := r.RenderLinkShared(c.set, data, link)
	if err != nil {
		return nil, err
	}
	// Room for the usual message, its DKIM signature and the final dot
	// (stuff), so that the buffer is allocated once: quoted-printable
	// grows ASCII text by a soft line break now and then. A message that
	// needs more grows its buffer.
	n := c.fixedLen + 512 + 4*(len(out.Subject)+len(out.ToName)) + len(email) + 3*len(link) +
		len(out.Text) + len(out.Text)/16 + len(out.HTML) + len(out.HTML)/16
	if c.dkim != nil {
		n += 1024
	}
	if cap(dst) < n {
		dst = make(text, 0, n)
	}
	return c.appendMessage(dst[:0], out, email, key, link, now), nil
}

// appendMessage appends the message's text to dst.
func (c *composer) appendMessage(dst []byte, out templates.Rendered, email, key, link string, now time.Time) []byte {
	for _, h := range c.head {
		if h.line != nil {
			dst = append(dst, h.line...)
			continue
		}
		switch h.key {
		case "Date":
			dst = append(dst, c.dateLine(now)...)
		case "Message-ID":
			dst = c.appendMessageID(dst, key)
		case "Subject":
			dst = appendHeader(dst, "Subject", headerEncoding(out.Subject))
		case HeaderListUnsubscribe:
			if c.unsubMailto != "" {
				dst = appendHeader(dst, HeaderListUnsubscribe, headerEncoding("<"+link+">"), headerEncoding(c.unsubMailto))
			} else {
				dst = appendHeader(dst, HeaderListUnsubscribe, headerEncoding("<"+link+">"))
			}
		}
	}
	dst = append(dst, c.fromLine...)
	dst = appendHeader(dst, "To", (&netmail.Address{Name: out.ToName, Address: email}).String())
	dst = append(dst, c.replyToLine...)

	// The body, as go-mail's multipart writers wrote it: a part starts
	// with "--boundary" (after a CRLF unless it is the first), the last
	// ends with "--boundary--" and a CRLF.
	var mixed string
	if len(c.attachments) > 0 {
		mixed = newBoundary()
		dst = append(dst, "Content-Type: multipart/mixed;\r\n boundary="...)
		dst = append(append(append(dst, mixed...), "\r\n\r\n--"...), mixed...)
		dst = append(dst, "\r\n"...)
	}
	switch text, html := c.set.HasText(), c.set.HasHTML(); {
	case text && html:
		alt := newBoundary()
		dst = append(dst, "Content-Type: multipart/alternative;\r\n boundary="...)
		dst = append(append(append(dst, alt...), "\r\n\r\n--"...), alt...)
		dst = append(append(dst, "\r\n"...), c.textPart...)
		dst = c.textTail.appendQP(dst, out.Text)
		dst = append(append(append(dst, "\r\n--"...), alt...), "\r\n"...)
		dst = c.htmlTail.appendQP(append(dst, c.htmlPart...), out.HTML)
		dst = append(append(append(dst, "\r\n--"...), alt...), "--\r\n"...)
	case text:
		dst = c.textTail.appendQP(append(dst, c.textPart...), out.Text)
	default:
		dst = c.htmlTail.appendQP(append(dst, c.htmlPart...), out.HTML)
	}
	if mixed != "" {
		for _, a := range c.attachments {
			dst = append(append(append(dst, "\r\n--"...), mixed...), "\r\n"...)
			dst = append(dst, a...)
		}
		dst = append(append(append(dst, "\r\n--"...), mixed...), "--\r\n"...)
	}
	return dst
}

// dateLine is the Date header for now. Most messages of a second share
// one, formatted once.
func (c *composer) dateLine(now time.Time) []byte {
	sec := now.Unix()
	_, zone := now.Zone()
	offset := int64(zone)
	if d := c.date.Load(); d != nil && d.sec == sec && d.offset == offset {
		return d.line
	}
	// Short enough never to be folded.
	d := &date{sec: sec, offset: offset, line: append(now.AppendFormat([]byte("Date: "), time.RFC1123Z), '\r', '\n')}
	c.date.Store(d)
	return d.line
}

// date is a Date header line and the second it names.
type date struct {
	sec, offset int64
	line        []byte
}

// newBoundary is a multipart boundary: 60 random hex digits, as go-mail's.
// It need not be secret, only absent from the content.
func newBoundary() string {
	var b [32]byte
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rand.Uint64())
	}
	return hex.EncodeToString(b[:30])
}

// build composes the message and, when the campaign is DKIM-signed, signs
// it: the message it returns is written as is, once or again on a retry.
func (c *composer) build(r *templates.Renderer, data map[string]string, email, key string, now time.Time) (*message, error) {
	return c.buildInto(nil, r, data, email, key, now)
}

// buildInto is build composing into dst's room when it is large enough
// (the buffer of a message that is done: see worker.recycle).
func (c *composer) buildInto(dst text, r *templates.Renderer, data map[string]string, email, key string, now time.Time) (*message, error) {
	m, err := c.composeInto(dst, r, data, email, key, now)
	if err != nil {
		return nil, err
	}
	if c.dkim != nil {
		// The signature covers the message as it is, before dot-stuffing.
		if m, err = c.sign(m); err != nil {
			return nil, err
		}
	}
	return newMessage(m), nil
}

// message is a built message in its final bytes, written as is once or
// again on a retry. Not safe for concurrent use (one sender has it at a
// time).
type message struct {
	text text   // as built (and signed): CRLF line ends, not dot-stuffed
	wire []byte // the DATA content: text dot-stuffed, with the final dot
	size int64  // what the server receives: see Size
}

func newMessage(t text) *message {
	m := &message{text: t}
	m.wire, m.size = smtpdata.Content(t)
	return m
}

// WriteTo writes the message's text.
func (m *message) WriteTo(w io.Writer) (int64, error) { return m.text.WriteTo(w) }

// Size is the message's size as RFC 1870 counts it: what the server
// receives, CRLF line ends (the last line's included), no dot-stuffing, no
// final dot.
func (m *message) Size() int64 { return m.size }

// within reports whether the message is no larger than limit, and its
// size.
func (m *message) within(limit int64) (size int64, ok bool) {
	return m.size, m.size <= limit
}

// sign returns raw with a DKIM-Signature before it, with room for the
// final dot (stuff). Safe for concurrent use: the signer is made per
// message from read-only options.
func (c *composer) sign(raw text) (text, error) {
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
	out := make(text, 0, len(sig)+len(raw)+len("\r\n.\r\n"))
	return append(append(out, sig...), raw...), nil
}

// text is a message as RFC 5322 text.
type text []byte

func (t text) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(t)
	return int64(n), err
}
