// Package ratelimit keeps each provider within its policy: a token bucket
// (golang.org/x/time/rate) for messages per second with a burst, which
// halves on a throttle reply and recovers additively, and a rolling 24-hour
// quota counted per minute. The concurrent-connection cap is the number of
// sender goroutines the engine starts per provider.
package ratelimit
