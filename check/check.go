package check

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/mail"
	"strings"

	"github.com/heraldmail/herald/config"
	"github.com/heraldmail/herald/engine"
	"github.com/heraldmail/herald/recipients"
)

// Status is a check's verdict.
type Status int

const (
	Pass Status = iota // as the providers want it
	Warn               // works, but worth a look (monitoring-only DMARC, no List-Id)
	Fail               // mail will be rejected or junked, or cannot be checked
)

func (s Status) String() string {
	switch s {
	case Pass:
		return "PASS"
	case Warn:
		return "WARN"
	}
	return "FAIL"
}

// MarshalText writes the status as PASS, WARN or FAIL.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Result is one check's verdict, what it found, and the fix ("" for a pass).
type Result struct {
	Check  string `json:"check"` // spf, dkim, dmarc, headers, provider
	Status Status `json:"status"`
	Text   string `json:"text"`
	Fix    string `json:"fix,omitempty"`
}

// Report is every result of one check, in order.
type Report struct {
	Campaign string   `json:"campaign"`
	From     string   `json:"from_domain"`     // the From address's domain
	Envelope string   `json:"envelope_domain"` // the envelope sender's domain (SPF)
	Resolver string   `json:"resolver"`        // "system" or HOST:PORT
	Results  []Result `json:"results"`
}

// Count is the number of results of status s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, res := range r.Results {
		if res.Status == s {
			n++
		}
	}
	return n
}

// WriteText writes the report for a person: one line per check, the fix
// indented below it, then the counts.
func (r *Report) WriteText(w io.Writer) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "herald check: campaign %s, From domain %s, envelope domain %s, DNS %s\n", r.Campaign, r.From, r.Envelope, r.Resolver)
	for _, res := range r.Results {
		fmt.Fprintf(&b, "%s  %-8s %s\n", res.Status, res.Check, res.Text)
		if res.Fix != "" {
			fmt.Fprintf(&b, "      %-8s fix: %s\n", "", res.Fix)
		}
	}
	warnings := "warnings"
	if r.Count(Warn) == 1 {
		warnings = "warning"
	}
	fmt.Fprintf(&b, "%d passed, %d %s, %d failed\n", r.Count(Pass), r.Count(Warn), warnings, r.Count(Fail))
	_, err := w.Write(b.Bytes())
	return err
}

// WriteJSON writes the report as one JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		*Report
		Passed   int `json:"passed"`
		Warnings int `json:"warnings"`
		Failed   int `json:"failed"`
	}{r, r.Count(Pass), r.Count(Warn), r.Count(Fail)})
}

// Options say how Run checks.
type Options struct {
	// Resolver answers the DNS queries; nil: the system's.
	Resolver Resolver
	// ResolverName names it in the report ("": "system").
	ResolverName string
	// Connect probes every provider (engine.Probe): the configuration must
	// then hold the providers' passwords (config.Load).
	Connect bool
	// Engine is given to the engine that renders the first recipient's
	// message and probes the providers.
	Engine engine.Options
}

// Run checks cfg's campaign. Its error is a campaign that cannot be
// rendered (an engine.InputError: the templates, the recipients file);
// every other finding is a Result.
func Run(ctx context.Context, cfg *config.Config, opts Options) (*Report, error) {
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.ResolverName == "" {
		opts.ResolverName = "system"
	}
	if u := cfg.Unsubscribe; u != nil && len(u.Secret) == 0 {
		// Loaded without secrets (config.LoadPreview, when the providers
		// are not probed): what is rendered here is never sent, so a
		// stand-in key signs its links.
		cp, uc := *cfg, *u
		uc.Secret = []byte("herald check stand-in key, never sent")
		cp.Unsubscribe = &uc
		cfg = &cp
	}
	eng, err := engine.New(cfg, nil, opts.Engine)
	if err != nil {
		return nil, err
	}
	var msg bytes.Buffer
	if err := eng.Preview(ctx, 1, &msg); err != nil {
		return nil, fmt.Errorf("the first recipient's message: %w", err)
	}
	c := &checker{ctx: ctx, r: opts.Resolver, cfg: cfg}
	from, err := mail.ParseAddress(cfg.Campaign.From)
	if err != nil {
		return nil, fmt.Errorf("campaign.from: %w", err) // config validated it
	}
	c.from = domainOf(from.Address)
	c.sender = from.Address
	if cfg.Campaign.BounceAddress != "" {
		c.sender = cfg.Campaign.BounceAddress
	}
	c.envelope = domainOf(c.sender)
	c.spf()
	c.dkim()
	c.dmarc()
	c.headers(msg.Bytes())
	if opts.Connect {
		c.probe(eng.Probe(ctx, c.sender))
	}
	return &Report{Campaign: cfg.Campaign.ID, From: c.from, Envelope: c.envelope, Resolver: opts.ResolverName, Results: c.results}, nil
}

// checker holds one Run's facts and results.
type checker struct {
	ctx      context.Context
	r        Resolver
	cfg      *config.Config
	from     string // the From domain, lower case
	sender   string // the envelope sender (MAIL FROM)
	envelope string // its domain
	results  []Result

	// What DMARC's alignment rests on: whether SPF and DKIM pass, as far
	// as the checks above can tell.
	spfOK, dkimOK bool
}

func (c *checker) add(check string, s Status, fix, format string, args ...any) {
	c.results = append(c.results, Result{Check: check, Status: s, Text: fmt.Sprintf(format, args...), Fix: fix})
}

// domainOf is the lower-case domain of an address, in A-labels (as DNS
// holds it).
func domainOf(addr string) string {
	if a, err := recipients.ASCIIDomain(addr); err == nil {
		addr = a
	}
	return strings.ToLower(strings.TrimSuffix(addr[strings.LastIndexByte(addr, '@')+1:], "."))
}
