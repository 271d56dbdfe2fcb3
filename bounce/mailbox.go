package bounce

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// Account says how to reach the bounce mailbox.
type Account struct {
	// URL is imaps://host[:993]/MAILBOX (implicit TLS), imap://host[:143]/MAILBOX
	// (STARTTLS, required), pop3s://host[:995] or pop3://host[:110] (STLS,
	// required). The mailbox defaults to INBOX.
	URL      string
	Username string
	Password string // never printed
	// CAFile is an extra CA certificate (PEM) to trust, for a private server.
	CAFile string
	// MoveTo is the IMAP mailbox processed messages go to (created if
	// missing). Ignored when Delete is set, and for POP3 (which deletes).
	MoveTo string
	// Delete: IMAP flags processed messages \Seen and \Deleted and
	// expunges them instead of moving them.
	Delete  bool
	Timeout time.Duration // per command; default 60s
}

// Endpoint is a parsed bounces.url.
type Endpoint struct {
	Proto    string // "imap" or "pop3"
	Implicit bool   // TLS from the first byte (imaps, pop3s); else STARTTLS / STLS
	Host     string // host:port
	Mailbox  string // IMAP mailbox
}

// ParseURL reads a bounces.url. Errors name what is wrong, not the URL's
// user information.
func ParseURL(raw string) (Endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Endpoint{}, errors.New("not a URL (e.g. imaps://imap.example.com/INBOX)")
	}
	if _, has := u.User.Password(); has {
		return Endpoint{}, errors.New("the URL holds a password: put it in the environment variable named by bounces.password_env")
	}
	var e Endpoint
	port := ""
	switch strings.ToLower(u.Scheme) {
	case "imaps":
		e, port = Endpoint{Proto: "imap", Implicit: true}, "993"
	case "imap":
		e, port = Endpoint{Proto: "imap"}, "143"
	case "pop3s":
		e, port = Endpoint{Proto: "pop3", Implicit: true}, "995"
	case "pop3":
		e, port = Endpoint{Proto: "pop3"}, "110"
	default:
		return Endpoint{}, fmt.Errorf("scheme %q: use imaps://, imap:// (STARTTLS), pop3s:// or pop3:// (STLS)", u.Scheme)
	}
	if u.Hostname() == "" {
		return Endpoint{}, errors.New("no host (e.g. imaps://imap.example.com/INBOX)")
	}
	if u.Port() != "" {
		port = u.Port()
	}
	e.Host = net.JoinHostPort(u.Hostname(), port)
	box := strings.Trim(u.Path, "/")
	if e.Proto == "pop3" && box != "" {
		return Endpoint{}, fmt.Errorf("POP3 has one mailbox: drop the path %q", u.Path)
	}
	if e.Proto == "imap" {
		if box == "" {
			box = "INBOX"
		}
		if b, err := url.PathUnescape(box); err == nil {
			box = b
		}
		e.Mailbox = box
	}
	return e, nil
}

// String is the endpoint without secrets, for messages.
func (e Endpoint) String() string {
	s := e.Proto
	if e.Implicit {
		s += "s"
	}
	s += "://" + e.Host
	if e.Mailbox != "" {
		s += "/" + e.Mailbox
	}
	return s
}

// Open logs in to the mailbox over TLS. Errors never carry the password.
func Open(ctx context.Context, a Account) (Mailbox, error) {
	e, err := ParseURL(a.URL)
	if err != nil {
		return nil, fmt.Errorf("bounces.url: %w", err)
	}
	if a.Timeout <= 0 {
		a.Timeout = 60 * time.Second
	}
	tc, err := tlsConfig(e, a.CAFile)
	if err != nil {
		return nil, err
	}
	var mb Mailbox
	switch e.Proto {
	case "imap":
		mb, err = openIMAP(ctx, e, a, tc)
	default:
		mb, err = openPOP3(ctx, e, a, tc)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e, redact(err, a.Password))
	}
	return mb, nil
}

func tlsConfig(e Endpoint, caFile string) (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(e.Host)
	tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("bounces.ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("bounces.ca_file: %s holds no PEM certificate", caFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// redact removes the password from an error's text (a server that echoes
// a command back, say).
func redact(err error, password string) error {
	if err == nil || password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	return redacted{msg: strings.ReplaceAll(err.Error(), password, "<password>"), err: err}
}

// redacted is an error whose text had the password taken out; errors.Is
// still sees what it wraps (ErrLogin), but its text is only msg.
type redacted struct {
	msg string
	err error
}

func (r redacted) Error() string { return r.msg }
func (r redacted) Unwrap() error { return r.err }

// ErrLogin is wrapped by Open's error when the server refused the user name
// or the password.
var ErrLogin = errors.New("login refused (check bounces.username and the password in bounces.password_env)")

// guarded runs f with a deadline of timeout on conn, and aborts it
// (closing the connection) when ctx ends.
func guarded(ctx context.Context, conn net.Conn, timeout time.Duration, f func() error) error {
	conn.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	err := f()
	if !stop() {
		return ctx.Err()
	}
	return err
}
