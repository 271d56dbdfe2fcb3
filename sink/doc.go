// Package sink is a local SMTP server (RFC 5321, on emersion/go-smtp) that
// accepts mail, counts it, optionally keeps it in memory or writes it to a
// maildir, and misbehaves on purpose: replies or dropped connections for
// chosen recipients and stages, a session limit, a message rate above which
// it answers 421, latency. herald's tests deliver to it in-process, and
// `herald sink` runs it for a user's own trials.
package sink
