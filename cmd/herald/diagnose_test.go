package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/sink"
)

// TestFirstContactDiagnosis: a provider misconfigured in a way more tries
// cannot mend is explained at its first failed connection, with the fix,
// and herald send exits 2 in seconds, nothing sent and no one failed.
func TestFirstContactDiagnosis(t *testing.T) {
	t.Parallel()
	tlsConf, _, err := sink.SelfSignedTLS()
	if err != nil {
		t.Fatal(err)
	}
	plain := startSink(t, sink.Config{})
	implicit := startSink(t, sink.Config{TLSConfig: tlsConf, ImplicitTLS: true})
	starttls := startSink(t, sink.Config{TLSConfig: tlsConf})
	nothing := freeAddr(t)
	for _, tt := range []struct {
		name, addr, tls string
		want            []string
	}{
		{"tls to a clear-text port", plain.Addr(), "tls", []string{"does not speak TLS from the first byte", `use tls = "starttls"`}},
		{"starttls to an implicit TLS port", implicit.Addr(), "starttls", []string{"speaks TLS from the first byte", `set tls = "tls"`}},
		{"untrusted certificate", starttls.Addr(), "starttls", []string{"certificate signed by unknown authority", "provider.ca_file"}},
		{"nothing listening", nothing, "starttls", []string{"connection refused", "check provider.host and provider.port"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			host, port, _ := strings.Cut(tt.addr, ":")
			os.WriteFile(filepath.Join(dir, "r.csv"), []byte("email\nu1@example.com\nu2@example.com\n"), 0o644)
			os.WriteFile(filepath.Join(dir, "b.txt"), []byte("Hello\n"), 0o644)
			conf := filepath.Join(dir, "h.toml")
			os.WriteFile(conf, []byte(fmt.Sprintf("[campaign]\nid = \"d\"\nfrom = \"T <t@example.com>\"\nsubject = \"Hi\"\ntext = \"b.txt\"\nrecipients = \"r.csv\"\n"+
				"[[provider]]\nname = \"p\"\nhost = %q\nport = %s\ntls = %q\ntimeout = \"2s\"\n", host, port, tt.tls)), 0o644)
			start := time.Now()
			code, o, e := runHerald(t, nil, "send", "--config", conf)
			took := time.Since(start)
			t.Logf("exit %d after %v: %s", code, took.Round(time.Millisecond), strings.TrimSpace(e[strings.LastIndex(strings.TrimSpace(e), "\n")+1:]))
			if code != exitInput {
				t.Errorf("exit %d, want 2\n%s\n%s", code, o, e)
			}
			for _, w := range tt.want {
				if !strings.Contains(e, w) {
					t.Errorf("the explanation lacks %q:\n%s", w, e)
				}
			}
			if took > 15*time.Second {
				t.Errorf("took %v: the first failure must be explained at once", took)
			}
			if !strings.Contains(o, "0 sent, 0 failed") {
				t.Errorf("someone was sent or failed:\n%s", o)
			}
		})
	}
}

// TestPresetNeedsLogin: preset = "163" without username and password_env
// is refused before anything, the dry run included (exit 2, naming the
// key and what the password is for 163).
func TestPresetNeedsLogin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "r.csv"), []byte("email\nu1@example.com\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.txt"), []byte("Hello\n"), 0o644)
	conf := filepath.Join(dir, "h.toml")
	os.WriteFile(conf, []byte("[campaign]\nid = \"d\"\nfrom = \"T <t@163.com>\"\nsubject = \"Hi\"\ntext = \"b.txt\"\nrecipients = \"r.csv\"\n[[provider]]\npreset = \"163\"\n"), 0o644)
	for _, args := range [][]string{{"send", "--config", conf, "--dry-run"}, {"send", "--config", conf}} {
		code, o, e := runHerald(t, nil, args...)
		if code != exitInput || !strings.Contains(e, `provider[0].username: required with preset = "163"`) || !strings.Contains(e, "授权码") {
			t.Errorf("%v: exit %d\n%s\n%s", args, code, o, e)
		}
	}
}
