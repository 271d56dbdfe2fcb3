package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldmail/herald/sink"
)

// TestSinkProfiles runs a campaign against every provider profile of the
// test server, its rates scaled so that herald passes them in seconds:
// signed with DKIM, everyone is delivered once and no one is charged for
// the provider's limits (each sent row counts its one delivering attempt);
// unsigned, the providers that demand authentication refuse every message
// with their own reply, which herald classifies as policy (failed, not
// suppressed) and the policy brake pauses the campaign.
func TestSinkProfiles(t *testing.T) {
	t.Parallel()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(t.TempDir(), "dkim.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	dkim := fmt.Sprintf("\n[dkim]\ndomain = \"example.com\"\nselector = \"s1\"\nprivate_key = %q\n", keyFile)
	for _, tt := range []struct {
		name   string
		scale  float64
		unauth string // the reply to unsigned mail ("": not checked)
	}{
		{"gmail", 10, "550 5.7.26 Unauthenticated email from example.com"},
		{"outlook", 40, "550 5.7.515 Access denied, sending domain example.com does not meet the required authentication level"},
		{"yahoo", 10, "550 5.7.9 This mail has been blocked because the sender is unauthenticated"},
		{"163", 40, ""},
		{"qq", 40, ""},
		{"ses", 20, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := sink.Config{}
			if err := cfg.UseProfile(tt.name, tt.scale); err != nil {
				t.Fatal(err)
			}
			s := startSink(t, cfg)
			const n = 40
			c := newCampaign(t, s, n, "cooldown = \"1s\""+dkim)
			code, o, e := runHerald(t, nil, "send", "--config", c.conf)
			st := s.Stats()
			t.Logf("%s: exit %d; the server took %d, throttled %d, refused %d at MAIL, %d after the data, %d sessions over its limit",
				tt.name, code, st.Messages, st.Throttled, st.RejectedMail, st.RejectedData, st.SessionLimited)
			if code != 0 {
				t.Fatalf("signed: exit %d\n%s\n%s", code, o, e)
			}
			for i := range n {
				if got := s.Received(fmt.Sprintf("u%d@example.com", i)); got != 1 {
					t.Fatalf("u%d received %d copies", i, got)
				}
			}
			if st.RejectedMail+st.RejectedData+st.SessionLimited == 0 {
				t.Errorf("the profile's limits were never reached: the test shows nothing")
			}
			_, out, _ := runHerald(t, nil, "report", "--config", c.conf)
			if strings.Count(out, ",sent,1,") != n {
				t.Fatalf("a recipient was charged for the provider's limits:\n%s", out)
			}
			if tt.unauth == "" {
				return
			}
			u := newCampaign(t, s, 30, "cooldown = \"1s\"")
			os.WriteFile(u.conf, []byte(strings.Replace(mustRead(t, u.conf), `id = "cmdtest"`, `id = "unsigned"`, 1)), 0o644)
			code, o, e = runHerald(t, nil, "send", "--config", u.conf)
			if code != exitInterrupted || !strings.Contains(e, "rejected for policy reasons") {
				t.Fatalf("unsigned: exit %d, want the policy brake\n%s\n%s", code, o, e)
			}
			_, out, _ = runHerald(t, nil, "report", "--config", u.conf, "--failed")
			if !strings.Contains(out, tt.unauth) {
				t.Fatalf("unsigned: the failed rows do not carry the provider's reply:\n%s", out)
			}
			if _, list, _ := runHerald(t, nil, "suppress", "list", "--config", u.conf); strings.Contains(list, "@example.com") {
				t.Fatalf("a policy refusal suppressed recipients:\n%s", list)
			}
		})
	}
}
