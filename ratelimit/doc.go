// Package ratelimit keeps each provider within its policy: a pace of
// messages per second with a burst (GCRA), which a throttle reply cuts in
// half and pauses for a cool-down and quiet time restores step by step; a
// quota of messages per rolling 24 hours counted per minute; and a cap on
// concurrent connections (slots). Each comes in two kinds that pass one
// suite (limitertest): local to this process, and shared by every process
// through Redis (Lua scripts, keys hash-tagged by provider name), so that
// several workers sending through one account respect its policy together.
package ratelimit
