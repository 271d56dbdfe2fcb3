package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/heraldmail/herald/engine"
)

// output writes progress and messages to stderr: a live bar on a terminal,
// a plain line every few seconds otherwise.
type output struct {
	mu     sync.Mutex
	w      io.Writer
	tty    bool
	quiet  bool
	worker bool          // progress of herald worker: no bar, this process's counts
	bar    *mpb.Progress // while a bar is shown, text goes above it
}

func newOutput(stderr io.Writer, quiet bool) *output {
	o := &output{w: stderr, quiet: quiet}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		o.tty = true
	}
	return o
}

// Write sends text above the bar when one is shown.
func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.bar != nil {
		return o.bar.Write(b)
	}
	return o.w.Write(b)
}

func (o *output) printf(format string, args ...any) { fmt.Fprintf(o, format, args...) }

// logger logs warnings and errors as text; never message bodies or secrets.
func (o *output) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(o, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// progress shows the engine's progress until the returned func is called.
func (o *output) progress(eng *engine.Engine) (stop func()) {
	if o.quiet {
		return func() {}
	}
	var meter rateMeter
	line := func() string {
		p := eng.Progress()
		r := meter.observe(p.Sent, time.Now())
		if o.worker {
			// Campaigns come and go: this process's own counts.
			return fmt.Sprintf("this worker: sent %d  failed %d  retried %d  in flight %d  %.0f msgs/s", p.Sent, p.Failed, p.Retried, p.InFlight, r)
		}
		s := fmt.Sprintf("sent %d  failed %d  retrying %d  in flight %d  %.0f msgs/s", p.Counts.Sent, p.Counts.Failed, p.Counts.Retry, p.InFlight, r)
		if left := p.Counts.Open(); r > 0 && left > 0 {
			s += fmt.Sprintf("  ETA %s", (time.Duration(float64(left)/r) * time.Second).Round(time.Second))
		}
		if p.Note != "" && p.Counts.Pending == 0 {
			s += "  (" + p.Note + ")"
		}
		return s
	}
	if !o.tty || o.worker {
		return periodically(5*time.Second, func() { o.printf("%s %s\n", time.Now().Format("15:04:05"), line()) })
	}
	p := mpb.New(mpb.WithOutput(o.w), mpb.WithWidth(40), mpb.WithRefreshRate(200*time.Millisecond))
	bar := p.New(0, mpb.BarStyle(),
		mpb.PrependDecorators(decor.Percentage(decor.WCSyncSpace)),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return line() })),
	)
	o.mu.Lock()
	o.bar = p
	o.mu.Unlock()
	update := func() {
		c := eng.Progress().Counts
		bar.SetTotal(c.Total(), false)
		bar.SetCurrent(c.Total() - c.Open())
	}
	update()
	stopTicks := periodically(200*time.Millisecond, update)
	return func() {
		stopTicks()
		// The last frame is the truth: full only when nothing is left
		// (completing a bar fills it, so an interrupted run's is aborted
		// where it stands).
		c := eng.Progress().Counts
		bar.SetCurrent(c.Total() - c.Open())
		if c.Open() == 0 {
			bar.SetTotal(c.Total(), true)
		} else {
			bar.SetTotal(c.Total(), false)
			bar.Abort(false)
		}
		p.Wait()
		o.mu.Lock()
		o.bar = nil
		o.mu.Unlock()
	}
}

// rateMeter is the send rate over the last few seconds.
type rateMeter struct {
	mu      sync.Mutex
	samples []sample
}

type sample struct {
	n int64
	t time.Time
}

func (m *rateMeter) observe(n int64, now time.Time) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples = append(m.samples, sample{n, now})
	for len(m.samples) > 2 && now.Sub(m.samples[0].t) > 5*time.Second {
		m.samples = m.samples[1:]
	}
	first := m.samples[0]
	if d := now.Sub(first.t).Seconds(); d > 0 {
		return float64(n-first.n) / d
	}
	return 0
}

// periodically calls fn every d in a goroutine; the returned func stops it
// and returns once fn is no longer running.
func periodically(d time.Duration, fn func()) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fn()
			}
		}
	}()
	return func() { close(done); <-finished }
}
