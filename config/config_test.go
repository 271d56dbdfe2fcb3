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
	if c.Queue.Backend != "embedded" || c.Queue.Path != filepath.Join(d, "herald.db") || c.Queue.Volatile {
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

func TestEncodings(t *testing.T) {
	t.Parallel()
	d := dir(t)
	for _, name := range []string{"utf-8", "gb18030", "GBK", "big5", "shift_jis", "euc-kr", "windows-1252"} {
		c, err := Parse(strings.Replace(valid, `recipients = "recipients.csv"`, "recipients = \"recipients.csv\"\nencoding = \""+name+"\"", 1), d, env(nil))
		if err != nil || c.Campaign.Encoding != name {
			t.Errorf("%s: %v", name, err)
		}
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
	c, err := Parse(valid+"\n[queue]\nbackend = \"redis\"\nvolatile = true\n", d, env(nil))
	if err != nil || !c.Queue.Volatile {
		t.Fatalf("queue.volatile = true: %+v %v", c, err)
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
		{"volatile embedded", func(s string) string { return s + "\n[queue]\nbackend = \"embedded\"\nvolatile = true\n" }, nil, []string{"queue.volatile: only for backend = \"redis\""}},
		{"volatile not a bool", func(s string) string { return s + "\n[queue]\nbackend = \"redis\"\nvolatile = \"yes\"\n" }, nil, []string{"volatile"}},
		{"unknown encoding", func(s string) string {
			return strings.Replace(s, `recipients = "recipients.csv"`, "recipients = \"recipients.csv\"\nencoding = \"gbk2\"", 1)
		}, nil, []string{`campaign.encoding: "gbk2" is not an encoding herald knows`, `"gb18030"`}},
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

// login is what every preset requires.
const login = "username = \"news@example.com\"\npassword_env = \"PW\"\n"

var loginEnv = map[string]string{"PW": "secret"}

// campaignOnly is valid without its [[provider]] block.
var campaignOnly = valid[:strings.Index(valid, "[[provider]]")]

func TestPresetValues(t *testing.T) {
	t.Parallel()
	d := dir(t)
	tests := []struct {
		provider string
		want     Provider
	}{
		{`preset = "163"`, Provider{Name: "163", Host: "smtp.163.com", Port: 465, TLS: "tls", Rate: 0.05, Burst: 1, Connections: 1, PerConnection: 20, Daily: 200}},
		{`preset = "qq"`, Provider{Name: "qq", Host: "smtp.qq.com", Port: 465, TLS: "tls", Rate: 0.05, Burst: 1, Connections: 1, PerConnection: 20, Daily: 200}},
		{`preset = "gmail"`, Provider{Name: "gmail", Host: "smtp.gmail.com", Port: 587, TLS: "starttls", Rate: 0.2, Burst: 1, Connections: 2, PerConnection: DefaultPerConnection, Daily: 500}},
		{`preset = "office365"`, Provider{Name: "office365", Host: "smtp.office365.com", Port: 587, TLS: "starttls", Rate: 0.4, Burst: 1, Connections: 3, PerConnection: DefaultPerConnection, Daily: 10000}},
		{"preset = \"ses\"\nregion = \"eu-west-1\"", Provider{Name: "ses", Host: "email-smtp.eu-west-1.amazonaws.com", Port: 587, TLS: "starttls", Rate: 1, Burst: 1, Connections: 2, PerConnection: DefaultPerConnection, Daily: 200}},
		{"preset = \"ses\"\nhost = \"email-smtp.us-east-1.amazonaws.com\"", Provider{Name: "ses", Host: "email-smtp.us-east-1.amazonaws.com", Port: 587, TLS: "starttls", Rate: 1, Burst: 1, Connections: 2, PerConnection: DefaultPerConnection, Daily: 200}},
		{`preset = "Gmail"`, Provider{Name: "gmail", Host: "smtp.gmail.com", Port: 587, TLS: "starttls", Rate: 0.2, Burst: 1, Connections: 2, PerConnection: DefaultPerConnection, Daily: 500}},
	}
	for _, tt := range tests {
		t.Run(tt.provider, func(t *testing.T) {
			t.Parallel()
			c, err := Parse(campaignOnly+"[[provider]]\n"+tt.provider+"\n"+login, d, env(loginEnv))
			if err != nil {
				t.Fatal(err)
			}
			checkProvider(t, c.Provider[0], tt.want)
			if p := c.Provider[0]; p.Timeout.Duration != DefaultTimeout || !p.PipeliningOn() {
				t.Errorf("generic defaults not applied after the preset: %+v", p)
			}
		})
	}
}

// checkProvider compares the keys a preset fills.
func checkProvider(t *testing.T, got, want Provider) {
	t.Helper()
	if got.Name != want.Name || got.Host != want.Host || got.Port != want.Port || got.TLS != want.TLS ||
		got.Rate != want.Rate || got.Burst != want.Burst || got.Connections != want.Connections ||
		got.PerConnection != want.PerConnection || got.Daily != want.Daily {
		t.Errorf("got  name=%q host=%q port=%d tls=%q rate=%v burst=%d connections=%d per_connection=%d daily=%d\n"+
			"want name=%q host=%q port=%d tls=%q rate=%v burst=%d connections=%d per_connection=%d daily=%d",
			got.Name, got.Host, got.Port, got.TLS, got.Rate, got.Burst, got.Connections, got.PerConnection, got.Daily,
			want.Name, want.Host, want.Port, want.TLS, want.Rate, want.Burst, want.Connections, want.PerConnection, want.Daily)
	}
}

func TestPresetOverrides(t *testing.T) {
	t.Parallel()
	d := dir(t)
	tests := []struct {
		name, provider string
		want           Provider
	}{
		{"every key", "preset = \"gmail\"\nname = \"g\"\nhost = \"smtp.example.com\"\nport = 2525\ntls = \"tls\"\nrate = 3\nburst = 4\nconnections = 5\nper_connection = 6\ndaily = 2000",
			Provider{Name: "g", Host: "smtp.example.com", Port: 2525, TLS: "tls", Rate: 3, Burst: 4, Connections: 5, PerConnection: 6, Daily: 2000}},
		{"explicit 0 means unlimited", "preset = \"office365\"\nrate = 0\ndaily = 0",
			Provider{Name: "office365", Host: "smtp.office365.com", Port: 587, TLS: "starttls", Rate: 0, Burst: 1, Connections: 3, PerConnection: DefaultPerConnection, Daily: 0}},
		{"tls picks the documented port", "preset = \"qq\"\ntls = \"starttls\"",
			Provider{Name: "qq", Host: "smtp.qq.com", Port: 587, TLS: "starttls", Rate: 0.05, Burst: 1, Connections: 1, PerConnection: 20, Daily: 200}},
		{"port picks the documented tls", "preset = \"gmail\"\nport = 465",
			Provider{Name: "gmail", Host: "smtp.gmail.com", Port: 465, TLS: "tls", Rate: 0.2, Burst: 1, Connections: 2, PerConnection: DefaultPerConnection, Daily: 500}},
		{"ses alternative port", "preset = \"ses\"\nregion = \"us-east-1\"\nport = 2465",
			Provider{Name: "ses", Host: "email-smtp.us-east-1.amazonaws.com", Port: 2465, TLS: "tls", Rate: 1, Burst: 1, Connections: 2, PerConnection: DefaultPerConnection, Daily: 200}},
		{"163 port 994", "preset = \"163\"\nport = 994\nconnections = 2",
			Provider{Name: "163", Host: "smtp.163.com", Port: 994, TLS: "tls", Rate: 0.05, Burst: 1, Connections: 2, PerConnection: 20, Daily: 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse(campaignOnly+"[[provider]]\n"+tt.provider+"\npipelining = false\n"+login, d, env(loginEnv))
			if err != nil {
				t.Fatal(err)
			}
			checkProvider(t, c.Provider[0], tt.want)
			if c.Provider[0].PipeliningOn() {
				t.Error("pipelining = false was not kept")
			}
		})
	}

	// The explicit keys are found per provider, also in an inline array.
	c, err := Parse("provider = [{preset = \"gmail\", daily = 0, username = \"u\", password_env = \"PW\"}, {preset = \"gmail\", name = \"g2\", username = \"u\", password_env = \"PW\"}]\n"+campaignOnly, d, env(loginEnv))
	if err != nil {
		t.Fatal(err)
	}
	if c.Provider[0].Daily != 0 || c.Provider[1].Daily != 500 {
		t.Errorf("inline providers: daily %d and %d, want 0 and 500", c.Provider[0].Daily, c.Provider[1].Daily)
	}
}

func TestPresetProblems(t *testing.T) {
	t.Parallel()
	d := dir(t)
	tests := []struct {
		name, provider string
		want           []string // each must appear in the error
		not            []string // none may
	}{
		{"163 without a login", `preset = "163"`, []string{`provider[0].username: required with preset = "163"`, "授权码"}, nil},
		{"gmail without a login", `preset = "gmail"`, []string{`provider[0].username: required with preset = "gmail"`, "app password"}, nil},
		{"unknown preset", `preset = "yahoo"`,
			[]string{`provider[0].preset: unknown preset "yahoo"`, `"163", "gmail", "office365", "qq", "ses"`}, []string{".host"}},
		{"ses without region or host", `preset = "ses"`,
			[]string{`provider[0].region: required with preset = "ses"`, "or set host"}, []string{".host"}},
		{"ses bad region", "preset = \"ses\"\nregion = \"us east 1\"", []string{"provider[0].region:", "not an AWS region"}, nil},
		{"ses region and host disagree", "preset = \"ses\"\nregion = \"eu-west-1\"\nhost = \"email-smtp.us-east-1.amazonaws.com\"",
			[]string{"provider[0].region:", "does not match host"}, nil},
		{"region without ses", "preset = \"gmail\"\nregion = \"eu-west-1\"", []string{`provider[0].region: only used with preset = "ses"`}, nil},
		{"region without preset", "host = \"smtp.example.com\"\nregion = \"eu-west-1\"", []string{`provider[0].region: only used with preset = "ses"`}, nil},
		{"tls without a documented port", "preset = \"163\"\ntls = \"starttls\"", []string{`provider[0].port: preset "163" documents no port for tls = "starttls"`}, nil},
		{"port without a documented tls", "preset = \"qq\"\nport = 25", []string{`provider[0].tls: preset "qq" documents no port 25`}, nil},
		{"preset key typo", "presett = \"qq\"", []string{"provider.presett: unknown key"}, nil},
		{"several at once", "preset = \"nope\"\n[[provider]]\npreset = \"ses\"\nconnections = -1",
			[]string{"provider[0].preset:", "provider[1].region:", "provider[1].connections:"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(campaignOnly+"[[provider]]\n"+tt.provider+"\n", d, env(nil))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q contains %q", err, w)
				}
			}
		})
	}
}

func TestLoginHint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    Provider
		want []string // each must appear; none means an empty hint
	}{
		{"163", Provider{Preset: "163", Host: "smtp.163.com", PasswordEnv: "PW163"}, []string{"SMTP", "web settings", "password_env (PW163)", "授权码", "not the web password"}},
		{"163 by host", Provider{Host: "smtp.163.com"}, []string{"SMTP", "web settings", "password_env", "授权码"}},
		{"qq", Provider{Preset: "qq", PasswordEnv: "PWQQ"}, []string{"SMTP", "web settings", "password_env (PWQQ)", "授权码", "campaign.from", "login address"}},
		{"qq by host", Provider{Host: "SMTP.QQ.COM"}, []string{"授权码", "campaign.from"}},
		{"gmail", Provider{Preset: "gmail"}, []string{"app password"}},
		{"gmail by host", Provider{Host: "smtp.gmail.com"}, []string{"app password"}},
		{"office365", Provider{Preset: "office365"}, []string{"SMTP AUTH", "enabled for this mailbox"}},
		{"ses", Provider{Preset: "ses", Host: "email-smtp.us-east-1.amazonaws.com"}, nil},
		{"other", Provider{Host: "smtp.example.com"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.p.Password = "hunter2-secret"
			h := tt.p.LoginHint()
			if len(tt.want) == 0 && h != "" {
				t.Errorf("want no hint, got %q", h)
			}
			for _, w := range tt.want {
				if !strings.Contains(h, w) {
					t.Errorf("hint %q does not contain %q", h, w)
				}
			}
			if strings.Contains(h, "hunter2") {
				t.Errorf("hint leaks the password: %q", h)
			}
			if strings.Count(h, ". ") > 0 {
				t.Errorf("hint is more than one sentence: %q", h)
			}
		})
	}
}

func TestQQSenderIsLogin(t *testing.T) {
	t.Parallel()
	d := dir(t)
	pw := env(map[string]string{"PW": "secret"})
	qq := func(provider, from string) string {
		return strings.Replace(campaignOnly, "news@example.com", from, 1) + "[[provider]]\n" + provider + "\npassword_env = \"PW\"\n"
	}
	tests := []struct {
		name, text string
		want       string // "" means valid
	}{
		{"preset, same", qq(`preset = "qq"`+"\nusername = \"12345@qq.com\"", "12345@qq.com"), ""},
		{"preset, same but case", qq(`preset = "qq"`+"\nusername = \"News@QQ.com\"", "news@qq.com"), ""},
		{"preset, other", qq(`preset = "qq"`+"\nusername = \"12345@qq.com\"", "news@example.com"),
			`campaign.from: "news@example.com" must be provider[0].username "12345@qq.com"`},
		{"host, other", qq("host = \"smtp.qq.com\"\ntls = \"tls\"\nusername = \"12345@qq.com\"", "news@example.com"),
			`campaign.from: "news@example.com" must be provider[0].username`},
		{"second provider", qq("preset = \"gmail\"\nusername = \"news@example.com\"\npassword_env = \"PW\"\n[[provider]]\npreset = \"qq\"\nusername = \"12345@qq.com\"", "news@example.com"),
			`must be provider[1].username`},
		{"other provider", qq("preset = \"163\"\nusername = \"me@163.com\"", "news@example.com"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(tt.text, d, pw)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v does not contain %q", err, tt.want)
			}
		})
	}
	// Only with a [campaign]: a worker takes its campaigns from the queue.
	worker := "[[provider]]\npreset = \"qq\"\nusername = \"12345@qq.com\"\npassword_env = \"PW\"\n"
	if _, err := ParseWorker(worker, d, pw); err != nil {
		t.Fatalf("worker without [campaign]: %v", err)
	}
}

func TestDomainLimits(t *testing.T) {
	t.Parallel()
	d := dir(t)
	c, err := Parse(valid+"[domain.\"Gmail.com\"]\nrate = 20\n[domain.\"yahoo.com\"]\nrate = 5\nburst = 2\ncooldown = \"1m\"\n", d, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if g := c.DomainPolicy("gmail.com"); g.Rate != 20 || g.Burst != 2 || g.Cooldown.Duration != DefaultCooldown {
		t.Errorf("gmail.com: %+v", g)
	}
	if y := c.DomainPolicy("yahoo.com"); y.Burst != 2 || y.Cooldown.Duration != time.Minute {
		t.Errorf("yahoo.com: %+v", y)
	}
	if o := c.DomainPolicy("example.com"); o.Rate != 0 || o.Cooldown.Duration != DefaultCooldown {
		t.Errorf("a domain without a section: %+v", o)
	}
	_, err = Parse(valid+"[domain.\"nodot\"]\nrate = -1\ncolour = 1\n", d, env(nil))
	for _, want := range []string{`domain."nodot": not a domain name`, `domain."nodot".rate: -1: between 0.0001 and 1000000, or 0 for unlimited`, "colour: unknown key"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}

// herald serve and the queue commands can have a configuration of their own:
// [queue] and [unsubscribe], no providers and so no SMTP passwords.
func TestLoadQueueNeedsNoProviders(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "serve.toml")
	os.WriteFile(path, []byte("[queue]\npath = \"q.db\"\n[unsubscribe]\nurl = \"https://news.example.com/u\"\nsecret_env = \"HERALD_TEST_UNSUB_SECRET\"\n"), 0o600)
	t.Setenv("HERALD_TEST_UNSUB_SECRET", "0123456789abcdef0123")
	cfg, err := LoadQueue(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.Unsubscribe.Secret) != "0123456789abcdef0123" || cfg.Queue.Path != filepath.Join(dir, "q.db") {
		t.Fatalf("%+v", cfg.Queue)
	}
	if _, err := LoadWorker(path); err == nil || !strings.Contains(err.Error(), "provider") {
		t.Fatalf("a worker without providers: %v", err)
	}
	// A provider that is given is still checked.
	os.WriteFile(path, []byte("[queue]\npath = \"q.db\"\n[[provider]]\nhost = \"smtp.example.com\"\nport = 99999\n"), 0o600)
	if _, err := LoadQueue(path); err == nil || !strings.Contains(err.Error(), "provider[0].port") {
		t.Fatalf("bad provider: %v", err)
	}
}
