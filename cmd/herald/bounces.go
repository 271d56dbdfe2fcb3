package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/heraldmail/herald/bounce"
	"github.com/heraldmail/herald/config"
	"github.com/heraldmail/herald/engine"
	"github.com/heraldmail/herald/queue"
)

// bouncesReport is herald bounces --json.
type bouncesReport struct {
	Mailbox string `json:"mailbox"`
	DryRun  bool   `json:"dry_run"`
	bounce.Summary
	Error string `json:"error,omitempty"`
}

func cmdBounces(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("bounces", "--config FILE [--dry-run] [--json] [--verbose]", stderr)
	path := fs.String("config", "", "configuration `file` (TOML) with [bounces] and [queue]")
	dry := fs.Bool("dry-run", false, "read and classify the reports, change nothing (no suppression, no message moved or deleted)")
	asJSON := fs.Bool("json", false, "print the summary and every message's outcome as JSON")
	verbose := fs.Bool("verbose", false, "a line for every message")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	c, code := open(*path, bounceMailbox, engine.Options{}, stderr)
	if c == nil {
		return code
	}
	defer c.Close()
	cfg := c.cfg.Bounces
	ep, _ := bounce.ParseURL(cfg.URL) // validated by config

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	mb, err := bounce.Open(ctx, cfg.Account())
	if err != nil {
		fmt.Fprintf(stderr, "herald: bounces: %s\n", err)
		var cv *tls.CertificateVerificationError
		if errors.Is(err, bounce.ErrLogin) || errors.As(err, &cv) || strings.Contains(err.Error(), "x509: ") {
			return exitInput // fix bounces.username, the password or bounces.ca_file
		}
		return exitInterrupted
	}
	sum, err := bounce.Process(ctx, mb, c.q, bounce.QueueLists(c.q), bounce.Options{
		BounceAddresses: bounceBases(c.cfg),
		SoftLimit:       cfg.SoftLimit,
		DryRun:          *dry,
		Logger:          newOutput(stderr, true).logger(),
	})
	if cerr := mb.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing the mailbox: %w", cerr)
	}
	if !*dry {
		complaintBrake(ctx, c, sum, stderr)
	}

	if *asJSON {
		rep := bouncesReport{Mailbox: ep.String(), DryRun: *dry, Summary: sum}
		if err != nil {
			rep.Error = err.Error()
		}
		if rep.Messages == nil {
			rep.Messages = []bounce.Result{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		if *verbose {
			for _, m := range sum.Messages {
				fmt.Fprintln(stdout, messageLine(m))
			}
		}
		what := "bounces"
		if *dry {
			what = "bounces (dry run: nothing changed)"
		}
		fmt.Fprintf(stdout, "%s %s: read %d, hard %d, soft %d, complaints %d, suppressed %d, not bounces %d, unmatched %d, errors %d\n",
			what, ep, sum.Read, sum.Hard, sum.Soft, sum.Complaints, sum.Suppressed, sum.NotBounces, sum.Unmatched, sum.Errors)
	}
	switch {
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "herald: bounces: interrupted (run again: what was recorded is not counted twice)")
		return exitInterrupted
	case err != nil:
		fmt.Fprintf(stderr, "herald: bounces: %s\n", err)
		return exitInterrupted
	case sum.Errors > 0:
		return exitFailed
	}
	return exitOK
}

// messageLine describes one message's outcome for --verbose.
func messageLine(m bounce.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-6s %-12s", m.ID, m.Kind)
	if m.Format != "" {
		fmt.Fprintf(&b, " [%s]", m.Format)
	}
	for _, r := range m.Recipients {
		fmt.Fprintf(&b, " %s (%s, %s", r.Address, r.Campaign, r.Status)
		if r.SoftCount > 0 {
			fmt.Fprintf(&b, ", soft bounce %d", r.SoftCount)
		}
		if r.Suppressed {
			fmt.Fprintf(&b, ", suppressed on %s", r.List)
		}
		b.WriteString(")")
	}
	if m.Note != "" {
		fmt.Fprintf(&b, " %s", m.Note)
	}
	if m.Error != "" {
		fmt.Fprintf(&b, " error: %s", m.Error)
	}
	if m.Marked {
		b.WriteString(" — done")
	}
	return b.String()
}

// bounceBases are the VERP bases to try: bounces.address, and the
// configuration's campaign.bounce_address and campaign.from when it has a
// campaign (the engine encodes VERP on the bounce address, else the From).
func bounceBases(cfg *config.Config) []string {
	bases := []string{cfg.Bounces.Address, cfg.Campaign.BounceAddress}
	if a, err := mail.ParseAddress(cfg.Campaign.From); err == nil {
		bases = append(bases, a.Address)
	}
	return bases
}

// complaintBrake pauses each campaign that got complaints in this run and
// whose complaint rate (complaints over messages sent) is past its
// campaign.complaint_threshold.
func complaintBrake(ctx context.Context, c *campaign, sum bounce.Summary, stderr io.Writer) {
	seen := map[string]bool{}
	for _, m := range sum.Messages {
		for _, r := range m.Recipients {
			if r.Kind != bounce.Complaint.String() || seen[r.Campaign] {
				continue
			}
			seen[r.Campaign] = true
			threshold := config.DefaultComplaintThreshold
			if raw, err := c.q.Spec(ctx, r.Campaign); err == nil {
				if spec, err := engine.DecodeSpec(raw); err == nil && spec.ComplaintThreshold > 0 {
					threshold = spec.ComplaintThreshold
				}
			}
			complaints, err1 := c.q.Complaints(ctx, r.Campaign)
			counts, err2 := c.q.Counts(ctx, r.Campaign)
			camp, err3 := c.q.Campaign(ctx, r.Campaign)
			if err := errors.Join(err1, err2, err3); err != nil {
				fmt.Fprintf(stderr, "herald: bounces: campaign %s: %v\n", r.Campaign, err)
				continue
			}
			rate := float64(complaints) / float64(max(counts.Sent, 1))
			if rate <= threshold || camp.Status != queue.Active {
				continue
			}
			reason := fmt.Sprintf("%d complaints for %d messages sent (%.2f%%), above complaint_threshold %.2f%%: recipients mark it as spam. "+
				"Check that they asked for it and that unsubscribing is easy, then herald resume", complaints, counts.Sent, 100*rate, 100*threshold)
			if err := c.q.SetStatus(ctx, r.Campaign, queue.Paused, reason); err != nil {
				fmt.Fprintf(stderr, "herald: bounces: cannot pause campaign %s: %v\n", r.Campaign, err)
				continue
			}
			fmt.Fprintf(stderr, "herald: bounces: paused campaign %s: %s\n", r.Campaign, reason)
		}
	}
}
