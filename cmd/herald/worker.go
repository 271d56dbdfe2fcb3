package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/heraldmail/herald/engine"
	"github.com/heraldmail/herald/queue"
)

func cmdWorker(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("worker", "--config FILE [--metrics-addr ADDR] [--quiet]", stderr)
	path := fs.String("config", "", "configuration `file` (TOML): [queue] and [[provider]]; campaigns come from the queue")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus metrics at http://`ADDR`/metrics (e.g. 127.0.0.1:9464)")
	quiet := fs.Bool("quiet", false, "no progress lines, only the summary")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the run to `file` (for benchmarking)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	stopProfile, ok := startSending(*cpuprofile, stderr)
	if !ok {
		return exitInput
	}
	defer stopProfile()
	out := newOutput(stderr, *quiet)
	out.worker = true
	metrics, err := serveMetrics(*metricsAddr, stderr)
	if err != nil {
		return exitInput
	}
	defer metrics.Close()
	c, code := open(*path, workerEngine, engine.Options{Logger: out.logger(), Observer: metrics.observer()}, stderr)
	if c == nil {
		return code
	}
	defer c.Close()
	out.printf("herald worker: delivering the active campaigns of the %s queue through %d provider(s); SIGTERM or Ctrl-C stops it\n", c.cfg.Queue.Backend, len(c.cfg.Provider))

	soft, hard, stopSignals := signalContexts(out)
	defer stopSignals()
	stopProgress := out.progress(c.eng)
	sum, err := c.eng.Work(soft, hard)
	stopProgress()
	fmt.Fprintf(stdout, "herald worker: %d sent, %d failed, %d to retry in %s (%.0f msgs/s)",
		sum.Sent, sum.Failed, sum.Retried, sum.Elapsed.Round(time.Millisecond), rate(sum.Sent, sum.Elapsed))
	if sum.Ambiguous > 0 {
		fmt.Fprintf(stdout, ", %d possibly duplicated (connection lost after the data)", sum.Ambiguous)
	}
	fmt.Fprintln(stdout)
	var stopped *engine.StoppedError
	switch {
	case err == nil, errors.Is(err, engine.ErrInterrupted):
		return exitOK // stopped as asked; unfinished jobs went back to the queue
	case errors.As(err, &stopped):
		fmt.Fprintf(stderr, "herald: worker stopped: %s\n", stopped.Reason)
		if errors.Is(err, queue.ErrVanished) {
			fmt.Fprintf(stderr, "herald: %s\n", replanHint)
		}
		return exitInterrupted
	}
	code, _ = failed(err, stderr)
	return code
}

func cmdRetryFailed(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("retry-failed", "--config FILE [ID]", stderr)
	path := fs.String("config", "", "configuration `file` (TOML)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	c, camp, code := openChangeable(*path, fs.Args(), stderr)
	if c == nil {
		return code
	}
	defer c.Close()
	res, err := c.q.RetryFailed(context.Background(), camp.ID, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "herald: %s\n", err)
		return exitInterrupted
	}
	fmt.Fprintf(stdout, "campaign %s: %d failed recipients queued again", camp.ID, res.Requeued)
	if res.Suppressed > 0 {
		fmt.Fprintf(stdout, "; %d stay failed because their addresses are on the suppression list", res.Suppressed)
	}
	fmt.Fprintln(stdout)
	switch {
	case res.Requeued == 0:
	case camp.Status == queue.Paused:
		fmt.Fprintf(stdout, "the campaign is paused: herald resume %s lets them be delivered\n", camp.ID)
	default:
		fmt.Fprintln(stdout, "running workers pick them up within ten seconds; or run herald send with the campaign's configuration")
	}
	return exitOK
}
