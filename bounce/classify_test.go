package bounce

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestClassify covers the rules of classify, with replies from real
// providers (shared/reference/smtp-replies.md and bounce samples).
func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		action, status, diag string
		want                 Kind
	}{
		{"failed", "5.1.1", "550-5.1.1 The email account that you tried to reach does not exist.", Hard},
		{"failed", "5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", Hard},
		{"failed", "5.2.1", "550 5.2.1 The email account that you tried to reach is disabled.", Hard},
		{"failed", "5.4.4", "Host or domain name not found. Name service error for name=example.invalid type=A: Host not found", Hard},
		{"failed", "5.2.2", "552-5.2.2 The email account that you tried to reach is over quota.", Soft},
		{"failed", "5.0.0", "550 Mailbox not found. http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000728", Hard},
		{"failed", "5.0.0", "552 Requested mailbox exceeded storage allocation", Soft},
		{"failed", "5.7.26", "550-5.7.26 Unauthenticated email from example.com is not accepted due to domain's DMARC policy.", Soft},
		{"failed", "5.7.1", "554 5.7.1 Service unavailable; Client host [198.51.100.7] blocked using zen.spamhaus.org", Soft},
		{"failed", "", "554 DT:SPM 126 smtp10,DsCowAC3 1557, please see http://mail.163.com/help/help_spam_16.htm?ip=", Soft},
		{"failed", "5.1.8", "553 5.1.8 <news@example.com>: Sender address rejected: Domain not found", Soft},
		{"failed", "5.4.7", "delivery expired (message too old)", Soft},
		{"failed", "5.3.4", "552 5.3.4 Message size exceeds fixed limit", Soft},
		{"failed", "4.2.2", "452 4.2.2 Mailbox full", Soft},
		{"failed", "4.4.1", "connect to mx.example.org[192.0.2.50]:25: Connection timed out", Soft},
		{"failed", "", "Sorry, no mailbox here by that name. (#5.1.1)", Hard},
		{"failed", "", "550 用户不存在", Hard},
		{"failed", "", "邮箱已满", Soft},
		{"failed", "", "connection refused by 192.0.2.5.4.4 forever", Soft}, // an IP is not a status
		{"failed", "", "something went wrong", Soft},
		{"failed", "", "user unknown", Hard},
		{"delayed", "4.4.7", "delivery temporarily suspended", NotBounce},
		{"delivered", "2.0.0", "250 2.0.0 OK", NotBounce},
		{"relayed", "2.0.0", "", NotBounce},
		{"failed", "2.0.0", "", NotBounce},
	}
	for _, tt := range tests {
		if got := classify(tt.action, tt.status, tt.diag); got != tt.want {
			t.Errorf("classify(%q, %q, %q) = %v, want %v", tt.action, tt.status, tt.diag, got, tt.want)
		}
	}
}

func TestFindStatus(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"550 5.1.1 <a@b>: User unknown":                       "5.1.1",
		"Sorry, no mailbox here by that name. (#5.1.1)":       "5.1.1",
		"#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##": "5.1.1",
		"host 192.0.2.5 said: 550 Mailbox not found.":         "5.0.0",
		"421 Service not available":                           "4.0.0",
		"relay 10.5.4.4 refused":                              "",
		"ends with code 5.2.2.":                               "5.2.2",
		"nothing here":                                        "",
	} {
		if got := findStatus(in); got != want {
			t.Errorf("findStatus(%q) = %q, want %q", in, got, want)
		}
	}
}

// A server that echoes the password in its refusal: the text loses it, the
// error is still a refused login.
func TestRedactKeepsErrLogin(t *testing.T) {
	err := redact(fmt.Errorf("%w: NO [AUTHENTICATIONFAILED] bad password hunter2-xyz", ErrLogin), "hunter2-xyz")
	if strings.Contains(err.Error(), "hunter2-xyz") || !strings.Contains(err.Error(), "<password>") {
		t.Fatalf("text %q", err)
	}
	if !errors.Is(err, ErrLogin) {
		t.Fatal("the redacted error is no longer ErrLogin")
	}
}
