package outcome

import (
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// reply builds the error go-mail's SMTP client returns for a server reply
// written as on the wire ("550-5.1.1 text" or "421 text").
func reply(t *testing.T, wire string) error {
	t.Helper()
	code, err := strconv.Atoi(wire[:3])
	if err != nil || len(wire) < 4 || (wire[3] != ' ' && wire[3] != '-') {
		t.Fatalf("bad wire reply %q", wire)
	}
	return &textproto.Error{Code: code, Msg: wire[4:]}
}

// TestClassifyReference is shared/reference/smtp-replies.md as a table,
// extended with replies met since.
func TestClassifyReference(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ref    string // row in smtp-replies.md, or "extra"
		stage  Stage
		wire   string // reply on the wire; empty: use err
		err    error
		class  Class
		quota  bool
		domain bool
	}{
		{"1", StageDataEnd, "421-4.7.28 Gmail has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited.", nil, ClassThrottle, false, false},
		{"2 (data end)", StageDataEnd, "421 4.7.0 Try again later, closing connection.", nil, ClassThrottle, false, false},
		{"2 (mail)", StageMail, "421 4.7.0 Try again later, closing connection.", nil, ClassThrottle, false, false},
		{"2 (connect)", StageConnect, "421 4.7.0 Try again later, closing connection.", nil, ClassThrottle, false, false},
		{"2 (auth)", StageAuth, "421 4.7.0 Try again later, closing connection.", nil, ClassThrottle, false, false},
		{"3", StageRcpt, "450 4.2.1 The user you are trying to contact is receiving mail too quickly. Please resend your message at a later time.", nil, ClassThrottle, false, true},
		{"4", StageRcpt, "452 4.5.3 Your message has too many recipients.", nil, ClassTransient, false, false},
		{"5", StageRcpt, "550-5.1.1 The email account that you tried to reach does not exist.", nil, ClassPermanent, false, false},
		{"6", StageDataEnd, "550-5.7.26 Unauthenticated email from example.com is not accepted due to domain's DMARC policy.", nil, ClassPolicy, false, false},
		{"7", StageMail, "550 5.4.5 Daily sending quota exceeded.", nil, ClassThrottle, true, false},
		{"8", StageAuth, "454 4.7.0 Too many login attempts, please try again later.", nil, ClassAuth, false, false},
		{"9", StageAuth, "535-5.7.8 Username and Password not accepted.", nil, ClassAuth, false, false},
		{"10", StageDataEnd, "454 Throttling failure: Maximum sending rate exceeded.", nil, ClassThrottle, false, false},
		{"11", StageDataEnd, "451 4.4.2 Timeout waiting for data from client.", nil, ClassTransient, false, false},
		{"12", StageMail, "554 Message rejected: Email address is not verified. The following identities failed the check in region US-EAST-1: news@example.com", nil, ClassPolicy, false, false},
		{"13", StageAuth, "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.", nil, ClassAuth, false, false},
		{"14", StageAuth, "550 5.7.30 Basic authentication is not supported for Client Submission.", nil, ClassAuth, false, false},
		{"15", StageDataEnd, "554 DT:SPM 126 smtp10,DsCowAC3 1557, please see http://mail.163.com/help/help_spam_16.htm?ip=", nil, ClassPolicy, false, false},
		{"16", StageDataEnd, "451 DT:SPM 163 smtp3, please try again", nil, ClassTransient, false, false},
		{"17", StageConnect, "421 HL:ICC", nil, ClassThrottle, false, false},
		{"18", StageMail, "554 5.5.0 MI:STC", nil, ClassThrottle, true, false},
		{"19", StageAuth, "535 Error: authentication failed", nil, ClassAuth, false, false},
		{"20", StageAuth, "535 Login Fail. Please enter your authorization code to login.", nil, ClassAuth, false, false},
		{"21", StageMail, "501 mail from address must be same as authorization user", nil, ClassPolicy, false, false},
		{"22", StageDataEnd, "550 The mail may contain inappropriate words or content.", nil, ClassPolicy, false, false},
		{"23", StageReset, "421 Service closing transmission channel - command timeout", nil, ClassReconnect, false, false},
		{"23 (mail)", StageMail, "421 Service closing transmission channel - command timeout", nil, ClassReconnect, false, false},
		{"24 (mail)", StageMail, "", io.EOF, ClassReconnect, false, false},
		{"24 (rcpt)", StageRcpt, "", syscall.ECONNRESET, ClassReconnect, false, false},
		{"24 (data)", StageData, "", io.ErrUnexpectedEOF, ClassReconnect, false, false},
		{"24 (content)", StageContent, "", syscall.EPIPE, ClassReconnect, false, false},
		{"25", StageDataEnd, "", io.EOF, ClassAmbiguous, false, false},
		{"25 (reset)", StageDataEnd, "", syscall.ECONNRESET, ClassAmbiguous, false, false},

		{"extra: session limit", StageMail, "421 4.7.0 Too many messages in one session, closing connection", nil, ClassReconnect, false, false},
		{"extra: 163 frequency", StageDataEnd, "451 MI:SFQ 163 smtp2, please try again later", nil, ClassThrottle, false, false},
		{"extra: 432", StageMail, "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", nil, ClassThrottle, false, false},
		{"extra: 451 4.7.x rate", StageRcpt, "451 4.7.1 Please try again later, rate limited", nil, ClassThrottle, false, false},
		{"extra: mailbox full", StageRcpt, "552 5.2.2 Mailbox full", nil, ClassTransient, false, false},
		{"extra: 553 bad address", StageRcpt, "553 5.1.3 The recipient address <x> is not a valid RFC-5321 address.", nil, ClassPermanent, false, false},
		{"extra: 553 no enhanced", StageRcpt, "553 sorry, that domain isn't in my list of allowed rcpthosts", nil, ClassPermanent, false, false},
		{"extra: disabled mailbox", StageRcpt, "550 5.2.1 The email account that you tried to reach is disabled.", nil, ClassPermanent, false, false},
		{"extra: relay denied", StageRcpt, "550 5.7.1 Relaying denied", nil, ClassPolicy, false, false},
		{"extra: auth required at mail", StageMail, "530 5.7.0 Authentication required", nil, ClassAuth, false, false},
		{"extra: go-smtp auth first", StageMail, "502 5.7.0 Please authenticate first", nil, ClassAuth, false, false},
		{"extra: greeting refused", StageConnect, "554 5.7.1 Service unavailable; client host blocked", nil, ClassAuth, false, false},
		{"extra: bad sender domain", StageMail, "553 5.1.8 Sender address rejected: Domain not found", nil, ClassPolicy, false, false},
		{"extra: size", StageDataEnd, "552 5.3.4 Message size exceeds fixed limit", nil, ClassPolicy, false, false},
		{"extra: greylist", StageRcpt, "451 4.7.1 Greylisting in action, please come back later", nil, ClassTransient, false, false},
		{"extra: outlook domain throttle", StageRcpt, "451 4.7.650 The mail server [1.2.3.4] has been temporarily rate limited due to IP reputation.", nil, ClassThrottle, false, true},
		{"extra: yahoo domain throttle", StageRcpt, "421 4.7.0 [TSS04] Messages from 1.2.3.4 temporarily deferred due to unexpected volume or user complaints", nil, ClassThrottle, false, true},
		{"extra: no STARTTLS", StageConnect, "", errors.New(`STARTTLS mode set to: "TLSMandatory", but target host does not support STARTTLS`), ClassAuth, false, false},
		{"extra: plaintext auth refused", StageAuth, "", errors.New("unencrypted connection"), ClassAuth, false, false},
		{"extra: render", StageRender, "", errors.New(`template: text:1:2: executing "text" at <.x>: map has no entry for key "x"`), ClassPolicy, false, false},
	}
	for _, tt := range tests {
		err := tt.err
		if tt.wire != "" {
			err = reply(t, tt.wire)
		}
		got := Classify(tt.stage, err)
		if got.Class != tt.class || got.Quota != tt.quota || got.Domain != tt.domain {
			t.Errorf("row %s: %s %q: got %s quota=%v domain=%v, want %s quota=%v domain=%v",
				tt.ref, tt.stage, tt.wire, got.Class, got.Quota, got.Domain, tt.class, tt.quota, tt.domain)
		}
		if tt.wire != "" {
			if got.Code != mustAtoi(tt.wire[:3]) {
				t.Errorf("row %s: code %d", tt.ref, got.Code)
			}
			if !strings.Contains(got.Reply(), tt.wire[4:]) {
				t.Errorf("row %s: reply %q lost the server's text", tt.ref, got.Reply())
			}
		}
		if !errors.Is(got, err) {
			t.Errorf("row %s: DeliveryError does not wrap the cause", tt.ref)
		}
	}
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func TestClassifyKeepsDeliveryError(t *testing.T) {
	t.Parallel()
	de := &DeliveryError{Class: ClassPermanent, Stage: StageRcpt, Code: 550}
	if got := Classify(StageMail, de); got != de {
		t.Fatalf("Classify rewrapped an already classified error: %v", got)
	}
}

// TestClassifyProtocolErrors: a server past the reply bounds, or sending
// what is not a reply, is a lost connection marked Protocol at every
// stage (ambiguous after the data), with a message that says what it did.
func TestClassifyProtocolErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  error
		text string
	}{
		{ErrReplyLineTooLong, "server sent a reply line longer than 4096 bytes"},
		{ErrReplyTooLong, "server sent a reply of more than 100 lines"},
		{fmt.Errorf("smtp: %w", ErrReplyLineTooLong), "longer than 4096 bytes"},
		{textproto.ProtocolError("short response: hello"), "server sent what is not an SMTP reply: short response: hello"},
	} {
		for stage := StageConnect; stage <= StageReset; stage++ {
			d := Classify(stage, tt.err)
			want := ClassReconnect
			if stage == StageDataEnd {
				want = ClassAmbiguous
			}
			if !d.Protocol || d.Code != 0 || d.Class != want || !strings.Contains(d.Text, tt.text) {
				t.Errorf("%v at %s: %+v", tt.err, stage, d)
			}
		}
	}
	if d := Classify(StageMail, io.EOF); d.Protocol {
		t.Errorf("a connection closed is not a protocol error: %+v", d)
	}
}
