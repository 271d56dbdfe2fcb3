package sink

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/emersion/go-smtp"
	"golang.org/x/time/rate"
)

// A profile makes the server answer as a real provider does when its
// limits are passed or the mail is not authenticated (herald sink
// --profile): the providers' own reply texts, at the stage they give them.
// The rates are the documented or observed ones, per second, before
// Config.UseProfile scales them.
type profile struct {
	about string
	// rate (and burst): messages a second across all sessions; above it
	// throttle, at throttleAt (StageMail or StageData). A 421 closes the
	// session, as the providers do.
	rate       float64
	burst      int
	throttle   string
	throttleAt Stage
	// daily messages (unscaled; counted from the server's start); above it
	// quota at MAIL.
	daily int
	quota string
	// sessions at once; above it sessionReply and the connection closes.
	sessions     int
	sessionReply string
	// unauth is the reply at the end of the data to a message without a
	// DKIM-Signature (%s: the sender's domain); "" when not checked.
	unauth string
}

// Replies as the providers write them (their documentation and public
// reports; see shared/reference/smtp-replies.md). QQ publishes no texts for
// its limits; its profile uses the generic replies it is reported to give.
var profiles = map[string]profile{
	"gmail": {
		about: "smtp.gmail.com: 421-4.7.28 above its rate (end of data), 550 5.4.5 past 500 a day, 550-5.7.26 to mail without DKIM",
		rate:  2, burst: 2, throttleAt: StageData,
		throttle: "421 4.7.28 Gmail has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited.",
		daily:    500, quota: "550 5.4.5 Daily sending quota exceeded.",
		unauth: "550 5.7.26 Unauthenticated email from %s is not accepted due to domain's DMARC policy. Please contact the administrator of %s domain if this was a legitimate mail.",
	},
	"outlook": {
		about: "smtp.office365.com: 30 a minute (421 4.7.0), 3 connections (432 4.3.2 sender thread limit), 550 5.7.515 to mail without DKIM",
		rate:  0.5, burst: 1, throttleAt: StageMail,
		throttle: "421 4.7.0 Try again later, closing connection.",
		sessions: 3, sessionReply: "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
		daily: 10000, quota: "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; message submission quota exceeded",
		unauth: "550 5.7.515 Access denied, sending domain %s does not meet the required authentication level.",
	},
	"yahoo": {
		about: "Yahoo: 421 4.7.0 [TSS04] above its rate, 550 5.7.9 to mail without DKIM",
		rate:  2, burst: 2, throttleAt: StageMail,
		throttle: "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
		unauth:   "550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo requires all senders to authenticate with either SPF or DKIM.",
	},
	"163": {
		about: "smtp.163.com: 451 MI:SFQ above its rate, 421 HL:ICC above 1 connection, 554 5.5.0 MI:STC past 200 a day",
		rate:  0.5, burst: 1, throttleAt: StageMail,
		throttle: "451 MI:SFQ 163 smtp3, please try again later",
		sessions: 1, sessionReply: "421 HL:ICC 163 smtp3, too many connections from this IP",
		daily: 200, quota: "554 5.5.0 MI:STC 163 smtp3, daily sending limit reached",
	},
	"qq": {
		about: "smtp.qq.com: 421 above its rate, 550 5.4.5 past 200 a day, 421 above 1 connection",
		rate:  0.5, burst: 1, throttleAt: StageMail,
		throttle: "421 4.7.0 Try again later, closing connection.",
		sessions: 1, sessionReply: "421 4.7.0 Too many connections, closing connection",
		daily: 200, quota: "550 5.4.5 Daily sending quota exceeded.",
	},
	"ses": {
		about: "Amazon SES sandbox: 1 a second (454 Throttling failure at the end of data), 200 a day",
		rate:  1, burst: 1, throttleAt: StageData,
		throttle: "454 4.7.0 Throttling failure: Maximum sending rate exceeded.",
		daily:    200, quota: "454 4.7.0 Throttling failure: Daily message quota exceeded.",
	},
}

// Profiles names the profiles with what each does.
func Profiles() []string {
	var out []string
	for name, p := range profiles {
		out = append(out, name+": "+p.about)
	}
	sort.Strings(out)
	return out
}

// UseProfile makes the server answer as provider name does (see
// Profiles), with its rates multiplied by scale (so that a test passes
// them in seconds). It keeps messages in memory (Keep), to read their
// headers.
func (c *Config) UseProfile(name string, scale float64) error {
	p, ok := profiles[strings.ToLower(name)]
	if !ok {
		names := make([]string, 0, len(profiles))
		for n := range profiles {
			names = append(names, n)
		}
		sort.Strings(names)
		return fmt.Errorf("unknown profile %q: use one of %s", name, strings.Join(names, ", "))
	}
	if !(scale > 0) {
		return fmt.Errorf("profile scale %v: want a positive factor", scale)
	}
	c.Keep = true
	if p.sessions > 0 {
		c.MaxSessions, c.SessionLimitReply = p.sessions, p.sessionReply
	}
	lim := rate.NewLimiter(rate.Limit(p.rate*scale), max(1, p.burst))
	var sent atomic.Int64
	next := c.Faults.Hook
	c.Faults.Hook = func(ev Event) Action {
		switch {
		case ev.Stage == StageMail && p.daily > 0 && sent.Load() >= int64(p.daily):
			return Action{Reply: replyOf(p.quota)}
		case ev.Stage == p.throttleAt && !lim.Allow():
			return Action{Reply: replyOf(p.throttle)}
		case ev.Stage == StageData && p.unauth != "" && !dkimSigned(ev.Data):
			d := ev.From[strings.LastIndexByte(ev.From, '@')+1:]
			return Action{Reply: replyOf(fmt.Sprintf(p.unauth, d, d))}
		}
		if next != nil {
			if a := next(ev); a.Reply != nil || a.Drop {
				return a
			}
		}
		if ev.Stage == StageData {
			sent.Add(1)
		}
		return Action{}
	}
	return nil
}

// replyOf parses "421 4.7.0 text" (or "451 text") into a reply.
func replyOf(s string) *smtp.SMTPError {
	code, rest, _ := strings.Cut(s, " ")
	e := &smtp.SMTPError{EnhancedCode: smtp.NoEnhancedCode, Message: rest}
	fmt.Sscanf(code, "%d", &e.Code)
	var a, b, c int
	if n, _ := fmt.Sscanf(rest, "%d.%d.%d", &a, &b, &c); n == 3 {
		if _, msg, ok := strings.Cut(rest, " "); ok {
			e.EnhancedCode, e.Message = smtp.EnhancedCode{a, b, c}, msg
		}
	}
	return e
}

// dkimSigned reports whether a message's header has a DKIM-Signature.
func dkimSigned(data []byte) bool {
	head := data
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		head = data[:i]
	}
	return bytes.HasPrefix(head, []byte("DKIM-Signature:")) || bytes.Contains(bytes.ToLower(head), []byte("\ndkim-signature:"))
}
