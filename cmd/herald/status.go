package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"time"

	"github.com/heraldmail/herald/engine"
	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/queue/redisq"
	"github.com/heraldmail/herald/ratelimit"
	"github.com/heraldmail/herald/schedule"
)

// openExisting opens the queue of the config at path and looks up the
// campaign named by args (or the config's campaign.id). On failure it has
// printed why and returns a nil campaign and the exit status.
func openExisting(path string, args []string, stderr io.Writer) (*campaign, queue.Campaign, int) {
	c, code := open(path, queueOnly, engine.Options{}, stderr)
	if c == nil {
		return nil, queue.Campaign{}, code
	}
	id := c.cfg.Campaign.ID
	if len(args) > 0 {
		id = args[0]
	}
	if id == "" {
		c.Close()
		fmt.Fprintln(stderr, "herald: which campaign? give its ID (the configuration has no campaign.id)")
		return nil, queue.Campaign{}, exitInput
	}
	camp, err := c.q.Campaign(context.Background(), id)
	if err != nil {
		defer c.Close()
		if errors.Is(err, queue.ErrNoCampaign) {
			fmt.Fprintf(stderr, "herald: no campaign %q in the %s queue (plan it with herald send first)\n", id, c.cfg.Queue.Backend)
			return nil, camp, exitInput
		}
		if errors.Is(err, queue.ErrVanished) {
			fmt.Fprintf(stderr, "herald: %s\n", err)
			return nil, camp, exitInput
		}
		fmt.Fprintf(stderr, "herald: %s\n", err)
		return nil, camp, exitInterrupted
	}
	return c, camp, exitOK
}

// openChangeable is openExisting for commands that change a campaign: a
// cancelled one cannot change any more.
func openChangeable(path string, args []string, stderr io.Writer) (*campaign, queue.Campaign, int) {
	c, camp, code := openExisting(path, args, stderr)
	if c != nil && camp.Status == queue.CampaignCancelled {
		c.Close()
		fmt.Fprintf(stderr, "herald: campaign %s was cancelled; it cannot change any more\n", camp.ID)
		return nil, camp, exitInput
	}
	return c, camp, code
}

type statusReport struct {
	Campaign string           `json:"campaign"`
	Status   string           `json:"status"`
	Reason   string           `json:"reason,omitempty"`
	Planned  bool             `json:"planned"`
	Counts   map[string]int64 `json:"counts"`
	Total    int64            `json:"total"`
	// FailedRate is the share of the messages tried that failed (hard
	// bounces and refusals); Complaints counts the recipients who marked
	// it as spam (herald bounces), ComplaintRate their share of sent.
	FailedRate    float64    `json:"failed_rate"`
	Complaints    int        `json:"complaints"`
	ComplaintRate float64    `json:"complaint_rate"`
	Open          int64      `json:"open"`
	NextDue       *time.Time `json:"next_due,omitempty"`
	// Window says when the campaign's sending window next opens, while it
	// is closed (campaign.schedule): "opens Tue 09:00 Asia/Shanghai";
	// "in each recipient's zone" with timezone_column.
	Window string `json:"window,omitempty"`
	// Rate is what the configured providers sent in the last minute, in
	// messages a second (every campaign together); ETA is Open at that rate.
	Rate      float64         `json:"rate"`
	ETA       string          `json:"eta,omitempty"`
	Providers []providerUsage `json:"providers"`
}

type providerUsage struct {
	Name     string `json:"name"`
	LastMin  int64  `json:"sent_last_minute"`
	LastDay  int64  `json:"sent_last_24h"`
	DailyCap int    `json:"daily,omitempty"`
	// WarmupDay is the provider's day of warm-up (provider.warmup; 1 is
	// the day of its first message) and WarmupCap that day's cap.
	WarmupDay int `json:"warmup_day,omitempty"`
	WarmupCap int `json:"warmup_cap,omitempty"`
	// WarmupNext is when the next warm-up day begins, while this day's
	// cap is spent.
	WarmupNext *time.Time `json:"warmup_next,omitempty"`
	Rate       float64    `json:"rate,omitempty"`
	// QuotaFrees is when a message may go again, while the daily quota
	// is spent.
	QuotaFrees *time.Time `json:"quota_frees,omitempty"`
	// Circuit is why the provider is not used, while a worker opened its
	// circuit (Redis queue), and CircuitUntil when it closes.
	Circuit      string     `json:"circuit,omitempty"`
	CircuitUntil *time.Time `json:"circuit_until,omitempty"`
}

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", "--config FILE [ID] [--json]", stderr)
	path := fs.String("config", "", "configuration `file` (TOML); without ID and without campaign.id, every campaign")
	asJSON := fs.Bool("json", false, "print JSON")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	c, code := open(*path, queueOnly, engine.Options{}, stderr)
	if c == nil {
		return code
	}
	defer c.Close()
	ctx := context.Background()
	ids, all := fs.Args(), false
	if len(ids) == 0 && c.cfg.Campaign.ID != "" {
		ids = []string{c.cfg.Campaign.ID}
	}
	if len(ids) == 0 {
		var err error
		if ids, err = c.q.Campaigns(ctx); err != nil {
			fmt.Fprintf(stderr, "herald: %s\n", err)
			return exitInterrupted
		}
		all = true
	}
	var reps []statusReport
	if !all {
		ids = ids[:1]
	}
	for _, id := range ids {
		rep, err := campaignStatus(ctx, c, id)
		var lost *queue.VanishedError
		if errors.As(err, &lost) {
			// Listed with the others: what is left of it is the tombstone.
			rep, err = statusReport{Campaign: id, Status: "lost", Reason: lost.Error(), Counts: map[string]int64{"sent": lost.Sent}, Total: lost.Total}, nil
		}
		if errors.Is(err, queue.ErrNoCampaign) {
			fmt.Fprintf(stderr, "herald: no campaign %q in the %s queue (plan it with herald send or enqueue first)\n", id, c.cfg.Queue.Backend)
			return exitInput
		}
		if err != nil {
			fmt.Fprintf(stderr, "herald: %s\n", err)
			return exitInterrupted
		}
		reps = append(reps, rep)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if all {
			_ = enc.Encode(reps)
		} else {
			_ = enc.Encode(reps[0])
		}
		return exitOK
	}
	if all && len(reps) == 0 {
		fmt.Fprintf(stdout, "no campaigns in the %s queue\n", c.cfg.Queue.Backend)
	}
	for _, rep := range reps {
		printStatus(stdout, rep)
	}
	return exitOK
}

// campaignStatus gathers one campaign's status report.
func campaignStatus(ctx context.Context, c *campaign, id string) (statusReport, error) {
	camp, err := c.q.Campaign(ctx, id)
	if err != nil {
		return statusReport{}, err
	}
	counts, err := c.q.Counts(ctx, id)
	if err != nil {
		return statusReport{}, err
	}
	rep := statusReport{Campaign: id, Status: camp.Status.String(), Reason: camp.Reason, Planned: camp.Planned,
		Counts: map[string]int64{}, Total: counts.Total(), Open: counts.Open()}
	for s := queue.Pending; s <= queue.Cancelled; s++ {
		rep.Counts[s.String()] = counts.Get(s)
	}
	if t, ok, err := c.q.NextDue(ctx, id); err == nil && ok {
		rep.NextDue = &t
	}
	now := time.Now()
	var lastMin int64
	for _, p := range c.cfg.Provider {
		m, _ := c.q.Usage(ctx, p.Name, now.Add(-time.Minute))
		d, _ := c.q.Usage(ctx, p.Name, now.Add(-24*time.Hour))
		pu := providerUsage{Name: p.Name, LastMin: m, LastDay: d, DailyCap: p.Daily, Rate: p.Rate}
		if len(p.Warmup) > 0 {
			pu.WarmupDay, pu.WarmupCap = 1, p.Warmup[0]
			if first, err := c.q.FirstUsage(ctx, p.Name); err == nil && !first.IsZero() {
				pu.WarmupDay = int(now.Sub(first)/(24*time.Hour)) + 1
				pu.WarmupCap = 0
				if pu.WarmupDay <= len(p.Warmup) {
					pu.WarmupCap = p.Warmup[pu.WarmupDay-1]
					start := first.Add(time.Duration(pu.WarmupDay-1) * 24 * time.Hour)
					if used, err := c.q.Usage(ctx, p.Name, start); err == nil && used >= int64(pu.WarmupCap) {
						next := start.Add(24 * time.Hour)
						pu.WarmupNext = &next
					}
				}
			}
		}
		if p.Daily > 0 && d >= int64(p.Daily) {
			t := quotaFrees(ctx, c, p.Name, int64(p.Daily), now)
			pu.QuotaFrees = &t
		}
		if c.rdb != nil {
			circ := ratelimit.NewRedisCircuit(c.rdb, redisq.Prefix, p.Name, p.Fingerprint())
			if reason, until, err := circ.State(ctx, now); err == nil && reason != "" {
				pu.Circuit = reason
				if !until.IsZero() {
					pu.CircuitUntil = &until
				}
			}
		}
		rep.Providers = append(rep.Providers, pu)
		lastMin += m
	}
	rep.Rate = float64(lastMin) / 60
	rep.Status = shownStatus(camp, counts, rep.Providers)
	if tried := counts.Sent + counts.Failed; tried > 0 {
		rep.FailedRate = float64(counts.Failed) / float64(tried)
	}
	if n, err := c.q.Complaints(ctx, id); err == nil {
		rep.Complaints = n
		rep.ComplaintRate = float64(n) / float64(max(counts.Sent, 1))
	}
	if counts.Open() > 0 {
		rep.Window = windowNote(ctx, c, id, now)
	}
	if rep.Rate > 0 && rep.Open > 0 && camp.Status == queue.Active {
		rep.ETA = (time.Duration(float64(rep.Open) / rep.Rate * float64(time.Second))).Round(time.Second).String()
	}
	return rep, nil
}

// windowNote says when the campaign's sending window opens, while it is
// closed (campaign.schedule); "" when it is open or there is none.
func windowNote(ctx context.Context, c *campaign, id string, now time.Time) string {
	raw, err := c.q.Spec(ctx, id)
	if err != nil {
		return ""
	}
	spec, err := engine.DecodeSpec(raw)
	if err != nil || spec.Schedule == nil {
		return ""
	}
	sc := spec.Schedule
	w, err := schedule.Parse(sc.Timezone, sc.Days, sc.Hours)
	switch next := w.Next(now, nil); {
	case err != nil || w.Always():
		return ""
	case sc.TimezoneColumn != "":
		return "in each recipient's own zone (column " + sc.TimezoneColumn + ")"
	case next.After(now):
		return w.Describe(next, nil)
	}
	return ""
}

// shownStatus is the state a campaign is in, as an operator means it:
// complete when nothing is left to send, paused or cancelled (the reason
// says by whom), waiting while what is left waits for a retry or for every
// provider's daily quota, active while it is being sent (or can be).
func shownStatus(camp queue.Campaign, counts queue.Counts, providers []providerUsage) string {
	if camp.Status != queue.Active {
		return camp.Status.String()
	}
	if camp.Planned && counts.Open() == 0 {
		return "complete"
	}
	quotaSpent := len(providers) > 0
	for _, p := range providers {
		quotaSpent = quotaSpent && p.QuotaFrees != nil
	}
	if counts.Open() > 0 && (quotaSpent || counts.Pending == 0 && counts.Leased == 0 && counts.Retry > 0) {
		return "waiting"
	}
	return camp.Status.String()
}

// quotaFrees is when a provider whose daily quota is spent may send
// again: 24 hours after the earliest minute s of the last day such that
// fewer than quota messages were sent from s on (the store counts per
// minute; a binary search over the 1,440 minutes).
func quotaFrees(ctx context.Context, c *campaign, provider string, quota int64, now time.Time) time.Time {
	lo, hi := 0, 24*60 // minutes after now-24h
	start := now.Add(-24 * time.Hour).Truncate(time.Minute)
	for lo < hi {
		mid := (lo + hi) / 2
		n, err := c.q.Usage(ctx, provider, start.Add(time.Duration(mid)*time.Minute))
		if err != nil {
			break
		}
		if n < quota {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return start.Add(time.Duration(lo)*time.Minute + 24*time.Hour)
}

func printStatus(w io.Writer, rep statusReport) {
	fmt.Fprintf(w, "campaign %s: %s", rep.Campaign, rep.Status)
	if rep.Reason != "" {
		fmt.Fprintf(w, " (%s)", rep.Reason)
	}
	if rep.Status == "lost" {
		fmt.Fprintln(w) // no counts, no providers: the data is gone
		return
	}
	if !rep.Planned {
		fmt.Fprint(w, ", still being planned")
	}
	n := rep.Counts
	fmt.Fprintf(w, "\n  %d recipients: %d sent, %d failed, %d suppressed, %d cancelled; %d to go (%d pending, %d being sent, %d waiting to retry)\n",
		rep.Total, n["sent"], n["failed"], n["suppressed"], n["cancelled"], rep.Open, n["pending"], n["leased"], n["retry"])
	if n["sent"]+n["failed"] > 0 {
		fmt.Fprintf(w, "  failed %.1f%% of tried (bounced or refused); %d complaints (%.2f%% of sent)\n", 100*rep.FailedRate, rep.Complaints, 100*rep.ComplaintRate)
	}
	if rep.Window != "" {
		fmt.Fprintf(w, "  sending window: %s\n", rep.Window)
	}
	if rep.NextDue != nil && n["pending"] == 0 && n["retry"] > 0 {
		fmt.Fprintf(w, "  next retry due %s\n", rep.NextDue.Format(time.DateTime))
	}
	if rep.Rate > 0 {
		fmt.Fprintf(w, "  sending %.1f msgs/s (all campaigns, last minute)", rep.Rate)
		if rep.ETA != "" {
			fmt.Fprintf(w, "; at this rate %s to go", rep.ETA)
		}
		fmt.Fprintln(w)
	}
	for _, p := range rep.Providers {
		fmt.Fprintf(w, "  provider %s: %d sent in the last minute, %d in the last 24 hours", p.Name, p.LastMin, p.LastDay)
		if p.DailyCap > 0 {
			fmt.Fprintf(w, " of %d a day", p.DailyCap)
		}
		if p.WarmupCap > 0 {
			fmt.Fprintf(w, "; warm-up day %d, cap %d", p.WarmupDay, p.WarmupCap)
			if p.WarmupNext != nil {
				fmt.Fprintf(w, " spent: day %d begins %s", p.WarmupDay+1, p.WarmupNext.Format(time.DateTime))
			}
		} else if p.WarmupDay > 0 {
			fmt.Fprintf(w, "; warmed up (day %d)", p.WarmupDay)
		}
		if p.QuotaFrees != nil {
			fmt.Fprintf(w, ": quota spent, sending resumes from %s", p.QuotaFrees.Format(time.DateTime))
		}
		if p.Circuit != "" {
			fmt.Fprintf(w, "\n    not used: %s", p.Circuit)
			if p.CircuitUntil != nil {
				fmt.Fprintf(w, " (until %s)", p.CircuitUntil.Format(time.DateTime))
			}
		}
		fmt.Fprintln(w)
	}
}

// cmdSetStatus is pause, resume and cancel.
func cmdSetStatus(name string, to queue.Status) func(args []string, stdout, stderr io.Writer) int {
	return func(args []string, stdout, stderr io.Writer) int {
		fs := newFlags(name, "--config FILE [ID] [--reason TEXT]", stderr)
		path := fs.String("config", "", "campaign configuration `file` (TOML)")
		reason := fs.String("reason", "", "a note kept with the status")
		if code, ok := parse(fs, args); !ok {
			return code
		}
		c, camp, code := openChangeable(*path, fs.Args(), stderr)
		if c == nil {
			return code
		}
		defer c.Close()
		ctx := context.Background()
		id := camp.ID
		r := *reason
		if r == "" && to != queue.Active {
			r = "by herald " + name + " (" + operator() + ") at " + time.Now().Format(time.DateTime)
		}
		if err := c.q.SetStatus(ctx, id, to, r); err != nil {
			fmt.Fprintf(stderr, "herald: %s\n", err)
			return exitInterrupted
		}
		counts, _ := c.q.Counts(ctx, id)
		fmt.Fprintf(stdout, "campaign %s: %s (%d sent, %d to go, %d cancelled)\n", id, to, counts.Sent, counts.Open(), counts.Cancelled)
		return exitOK
	}
}

// operator names who runs this command: user@host.
func operator() string {
	who := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	host, _ := os.Hostname()
	return who + "@" + host
}
