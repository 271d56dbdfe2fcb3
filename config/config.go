package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/crypto/scrypt"

	"github.com/heraldmail/herald/recipients"
	"github.com/heraldmail/herald/schedule"
)

// Config is a whole campaign configuration, as decoded from TOML and
// completed by Load. It is a plain value: safe to share once loaded.
type Config struct {
	Campaign Campaign   `toml:"campaign"`
	Queue    Queue      `toml:"queue"`
	Retry    Retry      `toml:"retry"`
	Provider []Provider `toml:"provider"`
	// Domain limits messages to one recipient domain, whichever provider
	// sends them: [domain."gmail.com"] rate = 20.
	Domain map[string]Domain `toml:"domain"`
	// Bounces is the bounce mailbox herald bounces reads (bounces.go).
	Bounces Bounces `toml:"bounces"`
	// Unsubscribe adds List-Unsubscribe (RFC 2369, 8058) to every message;
	// nil when the section is absent.
	Unsubscribe *Unsubscribe `toml:"unsubscribe"`
	// DKIM signs every message (RFC 6376); nil when the section is absent.
	DKIM *DKIM `toml:"dkim"`

	// Dir is the folder of the config file; relative paths were resolved
	// against it.
	Dir string `toml:"-"`

	// need says which secrets the command that loads it reads.
	need secrets
}

// secrets says which secrets a command reads: only the commands that use a
// secret require its environment variable (herald status runs without the
// SMTP password). A secret not required is still read when it is set.
type secrets struct{ providers, unsubscribe, bounces bool }

// Campaign says what to send and to whom.
type Campaign struct {
	ID      string `toml:"id"`
	From    string `toml:"from"`
	ReplyTo string `toml:"reply_to"`
	Subject string `toml:"subject"`
	// Schedule is when messages may go out; empty: any time.
	Schedule Schedule `toml:"schedule"`
	// ToName is a text/template for the display name in To:
	// ("{{.name}}"); empty: the bare address.
	ToName     string `toml:"to_name"`
	Text       string `toml:"text"`
	HTML       string `toml:"html"`
	Recipients string `toml:"recipients"`
	// Encoding is the recipients file's character encoding, when it is
	// not UTF-8: "gb18030", "big5", "shift_jis", "windows-1252", ...
	// (recipients.LookupEncoding). Default "utf-8".
	Encoding    string            `toml:"encoding"`
	Attachments []string          `toml:"attachments"`
	Headers     map[string]string `toml:"headers"`
	// PolicyThreshold pauses the campaign once this share of attempted
	// messages met a policy reply (content judged spam, DMARC, sender
	// mismatch), after at least PolicyMinimum attempts.
	PolicyThreshold float64 `toml:"policy_threshold"`
	PolicyMinimum   int     `toml:"policy_minimum"`
	// BounceThreshold pauses the campaign once this share of attempted
	// messages bounced hard (the permanent class: no such user), after
	// at least BounceMinimum attempts: the list needs cleaning.
	BounceThreshold float64 `toml:"bounce_threshold"`
	BounceMinimum   int     `toml:"bounce_minimum"`
	// ComplaintThreshold pauses the campaign once this share of its sent
	// messages drew a complaint (herald bounces reads the feedback
	// reports); Gmail asks bulk senders to stay under 0.3%.
	ComplaintThreshold float64 `toml:"complaint_threshold"`
	// ListID is the List-Id header (RFC 2919), e.g.
	// "Herald News <news.example.com>".
	ListID string `toml:"list_id"`
	// BounceAddress is the envelope sender (Return-Path); with VERP, the
	// base of a per-recipient one (package verp). Default: the From address.
	BounceAddress string `toml:"bounce_address"`
	VERP          bool   `toml:"verp"`
	// MaxMessageSize bounds every message built (and never goes above the
	// SIZE a server advertises, RFC 1870): the first recipient's message
	// is checked before anything is sent, then every message before it is
	// sent. Default DefaultMaxMessageSize.
	MaxMessageSize *Size `toml:"max_message_size"`
}

// Schedule is a campaign's sending window ([campaign.schedule]).
type Schedule struct {
	Timezone string   `toml:"timezone"` // IANA name; "": the machine's
	Days     []string `toml:"days"`     // "mon" … "sun"; none: every day
	Hours    string   `toml:"hours"`    // "09:00-18:00"; "": all day
	// TimezoneColumn names a column with each recipient's IANA zone: the
	// window then holds in the recipient's own time.
	TimezoneColumn string `toml:"timezone_column"`
}

// Queue says where jobs are kept.
type Queue struct {
	Backend string `toml:"backend"`
	Path    string `toml:"path"`
	URL     string `toml:"url"`
	// Lease is how long a job stays with a worker that stops renewing it
	// (it died): then another worker takes it. Redis only.
	Lease Duration `toml:"lease"`
	// Volatile says a Redis that keeps nothing across a restart (no AOF,
	// no RDB save points) is intended: send, enqueue and worker refuse
	// such a server unless it is set. Redis only; default false.
	Volatile bool `toml:"volatile"`
}

// Retry governs transient failures.
type Retry struct {
	MaxAttempts int      `toml:"max_attempts"`
	MaxAge      Duration `toml:"max_age"`
	Backoff     Duration `toml:"backoff"`     // first delay; doubles per attempt
	MaxBackoff  Duration `toml:"max_backoff"` // cap of the delay
}

// Provider is one SMTP submission server and its policy.
type Provider struct {
	// Preset fills host, port, tls and conservative limits for a known
	// provider ("163", "qq", "gmail", "office365", "ses"); keys set in the
	// file win. See presets.go.
	Preset string `toml:"preset"`
	// Region is the Amazon SES region ("us-east-1") that preset = "ses"
	// builds the host from, when host is not given.
	Region        string  `toml:"region"`
	Name          string  `toml:"name"`
	Host          string  `toml:"host"`
	Port          int     `toml:"port"`
	TLS           string  `toml:"tls"` // none | starttls | tls
	Username      string  `toml:"username"`
	PasswordEnv   string  `toml:"password_env"`
	Helo          string  `toml:"helo"`
	CAFile        string  `toml:"ca_file"` // extra CA certificates (PEM) for a private relay
	Rate          float64 `toml:"rate"`
	Burst         int     `toml:"burst"`
	Connections   int     `toml:"connections"`
	PerConnection int     `toml:"per_connection"`
	Daily         int     `toml:"daily"`
	// Warmup is the daily cap on day 1, 2, 3… of sending through this
	// provider, counted from its first message; past the list, Daily.
	Warmup      []int    `toml:"warmup"`
	Timeout     Duration `toml:"timeout"`      // per SMTP command and dial
	IdleTimeout Duration `toml:"idle_timeout"` // close a connection unused this long
	// Pipelining groups commands (RFC 2920) when the server offers it;
	// unset means on.
	Pipelining *bool `toml:"pipelining"`
	// Cooldown is how long a provider pauses after a throttle reply.
	Cooldown Duration `toml:"cooldown"`
	// Priority orders providers: jobs go to the providers of the smallest
	// priority whose circuit is closed; the others wait as a backup.
	// Unset (0) for all: every provider is used at once.
	Priority int `toml:"priority"`
	// Weight splits the messages between providers of the same priority
	// in proportion (default 1).
	Weight int `toml:"weight"`

	// Password is read from the environment variable PasswordEnv by Load;
	// it is never printed (see Provider.String).
	Password string `toml:"-"`
}

// String names the provider without its secret.
func (p Provider) String() string {
	return fmt.Sprintf("%s (%s)", p.Name, net.JoinHostPort(p.Host, fmt.Sprint(p.Port)))
}

// Fingerprint identifies the provider's account and credentials without
// revealing them: scrypt of the password, salted with host and username
// (slow on purpose: it is stored in Redis, where a reader must not be able
// to try passwords quickly). Computed once per call; about 50 ms.
func (p Provider) Fingerprint() string {
	key, err := scrypt.Key([]byte(p.Password), []byte("herald\x00"+p.Host+"\x00"+p.Username), 1<<15, 8, 1, 16)
	if err != nil {
		panic(err) // only for invalid parameters, which are constants here
	}
	return hex.EncodeToString(key)
}

// PipeliningOn reports whether commands may be pipelined to this provider.
func (p Provider) PipeliningOn() bool { return p.Pipelining == nil || *p.Pipelining }

// Domain is the policy for one recipient domain.
type Domain struct {
	Rate     float64  `toml:"rate"`     // messages a second to the domain (0: unlimited)
	Burst    int      `toml:"burst"`    // default rate/10, at least 1
	Cooldown Duration `toml:"cooldown"` // pause after the domain throttles us
}

// DomainPolicy is the policy for recipient domain d (lower case): its
// [domain] section, or none (no rate) with the default cool-down.
func (c *Config) DomainPolicy(d string) Domain {
	if p, ok := c.Domain[d]; ok {
		return p
	}
	return Domain{Cooldown: Duration{DefaultCooldown}}
}

// Duration is a time.Duration written as a string ("30s", "72h") in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (use e.g. \"30s\", \"5m\", \"72h\"): %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// Problems is every problem found in a configuration, each naming its key.
type Problems []string

func (p Problems) Error() string {
	if len(p) == 1 {
		return "config: " + p[0]
	}
	return "config: " + fmt.Sprint(len(p)) + " problems:\n  " + strings.Join(p, "\n  ")
}

// Load reads, defaults and validates the configuration at path. Every
// problem is reported at once as Problems, each with its key.
func Load(path string) (*Config, error) {
	return load(path, forCampaign)
}

// LoadWorker is Load for herald worker, which takes its campaigns from the
// queue: the [campaign] section is optional (and checked only when given).
func LoadWorker(path string) (*Config, error) {
	return load(path, forWorker)
}

// purpose says which sections a command needs.
type purpose int

const (
	forCampaign purpose = iota // [campaign] and providers (send, enqueue)
	forWorker                  // providers; [campaign] checked when given (worker, status, ...)
	forBounces                 // [bounces]; [campaign] checked when given, providers optional
	forQueue                   // [queue]; [campaign] and providers checked when given (status, suppress, ...)
	forPreview                 // [campaign]; providers checked when given; no secrets (preview, send --dry-run)
	forServe                   // as forQueue, with the unsubscribe secret (serve)
)

// LoadPreview is Load for the commands that render a campaign and send
// nothing (preview, send --dry-run): no secret is required.
func LoadPreview(path string) (*Config, error) {
	return load(path, forPreview)
}

// LoadServe is Load for herald serve: the queue and the unsubscribe secret.
func LoadServe(path string) (*Config, error) {
	return load(path, forServe)
}

// LoadQueue is Load for the commands that only read or change the queue
// (status, report, suppress, serve, ...): [campaign] and providers are
// checked when given, neither is required, so such a command can have a
// configuration of its own without the providers' passwords.
func LoadQueue(path string) (*Config, error) {
	return load(path, forQueue)
}

func load(path string, p purpose) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(string(raw), filepath.Dir(abs), os.Getenv, p)
}

// Parse decodes a configuration from TOML text. dir is the folder relative
// paths resolve against; getenv reads secrets.
func Parse(text, dir string, getenv func(string) string) (*Config, error) {
	return parse(text, dir, getenv, forCampaign)
}

// ParseWorker is Parse for herald worker (see LoadWorker).
func ParseWorker(text, dir string, getenv func(string) string) (*Config, error) {
	return parse(text, dir, getenv, forWorker)
}

func parse(text, dir string, getenv func(string) string, p purpose) (*Config, error) {
	var c Config
	md, err := toml.Decode(text, &c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, Problems{fmt.Sprintf("line %d: %s", perr.Position.Line, perr.Message)}
		}
		return nil, Problems{err.Error()}
	}
	var probs Problems
	undecoded := md.Undecoded()
	for _, k := range undecoded {
		probs = append(probs, fmt.Sprintf("%s: unknown key", keyName(k)))
	}
	c.Dir = dir
	c.need = secrets{providers: p == forCampaign || p == forWorker, unsubscribe: p == forCampaign || p == forWorker || p == forServe, bounces: p == forBounces}
	zeros := explicitZeros(text)
	probs = append(probs, c.applyPresets(zeros)...)
	c.applyDefaults()
	c.applyBouncesDefaults()
	probs = append(probs, c.validate(getenv, p == forCampaign || p == forPreview || md.IsDefined("campaign"), p == forCampaign || p == forWorker)...)
	c.checkRanges(zeros, func(key, format string, args ...any) {
		probs = append(probs, key+": "+fmt.Sprintf(format, args...))
	})
	sort.Strings(probs)
	if p == forBounces || md.IsDefined("bounces") {
		probs = append(probs, c.validateBounces(getenv)...)
		sort.Strings(probs)
	}
	if len(probs) > 0 {
		return nil, probs
	}
	return &c, nil
}

// keyName writes a TOML key path the way a user writes it: provider[1].port.
func keyName(k toml.Key) string {
	var b strings.Builder
	for i, part := range k {
		if i > 0 && !strings.HasPrefix(part, "[") {
			b.WriteByte('.')
		}
		b.WriteString(part)
	}
	return b.String()
}

// Defaults, in one place.
const (
	DefaultBackend       = "embedded"
	DefaultQueuePath     = "herald.db"
	DefaultPort          = 587
	DefaultTLS           = "starttls"
	DefaultConnections   = 4
	DefaultPerConnection = 100
	DefaultMaxAttempts   = 5
	DefaultRedisURL      = "redis://127.0.0.1:6379/0"
	// The bounce brake: a list past 5% hard bounces after 100 attempts is
	// stale (mailbox providers start to distrust a sender at a few %).
	DefaultBounceThreshold = 0.05
	DefaultBounceMinimum   = 100
	// Gmail's limit for bulk senders' spam-complaint rate.
	DefaultComplaintThreshold = 0.003
	// DefaultMaxMessageSize is campaign.max_message_size's default, 10 MB;
	// it may be set between MinMessageSize and MaxMessageSize.
	DefaultMaxMessageSize int64 = 10 << 20
	MinMessageSize        int64 = 1 << 10
	MaxMessageSize        int64 = 1 << 30
)

var (
	DefaultMaxAge      = 72 * time.Hour
	DefaultBackoff     = time.Minute
	DefaultMaxBackoff  = time.Hour
	DefaultTimeout     = 60 * time.Second
	DefaultIdleTimeout = 30 * time.Second
	DefaultCooldown    = 30 * time.Second
	DefaultLease       = time.Minute
)

func (c *Config) applyDefaults() {
	if c.Queue.Backend == "" {
		c.Queue.Backend = DefaultBackend
	}
	if c.Queue.Path == "" {
		c.Queue.Path = DefaultQueuePath
	}
	if c.Queue.URL == "" {
		c.Queue.URL = DefaultRedisURL
	}
	if c.Queue.Lease.Duration == 0 {
		c.Queue.Lease.Duration = DefaultLease
	}
	if c.Retry.MaxAttempts == 0 {
		c.Retry.MaxAttempts = DefaultMaxAttempts
	}
	if c.Retry.MaxAge.Duration == 0 {
		c.Retry.MaxAge.Duration = DefaultMaxAge
	}
	if c.Retry.Backoff.Duration == 0 {
		c.Retry.Backoff.Duration = DefaultBackoff
	}
	if c.Retry.MaxBackoff.Duration == 0 {
		c.Retry.MaxBackoff.Duration = DefaultMaxBackoff
	}
	if c.Campaign.PolicyThreshold == 0 {
		c.Campaign.PolicyThreshold = 0.05
	}
	if c.Campaign.PolicyMinimum == 0 {
		c.Campaign.PolicyMinimum = 20
	}
	if c.Campaign.BounceThreshold == 0 {
		c.Campaign.BounceThreshold = DefaultBounceThreshold
	}
	if c.Campaign.BounceMinimum == 0 {
		c.Campaign.BounceMinimum = DefaultBounceMinimum
	}
	if c.Campaign.ComplaintThreshold == 0 {
		c.Campaign.ComplaintThreshold = DefaultComplaintThreshold
	}
	if c.Campaign.MaxMessageSize == nil {
		c.Campaign.MaxMessageSize = &Size{Bytes: DefaultMaxMessageSize}
	}
	for i := range c.Provider {
		p := &c.Provider[i]
		if p.Name == "" {
			p.Name = p.Host
		}
		if p.TLS == "" {
			p.TLS = DefaultTLS
		}
		if p.Port == 0 {
			switch p.TLS {
			case "tls":
				p.Port = 465
			case "none":
				p.Port = 25
			default:
				p.Port = DefaultPort
			}
		}
		if p.Connections == 0 {
			p.Connections = DefaultConnections
		}
		if p.PerConnection == 0 {
			p.PerConnection = DefaultPerConnection
		}
		if p.Burst == 0 && p.Rate > 0 {
			p.Burst = max(1, int(p.Rate/10))
		}
		if p.Timeout.Duration == 0 {
			p.Timeout.Duration = DefaultTimeout
		}
		if p.IdleTimeout.Duration == 0 {
			p.IdleTimeout.Duration = DefaultIdleTimeout
		}
		if p.Cooldown.Duration == 0 {
			p.Cooldown.Duration = DefaultCooldown
		}
		if p.Weight == 0 {
			p.Weight = 1
		}
	}
	c.Campaign.Text = c.path(c.Campaign.Text)
	c.Campaign.HTML = c.path(c.Campaign.HTML)
	c.Campaign.Recipients = c.path(c.Campaign.Recipients)
	for i, a := range c.Campaign.Attachments {
		c.Campaign.Attachments[i] = c.path(a)
	}
	for i := range c.Provider {
		c.Provider[i].CAFile = c.path(c.Provider[i].CAFile)
	}
	if c.DKIM != nil {
		c.DKIM.PrivateKey = c.path(c.DKIM.PrivateKey)
	}
	if c.Unsubscribe != nil {
		c.Unsubscribe.Page = c.path(c.Unsubscribe.Page)
	}
	for name, d := range c.Domain {
		if d.Burst == 0 && d.Rate > 0 {
			d.Burst = max(1, int(d.Rate/10))
		}
		if d.Cooldown.Duration == 0 {
			d.Cooldown.Duration = DefaultCooldown
		}
		delete(c.Domain, name)
		c.Domain[strings.ToLower(name)] = d
	}
	if c.Queue.Backend == "embedded" {
		c.Queue.Path = c.path(c.Queue.Path)
	}
}

// path resolves p against the config file's folder.
func (c *Config) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}

func (c *Config) validate(getenv func(string) string, campaign, providers bool) Problems {
	var probs Problems
	bad := func(key, format string, args ...any) {
		probs = append(probs, key+": "+fmt.Sprintf(format, args...))
	}
	if campaign {
		c.validateCampaign(bad)
		c.validateAddresses(bad)
		c.validateSenders(bad)
		c.validateHeaders(bad)
	}
	c.validateSigning(getenv, campaign, bad)
	c.validateDelivery(getenv, providers, bad)
	sort.Strings(probs)
	return probs
}

func (c *Config) validateCampaign(bad func(key, format string, args ...any)) {
	cp := c.Campaign
	switch {
	case cp.ID == "":
		bad("campaign.id", "required: a stable name, so that running again resumes the campaign")
	case !validID(cp.ID):
		bad("campaign.id", "%q: use letters, digits, '-', '_' and '.' only (at most 64)", cp.ID)
	}
	if cp.From == "" {
		bad("campaign.from", "required, e.g. \"News <news@example.com>\"")
	} else if _, err := mail.ParseAddress(cp.From); err != nil || strings.ContainsAny(cp.From, "\r\n") {
		bad("campaign.from", "%q is not an address: %v", cp.From, err)
	}
	if cp.ReplyTo != "" {
		if _, err := mail.ParseAddress(cp.ReplyTo); err != nil || strings.ContainsAny(cp.ReplyTo, "\r\n") {
			bad("campaign.reply_to", "%q is not an address", cp.ReplyTo)
		}
	}
	if cp.Subject == "" {
		bad("campaign.subject", "required")
	}
	if cp.Text == "" && cp.HTML == "" {
		bad("campaign.text", "required (or campaign.html): a template file for the body")
	}
	for key, p := range map[string]string{"campaign.text": cp.Text, "campaign.html": cp.HTML, "campaign.recipients": cp.Recipients} {
		if p != "" {
			if err := readable(p); err != nil {
				bad(key, "%v", err)
			}
		}
	}
	if cp.Recipients == "" {
		bad("campaign.recipients", "required: a CSV file with a header row and an \"email\" column")
	}
	if cp.Encoding != "" {
		if _, err := recipients.LookupEncoding(cp.Encoding); err != nil {
			bad("campaign.encoding", "%v", err)
		}
	}
	for i, a := range cp.Attachments {
		if err := readable(a); err != nil {
			bad(fmt.Sprintf("campaign.attachments[%d]", i), "%v", err)
		}
	}
	hkeys := make([]string, 0, len(cp.Headers))
	for k := range cp.Headers {
		hkeys = append(hkeys, k)
	}
	sort.Strings(hkeys)
	for _, k := range hkeys {
		if !validHeaderName(k) {
			bad("campaign.headers."+k, "not a valid header name")
		} else if reservedHeader(k) {
			bad("campaign.headers."+k, "set by herald; use the campaign keys instead")
		}
		if strings.ContainsAny(cp.Headers[k], "\r\n") {
			bad("campaign.headers."+k, "value contains a line break")
		}
	}
	if _, err := schedule.Parse(cp.Schedule.Timezone, cp.Schedule.Days, cp.Schedule.Hours); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			key, msg, _ := strings.Cut(line, ": ")
			bad("campaign.schedule."+key, "%s", msg)
		}
	}
	if cp.PolicyThreshold < 0 || cp.PolicyThreshold > 1 {
		bad("campaign.policy_threshold", "%v: a share between 0 and 1", cp.PolicyThreshold)
	}
	if cp.PolicyMinimum < 0 {
		bad("campaign.policy_minimum", "must not be negative")
	}
	if m := cp.MaxMessageSize; m.bad != "" {
		bad("campaign.max_message_size", "%q is not a size: use a number of bytes or a size such as \"10MB\" or \"512KB\"", m.bad)
	} else if m.Bytes < MinMessageSize || m.Bytes > MaxMessageSize {
		bad("campaign.max_message_size", "%d bytes: between %s and %s (a message is built in memory)", m.Bytes, FormatSize(MinMessageSize), FormatSize(MaxMessageSize))
	}
}

// validateDelivery checks the queue, retry and provider settings.
func (c *Config) validateDelivery(getenv func(string) string, providers bool, bad func(key, format string, args ...any)) {

	switch c.Queue.Backend {
	case "redis":
		if !validRedisURL(c.Queue.URL) {
			bad("queue.url", "%q: use redis://host:port/db, rediss:// for TLS, unix:///path, "+
				"redis+cluster://host:port?addr=host2:port for a cluster, or redis+sentinel://host:port/db?master_name=name", redacted(c.Queue.URL))
		}
		if c.Queue.Lease.Duration < 3*time.Second {
			bad("queue.lease", "%v: at least 3s (leases are renewed every third of it)", c.Queue.Lease.Duration)
		}
	case "embedded":
		if c.Queue.Volatile {
			// Said of a file store it would be false; said by mistake
			// it would hide that the backend is not the one meant.
			bad("queue.volatile", "only for backend = \"redis\" (the embedded store is a file and keeps everything)")
		}
	default:
		bad("queue.backend", "%q: use \"embedded\" or \"redis\"", c.Queue.Backend)
	}

	r := c.Retry
	if r.MaxBackoff.Duration < r.Backoff.Duration {
		bad("retry.max_backoff", "shorter than retry.backoff")
	}

	if len(c.Provider) == 0 && providers {
		bad("provider", "at least one [[provider]] is required")
	}
	for name := range c.Domain {
		k := fmt.Sprintf("domain.%q", name)
		if name == "" || strings.ContainsAny(name, "@ \t") || !strings.Contains(name, ".") {
			bad(k, "not a domain name (e.g. [domain.\"gmail.com\"])")
		}
	}
	names := map[string]int{}
	for i := range c.Provider {
		p := &c.Provider[i]
		k := fmt.Sprintf("provider[%d]", i)
		if p.Host == "" && p.Preset == "" {
			bad(k+".host", "required (or a preset)")
		}
		for j, n := range p.Warmup {
			if n < 1 || n > 1e9 {
				bad(fmt.Sprintf("%s.warmup[%d]", k, j), "%d: a daily cap between 1 and 1000000000", n)
			}
		}
		if prev, dup := names[p.Name]; dup && p.Name != "" {
			bad(k+".name", "%q is also the name of provider[%d]", p.Name, prev)
		}
		names[p.Name] = i
		switch p.TLS {
		case "none", "starttls", "tls":
		default:
			bad(k+".tls", "%q: use \"none\", \"starttls\" or \"tls\" (implicit TLS, port 465)", p.TLS)
		}
		if p.PasswordEnv != "" {
			p.Password = getenv(p.PasswordEnv)
			if p.Password == "" && c.need.providers {
				bad(k+".password_env", "environment variable %s is empty or not set", p.PasswordEnv)
			}
		}
		if p.Username != "" && p.PasswordEnv == "" {
			bad(k+".password_env", "required with username: the name of the environment variable holding the password")
		}
		if p.Username != "" && p.TLS == "none" && !loopback(p.Host) {
			bad(k+".tls", "\"none\" with a username would send the password in clear text to %s; use \"starttls\" or \"tls\"", p.Host)
		}
		if p.CAFile != "" {
			if err := readable(p.CAFile); err != nil {
				bad(k+".ca_file", "%v", err)
			}
		}
	}
}

func readable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: no such file", p)
		}
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a folder, not a file", p)
	}
	return nil
}

func validID(id string) bool {
	if len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] <= ' ' || k[i] >= 127 || k[i] == ':' {
			return false
		}
	}
	return true
}

func reservedHeader(k string) bool {
	switch strings.ToLower(k) {
	case "from", "to", "subject", "date", "message-id", "mime-version", "content-type", "content-transfer-encoding", "reply-to",
		"list-id", "list-unsubscribe", "list-unsubscribe-post", "dkim-signature", "return-path", "x-herald-campaign":
		return true
	}
	return false
}

// redacted is a URL without its password, for messages.
func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.LastIndexByte(raw, '@'); i >= 0 {
			return "…" + raw[i:] // unparsable, perhaps with a secret before the @
		}
		return raw
	}
	return u.Redacted()
}

// loopback reports whether host is a loopback name or address.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validRedisURL accepts the schemes redisq.Open knows; Open checks the rest.
func validRedisURL(u string) bool {
	for _, p := range []string{"redis://", "rediss://", "unix://",
		"redis+cluster://", "rediss+cluster://", "redis+sentinel://", "rediss+sentinel://"} {
		if strings.HasPrefix(u, p) {
			return true
		}
	}
	return false
}
