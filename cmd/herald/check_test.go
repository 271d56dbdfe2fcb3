package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/heraldmail/herald/internal/dnstest"
	"github.com/heraldmail/herald/sink"
)

// checkKeys are the DKIM keys of the check tests: the one herald signs
// with, and another.
type checkKeys struct {
	pem    []byte // herald's private key (PKCS#8)
	record string // its DKIM record
	other  string // the record of another key
}

func newCheckKeys(t *testing.T) checkKeys {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return checkKeys{
		pem:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		record: "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub),
		other:  "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(otherPub),
	}
}

// checkZone is a good domain, d, and broken ones, each with one defect:
// its name says which.
func checkZone(k checkKeys) dnstest.Zone {
	z := dnstest.Zone{
		// 163 Mail's include, as its real zone would answer.
		"spf.163.com": {"v=spf1 ip4:220.181.12.0/22 ip4:123.126.96.0/24 -all"},
		// For the example configuration (config.toml): a relay's address.
		"example.com":        {"v=spf1 ip4:192.0.2.10 -all"},
		"_dmarc.example.com": {"v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com"},
	}
	good := func(d string) {
		z[d] = []string{"google-site-verification=abc", "v=spf1 include:_spf." + d + " -all"}
		z["_spf."+d] = []string{"v=spf1 ip4:192.0.2.0/24 include:spf.163.com -all"}
		z["s1._domainkey."+d] = []string{k.record}
		z["_dmarc."+d] = []string{"v=DMARC1; p=reject; rua=mailto:dmarc@" + d}
	}
	for _, d := range []string{"good.example", "nospf.example", "twospf.example", "deepspf.example", "noinclude.example",
		"badkey.example", "nodkim.example", "nodmarc.example", "monitor.example", "misaligned.example"} {
		good(d)
	}
	delete(z, "nospf.example")
	z["twospf.example"] = append(z["twospf.example"], "v=spf1 ip4:198.51.100.7 -all")
	// 2 + 3 + 3 + 4 = 12 DNS-querying terms through the includes.
	z["deepspf.example"] = []string{"v=spf1 include:spf.163.com include:l1.deepspf.example -all"}
	z["l1.deepspf.example"] = []string{"v=spf1 a mx include:l2.deepspf.example -all"}
	z["l2.deepspf.example"] = []string{"v=spf1 a mx include:l3.deepspf.example -all"}
	z["l3.deepspf.example"] = []string{"v=spf1 a mx ptr exists:%{i}.x.deepspf.example -all"}
	z["noinclude.example"] = []string{"v=spf1 ip4:192.0.2.1 -all"}
	z["s1._domainkey.badkey.example"] = []string{k.other}
	delete(z, "s1._domainkey.nodkim.example")
	delete(z, "_dmarc.nodmarc.example")
	z["_dmarc.monitor.example"] = []string{"v=DMARC1; p=none; rua=mailto:dmarc@monitor.example"}
	// Signed as mail.…, bounces at bounce.…: aligned only under relaxed
	// alignment, and the record asks for strict.
	z["_dmarc.misaligned.example"] = []string{"v=DMARC1; p=reject; adkim=s; aspf=s"}
	z["s1._domainkey.mail.misaligned.example"] = []string{k.record}
	z["bounce.misaligned.example"] = []string{"v=spf1 include:spf.163.com -all"}
	return z
}

// newCheckCampaign writes a campaign from news@domain, DKIM-signed with
// k as s1._domainkey.<dkimDomain>, with one-click unsubscribe and a
// List-Id; provider is its [[provider]] section.
func newCheckCampaign(t *testing.T, k checkKeys, domain, dkimDomain, bounce, provider string) string {
	t.Helper()
	dir := t.TempDir()
	if bounce != "" {
		bounce = fmt.Sprintf("bounce_address = %q", bounce)
	}
	files := map[string]string{
		"recipients.csv": "email,name\nann@example.org,Ann\nbob@example.org,Bob\n",
		"body.txt":       "Hello {{.name}}\n",
		"dkim.pem":       string(k.pem),
		"herald.toml": fmt.Sprintf(`
[campaign]
id = "check"
from = "News <news@%s>"
subject = "Hi {{.name}}"
text = "body.txt"
recipients = "recipients.csv"
list_id = "News <news.%s>"
%s
[unsubscribe]
url = "https://%s/unsubscribe"
secret_env = "HERALD_CHECK_SECRET"
[dkim]
domain = %q
selector = "s1"
private_key = "dkim.pem"
%s
`, domain, domain, bounce, domain, dkimDomain, provider),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "herald.toml")
}

// preset163 is a 163 Mail provider (not connected to: --no-connect).
func preset163(domain string) string {
	return fmt.Sprintf("[[provider]]\npreset = \"163\"\nusername = \"news@%s\"\npassword_env = \"HERALD_CHECK_PW\"\n", domain)
}

// checkLines are the lines of a check's output of one status.
func checkLines(out, status string) []string {
	var l []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, status+"  ") {
			l = append(l, line)
		}
	}
	return l
}

// TestCheckZones checks a good domain and each broken one through the
// binary against a DNS server on loopback: each defect gives its FAIL (or
// WARN) and fix, and nothing else fails.
func TestCheckZones(t *testing.T) {
	t.Parallel()
	k := newCheckKeys(t)
	dns := dnstest.Start(t, checkZone(k))
	for _, tc := range []struct {
		domain, dkim, bounce string
		code                 int
		status               string   // the line of the defect
		want                 []string // in its text and fix
	}{
		{domain: "good.example", code: 0},
		{domain: "nospf.example", code: 1, status: "FAIL",
			want: []string{"spf      nospf.example has no SPF record", `fix: publish one TXT record at nospf.example: "v=spf1 include:spf.163.com ~all"`}},
		{domain: "twospf.example", code: 1, status: "FAIL",
			want: []string{"twospf.example has 2 SPF records", "permerror", "fix: merge them into one record"}},
		{domain: "deepspf.example", code: 1, status: "FAIL",
			want: []string{"needs 12 DNS lookups counted through its includes, over the limit of 10", "include:spf.163.com (1), include:l1.deepspf.example (11)"}},
		{domain: "noinclude.example", code: 1, status: "FAIL",
			want: []string{"the SPF record of noinclude.example does not authorise 163 Mail's servers (include:spf.163.com)",
				`fix: add include:spf.163.com to the record of noinclude.example, before its all: "v=spf1 ip4:192.0.2.1 include:spf.163.com -all"`}},
		{domain: "badkey.example", code: 1, status: "FAIL",
			want: []string{"the public key at s1._domainkey.badkey.example is not the one of dkim.private_key", "fix: publish one TXT record at s1._domainkey.badkey.example: \"" + k.record + "\""}},
		{domain: "nodkim.example", code: 1, status: "FAIL",
			want: []string{"no DKIM record at s1._domainkey.nodkim.example", "fix: publish one TXT record at s1._domainkey.nodkim.example: \"" + k.record + "\""}},
		{domain: "nodmarc.example", code: 1, status: "FAIL",
			want: []string{"no DMARC record at _dmarc.nodmarc.example", `fix: publish a TXT record at _dmarc.nodmarc.example: "v=DMARC1; p=none;`}},
		{domain: "monitor.example", code: 0, status: "WARN",
			want: []string{"p=none is monitoring only", "fix: once the aggregate reports show all your mail aligned, move to p=quarantine"}},
		{domain: "misaligned.example", dkim: "mail.misaligned.example", bounce: "bounces@bounce.misaligned.example", code: 1, status: "FAIL",
			want: []string{"From domain misaligned.example aligns with neither: DKIM d=mail.misaligned.example (adkim strict) does not align; SPF envelope domain bounce.misaligned.example (aspf strict) does not align",
				`fix: sign with dkim.domain = "misaligned.example", or relax the record to adkim=r; set campaign.bounce_address at misaligned.example, or relax the record to aspf=r`}},
	} {
		t.Run(tc.domain, func(t *testing.T) {
			t.Parallel()
			dkim := tc.dkim
			if dkim == "" {
				dkim = tc.domain
			}
			conf := newCheckCampaign(t, k, tc.domain, dkim, tc.bounce, preset163(tc.domain))
			code, out, errOut := runHerald(t, nil, "check", "--config", conf, "--resolver", dns.Addr(), "--no-connect")
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tc.code, out, errOut)
			}
			bad := append(checkLines(out, "FAIL"), checkLines(out, "WARN")...)
			if tc.status == "" {
				if len(bad) != 0 || len(checkLines(out, "PASS")) < 9 {
					t.Fatalf("the good zone:\n%s", out)
				}
				return
			}
			if len(bad) != 1 || !strings.HasPrefix(bad[0], tc.status) {
				t.Fatalf("want one %s line, the defect's:\n%s", tc.status, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("no %q in\n%s", w, out)
				}
			}
		})
	}
}

// TestCheckExampleConfig checks the documented example configuration
// (config.toml) against the test DNS server: every check is printed, and
// its missing one-click unsubscribe fails the check.
func TestCheckExampleConfig(t *testing.T) {
	t.Parallel()
	dns := dnstest.Start(t, checkZone(newCheckKeys(t)))
	code, out, errOut := runHerald(t, nil, "check", "--config", "../../config.toml", "--resolver", dns.Addr(), "--no-connect")
	if code != exitFailed {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, w := range []string{
		`PASS  spf      example.com: "v=spf1 ip4:192.0.2.10 -all" (0 of 10 DNS lookups)`,
		"WARN  spf      provider local (127.0.0.1:2525): herald cannot tell which address this relay sends from",
		"WARN  dkim     no [dkim]: herald does not sign",
		`PASS  dmarc    _dmarc.example.com: "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com": p=quarantine (adkim=r, aspf=r)`,
		"PASS  dmarc    From domain example.com aligns with SPF envelope domain example.com (aspf relaxed)",
		"FAIL  headers  no List-Unsubscribe: Gmail and Yahoo require one-click unsubscribe (RFC 8058) of bulk senders",
		"fix: add an [unsubscribe] section",
		"WARN  headers  no List-Id (RFC 2919)",
		"PASS  headers  Message-ID: <",
		"PASS  headers  Date: ",
		"5 passed, 3 warnings, 1 failed",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("no %q in\n%s", w, out)
		}
	}
	code, out, _ = runHerald(t, nil, "check", "--config", "../../config.toml", "--resolver", dns.Addr(), "--no-connect", "--json")
	var rep struct {
		Results []struct{ Check, Status, Text, Fix string }
		Failed  int
	}
	if err := json.Unmarshal([]byte(out), &rep); code != exitFailed || err != nil || rep.Failed != 1 || len(rep.Results) != 9 {
		t.Fatalf("--json: exit %d, %v\n%s", code, err, out)
	}
}

// TestCheckProvider probes the provider through the binary, against the
// sink: with and without AUTH, with STARTTLS, and nothing listening.
func TestCheckProvider(t *testing.T) {
	t.Parallel()
	k := newCheckKeys(t)
	dns := dnstest.Start(t, checkZone(k))
	auth := startSink(t, sink.Config{Auth: &sink.Credentials{Username: "news", Password: "right"}, AllowInsecureAuth: true})
	open := startSink(t, sink.Config{})
	tlsConf, _, err := sink.SelfSignedTLS()
	if err != nil {
		t.Fatal(err)
	}
	secure := startSink(t, sink.Config{TLSConfig: tlsConf, Auth: &sink.Credentials{Username: "news", Password: "right"}})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsConf.Certificates[0].Leaf.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	closed := startSink(t, sink.Config{})
	closedAddr := closed.Addr()
	closed.Close()

	relay := func(addr, tls, extra string) string {
		host, port, _ := strings.Cut(addr, ":")
		return fmt.Sprintf("[[provider]]\nname = \"relay\"\nhost = %q\nport = %s\ntls = %q\n%s\n", host, port, tls, extra)
	}
	login := "username = \"news\"\npassword_env = \"HERALD_CHECK_PW\""
	env := func(pw string) []string {
		return []string{"HERALD_CHECK_SECRET=0123456789abcdef0123456789", "HERALD_CHECK_PW=" + pw}
	}
	for _, tc := range []struct {
		name     string
		provider string
		pw       string
		want     []string
	}{
		{"login", relay(auth.Addr(), "none", login), "right", []string{
			"PASS  provider relay (" + auth.Addr() + "): answered, took the login, took MAIL FROM:<news@good.example>",
			"WARN  provider relay (" + auth.Addr() + `): messages go in clear text (tls = "none"), and the server does not offer STARTTLS`}},
		{"wrong password", relay(auth.Addr(), "none", login), "wrong-pa55word", []string{
			"FAIL  provider relay (" + auth.Addr() + "): the server refused the login: 535",
			`fix: check provider "relay"'s username, and the password in the environment variable HERALD_CHECK_PW`}},
		{"no login", relay(auth.Addr(), "none", ""), "", []string{
			"FAIL  provider relay (" + auth.Addr() + "): the server requires a login (set username and password_env): 502 5.7.0 Please authenticate first",
			"fix: set username and password_env in the provider's section"}},
		{"no AUTH offered", relay(open.Addr(), "none", login), "right", []string{
			"FAIL  provider relay (" + open.Addr() + "): the server does not offer AUTH, but a username is configured",
			"fix: a server that needs no login: leave username and password_env out"}},
		{"starttls", relay(secure.Addr(), "starttls", login+fmt.Sprintf("\nca_file = %q", caFile)), "right", []string{
			"PASS  provider relay (" + secure.Addr() + "): answered, encrypted with TLS 1.3 (STARTTLS), took the login, took MAIL FROM:<news@good.example>"}},
		{"nothing listening", relay(closedAddr, "none", ""), "", []string{
			"FAIL  provider relay (" + closedAddr + "): nothing accepts connections at " + closedAddr + " (connection refused)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conf := newCheckCampaign(t, k, "good.example", "good.example", "", tc.provider)
			code, out, errOut := runHerald(t, env(tc.pw), "check", "--config", conf, "--resolver", dns.Addr())
			want := exitOK
			if strings.HasPrefix(tc.want[0], "FAIL") {
				want = exitFailed
			}
			if code != want {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, want, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("no %q in\n%s", w, out)
				}
			}
			if strings.Contains(out+errOut, "wrong-pa55word") {
				t.Fatal("the password was printed")
			}
			if len(checkLines(out, "FAIL")) > 1 {
				t.Fatalf("more than the provider fails:\n%s", out)
			}
		})
	}
	if auth.Stats().Messages+secure.Stats().Messages+open.Stats().Messages != 0 {
		t.Fatal("check sent a message")
	}
}

// TestCheckInput: a bad configuration or --resolver is exit 2; without
// --no-connect the providers' passwords are required.
func TestCheckInput(t *testing.T) {
	t.Parallel()
	k := newCheckKeys(t)
	conf := newCheckCampaign(t, k, "good.example", "good.example", "", preset163("good.example"))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"check", "--config", conf, "--resolver", "no-port", "--no-connect"}, `--resolver "no-port": want HOST:PORT`},
		{[]string{"check", "--config", conf, "--resolver", "127.0.0.1:1"}, "provider[0].password_env: environment variable HERALD_CHECK_PW is empty or not set"},
		{[]string{"check", "--resolver", "127.0.0.1:1"}, "--config FILE is required"},
	} {
		code, out, errOut := runHerald(t, nil, tc.args...)
		if code != exitInput || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d\n%s\n%s", tc.args, code, out, errOut)
		}
	}
}

// TestCheckReadmeSample runs the check whose output README.md shows
// ("Pre-flight: herald check") and compares the two, but for what changes
// from run to run (addresses, the key, the date): the README stays true.
func TestCheckReadmeSample(t *testing.T) {
	t.Parallel()
	k := newCheckKeys(t)
	z := checkZone(k)
	z["example.com"] = []string{"v=spf1 include:_spf.example.com ~all"}
	z["_spf.example.com"] = []string{"v=spf1 ip4:192.0.2.0/24 include:spf.163.com -all"}
	z["news._domainkey.example.com"] = []string{k.other} // another key
	z["_dmarc.example.com"] = []string{"v=DMARC1; p=none; rua=mailto:dmarc@example.com"}
	dns := dnstest.Start(t, z)
	tlsConf, _, err := sink.SelfSignedTLS()
	if err != nil {
		t.Fatal(err)
	}
	s := startSink(t, sink.Config{TLSConfig: tlsConf, ImplicitTLS: true, Auth: &sink.Credentials{Username: "news@example.com", Password: "code"}})
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsConf.Certificates[0].Leaf.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(s.Addr(), ":")
	conf := newCheckCampaign(t, k, "example.com", "example.com", "", fmt.Sprintf(
		"[[provider]]\npreset = \"163\"\nhost = %q\nport = %s\ntls = \"tls\"\nusername = \"news@example.com\"\npassword_env = \"HERALD_163_CODE\"\nca_file = %q\n", host, port, ca))
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(strings.Replace(string(b), `selector = "s1"`, `selector = "news"`, 1), `id = "check"`, `id = "spring-2026"`, 1)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runHerald(t, []string{"HERALD_CHECK_SECRET=0123456789abcdef0123", "HERALD_163_CODE=code"}, "check", "--config", conf, "--resolver", dns.Addr())
	if code != exitFailed {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sample, _ := strings.Cut(string(readme), "\n    herald check: campaign spring-2026")
	sample, _, _ = strings.Cut(sample, "\n\n")
	var lines []string
	for _, l := range strings.Split("    herald check: campaign spring-2026"+sample, "\n") {
		lines = append(lines, strings.TrimPrefix(l, "    "))
	}
	if got, want := normaliseCheck(out), normaliseCheck(strings.Join(lines, "\n")+"\n"); got != want {
		t.Fatalf("README.md shows another output than this run's:\n%s\nthe run's:\n%s", want, got)
	}
}

// normaliseCheck blanks what differs between two runs of one check.
func normaliseCheck(s string) string {
	for _, r := range []struct{ re, with string }{
		{`127\.0\.0\.1:\d+`, "ADDR"},
		{`\(/\S*dkim\.pem\)`, "(KEYFILE)"},
		{`p=[A-Za-z0-9+/]+=*"`, `p=KEY"`},
		{`<[0-9a-f]{32}\.`, "<ID."},
		{`Date: .*`, "Date: DATE"},
	} {
		s = regexp.MustCompile(r.re).ReplaceAllString(s, r.with)
	}
	return s
}
