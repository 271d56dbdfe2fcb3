package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/sink"
)

// TestSharedRate: three worker processes share a provider's 200 msgs/s.
// Over 30 seconds the server sees 200/s within 2%, and no one-second
// window holds more than rate + burst.
func TestSharedRate(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 35 s")
	}
	t.Parallel()
	sharedRate(t, 200, 10, 6, 30*time.Second)
}

// TestSharedRate100: the same at 100 msgs/s with the default burst (10)
// and connections (4) shared by three workers: 92 msgs/s was measured
// once, 8% of the allowed rate unused.
func TestSharedRate100(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 25 s")
	}
	// Not in parallel with this package's other tests: with a burst of 1,
	// a second lost to scheduling is never made up, and run beside the
	// failover and throttle tests on 2 cores the three race-built workers
	// lost up to 5% that way (94.7 msgs/s), which says nothing about the
	// shared limit. Sequential tests run before the parallel ones.
	sharedRate(t, 100, 1, 0, 20*time.Second)
}

// sharedRate runs three workers sharing rate msgs/s (burst and
// connections: 0 for the defaults) for window after the first second,
// and checks the server's figures: rate within 2%, no one-second window
// above rate + burst.
func sharedRate(t *testing.T, rate, burst, conns int, window time.Duration) {
	t.Helper()
	c := newCluster(t, nil, sink.Config{Keep: true})
	extra := fmt.Sprintf("rate = %d", rate)
	if burst > 0 {
		extra += fmt.Sprintf("\nburst = %d", burst)
	} else {
		burst = max(1, rate/10) // config's default
	}
	if conns > 0 {
		extra += fmt.Sprintf("\nconnections = %d", conns)
	}
	c.campaign("paced", "p", rate*int(window.Seconds()+10), "")
	wconf := c.workerConf(extra)
	workers := []*worker{c.startWorker(wconf), c.startWorker(wconf), c.startWorker(wconf)}
	waitFor(t, time.Minute, func() bool { return c.s.Stats().Messages > 0 })
	time.Sleep(window + 2*time.Second)
	sent := 0
	for i, w := range workers {
		if code := w.stop(t, syscall.SIGTERM); code != 0 {
			t.Fatalf("worker %d: exit %d\n%s", i, code, w.err.String())
		}
		if w.sent() == 0 {
			t.Errorf("worker %d sent nothing", i)
		}
		sent += w.sent()
	}
	var at []time.Time
	for _, m := range c.s.Messages() {
		at = append(at, m.At)
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	// Skip the first second (the burst), then count the window.
	from := at[0].Add(time.Second)
	n := 0
	for _, a := range at {
		if !a.Before(from) && a.Before(from.Add(window)) {
			n++
		}
	}
	got := float64(n) / window.Seconds()
	busiest := 0
	for i, j := 0, 0; i < len(at); i++ {
		for at[i].Sub(at[j]) >= time.Second {
			j++
		}
		busiest = max(busiest, i-j+1)
	}
	t.Logf("3 workers sharing %d msgs/s: %.1f msgs/s over %s at the server; busiest second %d messages; %d sent in all", rate, got, window, busiest, sent)
	if got < float64(rate)*0.98 || got > float64(rate)*1.02 {
		t.Errorf("aggregate rate %.1f, want %d ± 2%%", got, rate)
	}
	// Herald takes a slot at most every 1/rate after a burst; the server
	// stamps a message when its data is accepted, some milliseconds later
	// by an amount that varies with the load on this 2-core machine (three
	// race-built workers, Redis, the sink and other tests): that jitter
	// can bring a few more messages into a one-second window at the server
	// (measured at 200/s: 211 on a quiet machine, 214 under the full
	// suite, 216 once the suite also ran Chromium and Dovecot beside it).
	// It is allowed up to 50 ms of arrivals (10 messages at 200/s). The
	// limiter's own cap is exact, with an injected clock, in
	// ratelimit/limitertest.
	if jitter := rate / 20; busiest > rate+burst+jitter {
		t.Errorf("a one-second window held %d messages, more than rate + burst (%d) + arrival jitter (%d)", busiest, rate+burst, jitter)
	}
}

// TestFailoverOnLoginRefused: the first provider refuses the login; its
// circuit opens with a clear reason, the second provider delivers every
// recipient, none fails, and the password appears nowhere.
func TestFailoverOnLoginRefused(t *testing.T) {
	t.Parallel()
	refusing := startSink(t, sink.Config{Auth: &sink.Credentials{Username: "news", Password: "other"}, AllowInsecureAuth: true})
	good := startSink(t, sink.Config{})
	c := newCampaign(t, good, 200, "")
	host, port, _ := strings.Cut(refusing.Addr(), ":")
	conf := mustRead(t, c.conf)
	// The refusing provider comes first.
	conf = strings.Replace(conf, "[[provider]]", fmt.Sprintf("[[provider]]\nname = \"first\"\nhost = %q\nport = %s\ntls = \"none\"\nusername = \"news\"\npassword_env = \"HERALD_FIRST_PW\"\n\n[[provider]]", host, port), 1)
	os.WriteFile(c.conf, []byte(conf), 0o644)
	code, out, errOut := runHerald(t, []string{"HERALD_FIRST_PW=s3cret-first-pw"}, "send", "--config", c.conf)
	if code != 0 || !strings.Contains(out, "200 sent, 0 failed") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "first") || !strings.Contains(errOut, "refused the login") {
		t.Fatalf("no word of the first provider's refusal:\n%s", errOut)
	}
	if strings.Contains(out+errOut, "s3cret-first-pw") {
		t.Fatal("the password was printed")
	}
	if good.Stats().Messages != 200 || refusing.Stats().Messages != 0 {
		t.Fatalf("good %d, refusing %d", good.Stats().Messages, refusing.Stats().Messages)
	}
}

// TestDailyQuota: a provider allowed 1,000 messages a day and a campaign
// of 1,500: 1,000 go, 500 wait; herald says why and when it continues, and
// so does herald status. On Redis, so the quota is the shared one.
func TestDailyQuota(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil, sink.Config{})
	conf := c.campaign("quota", "q", 1500, "")
	os.WriteFile(conf, []byte(strings.Replace(mustRead(t, conf), "tls = \"none\"", "tls = \"none\"\ndaily = 1000", 1)), 0o644)
	code, out, errOut := runHerald(t, nil, "send", "--config", conf)
	if code != exitInterrupted || !strings.Contains(out, "1000 sent, 0 failed") || !strings.Contains(out, "500 waiting") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "daily quota of 1000 messages spent; it frees up from") {
		t.Fatalf("no reason given:\n%s", errOut)
	}
	if got := c.s.Stats().Messages; got != 1000 {
		t.Fatalf("the server got %d", got)
	}
	code, out, _ = runHerald(t, nil, "status", "--config", conf)
	if code != 0 || !strings.Contains(out, "500 to go") || !strings.Contains(out, "1000 in the last 24 hours of 1000 a day: quota spent, sending resumes from") ||
		!strings.Contains(out, "not used: daily quota of 1000 messages spent") {
		t.Fatalf("status: %d\n%s", code, out)
	}
	// A worker on the same account sends nothing either: the quota is
	// shared.
	w := c.startWorker(c.workerConf("daily = 1000"))
	time.Sleep(2 * time.Second)
	w.stop(t, syscall.SIGTERM)
	if got := c.s.Stats().Messages; got != 1000 {
		t.Fatalf("a worker went past the shared quota: %d", got)
	}
}

// sendEveryone runs herald send on c and fails the test unless it
// delivered all n recipients u0.. once each with none failed; it returns
// how long the send took.
func sendEveryone(t *testing.T, c *campaignDir, s *sink.Server, n int) time.Duration {
	t.Helper()
	start := time.Now()
	code, out, errOut := runHerald(t, nil, "send", "--config", c.conf)
	elapsed := time.Since(start)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("%d sent, 0 failed", n)) {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if d := duplicates(t, s, n); d != 0 {
		t.Fatalf("%d duplicates", d)
	}
	return elapsed
}

// TestThrottleConvergence: the server answers 421 4.7.0 above 100 msgs/s,
// a limit herald is not told (it is configured for 400): herald slows down
// to near the server's rate, delivers everyone, fails no one, and meets
// few throttle replies.
func TestThrottleConvergence(t *testing.T) {
	t.Parallel()
	const n, serverRate = 1500, 100
	s := startSink(t, sink.Config{Faults: sink.Faults{Throttle: serverRate, ThrottleBurst: 10}})
	c := newCampaign(t, s, n, "rate = 400\nburst = 10\nconnections = 4\ncooldown = \"1s\"")
	elapsed := sendEveryone(t, c, s, n)
	st := s.Stats()
	got := float64(n) / elapsed.Seconds()
	t.Logf("server limit %d msgs/s, herald told 400: %.0f msgs/s over the campaign, %d throttle replies for %d messages (%.1f%%)",
		serverRate, got, st.Throttled, n, 100*float64(st.Throttled)/n)
	if got < serverRate*0.5 || got > serverRate*1.1 {
		t.Errorf("herald ran at %.0f msgs/s against a server that takes %d", got, serverRate)
	}
	if float64(st.Throttled) > 0.05*n {
		t.Errorf("%d throttle replies for %d messages: herald does not slow down enough", st.Throttled, n)
	}
}

// TestThrottleLearnedWithoutRate: no rate configured (unlimited, the
// default), and a server that answers 421 4.7.0 at MAIL above 150 msgs/s
// (bursts of 15) and closes the session: herald learns the limit from the throttle
// replies, delivers everyone, fails no one, meets few throttle replies
// and is done within 1.5 times what the server allows. (Measured before
// the controller learned without a rate: 3,000 recipients at 150/s met
// 6,724 throttle replies and were not done after 55 s.) The cool-down is
// 1 s, or the default 30 s pause after the first contact alone would
// take longer than the whole campaign may.
func TestThrottleLearnedWithoutRate(t *testing.T) {
	t.Parallel()
	const n, limit = 3000, 150
	s := startSink(t, sink.Config{Keep: true, Faults: sink.Faults{Throttle: limit, ThrottleBurst: 15}})
	c := newCampaign(t, s, n, "cooldown = \"1s\"")
	elapsed := sendEveryone(t, c, s, n)
	learned(t, s, n, limit, elapsed, "herald send, no rate")
}

// TestWorkersLearnTogether: the same with three herald workers on Redis:
// they share one controller (one hash), so they learn one limit together
// rather than three each thinking it has the server to itself.
func TestWorkersLearnTogether(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 30 s")
	}
	// Not in parallel with this package's other tests, as TestSharedRate100:
	// alone it takes 1.34–1.35 × n/limit (four runs), the server reaching
	// the limit in the second second; once, beside the failover and
	// throttle tests in CI, the three race-built workers took 1.56 ×, six
	// seconds to reach it (17, 4, 8, 16, 32, 63, 127 msgs/s). Sequential
	// tests run before the parallel ones.
	const n, limit = 3000, 150
	c := newCluster(t, nil, sink.Config{Keep: true, Faults: sink.Faults{Throttle: limit, ThrottleBurst: 15}})
	conf := c.campaign("learn", "l", n, "")
	wconf := c.workerConf("cooldown = \"1s\"")
	workers := []*worker{c.startWorker(wconf), c.startWorker(wconf), c.startWorker(wconf)}
	waitFor(t, time.Duration(3*n/limit)*time.Second, func() bool { return c.s.Stats().Messages >= n })
	waitFor(t, 10*time.Second, func() bool { return c.status(conf, "learn").Open == 0 })
	// Timed from the first message the server took: three race-built
	// workers starting together on two cores (each derives the circuit's
	// scrypt fingerprint) take seconds that are not the controller's.
	var first, last time.Time
	for _, m := range c.s.Messages() {
		if first.IsZero() || m.At.Before(first) {
			first = m.At
		}
		if m.At.After(last) {
			last = m.At
		}
	}
	elapsed := last.Sub(first)
	for i, w := range workers {
		if code := w.stop(t, syscall.SIGTERM); code != 0 {
			t.Fatalf("worker %d: exit %d\n%s", i, code, w.err.String())
		}
		if w.sent() == 0 {
			t.Errorf("worker %d sent nothing", i)
		}
	}
	if st := c.status(conf, "learn"); st.Counts["sent"] != n {
		t.Fatalf("status: %+v", st.Counts)
	}
	c.exactlyOnce("l", n)
	learned(t, c.s, n, limit, elapsed, "3 workers, no rate")
}

// learned checks a campaign of n delivered through s, which throttles
// above limit msgs/s, in elapsed: few throttle replies (5% of the
// messages at most), done within 1.5 × n/limit. The messages per second
// at the server are logged: the pace the controller settles to is checked
// exactly, in simulated time, by ratelimit/limitertest.
func learned(t *testing.T, s *sink.Server, n, limit int, elapsed time.Duration, what string) {
	t.Helper()
	var at []time.Time
	for _, m := range s.Messages() {
		at = append(at, m.At)
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	var per []int
	for _, a := range at {
		i := int(a.Sub(at[0]) / time.Second)
		for len(per) <= i {
			per = append(per, 0)
		}
		per[i]++
	}
	st := s.Stats()
	t.Logf("%s against a server that takes %d msgs/s: %d messages in %.1fs (%.2f × n/limit), %d throttle replies (%.4f per message); messages per second at the server: %v",
		what, limit, n, elapsed.Seconds(), elapsed.Seconds()/(float64(n)/float64(limit)), st.Throttled, float64(st.Throttled)/float64(n), per)
	if float64(st.Throttled) > 0.05*float64(n) {
		t.Errorf("%d throttle replies for %d messages: herald does not learn the limit", st.Throttled, n)
	}
	if max := time.Duration(1.5 * float64(n) / float64(limit) * float64(time.Second)); elapsed > max {
		t.Errorf("done in %v, more than 1.5 × n/limit (%v)", elapsed, max)
	}
}

// TestProviderPriority: a backup provider (priority 2) gets nothing while
// the first one can send, and everything once its login is refused.
func TestProviderPriority(t *testing.T) {
	t.Parallel()
	first, backup := startSink(t, sink.Config{}), startSink(t, sink.Config{})
	c := newCampaign(t, first, 300, "priority = 1")
	host, port, _ := strings.Cut(backup.Addr(), ":")
	backupTOML := fmt.Sprintf("\n[[provider]]\nname = \"backup\"\nhost = %q\nport = %s\ntls = \"none\"\npriority = 2\n", host, port)
	os.WriteFile(c.conf, []byte(mustRead(t, c.conf)+backupTOML), 0o644)
	if code, out, e := runHerald(t, nil, "send", "--config", c.conf); code != 0 || !strings.Contains(out, "300 sent") {
		t.Fatalf("exit %d\n%s\n%s", code, out, e)
	}
	if first.Stats().Messages != 300 || backup.Stats().Sessions != 0 {
		t.Fatalf("first %d messages, backup %d sessions: the backup was used while the first could send", first.Stats().Messages, backup.Stats().Sessions)
	}

	// The first provider now refuses the login: the backup takes over.
	refusing := startSink(t, sink.Config{Auth: &sink.Credentials{Username: "u", Password: "right"}, AllowInsecureAuth: true})
	c2 := newCampaign(t, refusing, 300, "priority = 1\nusername = \"u\"\npassword_env = \"HERALD_PRIO_PW\"")
	os.WriteFile(c2.conf, []byte(mustRead(t, c2.conf)+backupTOML), 0o644)
	code, out, e := runHerald(t, []string{"HERALD_PRIO_PW=wrong"}, "send", "--config", c2.conf)
	if code != 0 || !strings.Contains(out, "300 sent, 0 failed") || backup.Stats().Messages != 300 {
		t.Fatalf("failover to the backup: exit %d, backup %d messages\n%s\n%s", code, backup.Stats().Messages, out, e)
	}
}

// TestDomainLimits: a recipient domain with its own rate goes at that
// pace while the others go at full speed, and a domain that answers
// "receiving mail too quickly" at RCPT is retried after its cool-down
// without slowing the provider or failing anyone.
func TestDomainLimits(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Keep: true, Faults: sink.Faults{Rules: []*sink.Rule{{
		Match: "@slow.example", Stage: sink.StageRcpt, Code: 450, Enhanced: smtp.EnhancedCode{4, 2, 1},
		Message: "The user you are trying to contact is receiving mail too quickly.", Times: 3,
	}}}})
	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("email,name\n")
	var all []string
	for i := range 300 {
		all = append(all, fmt.Sprintf("u%d@example.com", i))
	}
	for i := range 10 {
		all = append(all, fmt.Sprintf("p%d@paced.example", i))
	}
	for i := range 3 {
		all = append(all, fmt.Sprintf("s%d@slow.example", i))
	}
	for i, a := range all {
		fmt.Fprintf(&csv, "%s,N%d\n", a, i)
	}
	host, port, _ := strings.Cut(s.Addr(), ":")
	files := map[string]string{"r.csv": csv.String(), "b.txt": "Hi\n", "h.toml": fmt.Sprintf(`
[campaign]
id = "domains"
from = "T <t@example.com>"
subject = "x"
text = "b.txt"
recipients = "r.csv"
[domain."paced.example"]
rate = 5
burst = 1
[domain."slow.example"]
cooldown = "1s"
[[provider]]
name = "local"
host = %q
port = %s
tls = "none"
connections = 2
`, host, port)}
	for name, content := range files {
		os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	}
	code, out, e := runHerald(t, nil, "send", "--config", filepath.Join(dir, "h.toml"))
	if code != 0 || !strings.Contains(out, fmt.Sprintf("%d sent, 0 failed", len(all))) {
		t.Fatalf("exit %d\n%s\n%s", code, out, e)
	}
	for _, a := range all {
		if got := s.Received(a); got != 1 {
			t.Fatalf("%s received %d times", a, got)
		}
	}
	var paced []time.Time
	var lastFast time.Time
	for _, m := range s.Messages() {
		switch {
		case strings.HasSuffix(m.To[0], "@paced.example"):
			paced = append(paced, m.At)
		case strings.HasSuffix(m.To[0], "@example.com") && m.At.After(lastFast):
			lastFast = m.At
		}
	}
	slices.SortFunc(paced, func(a, b time.Time) int { return a.Compare(b) })
	span := paced[len(paced)-1].Sub(paced[0])
	t.Logf("10 messages to a domain at 5/s took %v; the 300 others were done %v before the last of them", span, paced[len(paced)-1].Sub(lastFast))
	if span < 1700*time.Millisecond {
		t.Errorf("10 messages at 5/s in %v", span)
	}
	if !lastFast.Before(paced[len(paced)-1].Add(-time.Second)) {
		t.Errorf("the other domains waited for the paced one")
	}
	code, out, _ = runHerald(t, nil, "report", "--config", filepath.Join(dir, "h.toml"))
	if code != 0 || !strings.Contains(out, "s0@slow.example,sent,1,") {
		t.Fatalf("a domain's throttle must not count as an attempt (only the delivery does):\n%s", out)
	}
}

// TestProviderWeights: two providers of the same priority, weights 3 and
// 1, share the messages 3 to 1.
func TestProviderWeights(t *testing.T) {
	t.Parallel()
	a, b := startSink(t, sink.Config{}), startSink(t, sink.Config{})
	const n = 800
	c := newCampaign(t, a, n, "weight = 3")
	host, port, _ := strings.Cut(b.Addr(), ":")
	os.WriteFile(c.conf, []byte(mustRead(t, c.conf)+fmt.Sprintf("\n[[provider]]\nname = \"b\"\nhost = %q\nport = %s\ntls = \"none\"\n", host, port)), 0o644)
	if code, out, e := runHerald(t, nil, "send", "--config", c.conf); code != 0 || !strings.Contains(out, fmt.Sprintf("%d sent", n)) {
		t.Fatalf("exit %d\n%s\n%s", code, out, e)
	}
	ga, gb := a.Stats().Messages, b.Stats().Messages
	t.Logf("weights 3 and 1: %d and %d of %d", ga, gb, n)
	if ga+gb != n || ga < n*3/4-40 || ga > n*3/4+40 {
		t.Fatalf("weights 3:1 gave %d:%d", ga, gb)
	}
}

// TestSharedCircuit: a worker whose login is refused opens the provider's
// circuit for every worker: the next worker does not try to log in (a
// provider locks an account out after too many attempts), herald status
// says why, and no output holds the password.
func TestSharedCircuit(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil, sink.Config{Auth: &sink.Credentials{Username: "news", Password: "right"}, AllowInsecureAuth: true})
	conf := c.campaign("circuit", "c", 50, "")
	wconf := c.workerConf("username = \"news\"\npassword_env = \"HERALD_CIRCUIT_PW\"\nconnections = 3")
	env := []string{"HERALD_CIRCUIT_PW=wr0ng-s3cret"}
	run := func() (int, string) {
		t.Helper()
		code, out, e := runHerald(t, env, "worker", "--config", wconf)
		if strings.Contains(out+e, "wr0ng-s3cret") {
			t.Fatal("the password was printed")
		}
		return code, e
	}
	code, e := run()
	if code != exitInterrupted || !strings.Contains(e, "refused the login") {
		t.Fatalf("first worker: exit %d\n%s", code, e)
	}
	first := c.s.Stats().AuthFailures
	code, e = run()
	if code != exitInterrupted || !strings.Contains(e, "refused the login") {
		t.Fatalf("second worker: exit %d\n%s", code, e)
	}
	if got := c.s.Stats().AuthFailures; got != first {
		t.Fatalf("the second worker tried to log in again (%d refused logins, then %d)", first, got)
	}
	code, out, _ := runHerald(t, env, "status", "--config", wconf, "circuit")
	if code != 0 || !strings.Contains(out, "not used:") || !strings.Contains(out, "refused the login") || strings.Contains(out, "wr0ng-s3cret") {
		t.Fatalf("status: %d\n%s", code, out)
	}
	if st := c.status(conf, "circuit"); st.Counts["pending"] != 50 {
		t.Fatalf("recipients must stay untouched: %+v", st.Counts)
	}
}

// TestStalledProviderDoesNotHoldBack: a provider of the same priority and
// a larger weight that cannot be reached (it keeps redialling for most of
// a minute before it gives up) does not hold the healthy one to its share.
func TestStalledProviderDoesNotHoldBack(t *testing.T) {
	t.Parallel()
	good := startSink(t, sink.Config{})
	gone := startSink(t, sink.Config{})
	host, port, _ := strings.Cut(gone.Addr(), ":")
	gone.Close() // nothing listens there any more
	const n, goneConns = 300, 2
	c := newCampaign(t, good, n, "")
	os.WriteFile(c.conf, []byte(mustRead(t, c.conf)+fmt.Sprintf("\n[[provider]]\nname = \"gone\"\nhost = %q\nport = %s\ntls = \"none\"\nweight = 3\nconnections = %d\n", host, port, goneConns)), 0o644)
	cmd := exec.Command(herald, "send", "--config", c.conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// The unreachable provider's senders each hold one job while they
	// redial (8 tries, about 45 s); everything else goes through the
	// healthy one at once. Held to its weight (1 in 4) it would get about
	// 8 messages a second.
	waitFor(t, 15*time.Second, func() bool { return good.Stats().Messages >= n-goneConns })
}
