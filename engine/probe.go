package engine

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"github.com/heraldmail/herald/outcome"
)

// ProbeResult is what one provider answered to Probe. It holds no secret.
type ProbeResult struct {
	Provider string // its name and address
	// TLS is the protection of the connection: "TLS 1.3 (STARTTLS)",
	// "TLS 1.3 (implicit)", or "" for clear text (tls = "none").
	TLS string
	// OffersSTARTTLS: on a clear-text connection, the server offers
	// STARTTLS (tls = "starttls" would protect it).
	OffersSTARTTLS bool
	Login          bool   // a username is configured and the server took it
	Sender         string // the MAIL FROM address tried ("": none)
	// Problem is why the provider cannot send ("" when it can): the
	// diagnosis of a send's first connection. Fix says what to change
	// when Problem does not already.
	Problem, Fix string
}

// Probe opens one connection to every provider, as a send's first
// connection does (dial, greeting, EHLO, TLS, AUTH), offers sender in MAIL
// FROM when it is not "" and takes it back with RSET, and closes with QUIT:
// nothing is sent. A connection that fails is diagnosed as a send would
// (a wrong host, port or tls; a refused login, with the provider's hint).
// It tries each provider once, one after the other.
func (e *Engine) Probe(ctx context.Context, sender string) []ProbeResult {
	res := make([]ProbeResult, 0, len(e.providers))
	for _, p := range e.providers {
		res = append(res, p.probe(ctx, sender))
	}
	return res
}

func (p *provider) probe(ctx context.Context, sender string) ProbeResult {
	r := ProbeResult{Provider: p.cfg.String()}
	c, raw, derr := p.open(ctx, nil)
	if derr != nil {
		if d := p.diagnose(ctx, derr); d != nil {
			r.Problem = d.Text
			return r
		}
		switch {
		case derr.Class == outcome.ClassAuth && derr.Stage == outcome.StageAuth && derr.Code == 0:
			// Not the server's refusal: no AUTH offered, or no TLS to
			// send the password over.
			r.Problem, r.Fix = derr.Text, "a server that needs no login: leave username and password_env out; else check provider.host, port and tls"
			if strings.Contains(derr.Text, "without TLS") {
				r.Fix = "set tls = \"starttls\" (port 587) or tls = \"tls\" (port 465)"
			}
		case derr.Class == outcome.ClassAuth && derr.Stage == outcome.StageAuth:
			r.Problem, r.Fix = describeConnectFailure(derr), p.cfg.LoginHint()
			if r.Fix == "" {
				r.Fix = fmt.Sprintf("check provider %q's username, and the password in the environment variable %s", p.cfg.Name, p.cfg.PasswordEnv)
			}
		case derr.Class == outcome.ClassAuth:
			r.Problem = describeConnectFailure(derr)
			if derr.Err != nil {
				r.Problem += certificateHint(derr.Err)
			}
			if strings.Contains(derr.Text, "does not support STARTTLS") {
				r.Problem += "; on port 465 use tls = \"tls\" (TLS from the first byte); tls = \"none\" sends in clear text and only suits a relay on this machine"
			}
		default:
			// One try here; a send tries again with a backoff.
			r.Problem, r.Fix = "cannot connect: "+derr.Reply(), "if it persists, check provider.host, port and tls"
		}
		return r
	}
	defer c.Close()
	arm := func() { raw.SetDeadline(time.Now().Add(p.cfg.Timeout.Duration)) }
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	if st, ok := c.TLSConnectionState(); ok {
		how := "STARTTLS"
		if p.cfg.TLS == "tls" {
			how = "implicit"
		}
		r.TLS = fmt.Sprintf("%s (%s)", tls.VersionName(st.Version), how)
	} else {
		r.OffersSTARTTLS, _ = c.Extension("STARTTLS")
	}
	r.Login = p.auth != nil
	if sender != "" {
		r.Sender = sender
		arm()
		if err := checkLine(sender); err != nil {
			r.Problem = err.Error()
			return r
		}
		if err := command(c, 250, mailCommand, sender, ""); err != nil {
			d := outcome.Classify(outcome.StageMail, err)
			if d.Class == outcome.ClassAuth {
				r.Problem, r.Fix = describeConnectFailure(d), "set username and password_env in the provider's section"
			} else {
				r.Problem = fmt.Sprintf("the server refused the sender <%s>: %s", sender, d.Reply())
				r.Fix = "the envelope sender is campaign.bounce_address, else the address of campaign.from: some providers take only the login's address (163 Mail, QQ Mail)"
			}
			return r
		}
		arm()
		if err := c.Reset(); err != nil {
			r.Problem = "the server did not answer RSET: " + outcome.Classify(outcome.StageMail, err).Reply()
			return r
		}
	}
	arm()
	_ = p.client.CloseWithSMTPClient(c)
	return r
}
