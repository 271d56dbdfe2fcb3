package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	netmail "net/mail"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmail/herald/config"
	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/ratelimit"
)

// Queue is what the engine needs from a job queue (queue.Queue fulfils it).
type Queue interface {
	CreateCampaign(ctx context.Context, c queue.Campaign) (queue.Campaign, error)
	Campaign(ctx context.Context, id string) (queue.Campaign, error)
	Campaigns(ctx context.Context) ([]string, error)
	Spec(ctx context.Context, id string) ([]byte, error)
	SetSpec(ctx context.Context, id string, spec []byte) error
	SetStatus(ctx context.Context, id string, s queue.Status, reason string) error
	MarkPlanned(ctx context.Context, id string) error
	Enqueue(ctx context.Context, campaign string, jobs []queue.Job) (queue.EnqueueResult, error)
	Lease(ctx context.Context, campaign string, now time.Time, n int, ttl time.Duration) ([]queue.Job, error)
	Settle(ctx context.Context, campaign string, s []queue.Settlement) ([]uint64, error)
	Release(ctx context.Context, campaign string, jobs []queue.Job) error
	Extend(ctx context.Context, campaign string, jobs []queue.Job, until time.Time) ([]uint64, error)
	NextDue(ctx context.Context, campaign string) (time.Time, bool, error)
	Counts(ctx context.Context, campaign string) (queue.Counts, error)
	Usage(ctx context.Context, provider string, since time.Time) (int64, error)
	FirstUsage(ctx context.Context, provider string) (time.Time, error)
	Suppressed(ctx context.Context, list string, keys ...string) (map[string]queue.Suppression, error)
}

// SuppressionList is the suppression list of a campaign sent from the
// address from: its domain, lower-cased. An unsubscribe or a bounce for
// news.example.com keeps the address from every campaign sent from
// news.example.com, whatever its local part.
func SuppressionList(from string) string {
	if a, err := netmail.ParseAddress(from); err == nil {
		from = a.Address
	}
	return strings.ToLower(from[strings.LastIndexByte(from, '@')+1:])
}

var _ Queue = queue.Queue(nil)

// InputError is a problem with the configuration or the input found before
// anything was sent (exit status 2).
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// ErrInterrupted is returned by Run when it was stopped before the campaign
// was complete; running it again resumes it.
var ErrInterrupted = errors.New("interrupted")

// PausedError is Run's refusal to deliver a paused campaign: herald resume
// sets it going again.
type PausedError struct{ ID, Reason string }

func (e *PausedError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("campaign %s is paused", e.ID)
	}
	return fmt.Sprintf("campaign %s is paused (%s)", e.ID, e.Reason)
}

// StoppedError says why a run stopped on its own before the campaign was
// complete: every provider unusable, the campaign paused, or its data
// lost from the queue (Err is then the queue's error, queue.ErrVanished).
type StoppedError struct {
	Reason string
	Err    error // the cause, when it is an error (see Unwrap); may be nil
}

func (e *StoppedError) Error() string { return e.Reason }

// Options tune an Engine.
type Options struct {
	Logger *slog.Logger
	// TLSConfig replaces every provider's TLS configuration (tests use it
	// to trust a test certificate authority).
	TLSConfig *tls.Config
	// LeaseTTL is how long a job stays leased without renewal; the run
	// renews what it holds every third of it. A queue shared by several
	// processes wants it short, so a dead process's jobs come back soon.
	// Default: one hour (the embedded queue is single-process, and returns
	// a dead process's leases when it is opened).
	LeaseTTL time.Duration
	// Observer receives measurements (metrics); nil: none.
	Observer Observer
	// Limits makes the providers' and domains' limits; nil: LocalLimits.
	Limits Limits
	// Timing sets poll intervals and pauses; zero fields: DefaultTiming.
	Timing Timing
}

// Engine delivers campaigns through the configured providers: the one
// campaign of its configuration (New: Plan, Run, Preview) or every active
// campaign in the queue (NewWorker: Work). One Engine serves one Run or
// Work at a time; Progress may be called concurrently.
type Engine struct {
	cfg       *config.Config
	leaseTTL  time.Duration
	t         Timing
	q         Queue
	log       *slog.Logger
	obs       Observer
	providers []*provider
	holder    string // this process, in the providers' connection slots
	domains   *domains
	keys      keys // this process's unsubscribe secret and DKIM key
	// spec and content are the configured campaign's (nil for a worker).
	spec    Spec
	content *content

	counts   atomic.Pointer[queue.Counts]
	progress progressCounters
}

type progressCounters struct {
	sent, failed, suppressed, skipped, retried, ambiguous, throttled, reconnects atomic.Int64
	inFlight                                                                     atomic.Int64
	note                                                                         atomic.Pointer[string]
}

// New prepares the configuration's campaign: it loads and parses the
// templates, reads the attachments and configures one go-mail client per
// provider.
func New(cfg *config.Config, q Queue, opts Options) (*Engine, error) {
	spec, err := SpecFromConfig(cfg)
	if err != nil {
		return nil, &InputError{err}
	}
	e, err := NewWorker(cfg, q, opts)
	if err != nil {
		return nil, err
	}
	c, err := newContent(cfg.Campaign.ID, spec, e.keys)
	if err != nil {
		return nil, &InputError{err}
	}
	e.spec, e.content = spec, c
	e.log = e.log.With("campaign", cfg.Campaign.ID)
	return e, nil
}

// NewWorker prepares an engine that delivers whichever campaigns are
// active in the queue (Work), with the configuration's providers; the
// configuration's campaign, if any, is not used.
func NewWorker(cfg *config.Config, q Queue, opts Options) (*Engine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = time.Hour
	}
	if opts.Observer == nil {
		opts.Observer = noObserver{}
	}
	if opts.Limits == nil {
		opts.Limits = LocalLimits{}
	}
	e := &Engine{cfg: cfg, q: q, leaseTTL: opts.LeaseTTL, t: opts.Timing.withDefaults(), log: opts.Logger, obs: opts.Observer, holder: processName(),
		domains: &domains{cfg: cfg, limits: opts.Limits, m: map[string]ratelimit.Pacer{}}}
	k, err := keysFrom(cfg)
	if err != nil {
		return nil, &InputError{err}
	}
	e.keys = k
	for _, pc := range cfg.Provider {
		p, err := newProvider(pc, opts.TLSConfig, opts.Limits)
		if err != nil {
			return nil, &InputError{err}
		}
		p.log = opts.Logger.With("provider", pc.Name)
		if len(pc.Warmup) > 0 {
			p.quota = newWarmup(p.quota, pc.Name, pc.Warmup, q, p.warmupDay)
		}
		p.t = &e.t
		e.providers = append(e.providers, p)
	}
	e.counts.Store(&queue.Counts{})
	return e, nil
}

// Progress is a snapshot of a running campaign.
type Progress struct {
	Counts queue.Counts // per state, as of the last settled batch
	// This run's outcomes.
	Sent, Failed, Suppressed, Retried, Ambiguous, Throttled, Reconnects int64
	// Skipped jobs were not sent: their address went on the suppression
	// list after planning (an unsubscribe during the campaign).
	Skipped  int64
	InFlight int64
	Note     string // e.g. why sending waits
}

// Progress returns the current snapshot; safe for concurrent use.
func (e *Engine) Progress() Progress {
	p := Progress{
		Counts:     *e.counts.Load(),
		Sent:       e.progress.sent.Load(),
		Failed:     e.progress.failed.Load(),
		Suppressed: e.progress.suppressed.Load(),
		Skipped:    e.progress.skipped.Load(),
		Retried:    e.progress.retried.Load(),
		Ambiguous:  e.progress.ambiguous.Load(),
		Throttled:  e.progress.throttled.Load(),
		Reconnects: e.progress.reconnects.Load(),
		InFlight:   e.progress.inFlight.Load(),
	}
	if n := e.progress.note.Load(); n != nil {
		p.Note = *n
	}
	return p
}

func (e *Engine) setNote(s string) { e.progress.note.Store(&s) }

// Summary is the end state of a run.
type Summary struct {
	Progress
	Elapsed time.Duration
}

func sortedHeaderIndexes(header, fields []string) []int {
	var idx []int
	for i, h := range header {
		if slices.Contains(fields, h) {
			idx = append(idx, i)
		}
	}
	return idx
}

// processName names this process among the workers: host, process id and
// a random part (a restarted process with the same pid is another holder).
func processName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d/%08x", host, os.Getpid(), rand.Uint32())
}

// domains holds the pacers of recipient domains, made when a domain is
// first met. Safe for concurrent use.
type domains struct {
	cfg    *config.Config
	limits Limits
	mu     sync.Mutex
	m      map[string]ratelimit.Pacer
	next   map[string]time.Time // the latest time a job was put off to
}

// later is when a job put off for domain's pace, which wants it to wait
// until at least t, is due: one 1/rate after the job put off before it,
// so that the jobs come back spread out rather than all at once.
func (d *domains) later(domain string, t time.Time, rate float64) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.next == nil {
		d.next = map[string]time.Time{}
	}
	at := t
	if rate > 0 {
		if n := d.next[domain].Add(time.Duration(float64(time.Second) / rate)); n.After(at) {
			at = n
		}
	}
	d.next[domain] = at
	return at
}

// pacer is domain's pacer, or nil: a domain without a [domain] section
// has one only once it throttled us (then kept in this process only, so
// that the many domains of a list cost nothing per message).
func (d *domains) pacer(domain string) ratelimit.Pacer {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.m[domain]
	if !ok {
		if _, configured := d.cfg.Domain[domain]; configured {
			p = d.limits.Domain(domain, d.cfg.DomainPolicy(domain))
			d.m[domain] = p
		}
	}
	return p
}

// throttled is domain's pacer, made if it has none, for a throttle reply.
func (d *domains) throttled(domain string) ratelimit.Pacer {
	if p := d.pacer(domain); p != nil {
		return p
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.m[domain]
	if !ok {
		p = LocalLimits{}.Domain(domain, d.cfg.DomainPolicy(domain))
		d.m[domain] = p
	}
	return p
}

// domainOf is the domain of a lower-cased address.
func domainOf(key string) string {
	return key[strings.LastIndexByte(key, '@')+1:]
}
