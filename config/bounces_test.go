package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const bouncesOnly = `
[queue]
path = "herald.db"

[bounces]
url = "imaps://127.0.0.1:993/INBOX"
username = "bounces@example.com"
password_env = "HERALD_BOUNCES_PASSWORD"
`

func TestParseBounces(t *testing.T) {
	t.Parallel()
	d := dir(t)
	c, err := ParseBounces(bouncesOnly, d, env(map[string]string{"HERALD_BOUNCES_PASSWORD": "pw"}))
	if err != nil {
		t.Fatal(err) // no [campaign] and no [[provider]]: fine for bounces
	}
	b := c.Bounces
	if b.MoveTo != "Processed" || b.SoftLimit != 3 || b.Address != "bounces@example.com" || b.Password != "pw" || b.Timeout.Duration != DefaultTimeout {
		t.Errorf("defaults: %+v", b)
	}
	// The same file is no campaign or worker configuration.
	if _, err := ParseWorker(bouncesOnly, d, env(map[string]string{"HERALD_BOUNCES_PASSWORD": "pw"})); err == nil || !strings.Contains(err.Error(), "provider") {
		t.Errorf("worker without providers: %v", err)
	}
	// A campaign configuration with a [bounces] section checks it.
	_, err = Parse(valid+"\n[bounces]\nurl = \"ftp://x\"\n", d, env(nil))
	if err == nil || !strings.Contains(err.Error(), "bounces.url") {
		t.Errorf("campaign with a bad [bounces]: %v", err)
	}

	if err := os.WriteFile(filepath.Join(d, "ca.pem"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err = ParseBounces(bouncesOnly+"ca_file = \"ca.pem\"\ndelete = true\nsoft_limit = 5\naddress = \"bounce@mail.example.com\"\n", d,
		env(map[string]string{"HERALD_BOUNCES_PASSWORD": "pw"}))
	if err != nil {
		t.Fatal(err)
	}
	b = c.Bounces
	if b.MoveTo != "" || !b.Delete || b.SoftLimit != 5 || b.Address != "bounce@mail.example.com" || b.CAFile != filepath.Join(d, "ca.pem") {
		t.Errorf("values: %+v", b)
	}
}

func TestBouncesProblems(t *testing.T) {
	t.Parallel()
	d := dir(t)
	const secret = "hunter2-secret"
	tests := []struct{ body, want string }{
		{"[bounces]\n", "bounces.url: required"},
		{"[bounces]\n", "bounces.username: required"},
		{"[bounces]\n", "bounces.password_env: required"},
		{"[bounces]\nurl = \"http://example.com\"", "bounces.url: scheme \"http\""},
		{"[bounces]\nurl = \"imaps://u:" + secret + "@example.com\"", "bounces.url: the URL holds a password"},
		{"[bounces]\nurl = \"pop3s://pop.example.com/INBOX\"", "bounces.url: POP3 has one mailbox"},
		{"[bounces]\nurl = \"pop3s://pop.example.com\"\nmove_to = \"Done\"", "bounces.move_to: POP3 cannot move"},
		{"[bounces]\npassword_env = \"NOPE\"", "bounces.password_env: environment variable NOPE is empty"},
		{"[bounces]\nca_file = \"missing.pem\"", "bounces.ca_file: " + filepath.Join(d, "missing.pem") + ": no such file"},
		{"[bounces]\ndelete = true\nmove_to = \"Done\"", "bounces.move_to: not used with delete = true"},
		{"[bounces]\nsoft_limit = -1", "bounces.soft_limit: -1"},
		{"[bounces]\naddress = \"Bounces <b@example.com>\"", "bounces.address: \"Bounces <b@example.com>\" is not a plain address"},
		{"[bounces]\nmove_too = \"x\"", "bounces.move_too: unknown key"},
	}
	for _, tt := range tests {
		_, err := ParseBounces(tt.body, d, env(map[string]string{"HERALD_BOUNCES_PASSWORD": secret}))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v\nwant %q", tt.body, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%q: the error shows the password: %v", tt.body, err)
		}
	}
}
