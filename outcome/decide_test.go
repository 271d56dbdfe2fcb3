package outcome

import (
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/queue"
)

var (
	t0     = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	policy = Policy{
		MaxAttempts: 5, MaxAge: 72 * time.Hour, Backoff: time.Minute, MaxBackoff: time.Hour,
		Cooldown: 30 * time.Second, DomainCooldown: 20 * time.Second, QuotaPause: time.Hour,
		ReconnectTries: 3, AuthPause: 5 * time.Minute,
	}
)

// TestDecide walks every class through Decide: what becomes of the job,
// the provider and the campaign. The replies are the reference table's
// (TestClassifyReference), classified as the engine does.
func TestDecide(t *testing.T) {
	t.Parallel()
	fresh := queue.Job{Seq: 7, Lease: 9, Enqueued: t0.Add(-time.Hour)}
	tired := fresh
	tired.Attempts = 4
	old := fresh
	old.Enqueued = t0.Add(-72*time.Hour + 10*time.Second)
	lost := func(stage Stage) *DeliveryError { return Classify(stage, io.EOF) }
	tests := []struct {
		name  string
		a     Attempt
		job   queue.Job
		want  Decision
		reply string // a part of the stored reply
	}{
		{"sent", Attempt{Reply: "250 2.0.0 queued as 1"}, fresh,
			Decision{Action: Ack, Class: ClassSent, Attempted: true, CountAttempt: true}, "queued as 1"},
		{"no such user", Attempt{Err: Classify(StageRcpt, wire(t, "550-5.1.1 The email account that you tried to reach does not exist."))}, fresh,
			Decision{Action: Fail, Class: ClassPermanent, CountAttempt: true, Suppress: true, Attempted: true}, "5.1.1"},
		{"DMARC", Attempt{Err: Classify(StageDataEnd, wire(t, "550-5.7.26 Unauthenticated email is not accepted due to domain's DMARC policy."))}, fresh,
			Decision{Action: Fail, Class: ClassPolicy, CountAttempt: true, Attempted: true, Policy: true}, "DMARC"},
		{"render", Attempt{Err: Classify(StageRender, errors.New("template: missing key"))}, fresh,
			Decision{Action: Fail, Class: ClassPolicy, CountAttempt: true, Policy: true}, "missing key"},
		{"larger than the limit", Attempt{Err: Unsendable(StageRender, "the message is 12000000 bytes, more than campaign.max_message_size (10485760 bytes)")}, tired,
			Decision{Action: Fail, Class: ClassUnsendable}, "max_message_size"},
		{"larger than the server's SIZE", Attempt{Err: Unsendable(StageMail, "the message is 2048 bytes, more than the 1024 the server takes (SIZE)")}, fresh,
			Decision{Action: Fail, Class: ClassUnsendable}, "SIZE"},
		{"needs SMTPUTF8", Attempt{Err: Classify(StageMail, fmt.Errorf("用户@example.com needs SMTPUTF8: %w", ErrUnsendable)), Tries: 1}, fresh,
			Decision{Action: Fail, Class: ClassUnsendable}, "SMTPUTF8"},
		{"transient", Attempt{Err: Classify(StageRcpt, wire(t, "451 4.3.0 Temporary local problem"))}, fresh,
			Decision{Action: Retry, At: t0.Add(time.Minute), Class: ClassTransient, CountAttempt: true, Attempted: true}, "4.3.0"},
		{"transient, second attempt doubles", Attempt{Err: Classify(StageRcpt, wire(t, "451 4.3.0 Temporary local problem"))}, queue.Job{Attempts: 1, Enqueued: t0},
			Decision{Action: Retry, At: t0.Add(2 * time.Minute), Class: ClassTransient, CountAttempt: true, Attempted: true}, ""},
		{"transient, last attempt", Attempt{Err: Classify(StageRcpt, wire(t, "451 4.3.0 Temporary local problem"))}, tired,
			Decision{Action: Fail, Class: ClassTransient, CountAttempt: true, Attempted: true}, "gave up after 5 attempts"},
		{"transient past max_age", Attempt{Err: Classify(StageRcpt, wire(t, "451 4.3.0 Temporary local problem"))}, old,
			Decision{Action: Fail, Class: ClassTransient, CountAttempt: true, Attempted: true}, "max_age"},
		{"ambiguous", Attempt{Err: lost(StageDataEnd)}, fresh,
			Decision{Action: Retry, At: t0.Add(time.Minute), Class: ClassAmbiguous, CountAttempt: true, Attempted: true, Duplicate: true}, "EOF"},
		{"throttle at MAIL", Attempt{Err: Classify(StageMail, wire(t, "421 4.7.0 Try again later, closing connection."))}, tired,
			Decision{Action: Retry, At: t0.Add(30 * time.Second), Class: ClassThrottle, Provider: SlowDown}, "4.7.0"},
		{"163 MI:SFQ", Attempt{Err: Classify(StageDataEnd, wire(t, "451 MI:SFQ 163 smtp1"))}, fresh,
			Decision{Action: Retry, At: t0.Add(30 * time.Second), Class: ClassThrottle, Provider: SlowDown}, "MI:SFQ"},
		{"throttle past max_age", Attempt{Err: Classify(StageMail, wire(t, "421 4.7.0 Try again later, closing connection."))}, old,
			Decision{Action: Fail, Class: ClassThrottle, Provider: SlowDown}, "max_age"},
		{"domain throttle", Attempt{Err: Classify(StageRcpt, wire(t, "450 4.2.1 The user you are trying to contact is receiving mail too quickly."))}, fresh,
			Decision{Action: Retry, At: t0.Add(20 * time.Second), Class: ClassThrottle, Provider: SlowDomain}, "4.2.1"},
		{"quota", Attempt{Err: Classify(StageMail, wire(t, "550 5.4.5 Daily sending quota exceeded."))}, fresh,
			Decision{Action: Retry, At: t0.Add(30 * time.Second), Class: ClassThrottle, Provider: Pause, Until: t0.Add(time.Hour)}, "quota"},
		{"throttled greeting", Attempt{Err: Classify(StageConnect, wire(t, "421 HL:ICC"))}, fresh,
			Decision{Action: Release, Class: ClassThrottle, Provider: SlowDown}, "HL:ICC"},
		{"one connection too many", Attempt{Err: Classify(StageConnect, wire(t, "421 HL:ICC")), Open: 1}, fresh,
			Decision{Action: Release, Class: ClassThrottle, Provider: Fewer}, "HL:ICC"},
		{"thread limit", Attempt{Err: Classify(StageConnect, wire(t, "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded")), Open: 2}, fresh,
			Decision{Action: Release, Class: ClassThrottle, Provider: Fewer}, "thread limit"},
		{"throttled greeting, connections open", Attempt{Err: Classify(StageConnect, wire(t, "421 4.7.0 Try again later, closing connection.")), Open: 1}, fresh,
			Decision{Action: Release, Class: ClassThrottle, Provider: SlowDown}, "Try again"},
		{"login refused", Attempt{Err: Classify(StageAuth, wire(t, "535 5.7.8 Username and Password not accepted."))}, fresh,
			Decision{Action: Release, Class: ClassAuth, Provider: Stop}, "5.7.8"},
		{"too many logins", Attempt{Err: Classify(StageAuth, wire(t, "454 4.7.0 Too many login attempts, please try again later."))}, fresh,
			Decision{Action: Release, Class: ClassAuth, Provider: Pause, Until: t0.Add(5 * time.Minute)}, "454"},
		{"login required at MAIL", Attempt{Err: Classify(StageMail, wire(t, "530 5.7.0 Authentication required"))}, fresh,
			Decision{Action: Release, Class: ClassAuth, Provider: Stop}, "530"},
		{"no connection", Attempt{Err: lost(StageConnect)}, fresh,
			Decision{Action: Release, Class: ClassReconnect, Provider: Stop}, ""},
		{"lost before the data, first", Attempt{Err: lost(StageMail), Tries: 1}, tired,
			Decision{Action: Again, Class: ClassReconnect}, ""},
		{"421 session limit", Attempt{Err: Classify(StageMail, wire(t, "421 4.7.0 Too many messages in one session, closing connection")), Tries: 2}, fresh,
			Decision{Action: Again, Class: ClassReconnect}, "one session"},
		{"lost before the data, again and again", Attempt{Err: lost(StageData), Tries: 3}, tired,
			Decision{Action: Retry, At: t0.Add(30 * time.Second), Class: ClassReconnect, Provider: BackOff}, "3 times"},
		{"lost at MAIL after a throttle", Attempt{Err: lost(StageMail), Tries: 1, LastThrottle: t0.Add(-time.Second)}, tired,
			Decision{Action: Retry, At: t0.Add(30 * time.Second), Class: ClassThrottle, Provider: SlowDown}, "EOF"},
		{"lost at RCPT after a throttle", Attempt{Err: lost(StageRcpt), Tries: 1, LastThrottle: t0.Add(-29 * time.Second)}, fresh,
			Decision{Action: Retry, At: t0.Add(30 * time.Second), Class: ClassThrottle, Provider: SlowDown}, ""},
		{"lost at MAIL long after a throttle", Attempt{Err: lost(StageMail), Tries: 1, LastThrottle: t0.Add(-time.Minute)}, fresh,
			Decision{Action: Again, Class: ClassReconnect}, ""},
		{"lost at the data end after a throttle", Attempt{Err: lost(StageDataEnd), LastThrottle: t0.Add(-time.Second)}, fresh,
			Decision{Action: Retry, At: t0.Add(time.Minute), Class: ClassAmbiguous, CountAttempt: true, Attempted: true, Duplicate: true}, ""},
		{"reply after the data lost again", Attempt{Err: lost(StageDataEnd), LostReplies: 1}, tired,
			Decision{Action: Retry, At: t0.Add(30 * time.Second), Class: ClassAmbiguous, Attempted: true, Duplicate: true, Provider: BackOff}, "2 in a row"},
		{"endless reply line after the data", Attempt{Err: Classify(StageDataEnd, ErrReplyLineTooLong)}, tired,
			Decision{Action: Retry, At: t0.Add(30 * time.Second), Class: ClassAmbiguous, Attempted: true, Duplicate: true, Provider: BackOff}, "longer than 4096 bytes"},
		{"endless reply to MAIL", Attempt{Err: Classify(StageMail, ErrReplyTooLong), Tries: 1}, tired,
			Decision{Action: Again, Class: ClassReconnect}, "more than 100 lines"},
		{"garbage greeting", Attempt{Err: Classify(StageConnect, textproto.ProtocolError("short response: hello"))}, fresh,
			Decision{Action: Release, Class: ClassReconnect, Provider: Stop}, "not an SMTP reply"},
	}
	for _, tt := range tests {
		tt.a.At = t0
		got := Decide(tt.a, tt.job, policy)
		if !strings.Contains(got.Reply, tt.reply) {
			t.Errorf("%s: reply %q, want it to hold %q", tt.name, got.Reply, tt.reply)
		}
		got.Reply = ""
		if got != tt.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, got, tt.want)
		}
	}
}

// TestDecideNeverBlamesTheRecipientForTheProvider: whatever a throttle or a
// lost connection says, however often, the recipient is never failed by it
// before retry.max_age and never counts an attempt.
func TestDecideNeverBlamesTheRecipientForTheProvider(t *testing.T) {
	t.Parallel()
	errs := []*DeliveryError{
		Classify(StageMail, wire(t, "421 4.7.0 Try again later, closing connection.")),
		Classify(StageDataEnd, wire(t, "454 Throttling failure: Maximum sending rate exceeded.")),
		Classify(StageMail, io.EOF), Classify(StageRcpt, io.EOF), Classify(StageData, io.EOF),
		Classify(StageConnect, io.EOF), Classify(StageAuth, wire(t, "535 5.7.8 bad login")),
		// A server that breaks the protocol, at any stage.
		Classify(StageConnect, ErrReplyLineTooLong), Classify(StageAuth, ErrReplyTooLong),
		Classify(StageMail, ErrReplyLineTooLong), Classify(StageData, textproto.ProtocolError("invalid response code")),
		Classify(StageDataEnd, ErrReplyLineTooLong), Classify(StageDataEnd, ErrReplyTooLong),
	}
	for _, e := range errs {
		for tries := 1; tries <= 10; tries++ {
			d := Decide(Attempt{Err: e, At: t0, Tries: tries}, queue.Job{Attempts: 4, Enqueued: t0}, policy)
			if d.Action == Fail || d.CountAttempt || d.Suppress {
				t.Errorf("%v (try %d): %+v", e, tries, d)
			}
		}
	}
	// Replies after the data lost in a row: from the second on, the
	// provider's.
	for lost := 1; lost <= 10; lost++ {
		d := Decide(Attempt{Err: Classify(StageDataEnd, io.EOF), At: t0, LostReplies: lost}, queue.Job{Attempts: 4, Enqueued: t0}, policy)
		if d.Action == Fail || d.CountAttempt || d.Provider != BackOff {
			t.Errorf("reply lost after %d others: %+v", lost, d)
		}
	}
}

func TestDecisionSettlement(t *testing.T) {
	t.Parallel()
	job := queue.Job{Seq: 3, Lease: 11, Enqueued: t0}
	d := Decide(Attempt{Err: Classify(StageRcpt, wire(t, "550 5.1.1 no such user")), At: t0}, job, policy)
	s := d.Settlement(job, "smtp", t0)
	want := queue.Settlement{Seq: 3, Lease: 11, State: queue.Failed, CountAttempt: true, Suppress: true, Reply: "550 5.1.1 no such user", Provider: "smtp", SentAt: t0}
	if s != want {
		t.Fatalf("got %+v\nwant %+v", s, want)
	}
	d = Decide(Attempt{Err: Classify(StageRcpt, wire(t, "451 4.3.0 later")), At: t0}, job, policy)
	if s := d.Settlement(job, "smtp", t0); s.State != queue.Retry || !s.At.Equal(t0.Add(time.Minute)) || !s.CountAttempt {
		t.Fatalf("retry: %+v", s)
	}
	if s := Decide(Attempt{Reply: "250 ok", At: t0}, job, policy).Settlement(job, "smtp", t0); s.State != queue.Sent || s.Reply != "250 ok" {
		t.Fatalf("sent: %+v", s)
	}
}

func wire(t *testing.T, s string) error { return reply(t, s) }
