// Package engine plans campaigns and delivers them.
//
// The path of one message through a run (Run: one campaign; Work: every
// active campaign in the queue):
//
//	queue ─► leaser ─► jobs ─► sender (one per connection) ─► results ─► settler ─► queue
//	           │                 │ router: priority, weight, domain pace      │
//	           │                 │ limits: rate, slot, daily quota            │ batches, one
//	           │                 │ render, SMTP (pipelined), per-command      │ transaction per
//	           │                 │ deadlines                                  │ campaign
//	           │                 └─ outcome.Decide: what the reply does to the job,
//	           │                    the provider and the campaign
//	  renewer: extends the leases and connection slots held; tracker: follows
//	  pause, cancel, new campaigns (the mode)
//
// The embedded queue keeps where a job's row is in the recipients file
// rather than the row (queue.Job.Row): the leaser reads the rows back
// before the jobs go to the senders, and pauses a campaign whose file no
// longer holds a row as planned (rows.go).
//
// A message's acknowledgement is durable before the next message's data
// leaves on its connection: the embedded queue notes it in a journal
// (Journal) at once, any other queue commits it in the settler's next
// group commit while the sender waits. So after kill -9 at most one message
// per connection is in doubt.
//
// Every read from a server is bounded (bound.go): a reply line of at most
// outcome.MaxReplyLine octets, a reply of at most outcome.MaxReplyLines
// lines, or the connection is closed as a protocol error; a connection
// holds a few KB whatever the server sends.
//
// One errgroup in deliver owns every goroutine of a run. The soft stop
// (stop) takes no more jobs, cuts connections still being opened and lets
// sends in flight finish; the hard stop cuts connections; store I/O is bounded by Timing.StoreTimeout and derived from
// the hard stop, except the settler's last flush, which records what was
// sent even after a hard stop.
package engine
