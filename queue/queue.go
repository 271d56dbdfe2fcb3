package queue

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// State is where a job is in its life. The comment on each state says who
// moves a job out of it.
type State uint8

const (
	// Pending jobs are waiting to be leased. Lease moves them to Leased.
	Pending State = iota + 1
	// Leased jobs belong to a sender until Job.Until. Settle moves them on;
	// Release returns them to Pending; once Until has passed, Lease may hand
	// them out again (the sender is presumed dead).
	Leased
	// Sent jobs were accepted by a server (250 after DATA). Final.
	Sent
	// Retry jobs wait until Job.At; Lease hands them out once it has come.
	Retry
	// Failed jobs will not be tried again; Job.Reply says why. Final (a later
	// command may requeue them explicitly).
	Failed
	// Suppressed jobs were not sent because the address is on the
	// suppression list. Final.
	Suppressed
	// Cancelled jobs belong to a cancelled campaign. Final.
	Cancelled
)

var stateNames = [...]string{"", "pending", "leased", "sent", "retry", "failed", "suppressed", "cancelled"}

func (s State) String() string {
	if int(s) < len(stateNames) && s != 0 {
		return stateNames[s]
	}
	return "unknown"
}

// Final reports whether no further delivery attempt will be made.
func (s State) Final() bool {
	return s == Sent || s == Failed || s == Suppressed || s == Cancelled
}

// Job is one recipient of one campaign.
type Job struct {
	// Seq orders jobs inside a campaign and identifies them there. The
	// planner uses the recipient's line number in the CSV, so planning the
	// same file again yields the same Seq.
	Seq uint64
	// Key is the deduplication key: the lower-cased address. Enqueue adds a
	// job only if its key is new to the campaign.
	Key string
	// Email is the address as given (trimmed).
	Email string
	// Fields are the CSV record, in the order of Campaign.Header.
	Fields []string
	// Row is where the record is in the recipients file (Size 0: not
	// given). A queue may keep Row instead of Fields when Enqueue is
	// given both: the embedded queue does, so that a job costs a few
	// bytes rather than its row. Lease and Walk then return the job with
	// Row and no Fields, and the engine reads the fields back from the
	// file, refusing a row whose Sum no longer matches.
	Row RowRef

	State    State
	Attempts int       // delivery attempts that counted (reconnects do not)
	At       time.Time // Retry: when due; Leased: lease deadline
	Enqueued time.Time // enqueued, or requeued by RetryFailed: retry.max_age counts from it
	Reply    string    // last server reply or error, kept in full
	Provider string    // provider of the last attempt

	// Lease is a token that changes every time the job is leased; Settle and
	// Release with a stale token are refused (ErrLeaseLost).
	Lease uint64
}

// RowRef locates a job's record in its recipients file.
type RowRef struct {
	Offset uint64 // of the record's first byte
	Size   uint32 // of the record, line ending included
	Sum    uint32 // CRC-32C of those bytes
}

// Status is a campaign's run state.
type Status uint8

const (
	Active Status = iota + 1
	Paused
	CampaignCancelled
)

var statusNames = [...]string{"", "active", "paused", "cancelled"}

func (s Status) String() string {
	if int(s) < len(statusNames) && s != 0 {
		return statusNames[s]
	}
	return "unknown"
}

// Campaign is the stored record of a campaign.
type Campaign struct {
	ID      string
	Header  []string // CSV header; Job.Fields follow this order
	Created time.Time
	Status  Status
	Reason  string // why it is paused, if it is
	// List names the suppression list the campaign's recipients are checked
	// against: the sending domain (of the From address), lower-cased.
	// Enqueue, Settle (Suppress) and RetryFailed use it. "" is a list too.
	List string
	// Planned is set once every row of the recipients file was enqueued;
	// a resumed run skips planning when it is set.
	Planned bool
	// Source identifies the recipients file the campaign is planned from
	// (its size and hash, in the engine's form; the queue does not look
	// inside), so that a run on a file that changed since can say so.
	// CreateCampaign stores it; "" for campaigns planned before it existed.
	Source string
	// Spec is what a worker needs to deliver the campaign (templates,
	// sender, attachments, retry policy), in the engine's encoding; the
	// queue does not look inside. CreateCampaign stores it and SetSpec
	// replaces it; Campaign leaves it nil, because it can be large and the
	// record is read often (status polls): read it with Queue.Spec.
	Spec []byte
}

// Counts are the number of jobs of a campaign in each state.
type Counts struct {
	Pending, Leased, Sent, Retry, Failed, Suppressed, Cancelled int64
}

// Total is the number of jobs in the campaign.
func (c Counts) Total() int64 {
	return c.Pending + c.Leased + c.Sent + c.Retry + c.Failed + c.Suppressed + c.Cancelled
}

// Open is the number of jobs not yet in a final state.
func (c Counts) Open() int64 { return c.Pending + c.Leased + c.Retry }

// Get returns the count for one state.
func (c Counts) Get(s State) int64 {
	if f := c.field(s); f != nil {
		return *f
	}
	return 0
}

// Add adds d to the count of state s.
func (c *Counts) Add(s State, d int64) {
	if f := c.field(s); f != nil {
		*f += d
	}
}

func (c *Counts) field(s State) *int64 {
	switch s {
	case Pending:
		return &c.Pending
	case Leased:
		return &c.Leased
	case Sent:
		return &c.Sent
	case Retry:
		return &c.Retry
	case Failed:
		return &c.Failed
	case Suppressed:
		return &c.Suppressed
	case Cancelled:
		return &c.Cancelled
	}
	return nil
}

// Duplicate reports a job that Enqueue did not add because another job of
// the campaign has the same Key under a different Seq.
type Duplicate struct {
	Seq      uint64 // the job that was not added
	FirstSeq uint64 // the job already holding the key
}

// EnqueueResult says what Enqueue did with a batch.
type EnqueueResult struct {
	Added      int         // new jobs (Pending or Suppressed)
	Suppressed int         // of Added, how many went straight to Suppressed
	Existing   int         // same Key and same Seq already stored: a re-plan
	Duplicates []Duplicate // same Key, other Seq
}

// EnqueuePreparer is a Queue whose Enqueue comes in two steps, so that a
// planner keeps the queue busy: PrepareEnqueue does the part that does not
// depend on the jobs stored before (reading the suppression list, laying
// out the request), and may run while an earlier batch is being stored;
// the function it returns stores the batch as Enqueue would (Enqueue is
// the two steps in a row). The caller runs those functions one at a time,
// in the batches' order, so each batch sees the keys of the ones before.
type EnqueuePreparer interface {
	PrepareEnqueue(ctx context.Context, campaign string, jobs []Job) (func(context.Context) (EnqueueResult, error), error)
	// EnqueueBatch is how many jobs a planner puts in a batch: what a
	// batch costs besides its jobs (a round trip, the wait between two
	// batches) shrinks with more.
	EnqueueBatch() int
}

// Settlement is the outcome of one leased job.
type Settlement struct {
	Seq   uint64
	Lease uint64 // the token from the leased Job
	// State is Sent, Retry, Failed or Suppressed.
	State State
	At    time.Time // for Retry: when due
	// CountAttempt adds one to Job.Attempts (false for reconnects and
	// throttles, which are not the recipient's fault).
	CountAttempt bool
	Reply        string
	Provider     string
	// Suppress adds the job's Key to the campaign's suppression list (a hard
	// bounce), with Reply as the reason.
	Suppress bool
	// At which the provider sent it: counted toward the provider's usage
	// (see Usage) when State is Sent. Zero means time.Now().
	SentAt time.Time
}

// Suppression is one address on a suppression list.
type Suppression struct {
	Key    string // the lower-cased address
	Reason string // "hard bounce 5.1.1 ...", "unsubscribed (one-click)", ...
	At     time.Time
}

// SuppressedReply is the Reply of a job not sent because of e.
func SuppressedReply(e Suppression) string {
	return "on the suppression list: " + e.Reason
}

// RetryResult says what RetryFailed did.
type RetryResult struct {
	Requeued int // failed jobs moved back to Pending
	// Suppressed failed jobs stay failed: their address is on the
	// suppression list (a hard bounce, or an unsubscribe).
	Suppressed int
}

// Errors returned by queues.
var (
	ErrNoCampaign = errors.New("queue: no such campaign")
	ErrLeaseLost  = errors.New("queue: lease lost (expired and taken by another sender, or already settled)")
	ErrClosed     = errors.New("queue: closed")
	// ErrVanished says a campaign's data was lost from the store: a
	// campaign the queue had seen (created, or read) is missing, e.g. a
	// Redis without persistence restarted and came back empty. It is not
	// ErrNoCampaign: planning the campaign again would send every message
	// again, so nothing may take it for a campaign never planned. A queue
	// that finds a campaign vanished remembers it (a tombstone), and from
	// then on refuses the campaign's id with this error in every process.
	// Errors carrying it are *VanishedError. The embedded store (boltq)
	// does not lose a campaign, so does not return it.
	ErrVanished = errors.New("queue: campaign vanished: its data was lost from the store")
)

// VanishedError is the error for a campaign whose data was lost; it
// matches ErrVanished (errors.Is).
type VanishedError struct {
	Campaign string
	Store    string // where it was lost from ("Redis")
	// At is when the loss was noticed.
	At time.Time
	// Sent and Total are the campaign's counts as last seen before the
	// loss by the process that noticed it; Total is 0 when it had seen
	// none.
	Sent, Total int64
}

func (e *VanishedError) Error() string {
	store := e.Store
	if store == "" {
		store = "the queue"
	}
	s := fmt.Sprintf("campaign %s vanished: its data was lost from %s (noticed at %s)", e.Campaign, store, e.At.UTC().Format("2006-01-02 15:04:05 UTC"))
	if e.Total > 0 {
		s += fmt.Sprintf("; %d of its %d recipients had been seen sent before", e.Sent, e.Total)
	}
	return s
}

// Is makes errors.Is(err, ErrVanished) hold.
func (e *VanishedError) Is(target error) bool { return target == ErrVanished }

// Queue is the contract every backend fulfils; queuetest.Run checks it.
// Implementations are safe for concurrent use. Every method that names a
// campaign returns ErrNoCampaign when there is none, or ErrVanished when
// its data was lost (a backend that can lose it: see ErrVanished).
type Queue interface {
	// CreateCampaign stores c if no campaign with c.ID exists and returns
	// the stored record (the existing one when it already existed).
	CreateCampaign(ctx context.Context, c Campaign) (Campaign, error)
	// Campaign returns the stored record or ErrNoCampaign.
	Campaign(ctx context.Context, id string) (Campaign, error)
	// SetStatus changes a campaign's status and reason. Cancelling moves
	// every job that is not final (except Leased ones, which the sender
	// settles) to Cancelled.
	SetStatus(ctx context.Context, id string, s Status, reason string) error
	// MarkPlanned records that planning finished.
	MarkPlanned(ctx context.Context, id string) error
	// Spec returns the campaign's Spec (nil if none was stored).
	Spec(ctx context.Context, id string) ([]byte, error)
	// SetSpec replaces the campaign's Spec.
	SetSpec(ctx context.Context, id string, spec []byte) error
	// Campaigns lists the id of every stored campaign, in any status,
	// sorted.
	Campaigns(ctx context.Context) ([]string, error)

	// Enqueue adds jobs (State, Attempts, At and Lease are ignored). It is
	// idempotent: a job whose Key is already in the campaign is not added.
	// Keys on the suppression list go straight to Suppressed.
	Enqueue(ctx context.Context, campaign string, jobs []Job) (EnqueueResult, error)
	// Lease hands out up to n jobs, leased until now+ttl: first Retry jobs
	// that are due and Leased jobs whose lease has expired, oldest first,
	// then Pending jobs in Seq order. Nothing is handed out while the
	// campaign is not Active.
	Lease(ctx context.Context, campaign string, now time.Time, n int, ttl time.Duration) ([]Job, error)
	// Settle records outcomes in one batch. A settlement whose Lease does not
	// match the job's current token is skipped; the returned slice holds the
	// Seqs that were skipped this way. The same settlement again (same
	// token, job already in that state: a batch retried after its reply was
	// lost) is taken as done and changes nothing.
	Settle(ctx context.Context, campaign string, s []Settlement) (lost []uint64, err error)
	// Extend moves the deadline of leases still held to until (a sender
	// renews what it holds while it works). Jobs whose token is stale are
	// returned in lost and not touched.
	Extend(ctx context.Context, campaign string, jobs []Job, until time.Time) (lost []uint64, err error)
	// Release returns leased jobs to Pending without counting an attempt
	// (jobs taken but never tried). Stale tokens are ignored.
	Release(ctx context.Context, campaign string, jobs []Job) error
	// RetryFailed moves the campaign's Failed jobs back to Pending with no
	// attempts counted and Enqueued set to now (retry.max_age counts from
	// it), except those whose Key is on the suppression list.
	RetryFailed(ctx context.Context, campaign string, now time.Time) (RetryResult, error)
	// NextDue is the earliest time a Retry or Leased job becomes available;
	// ok is false when there are none.
	NextDue(ctx context.Context, campaign string) (t time.Time, ok bool, err error)

	// Recipient reports whether key (a lower-cased address) is one of the
	// campaign's jobs.
	Recipient(ctx context.Context, campaign, key string) (bool, error)

	// Counts returns the number of jobs in each state.
	Counts(ctx context.Context, campaign string) (Counts, error)
	// Walk calls fn for every job in Seq order; an error from fn stops it.
	Walk(ctx context.Context, campaign string, fn func(Job) error) error

	// Suppressed returns the entries of list for those of keys that are on
	// it (keys not on it are absent from the map).
	Suppressed(ctx context.Context, list string, keys ...string) (map[string]Suppression, error)
	// Suppress adds keys to list with a reason, at now. A key already on
	// the list keeps its first reason and time.
	Suppress(ctx context.Context, list, reason string, keys ...string) error
	// Unsuppress removes keys from list; it returns how many were on it.
	// Their soft-bounce counts go too.
	Unsuppress(ctx context.Context, list string, keys ...string) (int, error)
	// WalkSuppressed calls fn for every entry of list in key order.
	WalkSuppressed(ctx context.Context, list string, fn func(Suppression) error) error
	// SuppressionLists names every list with at least one entry, sorted.
	SuppressionLists(ctx context.Context) ([]string, error)
	// SoftBounce records a soft bounce of key, identified by bounceID (the
	// same bounce read twice counts once), and returns how many distinct
	// soft bounces key has on list.
	SoftBounce(ctx context.Context, list, key, bounceID string) (int, error)
	// Complaint records that key complained about campaign (an ARF
	// feedback report: marked as spam) and returns how many distinct
	// recipients of the campaign did; Complaints only counts them.
	Complaint(ctx context.Context, campaign, key string) (int, error)
	Complaints(ctx context.Context, campaign string) (int, error)

	// Usage is the number of messages sent through provider since t
	// (recorded by Settle), for daily quotas that survive a restart. The
	// count is kept per minute: t is rounded down to a minute.
	Usage(ctx context.Context, provider string, since time.Time) (int64, error)
	// FirstUsage is the minute of the first message sent through provider
	// (zero: none yet): the start of its warm-up.
	FirstUsage(ctx context.Context, provider string) (time.Time, error)

	Close() error
}
