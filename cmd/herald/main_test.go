package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldmail/herald/internal/redistest"
	"github.com/heraldmail/herald/sink"
)

// herald is the binary under test, built once.
var herald string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "herald-cmd-test")
	if err != nil {
		panic(err)
	}
	herald = filepath.Join(dir, "herald")
	build := exec.Command("go", "build", "-race", "-o", herald, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		// -race needs cgo; fall back to a plain build.
		build = exec.Command("go", "build", "-o", herald, ".")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			panic(err)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type campaignDir struct {
	t    *testing.T
	dir  string
	conf string
}

// newCampaign writes a campaign of n recipients sent to s.
func newCampaign(t *testing.T, s *sink.Server, n int, providerExtra string) *campaignDir {
	return newCampaignOn(t, s, n, providerExtra, "")
}

// newCampaignOn is newCampaign with a [queue] section.
func newCampaignOn(t *testing.T, s *sink.Server, n int, providerExtra, queueTOML string) *campaignDir {
	t.Helper()
	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("email,name\n")
	for i := range n {
		fmt.Fprintf(&csv, "u%d@example.com,User %d\n", i, i)
	}
	files := map[string]string{
		"recipients.csv": csv.String(),
		"body.txt":       "Hello {{.name}}\n",
	}
	host, port, _ := strings.Cut(s.Addr(), ":")
	files["herald.toml"] = fmt.Sprintf(`
[campaign]
id = "cmdtest"
from = "T <t@example.com>"
subject = "Hi {{.name}}"
text = "body.txt"
recipients = "recipients.csv"
%s
[retry]
backoff = "10ms"
max_backoff = "10ms"
[[provider]]
name = "local"
host = %q
port = %s
tls = "none"
%s
`, queueTOML, host, port, providerExtra)
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &campaignDir{t: t, dir: dir, conf: filepath.Join(dir, "herald.toml")}
}

func startSink(t *testing.T, cfg sink.Config) *sink.Server {
	t.Helper()
	s, err := sink.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// herald runs the binary and returns its exit status and output.
func runHerald(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(herald, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

func TestExitStatuses(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Faults: sink.Faults{Rules: []*sink.Rule{{Match: "u3@", Stage: sink.StageRcpt, Code: 550, Message: "5.1.1 no such user"}}}})

	c := newCampaign(t, s, 20, "")
	code, out, errOut := runHerald(t, nil, "send", "--config", c.conf)
	if code != exitFailed || !strings.Contains(out, "19 sent, 1 failed") || !strings.Contains(errOut, "herald report") {
		t.Fatalf("one hard bounce: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runHerald(t, nil, "report", "--config", c.conf, "--failed")
	if code != 0 || !strings.Contains(out, "u3@example.com,failed,1,local,550 5.1.1 no such user") || strings.Count(out, "\n") != 2 {
		t.Fatalf("report --failed: exit %d\n%s", code, out)
	}
	code, out, _ = runHerald(t, nil, "send", "--config", c.conf)
	if code != exitFailed || !strings.Contains(out, "this run: 0 sent") {
		t.Fatalf("a finished campaign must not send again: exit %d %s", code, out)
	}

	bad := newCampaign(t, s, 5, "colour = \"red\"\nconnections = -1")
	code, _, errOut = runHerald(t, nil, "send", "--config", bad.conf)
	if code != exitInput || !strings.Contains(errOut, "provider.colour: unknown key") || !strings.Contains(errOut, "provider[0].connections") {
		t.Fatalf("bad config: exit %d\n%s", code, errOut)
	}

	tmpl := newCampaign(t, s, 5, "")
	os.WriteFile(filepath.Join(tmpl.dir, "body.txt"), []byte("Hello {{.name}}\nYour {{.plan}}\n"), 0o644)
	code, _, errOut = runHerald(t, nil, "send", "--config", tmpl.conf)
	if code != exitInput || !strings.Contains(errOut, "body.txt:2:") || !strings.Contains(errOut, `"plan"`) {
		t.Fatalf("missing column: exit %d\n%s", code, errOut)
	}

	code, out, _ = runHerald(t, nil, "send", "--config", tmpl.conf, "--dry-run")
	if code != exitInput {
		t.Fatalf("dry run with a missing column: exit %d %s", code, out)
	}

	code, _, errOut = runHerald(t, nil, "send", "--help")
	if code != 0 || !strings.Contains(errOut, "--dry-run") {
		t.Fatalf("--help: %d %s", code, errOut)
	}
	for _, cmd := range []string{"preview", "report", "sink"} {
		if code, _, errOut := runHerald(t, nil, cmd, "--help"); code != 0 || !strings.Contains(errOut, "Usage: herald "+cmd) {
			t.Errorf("%s --help: %d %s", cmd, code, errOut)
		}
	}
}

func TestAuthFailureNamesProviderWithoutSecret(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Auth: &sink.Credentials{Username: "news", Password: "right"}, AllowInsecureAuth: true})
	c := newCampaign(t, s, 5, "username = \"news\"\npassword_env = \"HERALD_TEST_PW\"")
	code, out, errOut := runHerald(t, []string{"HERALD_TEST_PW=sup3r-s3cret-value"}, "send", "--config", c.conf)
	if code != exitInput || !strings.Contains(errOut, "refused the login") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if strings.Contains(out+errOut, "sup3r-s3cret-value") {
		t.Fatal("the password was printed")
	}
}

func TestPreview(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	c := newCampaign(t, s, 5, "")
	code, out, errOut := runHerald(t, nil, "preview", "--config", c.conf, "--row", "3")
	if code != 0 || !strings.Contains(out, "Subject: Hi User 2") || !strings.Contains(out, "To: <u2@example.com>") || !strings.Contains(out, "Hello User 2") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if code, _, _ := runHerald(t, nil, "preview", "--config", c.conf, "--row", "9"); code != exitInput {
		t.Fatalf("row past the end: exit %d", code)
	}
	if s.Stats().Sessions != 0 {
		t.Fatal("preview connected to the server")
	}
}

// waitFor polls until cond holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSignalThenResume(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	const n = 3000
	c := newCampaign(t, s, n, "rate = 1000\nburst = 10\nconnections = 4")
	cmd, out, errb := startSend(t, c.conf)
	waitFor(t, 30*time.Second, func() bool { return s.Stats().Messages >= 300 })
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitInterrupted {
		t.Fatalf("SIGINT: %v\n%s\n%s", err, out.String(), errb.String())
	}
	if !strings.Contains(errb.String(), "run the same command again to resume") {
		t.Errorf("no resume hint:\n%s", errb.String())
	}
	first := s.Stats().Messages
	if first >= n {
		t.Fatalf("the signal did not interrupt: %d sent", first)
	}
	code, o, e := runHerald(t, nil, "send", "--config", c.conf)
	if code != 0 {
		t.Fatalf("resume: exit %d\n%s\n%s", code, o, e)
	}
	if strings.Contains(e, "queued again") {
		t.Errorf("a graceful stop left jobs in flight:\n%s", e)
	}
	for i := range n {
		if got := s.Received(fmt.Sprintf("u%d@example.com", i)); got != 1 {
			t.Fatalf("u%d received %d times after SIGINT and resume", i, got)
		}
	}
}

// TestKillThenResume kills herald send with SIGKILL three times at full
// speed (no rate): nothing may be lost, and each kill may duplicate at
// most one message per connection (the one whose reply was in flight),
// because an outcome is in the journal before the next data leaves.
func TestKillThenResume(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	const n, conns, kills = 6000, 4, 3
	c := newCampaign(t, s, n, fmt.Sprintf("rate = 0\nconnections = %d", conns))
	for k := 1; k <= kills; k++ {
		cmd := exec.Command(herald, "send", "--config", c.conf)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		at := s.Stats().Messages + 400
		waitFor(t, 30*time.Second, func() bool { return s.Stats().Messages >= at })
		cmd.Process.Kill()
		cmd.Wait()
		t.Logf("kill %d at %d messages; %s", k, s.Stats().Messages, strings.TrimSpace(firstLine(errb.String(), "queued again")))
	}
	code, o, e := runHerald(t, nil, "send", "--config", c.conf)
	if code != 0 {
		t.Fatalf("resume after kill: exit %d\n%s\n%s", code, o, e)
	}
	dups := duplicates(t, s, n)
	t.Logf("%d kill -9 at full speed over %d connections: %d duplicates of %d (herald said: %s)", kills, conns, dups, n, strings.TrimSpace(firstLine(o+e, "queued again")))
	if dups > kills*conns {
		t.Fatalf("%d duplicates after %d kills, more than one per connection per kill (%d)", dups, kills, kills*conns)
	}
}

// startSend starts herald send on conf in the background, keeping its
// output.
func startSend(t *testing.T, conf string) (cmd *exec.Cmd, out, errb *bytes.Buffer) {
	t.Helper()
	cmd = exec.Command(herald, "send", "--config", conf)
	out, errb = &bytes.Buffer{}, &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out, errb
}

func firstLine(s, substr string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			return l
		}
	}
	return ""
}

func TestSecondSignalStopsAtOnce(t *testing.T) {
	t.Parallel()
	// Every reply takes a minute: sends in flight would hold a graceful stop.
	s := startSink(t, sink.Config{Faults: sink.Faults{Latency: time.Minute}})
	c := newCampaign(t, s, 20, "connections = 2")
	cmd := exec.Command(herald, "send", "--config", c.conf)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() bool { return s.Stats().Sessions >= 2 })
	time.Sleep(100 * time.Millisecond) // the MAIL commands are in flight
	cmd.Process.Signal(syscall.SIGINT)
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitInterrupted {
			t.Fatalf("exit: %v\n%s", err, errb.String())
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("a second SIGINT did not stop herald within 5 s while replies were pending:\n%s", errb.String())
	}
	if !strings.Contains(errb.String(), "stopping now") {
		t.Errorf("no word of the hard stop:\n%s", errb.String())
	}
}

// TestRedisSendKillThenResume runs herald send on a real redis-server at
// full speed, kills it mid-campaign and runs it again: the dead run's
// leases come back after queue.lease, nothing is lost, and at most one
// message per connection is sent twice (an outcome is committed before the
// next data leaves its connection).
func TestRedisSendKillThenResume(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s := startSink(t, sink.Config{})
	const n, conns = 2000, 4
	c := newCampaignOn(t, s, n, fmt.Sprintf("rate = 0\nconnections = %d", conns),
		fmt.Sprintf("[queue]\nbackend = \"redis\"\nurl = %q\nlease = \"3s\"", rs.URL()))
	cmd := exec.Command(herald, "send", "--config", c.conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() bool { return s.Stats().Messages >= 400 })
	cmd.Process.Kill()
	cmd.Wait()
	code, o, e := runHerald(t, nil, "send", "--config", c.conf)
	if code != 0 || !strings.Contains(e, "resuming cmdtest") {
		t.Fatalf("resume on redis: exit %d\n%s\n%s", code, o, e)
	}
	dups := duplicates(t, s, n)
	t.Logf("redis, kill -9 mid-campaign at full speed: %d duplicates of %d", dups, n)
	if dups > conns {
		t.Fatalf("%d duplicates, more than one per connection (%d)", dups, conns)
	}
	code, out, _ := runHerald(t, nil, "report", "--config", c.conf)
	if code != 0 || strings.Count(out, ",sent,") != n {
		t.Fatalf("report on redis: exit %d, %d sent rows", code, strings.Count(out, ",sent,"))
	}
}

// TestRedisPauseResumeCancel pauses a running send from another process:
// it stops within a second and delivers nothing more than was in flight;
// after resume everyone has the message once. Cancel keeps the record.
func TestRedisPauseResumeCancel(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s := startSink(t, sink.Config{})
	const n, conns = 3000, 4
	queueTOML := fmt.Sprintf("[queue]\nbackend = \"redis\"\nurl = %q\nlease = \"3s\"", rs.URL())
	c := newCampaignOn(t, s, n, fmt.Sprintf("rate = 500\nburst = 5\nconnections = %d", conns), queueTOML)
	cmd := exec.Command(herald, "send", "--config", c.conf)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() bool { return s.Stats().Messages >= 300 })
	if code, out, e := runHerald(t, nil, "pause", "--config", c.conf); code != 0 || !strings.Contains(out, "paused") {
		t.Fatalf("pause: %d %s %s", code, out, e)
	}
	atPause := s.Stats().Messages
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitInterrupted || !strings.Contains(errb.String(), "campaign paused") {
		t.Fatalf("the running send did not stop on pause: %v\n%s", err, errb.String())
	}
	after := s.Stats().Messages - atPause
	t.Logf("delivered after the pause command returned: %d (connections %d)", after, conns)
	// The pause is seen within statusPoll (500 ms): at 500 msgs/s that
	// bounds what may still go out, plus the sends in flight.
	if after > 250+conns {
		t.Fatalf("%d messages delivered after the pause", after)
	}
	time.Sleep(time.Second)
	if got := s.Stats().Messages; got != atPause+after {
		t.Fatalf("delivery went on while paused: %d then %d", atPause+after, got)
	}
	code, out, _ := runHerald(t, nil, "status", "--config", c.conf, "--json")
	var st statusReport
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Status != "paused" || st.Counts["sent"] != atPause+after || st.Open != n-st.Counts["sent"] {
		t.Fatalf("status: %d %s", code, out)
	}
	if code, _, _ := runHerald(t, nil, "resume", "--config", c.conf); code != 0 {
		t.Fatal("resume failed")
	}
	if code, o, e := runHerald(t, nil, "send", "--config", c.conf); code != 0 {
		t.Fatalf("send after resume: %d\n%s\n%s", code, o, e)
	}
	for i := range n {
		if got := s.Received(fmt.Sprintf("u%d@example.com", i)); got != 1 {
			t.Fatalf("u%d received %d times", i, got)
		}
	}

	// Cancel a second campaign half way: the sent stay recorded.
	c2 := newCampaignOn(t, s, 10, "", strings.Replace(queueTOML, `lease = "3s"`, "lease = \"3s\"", 1))
	os.WriteFile(c2.conf, []byte(strings.Replace(mustRead(t, c2.conf), `id = "cmdtest"`, `id = "cmdtest2"`, 1)), 0o644)
	if code, _, e := runHerald(t, nil, "send", "--config", c2.conf, "--dry-run"); code != 0 {
		t.Fatalf("dry run: %s", e)
	}
	if code, _, e := runHerald(t, nil, "cancel", "--config", c2.conf); code != exitInput || !strings.Contains(e, "no campaign") {
		t.Fatalf("cancel before planning: %d %s", code, e)
	}
	code, out, _ = runHerald(t, nil, "cancel", "--config", c.conf)
	if code != 0 || !strings.Contains(out, "3000 sent, 0 to go") {
		t.Fatalf("cancel of a finished campaign: %d %s", code, out)
	}
	if code, _, e := runHerald(t, nil, "send", "--config", c.conf); code != exitInput || !strings.Contains(e, "cancelled") {
		t.Fatalf("send of a cancelled campaign: %d %s", code, e)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestEnqueueThenStatus(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	c := newCampaign(t, s, 50, "")
	code, out, e := runHerald(t, nil, "enqueue", "--config", c.conf)
	if code != 0 || strings.TrimSpace(out) != "cmdtest" || !strings.Contains(e, "50 new recipients") {
		t.Fatalf("enqueue: %d %q %s", code, out, e)
	}
	if code, _, e := runHerald(t, nil, "enqueue", "--config", c.conf); code != 0 || !strings.Contains(e, "nothing added") {
		t.Fatalf("second enqueue: %d %s", code, e)
	}
	code, out, _ = runHerald(t, nil, "status", "--config", c.conf)
	if code != 0 || !strings.Contains(out, "campaign cmdtest: active") || !strings.Contains(out, "50 recipients: 0 sent") {
		t.Fatalf("status: %d %s", code, out)
	}
	if s.Stats().Sessions != 0 {
		t.Fatal("enqueue sent mail")
	}
	if code, _, _ := runHerald(t, nil, "send", "--config", c.conf); code != 0 || s.Stats().Messages != 50 {
		t.Fatalf("send after enqueue: %d, %d messages", code, s.Stats().Messages)
	}
}

// TestRedisRestartMidCampaign restarts redis-server (appendonly) while a
// send runs: the client retries, and every recipient gets the message.
func TestRedisRestartMidCampaign(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	s := startSink(t, sink.Config{})
	const n = 2000
	c := newCampaignOn(t, s, n, "rate = 1000\nburst = 10\nconnections = 4",
		fmt.Sprintf("[queue]\nbackend = \"redis\"\nurl = %q\nlease = \"3s\"", rs.URL()))
	cmd, _, errb := startSend(t, c.conf)
	waitFor(t, 30*time.Second, func() bool { return s.Stats().Messages >= 500 })
	rs.Restart()
	err := cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != 0 {
		// The send may stop if Redis stays away past the client's retries;
		// running it again must finish the campaign.
		t.Logf("send stopped during the restart (exit %d): %s", code, errb.String())
		if code, o, e := runHerald(t, nil, "send", "--config", c.conf); code != 0 {
			t.Fatalf("resume after the restart: %d\n%s\n%s", code, o, e)
		}
	}
	dups := duplicates(t, s, n)
	t.Logf("redis-server restarted mid-campaign: exit %d, %d duplicates of %d", code, dups, n)
}

// duplicates checks that each of the n recipients u0..u{n-1} got the
// message at least once and returns how many extra copies the server got.
func duplicates(t *testing.T, s *sink.Server, n int) int {
	t.Helper()
	return duplicatesOf(t, s, "u", n)
}

func TestSinkRefusesBadInput(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"sink", "--listen", "192.0.2.1:2525"}, "not a loopback address"},
		{[]string{"sink", "--listen", "nonsense"}, "--listen"},
		{[]string{"sink", "--auth-user", "u"}, "--auth-password-env"},
		{[]string{"sink", "--procs", "0"}, "--procs"},
		{[]string{"sink", "--rcpt-perm", "1.5"}, "--rcpt-perm"},
		{[]string{"sink", "--data-temp", "-0.1"}, "--data-temp"},
		{[]string{"sink", "--rcpt-temp", "0.6", "--rcpt-perm", "0.6"}, "--rcpt-temp + --rcpt-perm"},
		{[]string{"sink", "--data-perm", "0.5", "--drop-after-data", "0.6"}, "--drop-after-data"},
		{[]string{"sink", "--throttle-burst", "5"}, "--throttle-burst"},
		{[]string{"sink", "--latency-rcpt", "-1s"}, "--latency-rcpt"},
		{[]string{"sink", "--tls-cert", "x.pem"}, "--tls-key"},
		{[]string{"sink", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"}, "--tls-cert"},
		{[]string{"sink", "--tls-self-signed", "--tls-cert", "a", "--tls-key", "b"}, "--tls-self-signed"},
	} {
		code, _, e := runHerald(t, nil, tt.args...)
		if code != exitInput || !strings.Contains(e, tt.want) {
			t.Errorf("%v: exit %d, %q", tt.args, code, e)
		}
	}
}
