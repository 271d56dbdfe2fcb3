package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldmail/herald/config"
	"github.com/heraldmail/herald/engine"
	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/queue/boltq"
	"github.com/heraldmail/herald/queue/redisq"
	"github.com/heraldmail/herald/ratelimit"
)

// campaign is what every campaign command opens: config, queue, engine.
type campaign struct {
	cfg *config.Config
	q   queue.Queue
	rdb redis.UniversalClient // the Redis queue's client (nil: embedded)
	eng *engine.Engine
	// recovered is how many leases of a dead process the embedded store
	// returned when it was opened.
	recovered int
	// replayed is how many outcomes of a dead process the embedded store
	// applied from its outcome journal.
	replayed int
	// stopJournal stops moving unsubscribes from herald serve's journal
	// into the embedded store (journal.go).
	stopJournal func()
	// stopControl stops serving the embedded store's control socket.
	stopControl func()
	// scratch is a throwaway store's folder, removed at Close.
	scratch string
}

// borrowed is a queue another command of this process has open: closing
// it is that command's business.
type borrowed struct{ *boltq.Queue }

func (borrowed) Close() error { return nil }

func (c *campaign) Close() {
	if c.stopControl != nil {
		c.stopControl()
	}
	if c.stopJournal != nil {
		c.stopJournal()
	}
	if c.q != nil {
		c.q.Close()
	}
	if c.scratch != "" {
		os.RemoveAll(c.scratch)
	}
}

// opening says what a command needs besides the queue.
type opening int

const (
	queueOnly       opening = iota // the queue; [campaign] optional (status, report, ...)
	campaignEngine                 // the configuration's campaign: templates, providers (send, enqueue)
	campaignPreview                // as campaignEngine, but nothing is planned or sent (preview, send --dry-run)
	workerEngine                   // providers only; campaigns come from the queue (worker)
	bounceMailbox                  // the queue and [bounces]; no providers needed (bounces)
)

// open loads the configuration and opens the queue, and prepares the engine
// as what asks.
func open(path string, what opening, opts engine.Options, stderr io.Writer) (*campaign, int) {
	if path == "" {
		fmt.Fprintln(stderr, "herald: --config FILE is required")
		return nil, exitInput
	}
	load := config.Load
	switch what {
	case workerEngine:
		load = config.LoadWorker
	case queueOnly:
		load = config.LoadQueue
	case campaignPreview:
		load = config.LoadPreview
	}
	if what == bounceMailbox {
		load = config.LoadBounces
	}
	cfg, err := load(path)
	if err != nil {
		fmt.Fprintf(stderr, "herald: %s\n", err)
		return nil, exitInput
	}
	c := &campaign{cfg: cfg}
	if u := cfg.Unsubscribe; what == campaignPreview && u != nil && len(u.Secret) == 0 {
		// What is rendered here is never sent: a stand-in key signs its
		// links, and the reader is told.
		u.Secret = []byte("herald preview stand-in key, never sent")
		fmt.Fprintf(stderr, "herald: %s is not set: the unsubscribe links shown are signed with a stand-in key, not the real one\n", u.SecretEnv)
	}
	switch cfg.Queue.Backend {
	case "redis":
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		q, err := redisq.Open(ctx, cfg.Queue.URL, redisq.Options{})
		if err != nil {
			fmt.Fprintf(stderr, "herald: queue.url: %s\n", err)
			return nil, exitInput
		}
		c.q, opts.LeaseTTL = q, cfg.Queue.Lease.Duration
		if (what == campaignEngine || what == workerEngine) && !cfg.Queue.Volatile {
			// A restart of a Redis that keeps nothing loses every campaign
			// in it, and a later run would plan and send it all again.
			if err := q.CheckPersistence(ctx); err != nil {
				q.Close()
				fmt.Fprintf(stderr, "herald: queue.url: %s\n", err)
				if errors.Is(err, redisq.ErrVolatile) {
					fmt.Fprintln(stderr, "herald: a restart of this Redis would lose every campaign in it. Turn on appendonly (or RDB save points), or, if a Redis that keeps nothing is intended (a throwaway one), set queue.volatile = true")
				}
				return nil, exitInput
			}
		}
		// Every process sending through a provider, or to a domain,
		// shares its limits; a command that sends nothing (enqueue)
		// passes its own, and no provider's Fingerprint (scrypt, about
		// 0.2 s each) is computed for it.
		c.rdb = q.Client()
		if opts.Limits == nil {
			opts.Limits = redisLimits{c.rdb}
		}
	default:
		if q, ok := attached.Load(cfg.Queue.Path); ok {
			// A command forwarded to this process (control.go): the
			// store is open here already.
			c.q = borrowed{q.(*boltq.Queue)}
			break
		}
		path := cfg.Queue.Path
		if _, err := os.Stat(path); what == campaignPreview && errors.Is(err, os.ErrNotExist) {
			// preview and send --dry-run write nothing: with no store yet
			// (nothing planned, nothing suppressed) they use a throwaway
			// one, removed at Close.
			tmp, err := os.MkdirTemp("", "herald-preview-")
			if err != nil {
				fmt.Fprintf(stderr, "herald: %s\n", err)
				return nil, exitInput
			}
			c.scratch, path = tmp, filepath.Join(tmp, "herald.db")
		}
		q, err := boltq.Open(path)
		if errors.Is(err, boltq.ErrBusy) && (what == queueOnly || what == campaignPreview) {
			busyStore = cfg.Queue.Path
			return nil, exitForward
		}
		if err != nil {
			c.Close()
			fmt.Fprintf(stderr, "herald: queue.path: %s\n", err)
			return nil, exitInput
		}
		c.q, c.recovered, c.replayed = q, q.Recovered(), q.Replayed()
		c.stopJournal = followJournal(cfg.Queue.Path, q, stderr)
		if what == campaignEngine || what == workerEngine {
			c.stopControl = serveControl(cfg.Queue.Path, q, stderr)
		}
	}
	if n := legacySuppressions(c.q, stderr); n > 0 && (what == campaignEngine || what == campaignPreview || what == workerEngine) {
		// Sending now could mail addresses that are on that list.
		c.Close()
		fmt.Fprintf(stderr, "herald: nothing is sent until they are moved: herald suppress migrate --config %s [--list DOMAIN]\n", path)
		return nil, exitInput
	}
	switch what {
	case campaignEngine, campaignPreview:
		c.eng, err = engine.New(cfg, c.q, opts)
	case workerEngine:
		c.eng, err = engine.NewWorker(cfg, c.q, opts)
	}
	if err != nil {
		c.Close()
		fmt.Fprintf(stderr, "herald: %s\n", err)
		return nil, exitInput
	}
	// With limits in Redis, every provider's Fingerprint ran scrypt, whose
	// 32 MB work area is garbage now. A collection during it set the heap
	// goal from it (5× under tuneGC): without this one the heap grew to
	// ~160 MB before the next, and herald send on Redis peaked at 184 MB
	// of RSS where the embedded queue takes 71 MB.
	runtime.GC()
	return c, exitOK
}

// redisLimits shares the providers' and domains' limits through Redis.
type redisLimits struct{ rdb redis.UniversalClient }

func (l redisLimits) Provider(p config.Provider) engine.ProviderLimits {
	return engine.ProviderLimits{
		Pacer:   ratelimit.NewRedisPacer(l.rdb, redisq.Prefix, p.Name, engine.Policy(p)),
		Quota:   ratelimit.NewRedisQuota(l.rdb, redisq.Prefix, p.Name, p.Daily),
		Slots:   ratelimit.NewRedisSlots(l.rdb, redisq.Prefix, p.Name, p.Connections),
		Circuit: ratelimit.NewRedisCircuit(l.rdb, redisq.Prefix, p.Name, p.Fingerprint()),
		// Every process counts a warm-up day in one place.
		WarmupDay: func(day int, limit int) ratelimit.Quota {
			return ratelimit.NewRedisQuota(l.rdb, redisq.Prefix, fmt.Sprintf("%s:warmup:%d", p.Name, day), limit)
		},
	}
}

func (l redisLimits) Domain(name string, d config.Domain) ratelimit.Pacer {
	return ratelimit.NewRedisPacer(l.rdb, redisq.Prefix, "domain:"+name, engine.DomainPolicy(d))
}

func cmdSend(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("send", "--config FILE [--dry-run]", stderr)
	path := fs.String("config", "", "campaign configuration `file` (TOML)")
	dry := fs.Bool("dry-run", false, "plan and render every recipient, report problems, send nothing")
	quiet := fs.Bool("quiet", false, "no progress display, only the summary")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the run to `file` (for benchmarking)")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus metrics at http://`ADDR`/metrics (e.g. 127.0.0.1:9464)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	stopProfile, ok := startSending(*cpuprofile, stderr)
	if !ok {
		return exitInput
	}
	defer stopProfile()
	out := newOutput(stderr, *quiet)
	log := out.logger()
	metrics, err := serveMetrics(*metricsAddr, stderr)
	if err != nil {
		return exitInput
	}
	defer metrics.Close()
	what := campaignEngine
	if *dry {
		what = campaignPreview
	}
	c, code := open(*path, what, engine.Options{Logger: log, Observer: metrics.observer()}, stderr)
	if c == nil {
		return code
	}
	defer c.Close()
	id := c.cfg.Campaign.ID
	problems := 0
	report := func(p engine.Problem) {
		if !p.Warning {
			problems++
		}
		out.printf("%s: %s\n", c.cfg.Campaign.Recipients, p)
	}

	soft, hard, stopSignals := signalContexts(out)
	defer stopSignals()

	if *dry {
		res, err := c.eng.DryRun(soft, report)
		if code, done := failed(err, stderr); done {
			return code
		}
		fmt.Fprintf(stdout, "dry run of %s: %d rows, %d would be sent, %d invalid, %d duplicates; nothing was sent\n",
			id, res.Rows, res.Added, res.Invalid, res.Duplicates)
		if problems > 0 {
			return exitFailed
		}
		return exitOK
	}

	if camp, err := c.q.Campaign(soft, id); err == nil && camp.Status == queue.Paused {
		return refusePaused(&engine.PausedError{ID: id, Reason: camp.Reason}, *path, stderr)
	}
	if n := c.recovered; n > 0 || c.replayed > 0 {
		out.printf("herald: the previous run of %s stopped without finishing; %d outcomes it had not yet recorded were recovered from its journal, and the %d recipients it had taken are queued again (those it was sending at that moment, at most one per connection, may receive the message twice)\n", id, c.replayed, n)
	}
	// Delivery starts once the campaign exists, its templates checked
	// against the header and the first row, while the rest of the file
	// is planned: planning a large file no longer delays the first
	// message. The run does not end before planning has.
	type planned struct {
		res engine.PlanResult
		err error
	}
	runSoft, stopRun := context.WithCancel(soft)
	defer stopRun()
	started, planDone := make(chan struct{}), make(chan planned, 1)
	planning := make(chan struct{}) // closed when the plan returned
	go func() {
		res, err := c.eng.PlanStarting(soft, report, func() { close(started) })
		planDone <- planned{res, err}
		close(planning)
	}()
	sayPlanned := func(res engine.PlanResult) {
		if res.Resumed {
			counts, _ := c.q.Counts(soft, id)
			out.printf("resuming %s: %d sent, %d failed, %d suppressed, %d to go\n", id, counts.Sent, counts.Failed, counts.Suppressed, counts.Open())
		} else {
			out.printf("planned %s: %d rows, %d new recipients, %d invalid, %d duplicates, %d suppressed\n",
				id, res.Rows, res.Added, res.Invalid, res.Duplicates, res.Suppressed)
		}
		if res.ContentChanged {
			out.printf("%s: the campaign's content changed since it was planned; messages not yet sent use the new content\n", id)
		}
	}
	var planErr error
	watched := make(chan struct{}) // closed once the plan's end is handled
	select {
	case p := <-planDone:
		// Planned before delivery could start (a campaign planned
		// before, a plan that failed, or a file planned at once).
		if code, done := failed(p.err, stderr); done {
			return code
		}
		sayPlanned(p.res)
		close(watched)
	case <-started:
		go func() {
			defer close(watched)
			p := <-planDone
			if p.err != nil {
				planErr = p.err
				stopRun() // the run stops taking jobs; planErr is reported
				return
			}
			sayPlanned(p.res)
		}()
	}

	stopProgress := out.progress(c.eng)
	sum, err := c.eng.RunPlanning(runSoft, hard, planning)
	stopProgress()
	<-watched
	planCode := 0
	if planErr != nil && soft.Err() == nil {
		// The run stopped because the plan failed: the plan's error is
		// the one to report (an interrupted plan is an interrupted run).
		planCode, _ = failed(planErr, stderr)
		err = nil
	}
	counts, cerr := c.q.Counts(context.Background(), id)
	if cerr != nil {
		counts = sum.Counts
	}
	fmt.Fprintf(stdout, "%s: %d sent, %d failed, %d skipped (on the suppression list), %d waiting; this run: %d sent in %s (%.0f msgs/s)",
		id, counts.Sent, counts.Failed, counts.Suppressed, counts.Open(), sum.Sent, sum.Elapsed.Round(time.Millisecond), rate(sum.Sent, sum.Elapsed))
	if sum.Ambiguous > 0 {
		fmt.Fprintf(stdout, ", %d possibly duplicated (connection lost after the data)", sum.Ambiguous)
	}
	fmt.Fprintln(stdout)
	if planCode == exitInput && underWay(counts) {
		// The same command finishes it once the file is right.
		fmt.Fprintf(stderr, "herald: %s is under way: run the same command again to finish it once the recipients file is right\n", id)
		return exitInterrupted
	}
	if planCode != 0 {
		return planCode
	}
	var stopped *engine.StoppedError
	var paused *engine.PausedError
	switch {
	case errors.As(err, &paused):
		return refusePaused(paused, *path, stderr)
	case errors.Is(err, engine.ErrInterrupted):
		fmt.Fprintf(stderr, "herald: interrupted; run the same command again to resume %s\n", id)
		return exitInterrupted
	case errors.As(err, &stopped):
		fmt.Fprintf(stderr, "herald: stopped: %s\n", stopped.Reason)
		if errors.Is(err, queue.ErrVanished) {
			// Exit 3 as for any run cut short; running again refuses
			// (exit 2) and says why.
			fmt.Fprintf(stderr, "herald: %s\n", replanHint)
			return exitInterrupted
		}
		if !underWay(counts) {
			return exitInput
		}
		return exitInterrupted
	case err != nil:
		if code, done := failed(err, stderr); done {
			return code
		}
	}
	if counts.Failed > 0 {
		fmt.Fprintf(stderr, "herald: %d recipients failed; see: herald report --config %s --failed\n", counts.Failed, *path)
		return exitFailed
	}
	return exitOK
}

// underWay says whether a campaign that stops on an error has had
// messages tried: then it exits 3 (run again to resume), not 2, which is
// for an error before anything was sent.
func underWay(c queue.Counts) bool { return c.Sent > 0 || c.Failed > 0 }

// refusePaused says that a paused campaign stays paused until herald
// resume, and how to resume it: exit 3.
func refusePaused(p *engine.PausedError, path string, stderr io.Writer) int {
	fmt.Fprintf(stderr, "herald: %s\nherald: a paused campaign goes on only after: herald resume --config %s (then run this again)\n", p, path)
	return exitInterrupted
}

// replanHint says what to do about a campaign whose data vanished.
const replanHint = "the campaign is not planned again under this id: that would send every message again, to those who had it too. " +
	"To send it anyway, deliberately, give campaign.id a new value: every recipient of the file then gets the message, including those sent before"

// failed prints err and maps it to an exit status; done is false for nil.
func failed(err error, stderr io.Writer) (int, bool) {
	if err == nil {
		return 0, false
	}
	var in *engine.InputError
	switch {
	case errors.As(err, &in):
		fmt.Fprintf(stderr, "herald: %s\n", indent(err.Error()))
		return exitInput, true
	case errors.Is(err, queue.ErrVanished):
		fmt.Fprintf(stderr, "herald: %s\nherald: %s\n", err, replanHint)
		return exitInput, true
	case errors.Is(err, redisq.ErrLayout):
		fmt.Fprintf(stderr, "herald: %s\n", err)
		return exitInput, true
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "herald: interrupted")
		return exitInterrupted, true
	}
	fmt.Fprintf(stderr, "herald: %s\n", err)
	return exitInterrupted, true
}

// signalContexts returns soft, cancelled on the first SIGINT or SIGTERM
// (stop taking jobs, finish sends in flight), and hard, cancelled on the
// second (stop at once: connections are cut). Should the process still run
// hardStopGrace after the second, whatever it waits on (Redis, the disk),
// it exits with exitInterrupted: what it had not recorded is as after a
// kill, which loses nothing (README, "Running a campaign"). The signals
// stay caught until the process exits, so that one arriving as the
// command returns does not kill it before its cleanup.
func signalContexts(out *output) (soft, hard context.Context, stop func()) {
	soft, softCancel := context.WithCancel(context.Background())
	hard, hardCancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	var returned atomic.Bool
	go func() {
		var grace <-chan time.Time
		for n := 0; ; n++ {
			select {
			case <-grace:
				out.printf("herald: not stopped %s after the second signal; exiting (run the same command again: what was not recorded is recovered as after a kill)\n", hardStopGrace)
				os.Exit(exitInterrupted)
			case s := <-sig:
				switch {
				case n == 0 && !returned.Load():
					out.printf("herald: %s: finishing the messages in flight (again to stop at once)\n", s)
				case grace == nil && !returned.Load():
					out.printf("herald: %s: stopping now\n", s)
				}
				softCancel()
				if n > 0 && grace == nil {
					hardCancel()
					grace = time.After(hardStopGrace)
				}
			}
		}
	}()
	return soft, hard, func() {
		returned.Store(true)
		softCancel()
		hardCancel()
	}
}

// hardStopGrace is how long a command may take to return after the
// second signal before the process exits.
const hardStopGrace = time.Second

// startSending prepares the process for a command that plans or sends a
// campaign: the CPU profile the command line asks for (see cpuProfile) and
// the collector's tuning (tuneGC); false when the profile cannot start.
func startSending(cpuprofile string, stderr io.Writer) (stop func(), ok bool) {
	stop, err := cpuProfile(cpuprofile)
	if err != nil {
		fmt.Fprintf(stderr, "herald: %v\n", err)
		return nil, false
	}
	tuneGC()
	return stop, true
}

// tuneGC trades memory for CPU unless the user chose with GOGC: a send
// run allocates steadily, and the default GOGC=100 once spent a third of
// the CPU collecting (bench/campaign.sh: 5,600 msgs/s at GOGC=100, 8,000
// at 400, peak RSS 54 and 66 MB). Since a sender reuses its message
// buffers and the rendered text, a run allocates half what it did: 250
// costs no more CPU than 400 (4 interleaved pairs of 100,000 messages,
// 2.49 s against 2.48) and holds 9 MB less (7 MB less at a million). The
// soft memory limit keeps the heap in bounds regardless.
func tuneGC() {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetGCPercent(250)
	debug.SetMemoryLimit(256 << 20)
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func cmdEnqueue(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("enqueue", "--config FILE", stderr)
	path := fs.String("config", "", "campaign configuration `file` (TOML)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the run to `file` (for benchmarking)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	stopProfile, ok := startSending(*cpuprofile, stderr)
	if !ok {
		return exitInput
	}
	defer stopProfile()
	out := newOutput(stderr, true)
	// Enqueue only plans: nothing is sent, so no limit is shared.
	c, code := open(*path, campaignEngine, engine.Options{Logger: out.logger(), Limits: engine.LocalLimits{}}, stderr)
	if c == nil {
		return code
	}
	defer c.Close()
	soft, _, stop := signalContexts(out)
	defer stop()
	res, err := c.eng.Plan(soft, func(p engine.Problem) { out.printf("%s: %s\n", c.cfg.Campaign.Recipients, p) })
	if code, done := failed(err, stderr); done {
		return code
	}
	if res.ContentChanged {
		out.printf("%s: the campaign's content changed since it was planned; messages not yet sent use the new content (running workers: pause and resume the campaign to reload it)\n", c.cfg.Campaign.ID)
	}
	if res.Resumed {
		out.printf("campaign %s was planned before: nothing added\n", c.cfg.Campaign.ID)
	} else {
		out.printf("planned %s: %d rows, %d new recipients, %d invalid, %d duplicates, %d suppressed\n",
			c.cfg.Campaign.ID, res.Rows, res.Added, res.Invalid, res.Duplicates, res.Suppressed)
	}
	fmt.Fprintln(stdout, c.cfg.Campaign.ID)
	return exitOK
}
