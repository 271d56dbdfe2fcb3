package engine

import (
	"time"

	"github.com/heraldmail/herald/outcome"
	"github.com/heraldmail/herald/queue"
)

// Observer receives the engine's measurements (cmd/herald exports them as
// Prometheus metrics). Implementations must be safe for concurrent use and
// cheap: senders call them for every message.
type Observer interface {
	// Outcome counts one attempted message of a provider by its class
	// (outcome.ClassSent when the server accepted it).
	Outcome(provider string, class outcome.Class)
	// Latency is one message's time from its send slot to the server's
	// reply to the end of its data.
	Latency(provider string, d time.Duration)
	// LimitWait is the time a sender waited for its provider's rate.
	LimitWait(provider string, d time.Duration)
	// Connections changes the number of open connections to a provider.
	Connections(provider string, delta int)
	// Depth is a campaign's number of jobs in each state.
	Depth(campaign string, c queue.Counts)
}

type noObserver struct{}

func (noObserver) Outcome(string, outcome.Class)   {}
func (noObserver) Latency(string, time.Duration)   {}
func (noObserver) LimitWait(string, time.Duration) {}
func (noObserver) Connections(string, int)         {}
func (noObserver) Depth(string, queue.Counts)      {}
