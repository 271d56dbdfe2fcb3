// Package loadgen is an SMTP load generator (herald bench): many client
// connections submit generated messages to a server as fast as it takes
// them (closed loop) or at a fixed offered rate (open loop), and every
// reply is timed per SMTP stage.
//
// It speaks SMTP itself over net.Conn and bufio (RFC 5321), rather than
// through a mail library, so that each stage can be timed and the hot path
// stays cheap: the message is rendered and dot-stuffed once, buffers are
// reused, and with PIPELINING (RFC 2920) the envelope (MAIL, every RCPT,
// DATA) goes out in one write. It does STARTTLS (RFC 3207) and implicit
// TLS, and AUTH PLAIN (RFC 4954, RFC 4616). Replies are classified with
// outcome.Classify, so the outcome classes are herald's own.
//
// Open loop avoids coordinated omission: message i is due at t0 + i/rate,
// and its latency is measured from that intended start, so time spent
// waiting for a free connection counts.
//
// Latencies go into log-bucketed histograms, one set per connection,
// merged when the run ends: the hot path takes no lock.
package loadgen
