package engine_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/config"
	"github.com/heraldmail/herald/engine"
	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/queue/boltq"
	"github.com/heraldmail/herald/sink"
)

// bundle is one test's campaign: its folder, config, queue and servers.
type bundle struct {
	t       *testing.T
	dir     string
	cfg     *config.Config
	q       *boltq.Queue
	eng     *engine.Engine
	logs    *syncBuffer
	tlsConf *tls.Config
	// wrap, if set, stands between the engine and the embedded queue
	// (withoutJournal: the engine then waits for the settler's group
	// commit, as it does on Redis).
	wrap func(*boltq.Queue) engine.Queue
	// timing is the engine's (zero fields: production values).
	timing engine.Timing
}

// withoutJournal is a queue that keeps no outcome journal.
type withoutJournal struct{ engine.Queue }

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

type campaignSpec struct {
	recipients []string // e-mail addresses; name = "Name N"
	csv        string   // instead of recipients
	subject    string
	text       string
	html       string
	providers  string // [[provider]] blocks
	extra      string // more TOML
	env        map[string]string
	tls        *tls.Config
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

func providerTOML(name string, s *sink.Server, extra string) string {
	host, port, _ := strings.Cut(s.Addr(), ":")
	return fmt.Sprintf("[[provider]]\nname = %q\nhost = %q\nport = %s\ntls = \"none\"\ntimeout = \"5s\"\ncooldown = \"50ms\"\n%s\n", name, host, port, extra)
}

func addresses(n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d@example.com", prefix, i)
	}
	return out
}

func setup(t *testing.T, spec campaignSpec) *bundle {
	t.Helper()
	dir := t.TempDir()
	b := &bundle{t: t, dir: dir, logs: &syncBuffer{}}
	csv := spec.csv
	if csv == "" {
		var sb strings.Builder
		sb.WriteString("email,name\n")
		for i, r := range spec.recipients {
			fmt.Fprintf(&sb, "%s,Name %d\n", r, i)
		}
		csv = sb.String()
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("recipients.csv", csv)
	if spec.subject == "" {
		spec.subject = "Hello {{.name}}"
	}
	if spec.text == "" {
		spec.text = "Dear {{.name}}, this is for {{.email}}.\n"
	}
	write("body.txt", spec.text)
	htmlKey := ""
	if spec.html != "" {
		write("body.html", spec.html)
		htmlKey = `html = "body.html"`
	}
	toml := fmt.Sprintf(`
[campaign]
id = "test"
from = "Herald Test <news@example.com>"
subject = %q
text = "body.txt"
%s
recipients = "recipients.csv"

%s

[retry]
backoff = "10ms"
max_backoff = "20ms"

%s
`, spec.subject, htmlKey, spec.extra, spec.providers)
	env := spec.env
	cfg, err := config.Parse(toml, dir, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	b.cfg = cfg
	b.tlsConf = spec.tls
	b.open()
	return b
}

// open (re)opens the queue and the engine, as a new herald process would.
func (b *bundle) open() {
	b.t.Helper()
	if b.q != nil {
		b.q.Close()
	}
	q, err := boltq.Open(b.cfg.Queue.Path)
	if err != nil {
		b.t.Fatal(err)
	}
	b.q = q
	b.t.Cleanup(func() { q.Close() })
	log := slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var eq engine.Queue = q
	if b.wrap != nil {
		eq = b.wrap(q)
	}
	eng, err := engine.New(b.cfg, eq, engine.Options{Logger: log, TLSConfig: b.tlsConf, Timing: b.timing})
	if err != nil {
		b.t.Fatal(err)
	}
	b.eng = eng
}

func (b *bundle) plan() engine.PlanResult {
	b.t.Helper()
	res, err := b.eng.Plan(context.Background(), func(p engine.Problem) { b.t.Logf("problem: %s", p) })
	if err != nil {
		b.t.Fatal(err)
	}
	return res
}

func (b *bundle) run() (engine.Summary, error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return b.eng.Run(ctx, ctx)
}

func (b *bundle) jobs() map[string]queue.Job {
	b.t.Helper()
	out := map[string]queue.Job{}
	if err := b.q.Walk(context.Background(), "test", func(j queue.Job) error {
		out[j.Email] = j
		return nil
	}); err != nil {
		b.t.Fatal(err)
	}
	return out
}

func TestCampaignDeliversEveryRecipientOnce(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Keep: true})
	rcpts := addresses(3000, "user")
	b := setup(t, campaignSpec{
		recipients: rcpts,
		subject:    "Hello {{.name}}",
		text:       "Dear {{.name}}, this is for {{.email}}.\n",
		html:       "<p>Dear {{.name}}</p>",
		providers:  providerTOML("local", s, "connections = 8\nper_connection = 50"),
	})
	res := b.plan()
	if res.Added != 3000 {
		t.Fatalf("planned %+v", res)
	}
	sum, err := b.run()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 3000 || sum.Counts.Sent != 3000 || sum.Counts.Open() != 0 {
		t.Fatalf("summary %+v", sum)
	}
	msgs := s.Messages()
	if len(msgs) != 3000 {
		t.Fatalf("server got %d messages", len(msgs))
	}
	seen := map[string]bool{}
	ids := map[string]bool{}
	for _, m := range msgs {
		if len(m.To) != 1 {
			t.Fatalf("envelope recipients %v", m.To)
		}
		rcpt := m.To[0]
		if seen[rcpt] {
			t.Fatalf("%s received twice", rcpt)
		}
		seen[rcpt] = true
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatalf("%s: unparsable message: %v", rcpt, err)
		}
		var n int
		fmt.Sscanf(rcpt, "user%d@", &n)
		if got, want := msg.Header.Get("Subject"), fmt.Sprintf("Hello Name %d", n); got != want {
			t.Fatalf("%s: subject %q, want %q", rcpt, got, want)
		}
		if !strings.Contains(string(m.Data), "this is for "+rcpt) || !strings.Contains(string(m.Data), fmt.Sprintf("<p>Dear Name %d</p>", n)) {
			t.Fatalf("%s: body not rendered for this recipient:\n%s", rcpt, m.Data)
		}
		if !strings.Contains(msg.Header.Get("Content-Type"), "multipart/alternative") {
			t.Fatalf("%s: content type %q", rcpt, msg.Header.Get("Content-Type"))
		}
		if m.From != "news@example.com" || msg.Header.Get("To") != "<"+rcpt+">" {
			t.Fatalf("%s: from %q to %q", rcpt, m.From, msg.Header.Get("To"))
		}
		id := msg.Header.Get("Message-Id")
		if id == "" || ids[id] {
			t.Fatalf("%s: Message-ID %q missing or repeated", rcpt, id)
		}
		ids[id] = true
	}
	for _, r := range rcpts {
		if !seen[r] {
			t.Fatalf("%s never received", r)
		}
	}
	if st := s.Stats(); st.PeakSessions > 8 || st.Sessions < 3000/50 {
		t.Fatalf("%d sessions, %d at once: want at most 8 at once, and a fresh one every 50 messages", st.Sessions, st.PeakSessions)
	}
	for _, j := range b.jobs() {
		if j.State != queue.Sent || !strings.HasPrefix(j.Reply, "250") || j.Provider != "local" {
			t.Fatalf("job %+v", j)
		}
	}
}

func TestInterruptAndResume(t *testing.T) {
	t.Parallel()
	var accepted atomic.Int64
	stopAt := int64(400)
	soft, stop := context.WithCancel(context.Background())
	defer stop()
	s := startSink(t, sink.Config{Faults: sink.Faults{Hook: func(ev sink.Event) sink.Action {
		if ev.Stage == sink.StageData && accepted.Add(1) == stopAt {
			stop() // the user presses Ctrl-C while messages are in flight
		}
		return sink.Action{}
	}}})
	rcpts := addresses(2000, "r")
	b := setup(t, campaignSpec{recipients: rcpts, providers: providerTOML("local", s, "connections = 4\nrate = 4000\nburst = 50")})
	b.plan()
	hard, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sum, err := b.eng.Run(soft, hard)
	if !errors.Is(err, engine.ErrInterrupted) {
		t.Fatalf("first run: %v", err)
	}
	if sum.Counts.Sent == 0 || sum.Counts.Sent >= 2000 {
		t.Fatalf("the interruption did not land mid-campaign: %+v", sum.Counts)
	}
	if sum.Counts.Leased != 0 {
		t.Fatalf("a graceful stop left %d jobs leased", sum.Counts.Leased)
	}
	first := sum.Counts.Sent
	// A new process resumes the same campaign id.
	b.open()
	if b.q.Recovered() != 0 {
		t.Fatalf("a graceful stop left %d leases to recover", b.q.Recovered())
	}
	if res := b.plan(); !res.Resumed {
		t.Fatalf("second plan did not resume: %+v", res)
	}
	sum, err = b.run()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 2000-first || sum.Counts.Sent != 2000 {
		t.Fatalf("resumed run sent %d after %d (counts %+v)", sum.Sent, first, sum.Counts)
	}
	for _, r := range rcpts {
		if n := s.Received(r); n != 1 {
			t.Fatalf("%s received %d times", r, n)
		}
	}
}

func TestOutcomeClassesDriveJobStates(t *testing.T) {
	t.Parallel()
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			t.Parallel()
			testOutcomeClasses(t, pipelining)
		})
	}
}

// testOutcomeClasses sends one recipient per outcome, each between two
// healthy ones, over one connection: with pipelining, failures land inside
// groups and next to overlapped messages, and the accounting must stay
// exact for every neighbour.
func testOutcomeClasses(t *testing.T, pipelining bool) {
	rules := []*sink.Rule{
		{Match: "perm@", Stage: sink.StageRcpt, Code: 550, Enhanced: smtp.EnhancedCode{5, 1, 1}, Message: "The email account that you tried to reach does not exist."},
		{Match: "temp-once@", Stage: sink.StageRcpt, Code: 451, Enhanced: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary local problem", Times: 1},
		{Match: "temp-always@", Stage: sink.StageRcpt, Code: 451, Enhanced: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary local problem"},
		{Match: "throttle@", Stage: sink.StageData, Code: 454, Message: "Throttling failure: Maximum sending rate exceeded.", Times: 1},
		{Match: "close421@", Stage: sink.StageRcpt, Code: 421, Enhanced: smtp.EnhancedCode{4, 7, 0}, Message: "Too many messages in one session, closing connection", Times: 1},
		{Match: "drop-rcpt@", Stage: sink.StageRcpt, Drop: true, Times: 1},
		{Match: "drop-data@", Stage: sink.StageData, Drop: true, Accept: true, Times: 1},
		{Match: "lost-data@", Stage: sink.StageData, Drop: true, Times: 1},
		{Match: "spam@", Stage: sink.StageData, Code: 554, Message: "DT:SPM 126 smtp10, please see http://mail.163.com/help/help_spam_16.htm"},
	}
	s := startSink(t, sink.Config{Keep: true, NoPipelining: !pipelining, RecordReads: true, Faults: sink.Faults{Rules: rules}})
	var rcpts []string
	for i, p := range []string{"perm", "temp-once", "temp-always", "throttle", "close421", "drop-rcpt", "drop-data", "lost-data", "spam", "ok"} {
		rcpts = append(rcpts, fmt.Sprintf("before%d@example.com", i), p+"@example.com", fmt.Sprintf("after%d@example.com", i))
	}
	b := setup(t, campaignSpec{recipients: rcpts, providers: providerTOML("local", s, "connections = 1")})
	b.cfg.Retry.MaxAttempts = 3
	b.open() // the engine reads the campaign's settings when it is made
	b.plan()
	sum, err := b.run()
	if err != nil {
		t.Fatal(err)
	}
	jobs := b.jobs()
	want := map[string]struct {
		state    queue.State
		attempts int
		received int
	}{
		// Attempts count every attempt the server judged, the one that
		// delivered included; throttles and lost connections count none.
		"perm@example.com":        {queue.Failed, 1, 0},
		"temp-once@example.com":   {queue.Sent, 2, 1},
		"temp-always@example.com": {queue.Failed, 3, 0},
		"throttle@example.com":    {queue.Sent, 1, 1},
		"close421@example.com":    {queue.Sent, 1, 1},
		"drop-rcpt@example.com":   {queue.Sent, 1, 1},
		"drop-data@example.com":   {queue.Sent, 2, 2}, // ambiguous: the server kept the first copy
		"lost-data@example.com":   {queue.Sent, 2, 1}, // ambiguous, but the server had dropped it
		"spam@example.com":        {queue.Failed, 1, 0},
		"ok@example.com":          {queue.Sent, 1, 1},
	}
	for i := range 10 {
		for _, n := range []string{fmt.Sprintf("before%d@example.com", i), fmt.Sprintf("after%d@example.com", i)} {
			want[n] = struct {
				state    queue.State
				attempts int
				received int
			}{queue.Sent, 1, 1}
		}
	}
	for addr, w := range want {
		j := jobs[addr]
		if j.State != w.state || j.Attempts != w.attempts {
			t.Errorf("%s: state %s attempts %d (reply %q), want %s attempts %d", addr, j.State, j.Attempts, j.Reply, w.state, w.attempts)
		}
		if got := s.Received(addr); got != w.received {
			t.Errorf("%s: server accepted %d copies, want %d", addr, got, w.received)
		}
	}
	if r := jobs["perm@example.com"].Reply; !strings.Contains(r, "550") || !strings.Contains(r, "does not exist") {
		t.Errorf("permanent failure lost the server's reply: %q", r)
	}
	supp, _ := b.q.Suppressed(context.Background(), "example.com", "perm@example.com", "spam@example.com")
	if _, ok := supp["perm@example.com"]; !ok {
		t.Error("hard bounce not added to the sending domain's suppression list")
	}
	if _, ok := supp["spam@example.com"]; ok {
		t.Error("a policy rejection suppressed the recipient")
	}
	var ids []string
	for _, m := range s.Messages() {
		if m.To[0] == "drop-data@example.com" {
			msg, _ := mail.ReadMessage(bytes.NewReader(m.Data))
			ids = append(ids, msg.Header.Get("Message-Id"))
		}
	}
	if len(ids) != 2 || ids[0] != ids[1] || ids[0] == "" {
		t.Errorf("a resent message must carry the same Message-ID: %q", ids)
	}
	if sum.Ambiguous != 2 {
		t.Errorf("ambiguous outcomes counted %d, want 2", sum.Ambiguous)
	}
	if sum.Throttled != 1 {
		t.Errorf("throttles counted %d, want 1", sum.Throttled)
	}
	if got := grouped(s.Reads()); got == 0 && pipelining {
		t.Error("the envelope was never sent as one group")
	} else if got > 0 && !pipelining {
		t.Errorf("%d grouped envelopes to a server without PIPELINING", got)
	}
}

func TestTemplateMissingColumnStopsBeforeSending(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	b := setup(t, campaignSpec{recipients: addresses(10, "x"), text: "Hi {{.name}}\nYour plan: {{.plan}}\n", providers: providerTOML("local", s, "")})
	_, err := b.eng.Plan(context.Background(), func(engine.Problem) {})
	var in *engine.InputError
	if !errors.As(err, &in) {
		t.Fatalf("want an InputError, got %v", err)
	}
	for _, w := range []string{"body.txt:2:", `"plan"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not name %s: %v", w, err)
		}
	}
	if _, err := b.q.Campaign(context.Background(), "test"); !errors.Is(err, queue.ErrNoCampaign) {
		t.Errorf("a campaign whose templates do not fit was stored: %v", err)
	}
	if s.Stats().Messages != 0 {
		t.Error("something was sent")
	}
}

func TestBadRowsReportedAndRestSent(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	csv := "email,name\n" +
		"a@example.com,A\n" +
		"bad-address,B\n" +
		"A@Example.com,dup\n" +
		"c@example.com\n" +
		"d@example.com,\"D\r\nBcc: victim@example.com\"\n" +
		"e@example.com,E\n"
	b := setup(t, campaignSpec{csv: csv, providers: providerTOML("local", s, "")})
	var problems []engine.Problem
	res, err := b.eng.Plan(context.Background(), func(p engine.Problem) { problems = append(problems, p) })
	if err != nil {
		t.Fatal(err)
	}
	lines := map[int]string{}
	for _, p := range problems {
		lines[p.Line] = p.Reason
	}
	for _, l := range []int{3, 4, 5, 6} {
		if lines[l] == "" {
			t.Errorf("line %d not reported; problems: %v", l, problems)
		}
	}
	if !strings.Contains(lines[4], "duplicate of line 2") {
		t.Errorf("duplicate reported as %q", lines[4])
	}
	if res.Added != 2 || res.Duplicates != 1 || res.Invalid != 3 {
		t.Errorf("plan result %+v", res)
	}
	if _, err := b.run(); err != nil {
		t.Fatal(err)
	}
	if s.Received("a@example.com") != 1 || s.Received("e@example.com") != 1 || s.Stats().Messages != 2 || s.Received("victim@example.com") != 0 {
		t.Fatalf("stats %+v", s.Stats())
	}
}

func TestAuthFailureStopsOnlyThatProvider(t *testing.T) {
	t.Parallel()
	bad := startSink(t, sink.Config{Auth: &sink.Credentials{Username: "news", Password: "right"}, AllowInsecureAuth: true})
	good := startSink(t, sink.Config{})
	rcpts := addresses(200, "u")
	b := setup(t, campaignSpec{
		recipients: rcpts,
		providers: providerTOML("first", bad, "username = \"news\"\npassword_env = \"PW_FIRST\"\nconnections = 2") +
			providerTOML("second", good, "connections = 2"),
		env: map[string]string{"PW_FIRST": "wrong-secret-pw"},
	})
	b.plan()
	sum, err := b.run()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Counts.Sent != 200 || sum.Counts.Failed != 0 {
		t.Fatalf("counts %+v", sum.Counts)
	}
	if bad.Stats().Messages != 0 || good.Stats().Messages != 200 {
		t.Fatalf("first got %d, second %d", bad.Stats().Messages, good.Stats().Messages)
	}
	logs := b.logs.String()
	if !strings.Contains(logs, "refused the login") || !strings.Contains(logs, "535") {
		t.Errorf("the provider stop is not logged with its reason:\n%s", logs)
	}
	if strings.Contains(logs, "wrong-secret-pw") {
		t.Error("the password reached the log")
	}
}

func TestAllProvidersRefuseLogin(t *testing.T) {
	t.Parallel()
	bad := startSink(t, sink.Config{Auth: &sink.Credentials{Username: "news", Password: "right"}, AllowInsecureAuth: true})
	b := setup(t, campaignSpec{recipients: addresses(20, "u"),
		providers: providerTOML("only", bad, "username = \"news\"\npassword_env = \"PW\""),
		env:       map[string]string{"PW": "wrong"}})
	b.plan()
	sum, err := b.run()
	var stopped *engine.StoppedError
	if !errors.As(err, &stopped) || !strings.Contains(stopped.Reason, "refused the login") {
		t.Fatalf("want a StoppedError naming the login, got %v", err)
	}
	if sum.Counts.Pending != 20 || sum.Counts.Failed != 0 {
		t.Fatalf("recipients must stay queued: %+v", sum.Counts)
	}
}

func TestDailyQuotaSurvivesRestart(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	b := setup(t, campaignSpec{recipients: addresses(15, "q"), providers: providerTOML("local", s, "daily = 10\nconnections = 2")})
	b.plan()
	sum, err := b.run()
	var stopped *engine.StoppedError
	if !errors.As(err, &stopped) || !strings.Contains(stopped.Reason, "daily quota") {
		t.Fatalf("want a quota stop, got %v", err)
	}
	if sum.Counts.Sent != 10 || sum.Counts.Pending != 5 {
		t.Fatalf("counts %+v", sum.Counts)
	}
	b.open() // a restart must not reset the day
	b.plan()
	sum, err = b.run()
	if !errors.As(err, &stopped) || sum.Sent != 0 || s.Stats().Messages != 10 {
		t.Fatalf("after restart: sent %d more (err %v)", sum.Sent, err)
	}
}

// TestQuotaFilledByMoreConnections: a provider with more connections than
// messages left in its day takes exactly its quota, its backup the rest.
// Each sender reserves its message's share of the quota before it dials;
// a sender that finds the quota full while others still hold shares they
// may give back (a dial that fails, a circuit opened meanwhile) must not
// close the provider for the day with room left in it.
func TestQuotaFilledByMoreConnections(t *testing.T) {
	t.Parallel()
	for _, limit := range []string{"daily = 3", "warmup = [3, 10]"} {
		t.Run(limit, func(t *testing.T) {
			t.Parallel()
			warm := startSink(t, sink.Config{})
			backup := startSink(t, sink.Config{})
			b := setup(t, campaignSpec{recipients: addresses(30, "w"), providers: providerTOML("warm", warm, limit+"\nconnections = 8\npriority = 1") +
				providerTOML("backup", backup, "connections = 2\npriority = 2")})
			b.plan()
			if _, err := b.run(); err != nil {
				t.Fatal(err)
			}
			if warm.Stats().Messages != 3 || backup.Stats().Messages != 27 {
				t.Fatalf("the provider with a quota of 3 sent %d, its backup %d", warm.Stats().Messages, backup.Stats().Messages)
			}
		})
	}
}

func TestPolicyRejectionsPauseCampaign(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Faults: sink.Faults{Rules: []*sink.Rule{{Match: "@", Stage: sink.StageData, Code: 550, Enhanced: smtp.EnhancedCode{5, 7, 26}, Message: "Unauthenticated email from example.com is not accepted due to domain's DMARC policy."}}}})
	b := setup(t, campaignSpec{recipients: addresses(500, "p"), providers: providerTOML("local", s, "connections = 1"),
		extra: "policy_threshold = 0.5\npolicy_minimum = 10\n"})
	b.plan()
	sum, err := b.run()
	var stopped *engine.StoppedError
	if !errors.As(err, &stopped) || !strings.Contains(stopped.Reason, "paused") {
		t.Fatalf("want a pause, got %v", err)
	}
	if sum.Counts.Failed > 20 || sum.Counts.Pending < 480 {
		t.Fatalf("the campaign burned the list before pausing: %+v", sum.Counts)
	}
	c, _ := b.q.Campaign(context.Background(), "test")
	if c.Status != queue.Paused || !strings.Contains(c.Reason, "5.7.26") {
		t.Fatalf("campaign %+v", c)
	}
}

func TestDryRunSendsNothing(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	b := setup(t, campaignSpec{csv: "email,name,joined\na@example.com,A,2020-01-01\nb@example.com,B,never\nbad,C,2020-01-01\n",
		text: "{{.name}} since {{date \"2006\" .joined}}", providers: providerTOML("local", s, "")})
	var problems []engine.Problem
	res, err := b.eng.DryRun(context.Background(), func(p engine.Problem) { problems = append(problems, p) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != 1 || len(problems) != 2 || problems[0].Line != 3 && problems[1].Line != 3 {
		t.Fatalf("dry run %+v problems %v", res, problems)
	}
	if s.Stats().Sessions != 0 {
		t.Fatal("a dry run connected to the server")
	}
	if _, err := b.q.Campaign(context.Background(), "test"); !errors.Is(err, queue.ErrNoCampaign) {
		t.Fatal("a dry run wrote to the queue")
	}
}

func TestLoginRequiredButNotConfigured(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Auth: &sink.Credentials{Username: "news", Password: "pw"}, AllowInsecureAuth: true})
	b := setup(t, campaignSpec{recipients: addresses(30, "l"), providers: providerTOML("nologin", s, "connections = 2")})
	b.plan()
	sum, err := b.run()
	var stopped *engine.StoppedError
	if !errors.As(err, &stopped) || !strings.Contains(stopped.Reason, "requires a login") {
		t.Fatalf("want a stop naming the missing login, got %v", err)
	}
	if sum.Counts.Pending != 30 || sum.Counts.Failed != 0 || sum.Counts.Retry != 0 {
		t.Fatalf("recipients must stay untouched: %+v", sum.Counts)
	}
}

func TestAttachmentsAndIdleClose(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Keep: true})
	b := setup(t, campaignSpec{recipients: addresses(3, "a"), providers: providerTOML("local", s, "connections = 1\nidle_timeout = \"1ms\"\nrate = 4\nburst = 1\npipelining = false")})
	pdf := filepath.Join(b.dir, "flyer.pdf")
	if err := os.WriteFile(pdf, []byte("%PDF-1.4 herald attachment test"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.cfg.Campaign.Attachments = []string{pdf}
	b.open()
	b.plan()
	if _, err := b.run(); err != nil {
		t.Fatal(err)
	}
	msgs := s.Messages()
	if len(msgs) != 3 {
		t.Fatalf("%d messages", len(msgs))
	}
	for _, m := range msgs {
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		if ct := msg.Header.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/mixed") {
			t.Fatalf("content type %q", ct)
		}
		if !strings.Contains(string(m.Data), `filename="flyer.pdf"`) || !strings.Contains(string(m.Data), "JVBERi0xLjQgaGVyYWxkIGF0dGFjaG1lbnQgdGVzdA==") {
			t.Fatalf("attachment missing:\n%s", m.Data)
		}
	}
	// At 4 messages a second one connection idles 250 ms between
	// messages (less the time a send takes, which under -race on a busy
	// machine reached 100 ms), longer than idle_timeout: each message gets
	// a fresh one.
	if st := s.Stats(); st.Sessions != 3 {
		t.Fatalf("idle connections were not closed: %d sessions for 3 messages", st.Sessions)
	}
}

func TestMaxAgeFailsOldRetries(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Faults: sink.Faults{Rules: []*sink.Rule{{Match: "slow@", Stage: sink.StageRcpt, Code: 451, Enhanced: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}}}})
	b := setup(t, campaignSpec{recipients: []string{"slow@example.com", "fine@example.com"}, providers: providerTOML("local", s, "")})
	b.cfg.Retry.MaxAttempts = 1000
	b.cfg.Retry.MaxAge.Duration = 300 * time.Millisecond
	b.cfg.Retry.Backoff.Duration = 50 * time.Millisecond
	b.cfg.Retry.MaxBackoff.Duration = 50 * time.Millisecond
	b.open()
	b.plan()
	if _, err := b.run(); err != nil {
		t.Fatal(err)
	}
	j := b.jobs()["slow@example.com"]
	if j.State != queue.Failed || !strings.Contains(j.Reply, "451") || !strings.Contains(j.Reply, "gave up") || j.Attempts < 2 {
		t.Fatalf("job %+v", j)
	}
	if b.jobs()["fine@example.com"].State != queue.Sent {
		t.Fatal("the other recipient was not sent")
	}
}

// grouped counts reads that carried MAIL, RCPT and DATA together.
func grouped(reads [][]byte) int {
	n := 0
	for _, r := range reads {
		if bytes.Contains(r, []byte("MAIL FROM:")) && bytes.Contains(r, []byte("RCPT TO:")) && bytes.Contains(r, []byte("DATA\r\n")) {
			n++
		}
	}
	return n
}

func TestPipelinedOverlap(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name       string
		server     sink.Config
		extra      string
		groups     bool // envelopes as one group
		overlapped bool // the end of a message with the next envelope
	}{
		{"pipelining", sink.Config{RecordReads: true}, "", true, true},
		{"server without PIPELINING", sink.Config{RecordReads: true, NoPipelining: true}, "", false, false},
		{"switched off", sink.Config{RecordReads: true}, "pipelining = false", false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startSink(t, tt.server)
			rcpts := addresses(200, "o")
			b := setup(t, campaignSpec{recipients: rcpts, providers: providerTOML("local", s, "connections = 1\nper_connection = 1000\n"+tt.extra)})
			b.plan()
			if _, err := b.run(); err != nil {
				t.Fatal(err)
			}
			for _, r := range rcpts {
				if s.Received(r) != 1 {
					t.Fatalf("%s received %d times", r, s.Received(r))
				}
			}
			overlap := 0
			for _, r := range s.Reads() {
				if bytes.Contains(r, []byte("\r\n.\r\nMAIL FROM:")) {
					overlap++
				}
			}
			if g := grouped(s.Reads()); (g > 0) != tt.groups {
				t.Errorf("%d grouped envelopes", g)
			}
			if (overlap > 0) != tt.overlapped {
				t.Errorf("%d messages ended in the same flight as the next envelope", overlap)
			}
			t.Logf("%d reads for %d messages; %d grouped envelopes, %d overlapped", len(s.Reads()), len(rcpts), grouped(s.Reads()), overlap)
		})
	}
}

func TestPipelinedHardFailuresInsideGroups(t *testing.T) {
	t.Parallel()
	// Every third recipient is refused at RCPT, and every fifth message
	// after the data; a session ends (421) every seven messages.
	var n atomic.Int64
	s := startSink(t, sink.Config{Faults: sink.Faults{AfterMessages: 7, Hook: func(ev sink.Event) sink.Action {
		switch {
		case ev.Stage == sink.StageRcpt && strings.HasPrefix(ev.Rcpt, "g") && strings.HasSuffix(strings.Split(ev.Rcpt, "@")[0], "3"):
			return sink.Action{Reply: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}}
		case ev.Stage == sink.StageData && n.Add(1)%5 == 0:
			return sink.Action{Reply: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again"}}
		}
		return sink.Action{}
	}}})
	rcpts := addresses(300, "g")
	b := setup(t, campaignSpec{recipients: rcpts, providers: providerTOML("local", s, "connections = 2")})
	b.cfg.Retry.MaxAttempts = 50
	b.cfg.Campaign.BounceThreshold = 1 // a tenth bounce on purpose: no brake
	b.open()
	b.plan()
	sum, err := b.run()
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, r := range rcpts {
		local := strings.Split(r, "@")[0]
		j := b.jobs()[r]
		if strings.HasSuffix(local, "3") {
			refused++
			if j.State != queue.Failed || s.Received(r) != 0 {
				t.Fatalf("%s: %s, received %d", r, j.State, s.Received(r))
			}
			continue
		}
		if j.State != queue.Sent || s.Received(r) != 1 {
			t.Fatalf("%s: %s (%s), received %d", r, j.State, j.Reply, s.Received(r))
		}
	}
	if sum.Counts.Sent != int64(300-refused) || sum.Counts.Failed != int64(refused) || sum.Counts.Open() != 0 {
		t.Fatalf("counts %+v", sum.Counts)
	}
}

// An address suppressed while its campaign runs (an unsubscribe) is not
// sent to; one suppressed before planning is never leased; another sending
// domain's list does not count.
func TestSuppressedDuringCampaign(t *testing.T) {
	t.Parallel()
	rcpts := addresses(300, "user")
	var b *bundle
	var delivered atomic.Int64
	suppressed := make(chan error, 1)
	s := startSink(t, sink.Config{Keep: true, Faults: sink.Faults{Hook: func(ev sink.Event) sink.Action {
		if ev.Stage == sink.StageData && delivered.Add(1) == 50 {
			// The last 100 are leased about two seconds from now.
			suppressed <- b.q.Suppress(context.Background(), "example.com", "unsubscribed (one-click)", rcpts[200:]...)
		}
		return sink.Action{}
	}}})
	b = setup(t, campaignSpec{recipients: rcpts, providers: providerTOML("local", s, "connections = 2\nrate = 100\nburst = 5")})
	ctx := context.Background()
	if err := b.q.Suppress(ctx, "example.com", "hard bounce 5.1.1", rcpts[0]); err != nil {
		t.Fatal(err)
	}
	if err := b.q.Suppress(ctx, "other.example", "unsubscribed", rcpts[1]); err != nil {
		t.Fatal(err)
	}
	if res := b.plan(); res.Added != 300 || res.Suppressed != 1 {
		t.Fatalf("plan: %+v", res)
	}
	sum, err := b.run()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-suppressed; err != nil {
		t.Fatal(err)
	}
	for _, r := range append([]string{rcpts[0]}, rcpts[200:]...) {
		if n := s.Received(r); n != 0 {
			t.Errorf("%s is on the suppression list and received %d messages", r, n)
		}
	}
	if s.Received(rcpts[1]) != 1 {
		t.Error("a suppression for another sending domain kept the address from this campaign")
	}
	jobs := b.jobs()
	for _, r := range rcpts[200:] {
		if j := jobs[r]; j.State != queue.Suppressed || j.Reply != "on the suppression list: unsubscribed (one-click)" {
			t.Fatalf("%s: %s %q", r, j.State, j.Reply)
		}
	}
	if sum.Sent != 199 || sum.Skipped != 100 || sum.Counts.Suppressed != 101 || sum.Counts.Open() != 0 {
		t.Fatalf("summary %+v", sum)
	}
}

// A campaign keeps the sending domain it was planned with: its suppression
// list, its hard bounces and its unsubscribe links all name that list.
func TestFromDomainFixedAtPlanning(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	b := setup(t, campaignSpec{recipients: addresses(3, "u"), providers: providerTOML("local", s, "")})
	b.plan()
	b.cfg.Campaign.From = "Herald Test <news@Other.Example>"
	b.open()
	_, err := b.eng.Plan(context.Background(), func(engine.Problem) {})
	var ie *engine.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "planned to be sent from example.com") || !strings.Contains(err.Error(), "now at other.example") {
		t.Fatalf("re-plan from another domain: %v", err)
	}
	// Another local part of the same domain is the same list.
	b.cfg.Campaign.From = "News <letters@EXAMPLE.com>"
	b.open()
	if _, err := b.eng.Plan(context.Background(), func(engine.Problem) {}); err != nil {
		t.Fatalf("same domain, other local part: %v", err)
	}
}

// A job that waited for its pace longer than a second after its lease-time
// look at the suppression list is looked at again right before it is sent.
func TestSuppressedWhileWaitingForPace(t *testing.T) {
	t.Parallel()
	rcpts := addresses(5, "slow")
	var b *bundle
	suppressed := make(chan error, 1)
	s := startSink(t, sink.Config{Keep: true, Faults: sink.Faults{Hook: func(ev sink.Event) sink.Action {
		// When the second message arrives, the third is already leased
		// and checked, and waits in a sender for its turn of the pace.
		if ev.Stage == sink.StageData && ev.Recipients[0] == rcpts[1] {
			suppressed <- b.q.Suppress(context.Background(), "example.com", "unsubscribed (one-click)", rcpts[2])
		}
		return sink.Action{}
	}}})
	b = setup(t, campaignSpec{recipients: rcpts, providers: providerTOML("local", s, "connections = 1\nrate = 1\nburst = 1")})
	b.plan()
	sum, err := b.run()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-suppressed; err != nil {
		t.Fatal(err)
	}
	if n := s.Received(rcpts[2]); n != 0 {
		t.Fatalf("%s went on the list while its job waited for the pace, and received %d", rcpts[2], n)
	}
	if j := b.jobs()[rcpts[2]]; j.State != queue.Suppressed || sum.Sent != 4 || sum.Skipped != 1 {
		t.Fatalf("%s: %s; summary %+v", rcpts[2], j.State, sum)
	}
}

// TestTimeoutBoundsEachCommand: 30 messages at 3 a second over one
// connection with timeout = "3s" take 10 s: the timeout bounds each command
// and each wait for a reply, not the connection, so one session carries
// them all and nothing is sent twice; with and without pipelining.
func TestTimeoutBoundsEachCommand(t *testing.T) {
	t.Parallel()
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			t.Parallel()
			s := startSink(t, sink.Config{})
			b := setup(t, campaignSpec{recipients: addresses(30, "slow"), providers: strings.Replace(providerTOML("local", s,
				fmt.Sprintf("connections = 1\nrate = 3\nburst = 1\nidle_timeout = \"5s\"\npipelining = %v", pipelining)), `timeout = "5s"`, `timeout = "3s"`, 1)})
			b.plan()
			sum, err := b.run()
			if err != nil || sum.Counts.Sent != 30 {
				t.Fatalf("err %v counts %+v", err, sum.Counts)
			}
			st := s.Stats()
			t.Logf("%d messages in %s over %d sessions", st.Messages, sum.Elapsed.Round(time.Millisecond), st.Sessions)
			if st.Sessions != 1 || st.Messages != 30 {
				t.Fatalf("%d sessions and %d messages for 30 recipients over one connection", st.Sessions, st.Messages)
			}
		})
	}
}

// TestLostConnectionsNeverFailRecipients: a server that hangs up at RCPT
// for some recipients, more often than the fresh connections a job may
// meet in a row. With retry.max_attempts = 1 none of them may fail or count
// an attempt: a connection lost before the data is the provider's problem,
// retried at once on a fresh connection and, when it keeps happening to a
// job, after a cool-down with the provider slowed down.
func TestLostConnectionsNeverFailRecipients(t *testing.T) {
	t.Parallel()
	const n, flaky, drops = 200, 10, 20
	s := startSink(t, sink.Config{Faults: sink.Faults{Rules: []*sink.Rule{{Match: "flaky", Stage: sink.StageRcpt, Drop: true, Times: drops}}}})
	var recipients []string
	for i, a := range addresses(n, "ok") {
		if i%(n/flaky) == 0 {
			recipients = append(recipients, fmt.Sprintf("flaky%d@example.com", i))
		}
		recipients = append(recipients, a)
	}
	b := setup(t, campaignSpec{recipients: recipients, providers: providerTOML("local", s, "connections = 2")})
	b.cfg.Retry.MaxAttempts = 1
	b.open()
	b.plan()
	sum, err := b.run()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Counts.Sent != n+flaky || sum.Counts.Failed != 0 {
		for _, j := range b.jobs() {
			if j.State == queue.Failed {
				t.Errorf("%s failed: %s", j.Email, j.Reply)
				break
			}
		}
		t.Fatalf("counts %+v (reconnects %d)", sum.Counts, sum.Reconnects)
	}
	for _, j := range b.jobs() {
		if j.Attempts > 1 {
			t.Fatalf("%s counted %d attempts", j.Email, j.Attempts)
		}
	}
	if d := s.Stats().Messages - (n + flaky); d != 0 {
		t.Fatalf("%d messages twice", d)
	}
	t.Logf("%d delivered through %d connections lost at RCPT (%d reconnects), none failed", n+flaky, drops, sum.Reconnects)
}

// TestTemporaryLoginRefusalPauses: "454 4.7.0 too many login attempts"
// pauses the provider for the auth pause instead of stopping it for good
// or failing anyone. herald send stops and names the reply, every
// recipient still queued; a worker waits the pause out (no login tried
// meanwhile) and then delivers everyone. The pause is shortened through
// Options.Timing; in production it is 5 minutes.
func TestTemporaryLoginRefusalPauses(t *testing.T) {
	t.Parallel()
	const pause = 600 * time.Millisecond
	var (
		mu     sync.Mutex
		logins []time.Time
		refuse = 1 << 30 // refuse every login until told otherwise
	)
	s := startSink(t, sink.Config{Auth: &sink.Credentials{Username: "news", Password: "right"}, AllowInsecureAuth: true,
		Faults: sink.Faults{Hook: func(ev sink.Event) sink.Action {
			if ev.Stage != sink.StageAuth {
				return sink.Action{}
			}
			mu.Lock()
			defer mu.Unlock()
			logins = append(logins, time.Now())
			if refuse > 0 {
				refuse--
				return sink.Action{Reply: &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many login attempts, please try again later"}}
			}
			return sink.Action{}
		}}})
	b := setup(t, campaignSpec{recipients: addresses(20, "u"),
		providers: providerTOML("only", s, "username = \"news\"\npassword_env = \"PW\"\nconnections = 2"),
		env:       map[string]string{"PW": "right"}})
	b.timing = engine.Timing{AuthPause: pause, CircuitPoll: 20 * time.Millisecond}
	b.open()
	b.plan()
	sum, err := b.run()
	var stopped *engine.StoppedError
	if !errors.As(err, &stopped) || !strings.Contains(stopped.Reason, "454") || !strings.Contains(stopped.Reason, "paused until") {
		t.Fatalf("herald send: want a StoppedError naming the 454 and the pause, got %v", err)
	}
	if sum.Counts.Pending != 20 || sum.Counts.Failed != 0 || s.Stats().Messages != 0 {
		t.Fatalf("herald send: everyone must stay queued: %+v, %d delivered", sum.Counts, s.Stats().Messages)
	}

	// A worker: the first login is refused, the next waits for the pause.
	mu.Lock()
	refuse, logins = 1, nil
	mu.Unlock()
	w, err := engine.NewWorker(b.cfg, b.q, engine.Options{Logger: slog.New(slog.NewTextHandler(b.logs, nil)), Timing: b.timing})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	go func() {
		for s.Stats().Messages < 20 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		stop()
	}()
	if _, err := w.Work(ctx, context.Background()); !errors.Is(err, engine.ErrInterrupted) {
		t.Fatalf("Work: %v", err)
	}
	if c, _ := b.q.Counts(context.Background(), "test"); c.Sent != 20 || c.Failed != 0 {
		t.Fatalf("worker: counts %+v", c)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(logins) < 2 {
		t.Fatalf("want a refused login and a later one, got %d logins", len(logins))
	}
	// The connections' logins start at once; every one after the refusal
	// waits for the pause (a concurrent one may have begun just before).
	var early int
	for _, at := range logins[1:] {
		if at.Sub(logins[0]) < pause-50*time.Millisecond {
			early++
		}
	}
	if early > 1 {
		t.Fatalf("%d logins within the pause after the refusal: %v", early, logins)
	}
	t.Logf("refused at 0, then logins at %v", func() (d []time.Duration) {
		for _, at := range logins[1:] {
			d = append(d, at.Sub(logins[0]).Round(time.Millisecond))
		}
		return
	}())
}

// TestProviderLosingEveryConnectionPauses: a server that closes every
// connection before the data costs no recipient an attempt; after
// lossesToStop jobs in a row the provider pauses (herald send stops and
// says why), with every recipient still queued.
func TestProviderLosingEveryConnectionPauses(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Faults: sink.Faults{Rules: []*sink.Rule{{Stage: sink.StageRcpt, Drop: true}}}})
	b := setup(t, campaignSpec{recipients: addresses(30, "u"), providers: providerTOML("local", s, "connections = 2")})
	b.timing = engine.Timing{DialBase: 5 * time.Millisecond}
	b.open()
	b.plan()
	sum, err := b.run()
	var stopped *engine.StoppedError
	if !errors.As(err, &stopped) || !strings.Contains(stopped.Reason, "connections keep closing before the data") {
		t.Fatalf("want a StoppedError saying the connections keep closing, got %v", err)
	}
	if sum.Counts.Pending+sum.Counts.Retry != 30 || sum.Counts.Failed != 0 || s.Stats().Messages != 0 {
		t.Fatalf("everyone must stay queued (pending, or back for a cool-down): %+v", sum.Counts)
	}
	for _, j := range b.jobs() {
		if j.Attempts != 0 {
			t.Fatalf("%s counted %d attempts for connections the server closed", j.Email, j.Attempts)
		}
	}
	t.Logf("stopped after %d reconnects: %s", sum.Reconnects, stopped.Reason)
}

// TestRunWhilePlanning: herald send delivers while the rest of the file is
// planned. PlanStarting says when the campaign exists (not again for a
// campaign planned before); a run given an open planning channel does not
// end when it has caught up with the jobs planned so far, delivers those
// planned later, and ends once planning is closed and they are final.
func TestRunWhilePlanning(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Keep: true})
	b := setup(t, campaignSpec{recipients: addresses(300, "p"), providers: providerTOML("local", s, "connections = 4")})
	ctx := context.Background()
	calls := 0
	res, err := b.eng.PlanStarting(ctx, func(p engine.Problem) { t.Logf("problem: %s", p) }, func() {
		calls++
		if _, err := b.q.Campaign(ctx, "test"); err != nil {
			t.Errorf("started called before the campaign exists: %v", err)
		}
	})
	if err != nil || res.Added != 300 || calls != 1 {
		t.Fatalf("plan: %+v, %v; started called %d times, want once", res, err, calls)
	}
	if _, err := b.eng.PlanStarting(ctx, func(engine.Problem) {}, func() { t.Error("started called for a campaign planned before") }); err != nil {
		t.Fatal(err)
	}

	planning := make(chan struct{})
	type ran struct {
		sum engine.Summary
		err error
	}
	done := make(chan ran, 1)
	runCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	go func() {
		sum, err := b.eng.RunPlanning(runCtx, runCtx, planning)
		done <- ran{sum, err}
	}()
	waitFor := func(n int64) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); s.Stats().Messages < n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d messages delivered, want %d", s.Stats().Messages, n)
			}
		}
	}
	waitFor(300)
	// Every job planned so far is final: the run waits for planning.
	select {
	case r := <-done:
		t.Fatalf("the run ended while planning was open: %+v, %v", r.sum, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	// The rest of the file, as a planner would store it.
	var later []queue.Job
	for i := range 20 {
		email := fmt.Sprintf("later%d@example.com", i)
		later = append(later, queue.Job{Seq: uint64(400 + i), Key: email, Email: email, Fields: []string{email, "Later"}})
	}
	if _, err := b.q.Enqueue(ctx, "test", later); err != nil {
		t.Fatal(err)
	}
	waitFor(320)
	close(planning)
	r := <-done
	if r.err != nil || r.sum.Sent != 320 || r.sum.Counts.Open() != 0 {
		t.Fatalf("run: %+v, %v", r.sum, r.err)
	}
	for _, j := range later {
		if s.Received(j.Email) != 1 {
			t.Errorf("%s received %d times", j.Email, s.Received(j.Email))
		}
	}
}
