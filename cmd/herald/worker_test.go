package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/internal/redistest"
	"github.com/heraldmail/herald/sink"
)

// cluster is a redis-server, a test SMTP server and herald processes that
// share them, the way several machines would.
type cluster struct {
	t     *testing.T
	rs    *redistest.Server
	s     *sink.Server
	dir   string
	queue string // the [queue] section every config shares
}

func newCluster(t *testing.T, redisArgs []string, sc sink.Config) *cluster {
	t.Helper()
	rs := redistest.Start(t, redisArgs...)
	return &cluster{t: t, rs: rs, s: startSink(t, sc), dir: t.TempDir(),
		queue: fmt.Sprintf("[queue]\nbackend = \"redis\"\nurl = %q\nlease = \"3s\"\n", rs.URL())}
}

func (c *cluster) provider(extra string) string {
	host, port, _ := strings.Cut(c.s.Addr(), ":")
	return fmt.Sprintf("[[provider]]\nname = \"local\"\nhost = %q\nport = %s\ntls = \"none\"\n%s\n", host, port, extra)
}

// workerConf writes a worker's configuration: the queue and a provider.
func (c *cluster) workerConf(providerExtra string) string {
	c.t.Helper()
	path := filepath.Join(c.dir, fmt.Sprintf("worker-%d.toml", time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(c.queue+c.provider(providerExtra)), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// campaign writes a campaign of n recipients p0@example.com.. (p the
// prefix) and enqueues it; it returns its configuration's path.
func (c *cluster) campaign(id, prefix string, n int, campaignExtra string) string {
	c.t.Helper()
	d := filepath.Join(c.dir, id)
	if err := os.MkdirAll(d, 0o755); err != nil {
		c.t.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("email,name\n")
	for i := range n {
		fmt.Fprintf(&csv, "%s%d@example.com,User %d\n", prefix, i, i)
	}
	conf := fmt.Sprintf("[campaign]\nid = %q\nfrom = \"T <t@example.com>\"\nsubject = \"Hi {{.name}}\"\ntext = \"body.txt\"\nrecipients = \"recipients.csv\"\n%s\n[retry]\nbackoff = \"10ms\"\nmax_backoff = \"10ms\"\n%s%s",
		id, campaignExtra, c.queue, c.provider(""))
	for name, content := range map[string]string{"recipients.csv": csv.String(), "body.txt": "Hello {{.name}}\n", "herald.toml": conf} {
		if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o644); err != nil {
			c.t.Fatal(err)
		}
	}
	path := filepath.Join(d, "herald.toml")
	if code, out, e := runHerald(c.t, nil, "enqueue", "--config", path); code != 0 || strings.TrimSpace(out) != id {
		c.t.Fatalf("enqueue %s: exit %d %q\n%s", id, code, out, e)
	}
	return path
}

// worker is a running herald worker process.
type worker struct {
	cmd      *exec.Cmd
	out, err syncBuffer
	done     chan struct{}
	code     int
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (c *cluster) startWorker(conf string, args ...string) *worker {
	c.t.Helper()
	w := &worker{done: make(chan struct{})}
	w.cmd = exec.Command(herald, append([]string{"worker", "--config", conf, "--quiet"}, args...)...)
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.err
	if err := w.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() {
		err := w.cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			w.code = ee.ExitCode()
		}
		close(w.done)
	}()
	c.t.Cleanup(func() {
		if c.t.Failed() && os.Getenv("HERALD_TEST_DUMP") != "" {
			w.cmd.Process.Signal(syscall.SIGQUIT) // goroutine dump to stderr
			time.Sleep(time.Second)
		}
		w.cmd.Process.Kill()
		<-w.done
		if c.t.Failed() {
			c.t.Logf("worker %v said:\n%s\n%s", args, w.out.String(), w.err.String())
		}
	})
	return w
}

// stop sends sig and waits for the worker to exit; it fails the test if
// the worker does not exit within 30 s.
func (w *worker) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	w.cmd.Process.Signal(sig)
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("worker did not stop on %v:\n%s", sig, w.err.String())
	}
	return w.code
}

var sentRE = regexp.MustCompile(`herald worker: (\d+) sent`)

// sent is what the stopped worker says it sent.
func (w *worker) sent() int {
	var n int
	if m := sentRE.FindStringSubmatch(w.out.String()); m != nil {
		fmt.Sscan(m[1], &n)
	}
	return n
}

// status reads herald status --json of a campaign.
func (c *cluster) status(conf, id string) statusReport {
	c.t.Helper()
	code, out, e := runHerald(c.t, nil, "status", "--config", conf, id, "--json")
	var st statusReport
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		c.t.Fatalf("status: %d %s %s", code, out, e)
	}
	return st
}

// exactlyOnce checks every recipient prefix0..prefix{n-1} got one message.
func (c *cluster) exactlyOnce(prefix string, n int) {
	c.t.Helper()
	for i := range n {
		if got := c.s.Received(fmt.Sprintf("%s%d@example.com", prefix, i)); got != 1 {
			c.t.Fatalf("%s%d received %d times", prefix, i, got)
		}
	}
}

// TestWorkersDeliverTogether: three worker processes deliver a 20,000
// recipient campaign; every recipient gets it once, every worker takes
// part, and each stops cleanly on SIGTERM. The provider allows 3
// connections: each worker could open 3, yet the server never sees more
// than 3 at once. One of them serves metrics.
func TestWorkersDeliverTogether(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil, sink.Config{})
	const n, conns = 20000, 3
	conf := c.campaign("together", "t", n, "")
	wconf := c.workerConf(fmt.Sprintf("connections = %d", conns))
	workers := []*worker{c.startWorker(wconf, "--metrics-addr", "127.0.0.1:0"), c.startWorker(wconf), c.startWorker(wconf)}
	waitFor(t, 3*time.Minute, func() bool { return c.s.Stats().Messages >= n })
	waitFor(t, 10*time.Second, func() bool { return c.status(conf, "together").Open == 0 })

	metrics := scrape(t, workers[0])
	for _, want := range []string{`herald_messages_total{class="sent",provider="local"}`, `herald_queue_jobs{campaign="together",state="sent"} 20000`, `herald_send_duration_seconds_count{provider="local"}`, `herald_connections{provider="local"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	total := 0
	for i, w := range workers {
		if code := w.stop(t, syscall.SIGTERM); code != 0 {
			t.Fatalf("worker %d: exit %d\n%s", i, code, w.err.String())
		}
		t.Logf("worker %d sent %d", i, w.sent())
		if w.sent() == 0 {
			t.Errorf("worker %d delivered nothing", i)
		}
		total += w.sent()
	}
	c.exactlyOnce("t", n)
	if total != n {
		t.Fatalf("the workers say they sent %d of %d", total, n)
	}
	st := c.s.Stats()
	t.Logf("3 workers, connections = %d: the server saw %d sessions, at most %d at once", conns, st.Sessions, st.PeakSessions)
	if st.PeakSessions > conns {
		t.Fatalf("%d sessions at once, more than the %d the provider allows", st.PeakSessions, conns)
	}
	if st := c.status(conf, "together"); st.Counts["sent"] != n {
		t.Fatalf("status: %+v", st)
	}
}

var metricsRE = regexp.MustCompile(`metrics at (http://\S+)`)

// scrape reads a worker's /metrics.
func scrape(t *testing.T, w *worker) string {
	t.Helper()
	m := metricsRE.FindStringSubmatch(w.err.String())
	if m == nil {
		t.Fatalf("the worker did not say where its metrics are:\n%s", w.err.String())
	}
	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestWorkerKilled kills one of two workers with SIGKILL mid-campaign:
// its leases run out and the other worker delivers its jobs; duplicates
// stay within what the dead worker had in flight.
func TestWorkerKilled(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil, sink.Config{})
	const n, conns, kills = 6000, 4, 3
	conf := c.campaign("killed", "k", n, "")
	// Full speed: no rate. An outcome is committed to Redis before the
	// next message's data leaves its connection.
	wconf := c.workerConf(fmt.Sprintf("connections = %d\nrate = 0", conns))
	other := c.startWorker(wconf)
	for k := 1; k <= kills; k++ {
		victim := c.startWorker(wconf, "--metrics-addr", "127.0.0.1:0")
		// Killed once it has sent a few hundred messages itself, or, once
		// the campaign is past its share of the kills (the survivor may
		// take most of what is left), a few dozen: either way mid-sending.
		var said string
		waitFor(t, time.Minute, func() bool {
			if !metricsRE.MatchString(victim.err.String()) {
				return false
			}
			said = sentMetricRE.FindString(scrape(t, victim))
			sent := victimSent(said)
			return sent >= 300 || sent >= 50 && c.s.Stats().Messages >= int64(k*n/(kills+1))
		})
		victim.cmd.Process.Kill()
		<-victim.done
		t.Logf("kill %d at %d messages (the victim had sent %d)", k, c.s.Stats().Messages, victimSent(said))
	}
	waitFor(t, 2*time.Minute, func() bool { return c.status(conf, "killed").Open == 0 })
	if code := other.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("surviving worker: exit %d\n%s", code, other.err.String())
	}
	dups := duplicatesOf(t, c.s, "k", n)
	t.Logf("%d kill -9 of a worker beside another, full speed, %d connections each: %d duplicates of %d", kills, conns, dups, n)
	if dups > kills*conns {
		t.Fatalf("%d duplicates after %d kills, more than one per connection per kill (%d)", dups, kills, kills*conns)
	}
	if st := c.status(conf, "killed"); st.Counts["sent"] != n {
		t.Fatalf("status after the kills: %+v", st.Counts)
	}
}

var sentMetricRE = regexp.MustCompile(`herald_messages_total\{[^}]*class="sent"[^}]*\} (\d+)`)

// victimSent reads the sent count from a herald_messages_total line.
func victimSent(line string) int {
	m := sentMetricRE.FindStringSubmatch(line)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// duplicatesOf checks that each recipient got the message at least once
// and returns how many extra copies the server got.
func duplicatesOf(t *testing.T, s *sink.Server, prefix string, n int) int {
	t.Helper()
	dups := 0
	for i := range n {
		switch got := s.Received(fmt.Sprintf("%s%d@example.com", prefix, i)); {
		case got == 0:
			t.Fatalf("%s%d was lost", prefix, i)
		case got > 1:
			dups += got - 1
		}
	}
	return dups
}

// TestWorkerSIGTERM stops a worker with SIGTERM mid-campaign: it exits at
// once, gives its unfinished jobs back (none stays leased), and a second
// worker delivers the rest: nothing lost, nothing twice.
func TestWorkerSIGTERM(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil, sink.Config{})
	const n = 3000
	conf := c.campaign("term", "s", n, "")
	wconf := c.workerConf("connections = 4\nrate = 800\nburst = 10")
	w := c.startWorker(wconf)
	waitFor(t, time.Minute, func() bool { return c.s.Stats().Messages >= 500 })
	if code := w.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d\n%s", code, w.err.String())
	}
	st := c.status(conf, "term")
	got := c.s.Stats().Messages
	if st.Counts["leased"] != 0 || st.Counts["sent"] != got || int(got) != w.sent() || st.Open == 0 {
		t.Fatalf("after SIGTERM: %+v; the server got %d, the worker says %d", st.Counts, got, w.sent())
	}
	w2 := c.startWorker(wconf)
	waitFor(t, time.Minute, func() bool { return c.status(conf, "term").Open == 0 })
	w2.stop(t, syscall.SIGTERM)
	c.exactlyOnce("s", n)
}

// TestWorkersSurviveRedisRestart restarts redis-server (appendonly) while
// two workers deliver: they carry on, nothing is lost.
func TestWorkersSurviveRedisRestart(t *testing.T) {
	t.Parallel()
	c := newCluster(t, []string{"--appendonly", "yes", "--appendfsync", "always"}, sink.Config{})
	const n = 4000
	conf := c.campaign("restart", "r", n, "")
	wconf := c.workerConf("connections = 4\nrate = 800\nburst = 10")
	workers := []*worker{c.startWorker(wconf), c.startWorker(wconf)}
	waitFor(t, time.Minute, func() bool { return c.s.Stats().Messages >= 1000 })
	c.rs.Restart()
	waitFor(t, 2*time.Minute, func() bool { return c.status(conf, "restart").Open == 0 })
	for i, w := range workers {
		if code := w.stop(t, syscall.SIGTERM); code != 0 {
			t.Fatalf("worker %d: exit %d\n%s", i, code, w.err.String())
		}
	}
	dups := duplicatesOf(t, c.s, "r", n)
	t.Logf("redis-server restarted under two workers: %d duplicates of %d", dups, n)
}

// TestWorkersPauseResume pauses a campaign two workers deliver: within a
// second nothing more goes out; after resume they finish it, each
// recipient once. A second campaign is not held up by the pause, and the
// two campaigns share the provider fairly.
func TestWorkersPauseResume(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil, sink.Config{})
	// 300 msgs/s for both workers together: 6,000 messages take 20 s,
	// time enough to see a pause while both campaigns have work left.
	const n, rate = 3000, 300
	wconf := c.workerConf(fmt.Sprintf("connections = 4\nrate = %d\nburst = 5", rate))
	workers := []*worker{c.startWorker(wconf), c.startWorker(wconf)}
	// Planned while the workers run: they pick both up.
	confA := c.campaign("fair-a", "a", n, "")
	confB := c.campaign("fair-b", "b", n, "")
	// Once what was buffered before fair-b existed has gone out.
	waitFor(t, time.Minute, func() bool { return c.sentTo("b", n) > 100 })
	a0, b0 := c.sentTo("a", n), c.sentTo("b", n)
	waitFor(t, time.Minute, func() bool { return c.sentTo("a", n)+c.sentTo("b", n) >= a0+b0+600 })
	a, b := c.sentTo("a", n)-a0, c.sentTo("b", n)-b0
	t.Logf("of 600 messages once both campaigns were planned: fair-a %d, fair-b %d", a, b)
	if a < 240 || b < 240 {
		t.Errorf("the campaigns do not share the provider fairly: %d and %d", a, b)
	}

	if code, out, e := runHerald(t, nil, "pause", "--config", confA); code != 0 || !strings.Contains(out, "paused") {
		t.Fatalf("pause: %d %s %s", code, out, e)
	}
	atPause, bAtPause := c.sentTo("a", n), c.sentTo("b", n)
	time.Sleep(1500 * time.Millisecond) // seen within statusPoll; sends in flight finish
	settled := c.sentTo("a", n)
	time.Sleep(1500 * time.Millisecond)
	if later := c.sentTo("a", n); later != settled {
		t.Fatalf("fair-a delivery went on while paused: %d, then %d", settled, later)
	}
	t.Logf("fair-a: %d delivered after the pause command returned (2 workers, 4 connections, %d msgs/s together)", settled-atPause, rate)
	if st := c.status(confA, "fair-a"); st.Status != "paused" || st.Counts["leased"] != 0 {
		t.Fatalf("paused campaign: %+v", st)
	}
	// Meanwhile fair-b went on (or finished).
	if b := c.sentTo("b", n); b < min(bAtPause+100, n) {
		t.Fatalf("fair-b stopped with fair-a: %d when fair-a was paused, %d three seconds later", bAtPause, b)
	}

	if code, _, e := runHerald(t, nil, "resume", "--config", confA); code != 0 {
		t.Fatalf("resume: %s", e)
	}
	waitFor(t, 2*time.Minute, func() bool {
		return c.status(confA, "fair-a").Open == 0 && c.status(confB, "fair-b").Open == 0
	})
	for _, w := range workers {
		w.stop(t, syscall.SIGTERM)
	}
	c.exactlyOnce("a", n)
	c.exactlyOnce("b", n)
}

// sentTo counts the recipients prefix0..prefix{n-1} the server received.
func (c *cluster) sentTo(prefix string, n int) int {
	total := 0
	for i := range n {
		total += c.s.Received(fmt.Sprintf("%s%d@example.com", prefix, i))
	}
	return total
}

// TestRetryFailed fails one recipient for a policy reason and one for good
// (no such user); retry-failed queues the first again, not the second,
// whose address is on the suppression list.
func TestRetryFailed(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Faults: sink.Faults{Rules: []*sink.Rule{
		{Match: "u3@", Stage: sink.StageData, Code: 554, Enhanced: smtp.EnhancedCode{5, 7, 1}, Message: "DT:SPM message rejected as spam", Times: 1},
		{Match: "u5@", Stage: sink.StageRcpt, Code: 550, Enhanced: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"},
	}}})
	c := newCampaign(t, s, 10, "")
	if code, out, _ := runHerald(t, nil, "send", "--config", c.conf); code != exitFailed || !strings.Contains(out, "8 sent, 2 failed") {
		t.Fatalf("first send: %d %s", code, out)
	}
	code, out, e := runHerald(t, nil, "retry-failed", "--config", c.conf)
	if code != 0 || !strings.Contains(out, "1 failed recipients queued again; 1 stay failed because their addresses are on the suppression list") {
		t.Fatalf("retry-failed: %d %s %s", code, out, e)
	}
	if code, out, _ := runHerald(t, nil, "send", "--config", c.conf); code != exitFailed || !strings.Contains(out, "9 sent, 1 failed") || !strings.Contains(out, "this run: 1 sent") {
		t.Fatalf("send after retry-failed: %d %s", code, out)
	}
	if s.Received("u3@example.com") != 1 || s.Received("u5@example.com") != 0 {
		t.Fatal("the retried recipient was not delivered once, or the suppressed one was mailed")
	}
	if code, _, e := runHerald(t, nil, "retry-failed", "--help"); code != 0 || !strings.Contains(e, "Usage: herald retry-failed") {
		t.Fatalf("--help: %s", e)
	}
}

// TestWorkerBadConfig: a worker's configuration names the key that
// is wrong, and a worker without a queue it can reach says so.
func TestWorkerBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf := filepath.Join(dir, "w.toml")
	os.WriteFile(conf, []byte("[queue]\nbackend = \"redis\"\nurl = \"unix://"+filepath.Join(dir, "none.sock")+"\"\n[[provider]]\nhost = \"127.0.0.1\"\nport = 1\ntls = \"none\"\nrate = -1\n"), 0o644)
	code, _, e := runHerald(t, nil, "worker", "--config", conf)
	if code != exitInput || !strings.Contains(e, "provider[0].rate") {
		t.Fatalf("bad provider: %d %s", code, e)
	}
	os.WriteFile(conf, []byte("[queue]\nbackend = \"redis\"\nurl = \"unix://"+filepath.Join(dir, "none.sock")+"\"\n[[provider]]\nhost = \"127.0.0.1\"\nport = 1\ntls = \"none\"\n"), 0o644)
	code, _, e = runHerald(t, nil, "worker", "--config", conf)
	if code != exitInput || !strings.Contains(e, "queue.url") {
		t.Fatalf("unreachable redis: %d %s", code, e)
	}
}

// TestIdleWorkerLetsSlotsGo: two workers share connections = 2. The first
// delivers a campaign alone and keeps both slots, idle; the second campaign
// is DKIM-signed and only the second worker has the key. The first
// worker's idle senders must let their slots go within about a second of
// seeing the other wait, not after idle_timeout (a minute here): before
// that was fixed, the second worker stalled for the whole idle_timeout.
func TestIdleWorkerLetsSlotsGo(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil, sink.Config{})
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyPath := filepath.Join(c.dir, "dkim.pem")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	dkim := fmt.Sprintf("\n[dkim]\ndomain = \"example.com\"\nselector = \"s1\"\nprivate_key = %q\n", keyPath)

	c.startWorker(c.workerConf("connections = 2\nidle_timeout = \"60s\""))
	c.campaign("plain", "p", 100, "")
	waitFor(t, 30*time.Second, func() bool { return c.s.Stats().Messages >= 100 })

	signed := c.campaign("signed", "s", 200, dkim)
	start := time.Now()
	c.startWorker(c.workerConf("connections = 2\nidle_timeout = \"60s\"" + dkim))
	// A stall lasts the idle_timeout, 60 s; the deadline is far from both.
	waitFor(t, 30*time.Second, func() bool { return c.s.Stats().Messages >= 300 })
	t.Logf("the second worker got a slot and delivered 200 in %s", time.Since(start).Round(time.Millisecond))
	waitFor(t, 10*time.Second, func() bool { return c.status(signed, "signed").Open == 0 })
	c.exactlyOnce("s", 200)
}
