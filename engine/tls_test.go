package engine_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/heraldmail/herald/engine"
	"github.com/heraldmail/herald/sink"
)

// testCA returns a server TLS config with a fresh self-signed certificate
// for 127.0.0.1 and a client pool that trusts it.
func testCA(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	cfg, pool, err := sink.SelfSignedTLS()
	if err != nil {
		t.Fatal(err)
	}
	return cfg, pool
}

func TestTLSModes(t *testing.T) {
	t.Parallel()
	serverTLS, pool := testCA(t)
	trusted := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	for _, tt := range []struct {
		name     string
		implicit bool
		mode     string
	}{
		{"starttls", false, "starttls"},
		{"implicit", true, "tls"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startSink(t, sink.Config{TLSConfig: serverTLS, ImplicitTLS: tt.implicit, Auth: &sink.Credentials{Username: "news", Password: "pw-over-tls"}})
			b := setup(t, campaignSpec{recipients: addresses(30, "t"), tls: trusted,
				providers: strings.Replace(providerTOML("tls", s, "username = \"news\"\npassword_env = \"PW\""), `tls = "none"`, `tls = "`+tt.mode+`"`, 1),
				env:       map[string]string{"PW": "pw-over-tls"}})
			b.plan()
			sum, err := b.run()
			if err != nil || sum.Counts.Sent != 30 || s.Stats().Messages != 30 {
				t.Fatalf("err %v counts %+v server %d", err, sum.Counts, s.Stats().Messages)
			}
		})
	}
}

func TestUntrustedCertificateStopsProvider(t *testing.T) {
	t.Parallel()
	serverTLS, _ := testCA(t)
	s := startSink(t, sink.Config{TLSConfig: serverTLS})
	// No override: the system roots do not know the test authority.
	b := setup(t, campaignSpec{recipients: addresses(5, "c"),
		providers: strings.Replace(providerTOML("strict", s, ""), `tls = "none"`, `tls = "starttls"`, 1)})
	b.plan()
	sum, err := b.run()
	var stopped *engine.StoppedError
	if !errors.As(err, &stopped) || !strings.Contains(stopped.Reason, "certificate") {
		t.Fatalf("want a stop naming the certificate, got %v", err)
	}
	if s.Stats().Messages != 0 || sum.Counts.Pending != 5 {
		t.Fatalf("sent over an unverified connection: %+v", sum.Counts)
	}
}

func TestStartTLSRequired(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{}) // offers no STARTTLS
	b := setup(t, campaignSpec{recipients: addresses(5, "n"),
		providers: strings.Replace(providerTOML("plain", s, ""), `tls = "none"`, `tls = "starttls"`, 1)})
	b.plan()
	_, err := b.run()
	var stopped *engine.StoppedError
	if !errors.As(err, &stopped) || !strings.Contains(stopped.Reason, "STARTTLS") || s.Stats().Messages != 0 {
		t.Fatalf("a server without STARTTLS must not get mail in starttls mode: %v", err)
	}
}
