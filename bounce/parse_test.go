package bounce

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readSample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParseSamples classifies each sample in testdata and reads its
// recipient, status and returned headers.
func TestParseSamples(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file      string
		format    string
		kind      Kind
		rcpt      string // the first recipient ("" for none)
		status    string
		diag      string // a part of the diagnostic
		campaign  string // X-Herald-Campaign of the returned message
		note      string
		messageID string
	}{
		{"postfix-dsn-hard.eml", "dsn", Hard, "ann@example.org", "5.1.1", "User unknown in virtual mailbox table", "nov-2026", "", "20261125091241.4Xk2Lr0sQmz9vBn@mail.example.com"},
		{"gmail-dsn-hard.eml", "dsn", Hard, "bob.gone@gmail.com", "5.1.1", "does not exist", "nov-2026", "", "656a2b1b.050a0220.4d2a1.7f3aSMTPIN_ADDED_BROKEN@mx.google.com"},
		{"office365-ndr.eml", "dsn", Hard, "carol@example.net", "5.1.10", "RESOLVER.ADR.RecipientNotFound", "", "", "c0a7a3a8-2e2b-4f61-8f53-9d2f1d0b6a11@AM9PR04MB8211.eurprd04.prod.outlook.com"},
		{"exchange-legacy-text.eml", "exchange", Hard, "dave.old@corp.example.net", "5.1.1", "RESOLVER.ADR.RecipNotFound", "nov-2026", "", "5a1bc0de-0b0e-4f4f-bd77-ndr01@EXHUB01.corp.example.net"},
		{"qmail-hard.eml", "qmail", Hard, "erin@example.net", "5.1.1", "no mailbox here by that name", "nov-2026", "", ""},
		{"exim-soft.eml", "exim", Soft, "frank@example.org", "5.2.2", "Mailbox full", "nov-2026", "", "E1vNq2P-0007kD-1x@mx2.example.org"},
		{"postfix-dsn-delayed.eml", "dsn", NotBounce, "gina@example.org", "4.4.1", "Connection timed out", "nov-2026", "delay notice", ""},
		{"exim-delay.eml", "exim", NotBounce, "jo@example.org", "4.3.0", "Temporary lookup failure", "", "delay notice", ""},
		{"out-of-office.eml", "auto-reply", NotBounce, "", "", "", "", "auto-reply", "ooo-7731@example.org"},
		{"sendmail-old.eml", "sendmail", Hard, "ivan@example.net", "5.1.1", "User unknown", "nov-2026", "", ""},
		{"postfix-qq-mailbox-not-found.eml", "dsn", Hard, "10001234@qq.com", "5.0.0", "Mailbox not found", "nov-2026", "", ""},
		{"unmatched-dsn.eml", "dsn", Hard, "someone@example.org", "5.1.1", "User unknown", "", "", ""},
		{"postfix-dsn-mailbox-full.eml", "dsn", Soft, "kim@example.org", "5.2.2", "Mailbox full", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			r, err := Parse(readSample(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if r.Format != tt.format {
				t.Errorf("format %q, want %q", r.Format, tt.format)
			}
			if r.Kind() != tt.kind {
				t.Errorf("kind %v, want %v (recipients %+v)", r.Kind(), tt.kind, r.Recipients)
			}
			if r.Note != tt.note {
				t.Errorf("note %q, want %q", r.Note, tt.note)
			}
			if tt.messageID != "" && r.MessageID != tt.messageID {
				t.Errorf("message id %q, want %q", r.MessageID, tt.messageID)
			}
			if tt.rcpt == "" {
				if len(r.Recipients) != 0 {
					t.Errorf("recipients %+v, want none", r.Recipients)
				}
			} else {
				if len(r.Recipients) != 1 {
					t.Fatalf("recipients %+v, want one", r.Recipients)
				}
				rc := r.Recipients[0]
				if rc.Address != tt.rcpt || rc.Status != tt.status || !strings.Contains(rc.Diagnostic, tt.diag) {
					t.Errorf("recipient %+v, want %s %s with %q", rc, tt.rcpt, tt.status, tt.diag)
				}
			}
			got := ""
			if r.Original != nil {
				got = r.Original.Get(CampaignHeader)
			}
			if got != tt.campaign {
				t.Errorf("returned %s %q, want %q", CampaignHeader, got, tt.campaign)
			}
		})
	}
}

// FuzzParse: no input makes Parse panic, and every recipient it reports
// has an address and a kind that matches its action.
func FuzzParse(f *testing.F) {
	ents, err := os.ReadDir("testdata")
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range ents {
		f.Add(readSample(f, e.Name()))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := Parse(raw)
		if err != nil {
			return
		}
		for _, rc := range r.Recipients {
			if rc.Address == "" {
				t.Errorf("a recipient without an address: %+v", rc)
			}
			if rc.Action == "delayed" && rc.Kind != NotBounce {
				t.Errorf("a delayed recipient counted as a bounce: %+v", rc)
			}
		}
	})
}

// BenchmarkParse parses every sample in turn.
func BenchmarkParse(b *testing.B) {
	ents, err := os.ReadDir("testdata")
	if err != nil {
		b.Fatal(err)
	}
	var raws [][]byte
	for _, e := range ents {
		raws = append(raws, readSample(b, e.Name()))
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := Parse(raws[i%len(raws)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// TestParseARF: an ARF feedback report is a complaint by the recipient it
// names (Original-Rcpt-To, or the returned message's To: when redacted);
// a not-spam report is none.
func TestParseARF(t *testing.T) {
	report := func(typ, rcptField string) []byte {
		return []byte("From: fbl@example.net\r\nTo: abuse@example.com\r\nSubject: report\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n" +
			"--F\r\nContent-Type: text/plain\r\n\r\nabuse report\r\n" +
			"--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: " + typ + "\r\nUser-Agent: FBL/2\r\nVersion: 1\r\n" + rcptField + "\r\n" +
			"--F\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: news@example.com\r\nTo: Ann <ann@example.org>\r\nX-Herald-Campaign: nov\r\n\r\n" +
			"--F--\r\n")
	}
	for _, tt := range []struct {
		typ, field, want string
		kind             Kind
	}{
		{"abuse", "Original-Rcpt-To: <bob@example.org>\r\n", "bob@example.org", Complaint},
		{"abuse", "", "ann@example.org", Complaint}, // redacted: the returned To:
		{"not-spam", "Original-Rcpt-To: bob@example.org\r\n", "", NotBounce},
	} {
		r, err := Parse(report(tt.typ, tt.field))
		if err != nil {
			t.Fatal(err)
		}
		if r.Format != "arf" || r.Kind() != tt.kind {
			t.Errorf("%s %q: format %q kind %s, want arf %s (%s)", tt.typ, tt.field, r.Format, r.Kind(), tt.kind, r.Note)
			continue
		}
		if tt.want != "" && (len(r.Recipients) != 1 || r.Recipients[0].Address != tt.want || !strings.Contains(r.Recipients[0].Diagnostic, "FBL/2")) {
			t.Errorf("%s %q: recipients %+v", tt.typ, tt.field, r.Recipients)
		}
	}
}
