package outcome

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/textproto"
	"regexp"
	"strings"
)

// Class is what an outcome means for the job, the provider and the campaign
// (DESIGN.md, "Outcome classes").
type Class uint8

const (
	ClassSent      Class = iota + 1
	ClassTransient       // retry later with backoff, attempt counted
	ClassReconnect       // new connection, retry now, attempt not counted
	ClassAmbiguous       // data sent, reply lost: retry, may duplicate
	ClassThrottle        // slow the provider down; retry, recipient not blamed
	ClassAuth            // provider refuses us: open its circuit
	ClassPolicy          // campaign-level rejection: fail the job, count toward pause
	ClassPermanent       // recipient is bad: fail and suppress
	// ClassUnsendable: the message cannot go as it is (larger than
	// campaign.max_message_size or the server's SIZE, or an address that
	// needs SMTPUTF8 from a server that does not offer it): fail the job at
	// once, without retries; the address is not suppressed (it is not
	// known to be bad) and the campaign's policy share is not charged.
	// Decided by herald before a command is sent, never read from a reply.
	ClassUnsendable
)

var classNames = [...]string{"", "sent", "transient", "reconnect", "ambiguous", "throttle", "auth", "policy", "permanent", "unsendable"}

// ErrUnsendable is wrapped by the errors of a message herald will not
// send as it is (see ClassUnsendable): Classify gives them that class at
// any stage.
var ErrUnsendable = errors.New("cannot be sent")

// Unsendable is the outcome of a message herald will not send as it is,
// met at stage; reason is what is stored with the job.
func Unsendable(stage Stage, reason string) *DeliveryError {
	return &DeliveryError{Class: ClassUnsendable, Stage: stage, Text: reason, Err: ErrUnsendable}
}

func (c Class) String() string {
	if int(c) < len(classNames) && c != 0 {
		return classNames[c]
	}
	return "unknown"
}

// Stage is where in the SMTP conversation an outcome happened.
type Stage uint8

const (
	StageConnect Stage = iota + 1 // dial, greeting, EHLO, STARTTLS
	StageAuth
	StageMail
	StageRcpt
	StageData    // the DATA command
	StageContent // writing the message
	StageDataEnd // the reply to the final dot
	StageReset
	StageRender // before SMTP: the message could not be built
)

var stageNames = [...]string{"", "connect", "auth", "mail", "rcpt", "data", "content", "data-end", "rset", "render"}

func (s Stage) String() string {
	if int(s) < len(stageNames) && s != 0 {
		return stageNames[s]
	}
	return "unknown"
}

// DeliveryError is the outcome of a delivery attempt that did not end in a
// 250 after DATA: the protocol facts and their class.
type DeliveryError struct {
	Class    Class
	Stage    Stage
	Code     int    // SMTP reply code; 0 when the server did not reply
	Enhanced string // RFC 3463 enhanced status code, e.g. "5.1.1"
	Text     string // the server's reply text or the local error
	// Quota marks a throttle that lasts until a sending quota resets.
	Quota bool
	// Domain marks a throttle of the recipient's domain, not the provider.
	Domain bool
	// Connections marks a connection refused because the provider takes
	// no more at once (163's HL:ICC, Office 365's sender thread limit).
	Connections bool
	// Protocol marks a server that broke SMTP (a reply line or a reply
	// too long, or not a reply at all): the connection's fault, never
	// the recipient's.
	Protocol bool
	Err      error
}

// What herald reads from a server is bounded, so that its memory stays
// flat whatever a server sends: a reply line (RFC 5321, 4.5.3.1.5, allows
// 512 octets; herald is lenient) and the lines of one reply. A server past
// either broke the protocol; the connection is closed.
const (
	MaxReplyLine  = 4096 // octets of a reply line, without its line end
	MaxReplyLines = 100  // lines of one reply
)

// ProtocolError is what a server sent that herald refuses to read on. It
// classifies as a lost connection (Protocol set), never as a reply.
type ProtocolError struct{ Text string }

func (e *ProtocolError) Error() string { return e.Text }

// The protocol errors of the bounds above.
var (
	ErrReplyLineTooLong = &ProtocolError{fmt.Sprintf("server sent a reply line longer than %d bytes", MaxReplyLine)}
	ErrReplyTooLong     = &ProtocolError{fmt.Sprintf("server sent a reply of more than %d lines", MaxReplyLines)}
)

func (e *DeliveryError) Error() string {
	if e.Code != 0 {
		return fmt.Sprintf("%s at %s: %d %s", e.Class, e.Stage, e.Code, e.Text)
	}
	return fmt.Sprintf("%s at %s: %s", e.Class, e.Stage, e.Text)
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// Reply is the server's reply as stored with the job.
func (e *DeliveryError) Reply() string {
	if e.Code != 0 {
		return fmt.Sprintf("%d %s", e.Code, e.Text)
	}
	return e.Text
}

var enhancedRE = regexp.MustCompile(`^([245])\.(\d{1,3})\.(\d{1,3})\b`)

// Classify turns an error met at stage into a DeliveryError. It reads the
// reply code, the enhanced code, the stage and the text; never the first
// digit alone.
func Classify(stage Stage, err error) *DeliveryError {
	var de *DeliveryError
	if errors.As(err, &de) {
		return de
	}
	d := &DeliveryError{Stage: stage, Err: err}
	var tp *textproto.Error
	if !errors.As(err, &tp) {
		d.Text = err.Error()
		d.Class = classifyLocal(stage, err)
		var pe *ProtocolError
		var tpe textproto.ProtocolError
		switch {
		case errors.As(err, &pe):
			d.Protocol = true
		case errors.As(err, &tpe):
			d.Protocol, d.Text = true, "server sent what is not an SMTP reply: "+d.Text
		}
		return d
	}
	d.Code = tp.Code
	d.Text = strings.ReplaceAll(tp.Msg, "\n", " ")
	if m := enhancedRE.FindString(d.Text); m != "" {
		d.Enhanced = m
	}
	d.Class, d.Quota, d.Domain = classifyReply(stage, d.Code, d.Enhanced, strings.ToLower(d.Text))
	d.Connections = stage == StageConnect && d.Class == ClassThrottle && tooManyConnections(d.Code, strings.ToLower(d.Text))
	return d
}

// classifyLocal handles failures without a server reply: the connection
// broke, timed out or could not be made.
func classifyLocal(stage Stage, err error) Class {
	if errors.Is(err, ErrUnsendable) {
		return ClassUnsendable
	}
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	if errors.As(err, &uae) || errors.As(err, &hne) || errors.As(err, &cie) {
		return ClassAuth // a certificate we must not trust: stop the provider
	}
	if stage == StageConnect && strings.Contains(err.Error(), "does not support STARTTLS") {
		return ClassAuth // tls = "starttls" against a server without it: never send in clear
	}
	switch stage {
	case StageDataEnd:
		// The whole message went out; the server may have queued it.
		return ClassAmbiguous
	case StageAuth:
		if strings.Contains(err.Error(), "unencrypted") || strings.Contains(err.Error(), "does not support") {
			return ClassAuth
		}
		return ClassReconnect
	case StageRender:
		return ClassPolicy
	}
	return ClassReconnect
}

// tooManyConnections reports whether a refused connection's reply says
// the provider takes no more connections at once.
func tooManyConnections(code int, text string) bool {
	return code == 432 || strings.Contains(text, "hl:icc") || strings.Contains(text, "too many connections") ||
		strings.Contains(text, "thread limit") || strings.Contains(text, "concurrent")
}

func classifyReply(stage Stage, code int, enh, text string) (c Class, quota, domain bool) {
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(text, s) {
				return true
			}
		}
		return false
	}
	// Provider markers that mean "too much", whatever the code.
	switch {
	case has("mi:stc", "daily sending quota", "quota exceeded", "sending limit exceeded", "daily user sending quota"):
		return ClassThrottle, true, false
	case has("mi:sfq", "hl:icc", "throttling failure", "rate limit", "ratelimit", "receiving mail too quickly", "unusual rate", "too many connections", "tss04"):
		return ClassThrottle, false, domainThrottle(stage, enh, text)
	}

	if stage == StageAuth {
		// 535, 534, 530, 538, 550 5.7.30, 454 4.7.0 too many login attempts.
		if code == 421 {
			return ClassThrottle, false, false
		}
		return ClassAuth, false, false
	}
	if stage == StageConnect {
		if code >= 500 {
			return ClassAuth, false, false // the server will not serve us at all
		}
		if code == 421 && has("timeout", "closing transmission channel") {
			return ClassReconnect, false, false
		}
		return ClassThrottle, false, false
	}
	if code == 421 {
		// 421 closes the session. A session limit or an idle timeout is a
		// reason to reconnect, anything else a throttle.
		if has("too many messages", "timeout", "timed out", "closing transmission channel", "idle") {
			return ClassReconnect, false, false
		}
		return ClassThrottle, false, false
	}
	if code == 530 || (enh == "5.7.0" && has("authentication required", "must issue a starttls", "authenticate first")) {
		return ClassAuth, false, false
	}

	class, subject := 0, -1
	if m := enhancedRE.FindStringSubmatch(enh); m != nil {
		class = int(m[1][0] - '0')
		fmt.Sscan(m[2], &subject)
	}
	switch {
	case enh == "4.2.1" || enh == "4.3.2":
		return ClassThrottle, false, domainThrottle(stage, enh, text)
	case class == 4 && subject == 7 && has("rate", "too many", "try again later", "slow down"):
		return ClassThrottle, false, domainThrottle(stage, enh, text)
	case enh == "5.4.5":
		return ClassThrottle, true, false
	case class == 5 && (subject == 1 || enh == "5.2.1" || enh == "5.2.0"):
		if stage == StageMail {
			return ClassPolicy, false, false // our sender address is bad
		}
		return ClassPermanent, false, false
	case enh == "5.2.2":
		return ClassTransient, false, false // mailbox full: may clear up
	case class == 5 && subject == 7:
		return ClassPolicy, false, false // security or policy: DMARC, spam, relaying
	}

	if code >= 400 && code < 500 {
		return ClassTransient, false, false
	}
	switch stage {
	case StageRcpt:
		if code == 550 || code == 551 || code == 553 || code == 554 {
			return ClassPermanent, false, false
		}
		if code == 552 {
			return ClassTransient, false, false // RFC 5321: treat 552 at RCPT as 452
		}
		return ClassPolicy, false, false
	case StageReset:
		return ClassReconnect, false, false
	}
	// 5xx at MAIL (sender refused), DATA or after the data (content).
	return ClassPolicy, false, false
}

// domainThrottle reports whether a throttle concerns the recipient's domain
// rather than our account: Gmail's 4.2.1, Outlook's 4.7.650 and Yahoo's
// TSS04, answered to RCPT.
func domainThrottle(stage Stage, enh, text string) bool {
	return stage == StageRcpt && (enh == "4.2.1" || enh == "4.7.650" || strings.Contains(text, "tss04"))
}
