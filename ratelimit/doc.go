// Package ratelimit keeps each provider within its policy: a pace of
// messages per second with a burst (GCRA) under a controller that learns
// the provider's real limit from its throttle replies, configured rate or
// not; a quota of messages per rolling 24 hours counted per minute; and a
// cap on concurrent connections (slots).
//
// The controller (Pacer) counts the messages it lets go over a window of
// one cool-down (at least a second, ten buckets). A throttle reply pauses
// sending for the cool-down, empties the burst, and sets the pace from
// that window: 0.85 of the rate the provider took when the window held at
// least half its length of sending; after a shorter sending (the first
// contact at full speed) a guess from what got through, doubled each
// quiet cool-down until a throttle measures the limit. Quiet cool-downs
// then climb back additively, by a twentieth of the measured ceiling up
// to 0.9 of it and by a hundredth past it, so that the pace settles just
// under the provider's limit; a decrease comes at most once per half
// cool-down and never below a floor. A configured rate is never exceeded;
// without one, a learned pace is forgotten (unlimited again) after 100
// quiet cool-downs. pace.go says it in full.
//
// Each comes in two kinds that pass one suite (limitertest): local to
// this process, and shared by every process through Redis (Lua scripts,
// keys hash-tagged by provider name), so that several workers sending
// through one account respect its policy together and learn one limit.
package ratelimit
