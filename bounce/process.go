package bounce

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf8"

	"github.com/heraldmail/herald/queue"
)

// Store keeps the suppression lists and the soft-bounce counts. list is a
// sending domain (the domain of a campaign's From); key is a lower-cased
// recipient address. Implementations are safe for concurrent use.
type Store interface {
	// Suppress adds keys to the list with a reason. Suppressing a key that
	// is already on the list is not an error.
	Suppress(ctx context.Context, list, reason string, keys ...string) error
	// SoftBounce records that bounce bounceID was a soft bounce of key on
	// list and returns how many distinct bounce IDs the key has. Recording
	// the same bounceID again changes nothing and returns the same count.
	SoftBounce(ctx context.Context, list, key, bounceID string) (count int, err error)
	// Recipient reports whether key was one of the campaign's recipients.
	// A report naming anyone else is not acted on: the campaign id is in
	// every message's headers, and a forged report must not suppress
	// addresses the campaign never mailed.
	Recipient(ctx context.Context, campaign, key string) (bool, error)
	// Complaint records that key complained about campaign and returns
	// how many distinct recipients of it did.
	Complaint(ctx context.Context, campaign, key string) (int, error)
}

// ListFunc returns the suppression list of a campaign: its sending domain.
// It returns an error wrapping ErrUnknownCampaign for a campaign it does
// not know (the report is then unmatched).
type ListFunc func(ctx context.Context, campaign string) (list string, err error)

// ErrUnknownCampaign: no such campaign in the queue.
var ErrUnknownCampaign = errors.New("unknown campaign")

// Mailbox is a bounce mailbox: IMAP or POP3 (see Open).
type Mailbox interface {
	// List returns the IDs of the messages in the mailbox (IMAP UIDs, POP3
	// message numbers), oldest first.
	List(ctx context.Context) ([]string, error)
	// Fetch returns a message without marking it read.
	Fetch(ctx context.Context, id string) ([]byte, error)
	// Done marks a message processed: moved to another mailbox, or deleted.
	Done(ctx context.Context, id string) error
	// Close ends the session; POP3 deletions and IMAP expunges take effect.
	Close() error
}

// Options tune Process.
type Options struct {
	// BounceAddresses are the addresses herald uses as the base of VERP
	// envelope senders (bounces+campaign+ann=example.org@example.com names
	// campaign and recipient); each is tried. None: only the
	// X-Herald-Campaign header of the returned message matches.
	BounceAddresses []string
	// SoftLimit is how many distinct soft bounces suppress a recipient
	// (default 3).
	SoftLimit int
	// DryRun parses and matches, and changes nothing: no store writes, no
	// message marked.
	DryRun bool
	Logger *slog.Logger
}

// DefaultSoftLimit is bounces.soft_limit's default.
const DefaultSoftLimit = 3

// Summary counts what one run did. A message counts once in Hard, Soft,
// NotBounces, Unmatched or Errors (Hard when a report has both); Suppressed
// counts recipients put on a suppression list (hard, or soft at the limit).
type Summary struct {
	Read       int      `json:"read"`
	Hard       int      `json:"hard"`
	Complaints int      `json:"complaints"`
	Soft       int      `json:"soft"`
	Suppressed int      `json:"suppressed"`
	NotBounces int      `json:"not_bounces"`
	Unmatched  int      `json:"unmatched"`
	Errors     int      `json:"errors"`
	Messages   []Result `json:"messages"`
}

// Result is what happened to one message.
type Result struct {
	ID         string        `json:"id"`
	BounceID   string        `json:"bounce_id,omitempty"`
	Format     string        `json:"format,omitempty"`
	Kind       string        `json:"kind"`
	Note       string        `json:"note,omitempty"`
	Recipients []RecipResult `json:"recipients,omitempty"`
	// Marked is true once the message was moved or deleted.
	Marked bool   `json:"marked"`
	Error  string `json:"error,omitempty"`
}

// RecipResult is what happened to one recipient of a report.
type RecipResult struct {
	Campaign   string `json:"campaign"`
	List       string `json:"list"`
	Address    string `json:"address"`
	Kind       string `json:"kind"`
	Status     string `json:"status,omitempty"`
	Diagnostic string `json:"diagnostic,omitempty"`
	SoftCount  int    `json:"soft_count,omitempty"`
	// Complaints is, for a complaint, how many recipients of the campaign
	// complained so far.
	Complaints int    `json:"complaints,omitempty"`
	Suppressed bool   `json:"suppressed"`
	By         string `json:"matched_by"`
}

// Process reads every message of mb, records the bounces in st, and marks
// what it recorded (see the package comment for the order). It stops at the
// first error of the store or the mailbox (a message it cannot parse is
// counted in Errors and left alone); the summary counts what was done
// until then. Process does not close mb.
func Process(ctx context.Context, mb Mailbox, st Store, lists ListFunc, opts Options) (Summary, error) {
	if opts.SoftLimit <= 0 {
		opts.SoftLimit = DefaultSoftLimit
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var sum Summary
	ids, err := mb.List(ctx)
	if err != nil {
		return sum, err
	}
	p := &processor{st: st, lists: lists, opts: opts, log: log, listOf: map[string]string{}}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		raw, err := mb.Fetch(ctx, id)
		if err != nil {
			return sum, err
		}
		sum.Read++
		res, mark, err := p.one(ctx, id, raw)
		if err == nil && mark && !opts.DryRun {
			if err = mb.Done(ctx, id); err == nil {
				res.Marked = true
			}
		}
		if err != nil {
			res.Error = err.Error()
			sum.Errors++
			sum.Messages = append(sum.Messages, res)
			return sum, err
		}
		switch {
		case res.Error != "":
			sum.Errors++
		case res.Kind == Complaint.String():
			sum.Complaints++
		case res.Kind == Hard.String():
			sum.Hard++
		case res.Kind == Soft.String():
			sum.Soft++
		case res.Kind == "unmatched":
			sum.Unmatched++
		default:
			sum.NotBounces++
		}
		for _, rr := range res.Recipients {
			if rr.Suppressed {
				sum.Suppressed++
			}
		}
		sum.Messages = append(sum.Messages, res)
	}
	return sum, nil
}

type processor struct {
	st     Store
	lists  ListFunc
	opts   Options
	log    *slog.Logger
	listOf map[string]string // campaign → list; "" for unknown campaigns
}

// one handles one message. mark says whether it may be marked processed;
// err is a store error that stops the run.
func (p *processor) one(ctx context.Context, id string, raw []byte) (res Result, mark bool, err error) {
	res = Result{ID: id}
	r, perr := Parse(raw)
	if perr != nil {
		res.Kind, res.Error = "error", perr.Error()
		p.log.Warn("bounce: cannot parse message; left in the mailbox", "id", id, "err", perr)
		return res, false, nil
	}
	res.Format, res.BounceID = r.Format, bounceID(r, raw)
	kind := r.Kind()
	if kind == NotBounce {
		res.Kind, res.Note = kind.String(), r.Note
		return res, true, nil
	}
	matches, merr := match(r, p.opts.BounceAddresses...)
	if merr != nil {
		res.Kind, res.Note = "unmatched", merr.Error()
		return res, false, nil
	}
	notices := 0
	var strangers []string // named, but not recipients of the campaign
	for _, m := range matches {
		rc := recipientFor(r, m.Recipient)
		if rc.Kind == NotBounce {
			notices++
			continue
		}
		list, lerr := p.list(ctx, m.Campaign)
		if errors.Is(lerr, ErrUnknownCampaign) {
			continue
		}
		if lerr != nil {
			return res, false, lerr
		}
		key := strings.ToLower(m.Recipient)
		if ok, err := p.st.Recipient(ctx, m.Campaign, key); err != nil && !errors.Is(err, queue.ErrNoCampaign) {
			return res, false, fmt.Errorf("store: %w", err)
		} else if !ok {
			strangers = append(strangers, m.Recipient)
			continue
		}
		rr := RecipResult{Campaign: m.Campaign, List: list, Address: m.Recipient, Kind: rc.Kind.String(),
			Status: rc.Status, Diagnostic: rc.Diagnostic, By: m.By}
		switch rc.Kind {
		case Complaint:
			rr.Suppressed = true
			if !p.opts.DryRun {
				if err := p.st.Suppress(ctx, list, "complaint: "+trim(rc.Diagnostic, 200)+" (campaign "+m.Campaign+")", key); err != nil {
					return res, false, fmt.Errorf("store: suppress: %w", err)
				}
				n, err := p.st.Complaint(ctx, m.Campaign, key)
				if err != nil {
					return res, false, fmt.Errorf("store: complaint: %w", err)
				}
				rr.Complaints = n
			}
		case Hard:
			rr.Suppressed = true
			if !p.opts.DryRun {
				reason := "hard bounce " + statusOr(rc.Status) + ": " + trim(rc.Diagnostic, 200)
				if err := p.st.Suppress(ctx, list, reason, key); err != nil {
					return res, false, fmt.Errorf("store: suppress: %w", err)
				}
			}
		case Soft:
			if p.opts.DryRun {
				break
			}
			n, err := p.st.SoftBounce(ctx, list, key, res.BounceID)
			if err != nil {
				return res, false, fmt.Errorf("store: soft bounce: %w", err)
			}
			rr.SoftCount = n
			if n >= p.opts.SoftLimit {
				reason := fmt.Sprintf("%d soft bounces, last %s: %s", n, statusOr(rc.Status), trim(rc.Diagnostic, 200))
				if err := p.st.Suppress(ctx, list, reason, key); err != nil {
					return res, false, fmt.Errorf("store: suppress: %w", err)
				}
				rr.Suppressed = true
			}
		}
		res.Recipients = append(res.Recipients, rr)
	}
	if len(res.Recipients) == 0 && notices == len(matches) {
		// A delay or success notice for every recipient it names.
		res.Kind, res.Note = NotBounce.String(), "no failed recipient in the report"
		return res, true, nil
	}
	if len(res.Recipients) == 0 && len(strangers) > 0 {
		res.Kind, res.Note = "unmatched", fmt.Sprintf("%s: not a recipient of campaign %q", strings.Join(strangers, ", "), matches[0].Campaign)
		return res, false, nil
	}
	if len(res.Recipients) == 0 {
		res.Kind, res.Note = "unmatched", fmt.Sprintf("campaign %q is not in the queue", matches[0].Campaign)
		return res, false, nil
	}
	res.Kind = NotBounce.String()
	for _, rr := range res.Recipients {
		if rr.Kind == Complaint.String() {
			res.Kind = rr.Kind
			break
		}
		if rr.Kind == Hard.String() {
			res.Kind = rr.Kind
		} else if rr.Kind == Soft.String() && res.Kind != Hard.String() {
			res.Kind = rr.Kind
		}
	}
	return res, true, nil
}

func (p *processor) list(ctx context.Context, campaign string) (string, error) {
	if l, ok := p.listOf[campaign]; ok {
		if l == "" {
			return "", ErrUnknownCampaign
		}
		return l, nil
	}
	l, err := p.lists(ctx, campaign)
	if errors.Is(err, ErrUnknownCampaign) {
		p.listOf[campaign] = ""
		return "", err
	}
	if err != nil {
		return "", fmt.Errorf("campaign %s: %w", campaign, err)
	}
	p.listOf[campaign] = l
	return l, nil
}

// bounceID identifies a report for the soft-bounce counts: its Message-ID,
// which the reporting MTA makes unique and which a copy of the same report
// (delivered twice, or seen again after a crash) keeps; without one, a hash
// of the message.
func bounceID(r *Report, raw []byte) string {
	if r.MessageID != "" {
		return "msgid:" + r.MessageID
	}
	// POP3 hands the message over with LF line ends, IMAP with CRLF.
	sum := sha256.Sum256(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n")))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func statusOr(s string) string {
	if s == "" {
		return "(no status)"
	}
	return s
}

// trim shortens s to at most n bytes, on a rune boundary.
func trim(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
