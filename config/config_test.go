package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dir makes a folder with the files a valid config refers to.
func dir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, f := range []string{"welcome.txt", "welcome.html", "recipients.csv", "logo.png"} {
		if err := os.WriteFile(filepath.Join(d, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

const valid = `
[campaign]
id = "spring-2026"
from = "Herald News <news@example.com>"
subject = "Hello {{.name}}"
text = "welcome.txt"
html = "welcome.html"
recipients = "recipients.csv"

[[provider]]
name = "local"
host = "127.0.0.1"
port = 2525
tls = "none"
`

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseValidAndDefaults(t *testing.T) {
	t.Parallel()
	d := dir(t)
	c, err := Parse(valid, d, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Campaign.Text != filepath.Join(d, "welcome.txt") || c.Campaign.Recipients != filepath.Join(d, "recipients.csv") {
		t.Errorf("relative paths not resolved against the config folder: %q %q", c.Campaign.Text, c.Campaign.Recipients)
	}
	if c.Queue.Backend != "embedded" || c.Queue.Path != filepath.Join(d, "herald.db") {
		t.Errorf("queue defaults: %+v", c.Queue)
	}
	p := c.Provider[0]
	if p.Connections != DefaultConnections || p.PerConnection != DefaultPerConnection || p.Timeout.Duration != DefaultTimeout || p.Rate != 0 {
		t.Errorf("provider defaults: %+v", p)
	}
	if c.Retry.MaxAttempts != DefaultMaxAttempts || c.Retry.MaxAge.Duration != DefaultMaxAge {
		t.Errorf("retry defaults: %+v", c.Retry)
	}
}

func TestRedisURLSchemes(t *testing.T) {
	t.Parallel()
	d := dir(t)
	for _, u := range []string{
		"redis://127.0.0.1:6379/0", "rediss://redis.example:6380/1", "unix:///run/redis.sock",
		"redis+cluster://10.0.0.1:7000?addr=10.0.0.2:7000", "rediss+cluster://10.0.0.1:7000",
		"redis+sentinel://10.0.0.1:26379/0?master_name=mymaster", "rediss+sentinel://10.0.0.1:26379?master_name=m",
	} {
		c, err := Parse(valid+"\n[queue]\nbackend = \"redis\"\nurl = \""+u+"\"\n", d, env(nil))
		if err != nil {
			t.Errorf("%s: %v", u, err)
		} else if c.Queue.URL != u {
			t.Errorf("%s: got %q", u, c.Queue.URL)
		}
	}
}

func TestParseProblems(t *testing.T) {
	t.Parallel()
	d := dir(t)
	tests := []struct {
		name string
		edit func(string) string
		env  map[string]string
		want []string // each must appear in the error
	}{
		{"unknown key", func(s string) string {
			return strings.Replace(s, `tls = "none"`, "tls = \"none\"\ncolour = \"red\"", 1)
		}, nil, []string{"provider.colour: unknown key"}},
		{"unknown section key", func(s string) string { return s + "\n[queue]\nbackend = \"embedded\"\npth = \"x\"\n" }, nil, []string{"queue.pth: unknown key"}},
		{"missing id", func(s string) string { return strings.Replace(s, `id = "spring-2026"`, "", 1) }, nil, []string{"campaign.id: required"}},
		{"bad id", func(s string) string { return strings.Replace(s, `spring-2026`, `spring 2026/x`, 1) }, nil, []string{"campaign.id:"}},
		{"bad from", func(s string) string {
			return strings.Replace(s, `Herald News <news@example.com>`, `not an address`, 1)
		}, nil, []string{"campaign.from:"}},
		{"missing file", func(s string) string { return strings.Replace(s, `welcome.txt`, `nope.txt`, 1) }, nil, []string{"campaign.text:", "no such file"}},
		{"no body", func(s string) string {
			return strings.Replace(strings.Replace(s, `text = "welcome.txt"`, "", 1), `html = "welcome.html"`, "", 1)
		}, nil, []string{"campaign.text: required"}},
		{"bad tls", func(s string) string { return strings.Replace(s, `tls = "none"`, `tls = "ssl"`, 1) }, nil, []string{"provider[0].tls:"}},
		{"bad port", func(s string) string { return strings.Replace(s, `port = 2525`, `port = 70000`, 1) }, nil, []string{"provider[0].port:"}},
		{"no host", func(s string) string { return strings.Replace(s, `host = "127.0.0.1"`, ``, 1) }, nil, []string{"provider[0].host: required"}},
		{"no provider", func(s string) string { return s[:strings.Index(s, "[[provider]]")] }, nil, []string{"provider: at least one"}},
		{"password env unset", func(s string) string {
			return strings.Replace(s, `tls = "none"`, "tls = \"none\"\nusername = \"u\"\npassword_env = \"HERALD_T_PW\"", 1)
		}, nil, []string{"provider[0].password_env: environment variable HERALD_T_PW"}},
		{"username without password_env", func(s string) string {
			return strings.Replace(s, `tls = "none"`, "tls = \"none\"\nusername = \"u\"", 1)
		}, nil, []string{"provider[0].password_env: required with username"}},
		{"plaintext auth to remote host", func(s string) string {
			return strings.Replace(strings.Replace(s, `127.0.0.1`, `smtp.example.com`, 1), `tls = "none"`, "tls = \"none\"\nusername = \"u\"\npassword_env = \"PW\"", 1)
		}, map[string]string{"PW": "secret"}, []string{"provider[0].tls:", "clear text"}},
		{"negative rate", func(s string) string { return strings.Replace(s, `port = 2525`, "port = 2525\nrate = -1", 1) }, nil, []string{"provider[0].rate:"}},
		{"bad duration", func(s string) string { return strings.Replace(s, `port = 2525`, "port = 2525\ntimeout = \"soon\"", 1) }, nil, []string{"not a duration"}},
		{"duplicate provider", func(s string) string { return s + "\n[[provider]]\nname = \"local\"\nhost = \"127.0.0.1\"\n" }, nil, []string{"provider[1].name:"}},
		{"reserved header", func(s string) string { return s + "\n[campaign.headers]\nSubject = \"x\"\n" }, nil, []string{"campaign.headers.Subject:"}},
		{"bad backend", func(s string) string { return s + "\n[queue]\nbackend = \"postgres\"\n" }, nil, []string{"queue.backend:"}},
		{"bad redis url", func(s string) string { return s + "\n[queue]\nbackend = \"redis\"\nurl = \"http://x\"\n" }, nil, []string{"queue.url:"}},
		{"bad redis cluster url", func(s string) string { return s + "\n[queue]\nbackend = \"redis\"\nurl = \"unix+cluster:///x\"\n" }, nil, []string{"queue.url:"}},
		{"toml syntax", func(s string) string { return s + "\n[campaign\n" }, nil, []string{"line "}},
		{"several at once", func(s string) string {
			return strings.Replace(strings.Replace(s, `port = 2525`, `port = 0`+"\nconnections = -3", 1), `subject = "Hello {{.name}}"`, "", 1)
		}, nil, []string{"campaign.subject: required", "provider[0].connections:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(tt.edit(valid), d, env(tt.env))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestPasswordNeverPrinted(t *testing.T) {
	t.Parallel()
	d := dir(t)
	text := strings.Replace(valid, `tls = "none"`, "tls = \"none\"\nusername = \"u\"\npassword_env = \"PW\"\nport = -1", 1)
	text = strings.Replace(text, "port = 2525\n", "", 1)
	_, err := Parse(text, d, env(map[string]string{"PW": "hunter2-secret"}))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("want an error without the password, got %v", err)
	}
	c, err := Parse(strings.Replace(valid, `tls = "none"`, "tls = \"none\"\nusername = \"u\"\npassword_env = \"PW\"", 1), d, env(map[string]string{"PW": "hunter2-secret"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Provider[0].Password != "hunter2-secret" {
		t.Fatal("password not read from the environment")
	}
	if s := c.Provider[0].String(); strings.Contains(s, "hunter2") {
		t.Fatalf("Provider.String leaks the password: %s", s)
	}
}

func TestDurationUnmarshal(t *testing.T) {
	t.Parallel()
	var d Duration
	if err := d.UnmarshalText([]byte("90s")); err != nil || d.Duration != 90*time.Second {
		t.Fatalf("%v %v", d, err)
	}
}

func TestLoadExample(t *testing.T) {
	t.Parallel()
	// The documented example at the repository root must stay valid.
	if _, err := Load("../config.toml"); err != nil {
		t.Fatalf("config.toml: %v", err)
	}
}

func TestParseWorker(t *testing.T) {
	t.Parallel()
	d := dir(t)
	worker := "[queue]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\n" + valid[strings.Index(valid, "[[provider]]"):]
	if _, err := ParseWorker(worker, d, env(nil)); err != nil {
		t.Fatalf("a worker needs no [campaign]: %v", err)
	}
	if _, err := Parse(worker, d, env(nil)); err == nil || !strings.Contains(err.Error(), "campaign.id: required") {
		t.Fatalf("send needs a [campaign]: %v", err)
	}
	// A [campaign] section, when given, is still checked.
	_, err := ParseWorker(worker+"[campaign]\nid = \"a b\"\n", d, env(nil))
	if err == nil || !strings.Contains(err.Error(), "campaign.id") {
		t.Fatalf("a bad [campaign] in a worker config: %v", err)
	}
	_, err = ParseWorker("[queue]\nbackend = \"redis\"\n", d, env(nil))
	if err == nil || !strings.Contains(err.Error(), "at least one [[provider]]") {
		t.Fatalf("a worker without providers: %v", err)
	}
}
