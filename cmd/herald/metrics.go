package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heraldmail/herald/engine"
	"github.com/heraldmail/herald/outcome"
	"github.com/heraldmail/herald/queue"
)

// metrics serves the engine's measurements to Prometheus (--metrics-addr).
// A nil *metrics serves nothing. Safe for concurrent use.
type metrics struct {
	srv       *http.Server
	outcomes  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	limitWait *prometheus.CounterVec
	conns     *prometheus.GaugeVec
	depth     *prometheus.GaugeVec
}

var _ engine.Observer = (*metrics)(nil)

// serveMetrics listens on addr and serves /metrics; "" serves nothing.
func serveMetrics(addr string, stderr io.Writer) (*metrics, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(stderr, "herald: --metrics-addr: %v\n", err)
		return nil, err
	}
	m := &metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_messages_total",
			Help: "Messages attempted, by provider and outcome class (sent, transient, reconnect, ambiguous, throttle, auth, policy, permanent).",
		}, []string{"provider", "class"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_send_duration_seconds",
			Help:    "Time from a message's send slot to the server's reply to the end of its data, for accepted messages.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 17), // 0.5 ms to 33 s
		}, []string{"provider"}),
		limitWait: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_limit_wait_seconds_total",
			Help: "Time senders spent waiting for the provider's rate limit.",
		}, []string{"provider"}),
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_connections",
			Help: "Open SMTP connections, by provider.",
		}, []string{"provider"}),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_queue_jobs",
			Help: "Jobs of a campaign in each state, as this process last saw the queue.",
		}, []string{"campaign", "state"}),
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.outcomes, m.latency, m.limitWait, m.conns, m.depth,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(stderr, "herald: metrics: %v\n", err)
		}
	}()
	fmt.Fprintf(stderr, "herald: metrics at http://%s/metrics\n", ln.Addr())
	return m, nil
}

// observer is m as the engine's Observer; nil when m is.
func (m *metrics) observer() engine.Observer {
	if m == nil {
		return nil
	}
	return m
}

// Close stops serving.
func (m *metrics) Close() {
	if m != nil {
		m.srv.Close()
	}
}

func (m *metrics) Outcome(provider string, class outcome.Class) {
	m.outcomes.WithLabelValues(provider, class.String()).Inc()
}

func (m *metrics) Latency(provider string, d time.Duration) {
	m.latency.WithLabelValues(provider).Observe(d.Seconds())
}

func (m *metrics) LimitWait(provider string, d time.Duration) {
	m.limitWait.WithLabelValues(provider).Add(d.Seconds())
}

func (m *metrics) Connections(provider string, delta int) {
	m.conns.WithLabelValues(provider).Add(float64(delta))
}

func (m *metrics) Depth(campaign string, c queue.Counts) {
	for s := queue.Pending; s <= queue.Cancelled; s++ {
		m.depth.WithLabelValues(campaign, s.String()).Set(float64(c.Get(s)))
	}
}
