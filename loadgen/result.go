package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/heraldmail/herald/outcome"
)

// Result is what a run measured.
type Result struct {
	Server      string
	Mode        string // "closed" or "open"
	Connections int
	OfferedRate float64 // open loop; 0 in closed loop
	Messages    int64   // accepted
	Recipients  int64   // accepted recipients of accepted messages
	Errors      int64   // failures: refused recipients, failed messages and connections
	Duration    time.Duration
	Pipelining  bool // PIPELINING was used (asked for and advertised)
	Size        int
	Sessions    int64 // sessions opened (connected, EHLO, TLS and AUTH done)
	// Message is the latency of accepted messages: from their start (open
	// loop: their intended start) to the reply to the final dot.
	Message Histogram
	Stages  map[string]*Histogram // by stage name; only stages that ran
	// Outcomes counts by outcome.Class name: "sent" per accepted message,
	// the others per failure.
	Outcomes map[string]int64
	Aborted  string // why the run stopped early (the server refused us), or ""
}

func (r *runner) result(workers []*worker, elapsed time.Duration) *Result {
	res := &Result{Server: r.cfg.Server, Mode: "closed", Connections: r.cfg.Connections, OfferedRate: r.cfg.Rate,
		Duration: elapsed, Pipelining: r.pipelined.Load(), Size: r.cfg.Size, Sessions: r.sessions.Load(),
		Stages: map[string]*Histogram{}, Outcomes: map[string]int64{}, Aborted: r.aborted}
	if r.cfg.Rate > 0 {
		res.Mode = "open"
	}
	var outcomes [numClasses]int64
	var stages [numStages]Histogram
	for _, w := range workers {
		if w == nil {
			continue // open loop: never needed
		}
		res.Messages += w.sent
		res.Recipients += w.rcpts
		res.Message.Merge(&w.msgHist)
		for i := range w.hist {
			stages[i].Merge(&w.hist[i])
		}
		for i, n := range w.outcomes {
			outcomes[i] += n
		}
	}
	for i := range stages {
		if stages[i].Count() > 0 {
			res.Stages[stageNames[i]] = &stages[i]
		}
	}
	for c := outcome.ClassSent; int(c) < numClasses; c++ {
		res.Outcomes[c.String()] = outcomes[c]
		if c != outcome.ClassSent {
			res.Errors += outcomes[c]
		}
	}
	return res
}

// Rate is accepted messages per second.
func (r *Result) Rate() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Messages) / r.Duration.Seconds()
}

// Latency percentiles in milliseconds, as JSON.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// Percentiles summarises h.
func Percentiles(h *Histogram) Latency {
	return Latency{P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)), P99: ms(h.Quantile(0.99)),
		P999: ms(h.Quantile(0.999)), Max: ms(h.Max())}
}

// Report is the JSON form of a Result; bench scripts read these names.
type Report struct {
	Server      string             `json:"server"`
	Mode        string             `json:"mode"`
	Connections int                `json:"connections"`
	OfferedRate float64            `json:"offered_rate"`
	Messages    int64              `json:"messages"`
	Recipients  int64              `json:"recipients"`
	Errors      int64              `json:"errors"`
	DurationS   float64            `json:"duration_s"`
	MsgsPerS    float64            `json:"msgs_per_s"`
	Pipelining  bool               `json:"pipelining"`
	Size        int                `json:"size"`
	Latency     map[string]Latency `json:"latency_ms"`
	Outcomes    map[string]int64   `json:"outcomes"`
}

// alwaysStages appear in the JSON even when empty, so scripts can rely on
// them; starttls, auth and quit appear when they ran.
var alwaysStages = []string{"connect", "ehlo", "mail", "rcpt", "data", "body"}

// Report returns the JSON form.
func (r *Result) Report() Report {
	rep := Report{Server: r.Server, Mode: r.Mode, Connections: r.Connections, OfferedRate: r.OfferedRate,
		Messages: r.Messages, Recipients: r.Recipients, Errors: r.Errors, DurationS: r.Duration.Seconds(),
		MsgsPerS: r.Rate(), Pipelining: r.Pipelining, Size: r.Size,
		Latency: map[string]Latency{"message": Percentiles(&r.Message)}, Outcomes: r.Outcomes}
	for _, s := range alwaysStages {
		rep.Latency[s] = Latency{}
	}
	for name, h := range r.Stages {
		rep.Latency[name] = Percentiles(h)
	}
	return rep
}

// WriteJSON writes the report as one JSON object and a newline.
func (r *Result) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r.Report())
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteText writes a report for people.
func (r *Result) WriteText(w io.Writer) {
	secs := r.Duration.Seconds()
	fmt.Fprintf(w, "herald bench: %s, %s loop, %d connections, %d-byte messages, pipelining %v\n",
		r.Server, r.Mode, r.Connections, r.Size, r.Pipelining)
	if r.Mode == "open" {
		fmt.Fprintf(w, "offered:    %.1f msgs/s\n", r.OfferedRate)
	}
	rcptRate := 0.0
	if secs > 0 {
		rcptRate = float64(r.Recipients) / secs
	}
	fmt.Fprintf(w, "achieved:   %.1f msgs/s, %.1f recipients/s (%d messages, %d recipients in %.2fs, %d sessions)\n",
		r.Rate(), rcptRate, r.Messages, r.Recipients, secs, r.Sessions)
	fmt.Fprintf(w, "errors:     %d\n", r.Errors)
	fmt.Fprintf(w, "\nlatency (ms)    %9s %9s %9s %9s %9s %9s\n", "count", "p50", "p90", "p99", "p99.9", "max")
	line := func(name string, h *Histogram) {
		l := Percentiles(h)
		fmt.Fprintf(w, "  %-13s %9d %9.3f %9.3f %9.3f %9.3f %9.3f\n", name, h.Count(), l.P50, l.P90, l.P99, l.P999, l.Max)
	}
	line("message", &r.Message)
	for _, s := range stageNames {
		if h, ok := r.Stages[s]; ok {
			line(s, h)
		}
	}
	fmt.Fprintf(w, "\noutcomes:")
	for c := outcome.ClassSent; int(c) < numClasses; c++ {
		if n := r.Outcomes[c.String()]; n > 0 || c == outcome.ClassSent {
			fmt.Fprintf(w, " %s %d", c, n)
		}
	}
	fmt.Fprintln(w)
	if r.Aborted != "" {
		fmt.Fprintf(w, "stopped early: %s\n", r.Aborted)
	}
}
