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
// A message's acknowledgement is durable before the next message's data
// leaves on its connection: the embedded queue notes it in a journal
// (Journal) at once, any other queue commits it in the settler's next
// group commit while the sender waits. So after kill -9 at most one message
// per connection is in doubt.
//
// One errgroup in deliver owns every goroutine of a run. The soft stop
// (stop) takes no more jobs and lets sends in flight finish; the hard stop
// cuts connections; store I/O is bounded by Timing.StoreTimeout and derived from
// the hard stop, except the settler's last flush, which records what was
// sent even after a hard stop.
package engine
