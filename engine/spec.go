package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/heraldmail/herald/config"
	"github.com/heraldmail/herald/schedule"
	"github.com/heraldmail/herald/templates"
)

// Spec is everything a worker needs to deliver a campaign that was planned
// elsewhere: the templates' text, the sender, extra headers, attachments and
// the retry and policy settings. Plan stores it with the campaign, so a
// worker needs only its providers in its own configuration.
type Spec struct {
	Version int    `json:"version"`
	From    string `json:"from"`
	ReplyTo string `json:"reply_to,omitempty"`
	Subject string `json:"subject"`
	ToName  string `json:"to_name,omitempty"`
	// Schedule is the sending window (nil: any time).
	Schedule    *config.Schedule  `json:"schedule,omitempty"`
	Text        string            `json:"text,omitempty"`
	TextName    string            `json:"text_name,omitempty"` // for error messages
	HTML        string            `json:"html,omitempty"`
	HTMLName    string            `json:"html_name,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Attachments []Attachment      `json:"attachments,omitempty"`

	// Deliverability headers and the envelope sender. The unsubscribe
	// secret and the DKIM private key are not here: each process that
	// sends reads them from its own configuration ([unsubscribe]
	// secret_env, [dkim] private_key), so the queue holds no secret.
	ListID            string `json:"list_id,omitempty"`
	BounceAddress     string `json:"bounce_address,omitempty"`
	VERP              bool   `json:"verp,omitempty"`
	UnsubscribeURL    string `json:"unsubscribe_url,omitempty"` // "": no List-Unsubscribe
	UnsubscribeMailto string `json:"unsubscribe_mailto,omitempty"`
	DKIMDomain        string `json:"dkim_domain,omitempty"` // "": not signed
	DKIMSelector      string `json:"dkim_selector,omitempty"`

	PolicyThreshold float64 `json:"policy_threshold"`
	PolicyMinimum   int     `json:"policy_minimum"`
	BounceThreshold float64 `json:"bounce_threshold,omitempty"` // 0 (an older spec): the default
	BounceMinimum   int     `json:"bounce_minimum,omitempty"`
	// ComplaintThreshold is read by herald bounces (0: the default).
	ComplaintThreshold float64 `json:"complaint_threshold,omitempty"`

	// MaxMessageSize is campaign.max_message_size in bytes (0, in a spec
	// stored by an older herald: the default).
	MaxMessageSize int64 `json:"max_message_size,omitempty"`

	// Recipients is the recipients file's absolute path: a queue that
	// keeps a job's place in the file rather than its fields (the
	// embedded one, queue.Job.Row) has them read back from it. Not
	// content: a change of it alone is not reported as one.
	Recipients string `json:"recipients,omitempty"`

	MaxAttempts int           `json:"max_attempts"`
	MaxAge      time.Duration `json:"max_age"`
	Backoff     time.Duration `json:"backoff"`
	MaxBackoff  time.Duration `json:"max_backoff"`
}

// Attachment is a file attached to every message of a campaign.
type Attachment struct {
	Name string `json:"name"`
	Data []byte `json:"data"`
}

const specVersion = 1

// SpecFromConfig reads the campaign's template files and attachments.
func SpecFromConfig(cfg *config.Config) (Spec, error) {
	cp := cfg.Campaign
	s := Spec{
		Version: specVersion, From: cp.From, ReplyTo: cp.ReplyTo, Subject: cp.Subject, ToName: cp.ToName, Headers: cp.Headers,
		PolicyThreshold: cp.PolicyThreshold, PolicyMinimum: cp.PolicyMinimum,
		BounceThreshold: cp.BounceThreshold, BounceMinimum: cp.BounceMinimum, ComplaintThreshold: cp.ComplaintThreshold,
		MaxAttempts: cfg.Retry.MaxAttempts, MaxAge: cfg.Retry.MaxAge.Duration,
		Backoff: cfg.Retry.Backoff.Duration, MaxBackoff: cfg.Retry.MaxBackoff.Duration,
		ListID: cp.ListID, BounceAddress: cp.BounceAddress, VERP: cp.VERP,
	}
	if m := cp.MaxMessageSize; m != nil {
		s.MaxMessageSize = m.Bytes
	}
	if cp.Recipients != "" {
		abs, err := filepath.Abs(cp.Recipients)
		if err != nil {
			return s, fmt.Errorf("campaign.recipients: %w", err)
		}
		s.Recipients = abs
	}
	if u := cfg.Unsubscribe; u != nil {
		s.UnsubscribeURL, s.UnsubscribeMailto = u.URL, u.Mailto
	}
	if sc := cp.Schedule; sc.Timezone != "" || len(sc.Days) > 0 || sc.Hours != "" || sc.TimezoneColumn != "" {
		s.Schedule = &sc
	}
	if d := cfg.DKIM; d != nil {
		s.DKIMDomain, s.DKIMSelector = d.Domain, d.Selector
	}
	if cp.Text != "" {
		b, err := os.ReadFile(cp.Text)
		if err != nil {
			return s, fmt.Errorf("campaign.text: %w", err)
		}
		if err := textFile(b); err != nil {
			return s, fmt.Errorf("campaign.text: %s: %w", cp.Text, err)
		}
		s.Text, s.TextName = string(b), cp.Text
	}
	if cp.HTML != "" {
		b, err := os.ReadFile(cp.HTML)
		if err != nil {
			return s, fmt.Errorf("campaign.html: %w", err)
		}
		if err := textFile(b); err != nil {
			return s, fmt.Errorf("campaign.html: %s: %w", cp.HTML, err)
		}
		s.HTML, s.HTMLName = string(b), cp.HTML
	}
	for i, p := range cp.Attachments {
		data, err := os.ReadFile(p)
		if err != nil {
			return s, fmt.Errorf("campaign.attachments[%d]: %w", i, err)
		}
		name := filepath.Base(p)
		if !utf8.ValidString(name) {
			// The name goes into a header (Content-Disposition).
			return s, fmt.Errorf("campaign.attachments[%d]: the file name %q is not valid UTF-8: rename the file", i, name)
		}
		s.Attachments = append(s.Attachments, Attachment{Name: name, Data: data})
	}
	return s, nil
}

// textFile refuses a template that is not UTF-8: what it renders goes out
// labelled UTF-8 (the subject and headers too), and a template saved in
// another encoding would reach every recipient as mojibake.
func textFile(b []byte) error {
	if utf8.Valid(b) {
		return nil
	}
	line := 1
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		if b[i] == '\n' {
			line++
		}
		i += size
	}
	return fmt.Errorf("line %d is not valid UTF-8; save the template as UTF-8", line)
}

// Encode is the stored form of the spec (queue.Campaign.Spec).
func (s Spec) Encode() []byte {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // only plain values: cannot fail
	}
	return b
}

// DecodeSpec reads a stored spec.
func DecodeSpec(b []byte) (Spec, error) {
	var s Spec
	if len(b) == 0 {
		return s, fmt.Errorf("no campaign content stored (planned by an older herald? run herald send or enqueue with its configuration again)")
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		return s, fmt.Errorf("stored campaign content: %w", err)
	}
	if s.Version != specVersion {
		return s, fmt.Errorf("stored campaign content is version %d; this herald reads version %d", s.Version, specVersion)
	}
	return s, nil
}

// content is a campaign's parsed content: templates parsed once, the
// message composer, and the retry and policy settings. Read-only, safe for
// concurrent use.
type content struct {
	spec Spec
	set  *templates.Set
	comp *composer
	// window is when messages may go out; zones caches the recipients'
	// own zones (zoneColumn, "": none) by name.
	window     schedule.Window
	zoneColumn string
	zones      sync.Map // string → *time.Location
	maxSize    int64    // campaign.max_message_size
}

func newContent(id string, s Spec, k keys) (*content, error) {
	maxSize := s.MaxMessageSize
	if maxSize <= 0 {
		maxSize = config.DefaultMaxMessageSize
	}
	// A recipient's rendering stops as soon as it passes the limit: the
	// message would be larger still.
	set, err := templates.Parse(templates.Sources{Subject: s.Subject, Text: s.Text, ToName: s.ToName, TextName: s.TextName, HTML: s.HTML, HTMLName: s.HTMLName, MaxSize: maxSize})
	if err != nil {
		return nil, err
	}
	comp, err := newComposer(id, s, set, k)
	if err != nil {
		return nil, err
	}
	c := &content{spec: s, set: set, comp: comp, maxSize: maxSize}
	if sc := s.Schedule; sc != nil {
		if c.window, err = schedule.Parse(sc.Timezone, sc.Days, sc.Hours); err != nil {
			return nil, fmt.Errorf("campaign.schedule: %w", err)
		}
		c.zoneColumn = sc.TimezoneColumn
	}
	return c, nil
}

// zone is the recipient's own time zone (from the zone column), or nil
// for the window's.
func (c *content) zone(header, fields []string) *time.Location {
	if c.zoneColumn == "" {
		return nil
	}
	i := slices.Index(header, c.zoneColumn)
	if i < 0 || i >= len(fields) || fields[i] == "" {
		return nil
	}
	if l, ok := c.zones.Load(fields[i]); ok {
		return l.(*time.Location)
	}
	l, err := schedule.LoadZone(fields[i])
	if err != nil {
		return nil // refused at planning; a worker falls back to the window's zone
	}
	c.zones.Store(fields[i], l)
	return l
}

// opens is when the window lets a message to the recipient go out: now,
// or its next opening.
func (c *content) opens(header, fields []string, now time.Time) (time.Time, *time.Location) {
	if c.window.Always() {
		return now, nil
	}
	loc := c.zone(header, fields)
	return c.window.Next(now, loc), loc

}

// tooLarge is why a message of size bytes (0: not known, the rendering
// alone passed the limit) is not sent: it passes campaign.max_message_size.
func (c *content) tooLarge(size int64) string {
	limit := fmt.Sprintf("campaign.max_message_size = %s (%d bytes)", config.FormatSize(c.maxSize), c.maxSize)
	if size == 0 {
		return "the message is larger than " + limit
	}
	return fmt.Sprintf("the message is %d bytes, larger than %s", size, limit)
}
