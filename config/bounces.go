package config

import (
	"fmt"
	"net/mail"
	"strings"

	"github.com/heraldmail/herald/bounce"
)

// Bounces is the bounce mailbox that herald bounces reads:
//
//	[bounces]
//	url = "imaps://imap.example.com/INBOX"   # imap:// (STARTTLS), pop3s://, pop3:// (STLS)
//	username = "bounces@example.com"
//	password_env = "HERALD_BOUNCES_PASSWORD"
//	ca_file = ""          # extra CA for a private server
//	move_to = "Processed" # IMAP: where processed reports go
//	delete = false        # IMAP: flag \Seen \Deleted and expunge instead
//	soft_limit = 3        # soft bounces that suppress a recipient
//	address = ""          # the VERP bounce address; default: username
type Bounces struct {
	URL         string `toml:"url"`
	Username    string `toml:"username"`
	PasswordEnv string `toml:"password_env"`
	CAFile      string `toml:"ca_file"`
	MoveTo      string `toml:"move_to"`
	Delete      bool   `toml:"delete"`
	SoftLimit   int    `toml:"soft_limit"`
	// Address is the base of herald's VERP envelope senders (the bounce
	// address campaigns send from), whose VERP forms name the campaign and
	// the recipient (bounces+ID+ann=example.org@example.com). Default:
	// Username when it is an address. herald bounces also tries
	// campaign.bounce_address and campaign.from when the configuration has
	// a [campaign]; a report that matches no
	// VERP address is matched by the X-Herald-Campaign header of the
	// returned message.
	Address string   `toml:"address"`
	Timeout Duration `toml:"timeout"` // per mailbox command

	// Password is read from the environment variable PasswordEnv; it is
	// never printed.
	Password string `toml:"-"`
}

// LoadBounces is Load for herald bounces: [bounces] and [queue] are what
// it uses; [campaign] is checked when given, providers are optional.
func LoadBounces(path string) (*Config, error) {
	return load(path, forBounces)
}

// ParseBounces is Parse for herald bounces (see LoadBounces).
func ParseBounces(text, dir string, getenv func(string) string) (*Config, error) {
	return parse(text, dir, getenv, forBounces)
}

// DefaultMoveTo is bounces.move_to's default.
const DefaultMoveTo = "Processed"

func (c *Config) applyBouncesDefaults() {
	b := &c.Bounces
	if b.MoveTo == "" && !b.Delete {
		b.MoveTo = DefaultMoveTo
	}
	if b.SoftLimit == 0 {
		b.SoftLimit = bounce.DefaultSoftLimit
	}
	if b.Timeout.Duration == 0 {
		b.Timeout.Duration = DefaultTimeout
	}
	if b.Address == "" && strings.Contains(b.Username, "@") {
		b.Address = b.Username
	}
	b.CAFile = c.path(b.CAFile)
}

func (c *Config) validateBounces(getenv func(string) string) Problems {
	var probs Problems
	bad := func(key, format string, args ...any) {
		probs = append(probs, "bounces."+key+": "+fmt.Sprintf(format, args...))
	}
	b := &c.Bounces
	if b.URL == "" {
		bad("url", "required: the bounce mailbox, e.g. \"imaps://imap.example.com/INBOX\" or \"pop3s://pop.example.com\"")
	} else if e, err := bounce.ParseURL(b.URL); err != nil {
		bad("url", "%v", err)
	} else if e.Proto == "pop3" && b.MoveTo != DefaultMoveTo && b.MoveTo != "" {
		bad("move_to", "POP3 cannot move messages: processed ones are deleted (drop move_to, or use IMAP)")
	}
	if b.Username == "" {
		bad("username", "required: the mailbox login")
	}
	if b.PasswordEnv == "" {
		bad("password_env", "required: the name of the environment variable holding the mailbox password")
	} else if b.Password = getenv(b.PasswordEnv); b.Password == "" && c.need.bounces {
		bad("password_env", "environment variable %s is empty or not set", b.PasswordEnv)
	}
	if b.CAFile != "" {
		if err := readable(b.CAFile); err != nil {
			bad("ca_file", "%v", err)
		}
	}
	if b.Delete && b.MoveTo != "" {
		bad("move_to", "not used with delete = true (processed messages are deleted); drop one of them")
	}
	if b.Address != "" {
		if a, err := mail.ParseAddress(b.Address); err != nil || a.Address != b.Address {
			bad("address", "%q is not a plain address (e.g. \"bounces@example.com\")", b.Address)
		}
	}
	return probs
}

// Account is the mailbox account for package bounce.
func (b Bounces) Account() bounce.Account {
	return bounce.Account{URL: b.URL, Username: b.Username, Password: b.Password, CAFile: b.CAFile,
		MoveTo: b.MoveTo, Delete: b.Delete, Timeout: b.Timeout.Duration}
}
