package engine

import (
	"testing"
	"time"
)

// The leaser's batches follow the senders' pace: about leaseAhead of
// sending, within [minBatch, maxBatch]; a buffer found empty doubles it.
func TestLeaseTargetFollowsPace(t *testing.T) {
	var in intake
	now := time.Unix(1_000_000, 0)
	if got := in.target(now, 0); got != minBatch {
		t.Fatalf("before any job: %d, want %d", got, minBatch)
	}
	// 5,000 jobs a second taken, the buffer never empty.
	buffered := 0
	step := func(rate int, d time.Duration) int {
		in.handed += rate * int(d/time.Millisecond) / 1000
		now = now.Add(d)
		return in.target(now, buffered)
	}
	buffered = 40
	in.handed = 40
	var got int
	for range 20 {
		got = step(5000, 100*time.Millisecond)
	}
	if want := 5000 * int(leaseAhead/time.Millisecond) / 1000; got < want*9/10 || got > want*11/10 {
		t.Errorf("at 5,000 jobs a second: %d, want about %d", got, want)
	}
	// A slow provider: 50 a second.
	for range 40 {
		got = step(50, 100*time.Millisecond)
	}
	if got != minBatch {
		t.Errorf("at 50 jobs a second: %d, want %d", got, minBatch)
	}
	// Starved: the buffer is empty at each look.
	buffered = 0
	prev := got
	got = step(50, 10*time.Millisecond)
	if got != 2*prev {
		t.Errorf("an empty buffer: %d, want %d", got, 2*prev)
	}
	for range 20 {
		got = step(50, 10*time.Millisecond)
	}
	if got != maxBatch {
		t.Errorf("starved for long: %d, want %d", got, maxBatch)
	}
}
