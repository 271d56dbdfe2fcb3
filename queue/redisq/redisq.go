package redisq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldmail/herald/queue"
)

// Queue is the Redis backend. Many processes on many machines may share
// one; it is safe for concurrent use.
type Queue struct {
	rdb    redis.UniversalClient
	prefix string   // "herald:" unless Options.Prefix
	lists  sync.Map // campaign id → its suppression list
	seen   sync.Map // campaign id → *sighting: found stored (vanished.go)
	// server names the server in errors: host:port, a socket path, or the
	// Sentinel's master name; never credentials (a cluster's masters are
	// named each by its address).
	server string
	repl   replication // durability.go
}

var _ queue.Queue = (*Queue)(nil)

// Options tune Open.
type Options struct {
	// Prefix namespaces every key (default "herald:"); tests use one per test.
	Prefix string
	// ReplicaWait bounds the WAIT that follows the writes recording
	// outcomes while the master has replicas (default
	// DefaultReplicaWait); past it with no replica's acknowledgement the
	// write returns an error wrapping ErrUnreplicated.
	ReplicaWait time.Duration
	// ReplicaCheck is how often the masters' replicas are counted again
	// (INFO replication; default DefaultReplicaCheck).
	ReplicaCheck time.Duration
}

// Open connects to the Redis at url. The scheme picks the kind of client:
//
//   - redis://[user:pass@]host:port/db, rediss://… (TLS) or unix:///path/redis.sock:
//     one server (redis.ParseURL; its query options such as dial_timeout apply).
//   - redis+cluster://[user:pass@]host:port?addr=host2:port&addr=host3:port,
//     rediss+cluster://… (TLS): a Redis Cluster; the host and every addr are
//     seed nodes (redis.ParseClusterURL). A cluster has only database 0, so
//     the path must be empty, / or /0.
//   - redis+sentinel://[user:pass@]host:port/db?master_name=mymaster&addr=host2:port,
//     rediss+sentinel://… (TLS): the master that the Sentinels at host and
//     every addr name (redis.ParseFailoverURL). master_name is required. The
//     user and password in the URL log in to the Sentinels; the master's
//     own are the query options username= and password=.
//
// A command waits for its reply no longer than its context allows (and
// the URL's read_timeout, 3 s by default): a Redis that hangs, rather than
// closes the connection, fails the call in time for the caller's own
// bound (go-redis's ContextTimeoutEnabled, always on).
//
// Unless the URL sets them, Open retries a failed command up to 10 times
// with a backoff from 8ms to 1s, so that a restart or a failover of Redis
// does not fail a running send. On a cluster those are the cluster
// client's retries (max_redirects=10; max_retries=-1: none on the node
// that failed), each sent to the master that the slot map names then, and
// the map is read again whenever a node fails (see watchHook). A
// cluster node or a Sentinel's master is dialled for at most 2 s
// (dial_timeout; a cluster node once per try, dialer_retries=1). Options
// that read from replicas (read_only, route_by_latency, route_randomly,
// replica_only) are refused: a replica lags behind its master.
func Open(ctx context.Context, url string, opts Options) (*Queue, error) {
	o, err := parseURL(url)
	if err != nil {
		return nil, err
	}
	q := &Queue{}
	// A new connection may reach another server than the last one (a
	// replica promoted after a failover, a restarted master): the next
	// write that waits for a replica looks at the server first (see
	// master in durability.go).
	dialed := func() { q.repl.dialed() }
	switch o := o.(type) {
	case *redis.Options:
		c := redis.NewClient(o)
		c.AddHook(watchHook{dialed: dialed})
		q.rdb, q.server = c, o.Addr
	case *redis.ClusterOptions:
		c := redis.NewClusterClient(o)
		// go-redis learns that a slot moved from a MOVED reply, or after a
		// minute: a master that died answers nothing, and its slots'
		// commands would go on dialling it. Every node's failure makes
		// the client read the slots again (in the background, at most
		// every 200 ms), so the replica that takes over is found.
		c.OnNewNode(func(n *redis.Client) {
			n.AddHook(watchHook{dialed: dialed, failed: func(ctx context.Context) { c.ReloadState(ctx) }})
		})
		q.rdb, q.server = c, "cluster"
	case *redis.FailoverOptions:
		c := redis.NewFailoverClient(o)
		c.AddHook(watchHook{dialed: dialed})
		q.rdb, q.server = c, "the Sentinels' master "+o.MasterName
	}
	rdb := q.rdb
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis: %w", err)
	}
	if opts.Prefix == "" {
		opts.Prefix = Prefix
	}
	if opts.ReplicaWait <= 0 {
		opts.ReplicaWait = DefaultReplicaWait
	}
	// WAIT must answer before the connection's read deadline.
	var rt time.Duration
	switch c := rdb.(type) {
	case *redis.Client:
		rt = c.Options().ReadTimeout
	case *redis.ClusterClient:
		rt = c.Options().ReadTimeout
	}
	if rt > 0 && opts.ReplicaWait > rt/2 {
		opts.ReplicaWait = rt / 2
	}
	if opts.ReplicaCheck <= 0 {
		opts.ReplicaCheck = DefaultReplicaCheck
	}
	q.prefix = opts.Prefix
	q.repl.wait, q.repl.every = opts.ReplicaWait, opts.ReplicaCheck
	q.replicasOf(ctx, q.server) // the first look, so the first write knows
	return q, nil
}

// Retry defaults for a URL that sets none.
const (
	defaultMaxRetries      = 10
	defaultMinRetryBackoff = 8 * time.Millisecond
	defaultMaxRetryBackoff = time.Second
)

func retryDefaults(maxRetries *int, minBackoff, maxBackoff *time.Duration) {
	if *maxRetries == 0 {
		*maxRetries = defaultMaxRetries
	}
	if *minBackoff == 0 {
		*minBackoff = defaultMinRetryBackoff
	}
	if *maxBackoff == 0 {
		*maxBackoff = defaultMaxRetryBackoff
	}
}

// Defaults for a cluster URL that sets none of them. A command is not
// retried on the node that failed it (max_retries=-1) but by the cluster
// client, up to clusterMaxRedirects times with the backoff above (about 5
// s in all: a failover), each time on the master its slot map names then:
// meanwhile watchHook has it read the map again. A node is dialled
// once per try (dialer_retries=1), for at most defaultDialTimeout.
const (
	clusterMaxRedirects = 10
	defaultDialTimeout  = 2 * time.Second
)

func clusterDefaults(o *redis.ClusterOptions) {
	if o.MaxRetries == 0 && o.MaxRedirects == 0 {
		o.MaxRetries, o.MaxRedirects = -1, clusterMaxRedirects
	}
	var none int
	retryDefaults(&none, &o.MinRetryBackoff, &o.MaxRetryBackoff)
	if o.DialTimeout == 0 {
		o.DialTimeout = defaultDialTimeout
	}
	if o.DialerRetries == 0 {
		o.DialerRetries = 1
	}
}

// watchHook watches a client's connections: dialed is called after each
// new one, and failed (if set) when a command or pipeline fails for want
// of the server (a dial or connection error, or a reply that says a
// cluster's slots are moving).
type watchHook struct {
	dialed func()
	failed func(ctx context.Context)
}

func (h watchHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err == nil {
			h.dialed()
		}
		return c, err
	}
}

func (h watchHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	if h.failed == nil {
		return next
	}
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(ctx, err)
		return err
	}
}

func (h watchHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	if h.failed == nil {
		return next
	}
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(ctx, err)
		return err
	}
}

func (h watchHook) check(ctx context.Context, err error) {
	if err == nil || errors.Is(err, redis.Nil) || ctx.Err() != nil {
		return
	}
	var reply redis.Error
	if errors.As(err, &reply) {
		// The node answered: only these replies say the slots move.
		moving := false
		for _, p := range []string{"CLUSTERDOWN", "MASTERDOWN", "READONLY", "TRYAGAIN", "MOVED"} {
			moving = moving || redis.HasErrorPrefix(err, p)
		}
		if !moving {
			return
		}
	}
	h.failed(ctx)
}

// parseURL turns url into *redis.Options, *redis.ClusterOptions or
// *redis.FailoverOptions (see Open); it contacts nothing.
func parseURL(url string) (any, error) {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return nil, fmt.Errorf("redis url: no scheme (use redis://, rediss://, unix://, redis+cluster:// or redis+sentinel://)")
	}
	base, kind, _ := strings.Cut(scheme, "+")
	if kind != "" && base != "redis" && base != "rediss" {
		return nil, fmt.Errorf("redis url: unknown scheme %q", scheme)
	}
	switch kind {
	case "":
		o, err := redis.ParseURL(url)
		if err != nil {
			return nil, fmt.Errorf("redis url: %w", err)
		}
		retryDefaults(&o.MaxRetries, &o.MinRetryBackoff, &o.MaxRetryBackoff)
		o.ContextTimeoutEnabled = true
		return o, nil
	case "cluster":
		o, err := redis.ParseClusterURL(base + "://" + rest)
		if err != nil {
			return nil, fmt.Errorf("redis cluster url: %w", err)
		}
		if o.ReadOnly || o.RouteByLatency || o.RouteRandomly {
			return nil, errors.New("redis cluster url: read_only, route_by_latency and route_randomly read from replicas, which lag behind their master: herald must read what it has just written (remove them)")
		}
		// ParseClusterURL ignores the path; a cluster has only db 0.
		path := rest
		if i := strings.IndexAny(path, "?#"); i >= 0 {
			path = path[:i]
		}
		if _, p, ok := strings.Cut(path, "/"); ok && p != "" && p != "0" {
			return nil, fmt.Errorf("redis cluster url: database %q: a cluster has only database 0", p)
		}
		clusterDefaults(o)
		o.ContextTimeoutEnabled = true
		return o, nil
	case "sentinel":
		o, err := redis.ParseFailoverURL(base + "://" + rest)
		if err != nil {
			return nil, fmt.Errorf("redis sentinel url: %w", err)
		}
		if o.MasterName == "" {
			return nil, errors.New("redis sentinel url: master_name=… is required")
		}
		if o.ReplicaOnly || o.RouteByLatency || o.RouteRandomly {
			return nil, errors.New("redis sentinel url: replica_only, route_by_latency and route_randomly send commands to replicas: herald writes, and must read what it has just written (remove them)")
		}
		retryDefaults(&o.MaxRetries, &o.MinRetryBackoff, &o.MaxRetryBackoff)
		if o.DialTimeout == 0 {
			o.DialTimeout = defaultDialTimeout
		}
		o.ContextTimeoutEnabled = true
		return o, nil
	}
	return nil, fmt.Errorf("redis url: unknown scheme %q (use redis+cluster:// or redis+sentinel://)", scheme)
}

// Prefix is the default namespace of herald's keys.
const Prefix = "herald:"

// Client is the queue's Redis client, for other shared state (the
// providers' limits) to use the same connections.
func (q *Queue) Client() redis.UniversalClient { return q.rdb }

// Close closes the connections.
func (q *Queue) Close() error { return q.rdb.Close() }

// keys of one campaign, all in one hash slot (see scripts.go).
type keys struct {
	id, prefix                                                string
	meta, st, kx, pending, timers, order, pendlist, orderlist string
	lost                                                      string // the tombstone (vanished.go)
}

func (q *Queue) keys(id string) keys {
	p := q.prefix + "{" + id + "}:"
	return keys{id, p, p + "meta", p + "st", p + "kx", p + "pending", p + "timers", p + "order", p + "pendlist", p + "orderlist", p + "lost"}
}

func (q *Queue) campaignsKey() string { return q.prefix + "campaigns" }

// suppressionKey is list's hash: key → "unix-nanos reason".
func (q *Queue) suppressionKey(list string) string { return q.prefix + "suppression:{" + list + "}" }
func (q *Queue) suppressionListsKey() string       { return q.prefix + "suppression-lists" }
func (q *Queue) softKey(list, key string) string {
	return q.prefix + "soft:{" + list + "}:" + key
}

// list returns campaign id's suppression list; it never changes, so it is
// read once.
func (q *Queue) list(ctx context.Context, id string) (string, error) {
	ci, err := q.info(ctx, id)
	return ci.list, err
}

func encodeSuppression(at time.Time, reason string) string {
	return strconv.FormatInt(at.UnixNano(), 10) + " " + reason
}

func decodeSuppression(key, v string) queue.Suppression {
	ns, reason, ok := strings.Cut(v, " ")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil {
		return queue.Suppression{Key: key, Reason: v}
	}
	return queue.Suppression{Key: key, Reason: reason, At: time.Unix(0, n).UTC()}
}
func (q *Queue) usageKey(p string) string {
	return q.prefix + "usage:{" + p + "}"
}

type record struct {
	ID      string
	Header  []string
	Created time.Time
	List    string `json:",omitempty"`
	Source  string `json:",omitempty"`
}

// CreateCampaign stores c unless the campaign exists.
func (q *Queue) CreateCampaign(ctx context.Context, c queue.Campaign) (queue.Campaign, error) {
	rec, err := json.Marshal(record{ID: c.ID, Header: c.Header, Created: c.Created, List: c.List, Source: c.Source})
	if err != nil {
		return queue.Campaign{}, err
	}
	k := q.keys(c.ID)
	if err := scriptCreate.Run(ctx, q.rdb, []string{k.meta, k.timers, k.lost}, rec, timersPin, c.Spec).Err(); err != nil {
		if strings.Contains(err.Error(), "VANISHED") {
			return queue.Campaign{}, q.missing(ctx, c.ID)
		}
		return queue.Campaign{}, err
	}
	if err := q.rdb.SAdd(ctx, q.campaignsKey(), c.ID).Err(); err != nil {
		return queue.Campaign{}, err
	}
	return q.Campaign(ctx, c.ID)
}

// Campaign returns the stored record.
func (q *Queue) Campaign(ctx context.Context, id string) (queue.Campaign, error) {
	c, _, err := q.campaign(ctx, id)
	return c, err
}

// campaign returns the stored record and the layout of its jobs (see
// layout.go).
func (q *Queue) campaign(ctx context.Context, id string) (queue.Campaign, string, error) {
	v, err := q.rdb.HMGet(ctx, q.keys(id).meta, "rec", "status", "reason", "planned", "layout").Result()
	if err != nil {
		return queue.Campaign{}, "", err
	}
	if v[0] == nil {
		return queue.Campaign{}, "", q.missing(ctx, id)
	}
	var rec record
	if err := json.Unmarshal([]byte(v[0].(string)), &rec); err != nil {
		return queue.Campaign{}, "", err
	}
	q.saw(id)
	st, _ := strconv.Atoi(str(v[1]))
	return queue.Campaign{ID: rec.ID, Header: rec.Header, Created: rec.Created, List: rec.List, Source: rec.Source, Status: queue.Status(st), Reason: str(v[2]), Planned: str(v[3]) == "1"}, str(v[4]), nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// SetStatus changes the status; cancelling cancels every job not final and
// not leased.
func (q *Queue) SetStatus(ctx context.Context, id string, s queue.Status, reason string) error {
	k := q.keys(id)
	if err := scriptSetStatus.Run(ctx, q.rdb, []string{k.meta}, int(s), reason).Err(); err != nil {
		if isNoCampaign(err) {
			return q.missing(ctx, id)
		}
		return err
	}
	for s == queue.CampaignCancelled {
		n, err := scriptCancel.Run(ctx, q.rdb, []string{k.meta, k.st, k.pending, k.timers, k.pendlist}, 1000).Int()
		if err != nil {
			return err
		}
		if n < 1000 {
			break
		}
	}
	return q.replicate(ctx, k.meta)
}

// MarkPlanned records that planning finished.
func (q *Queue) MarkPlanned(ctx context.Context, id string) error {
	meta := q.keys(id).meta
	err := scriptMarkPlanned.Run(ctx, q.rdb, []string{meta}).Err()
	if isNoCampaign(err) {
		return q.missing(ctx, id)
	}
	if err != nil {
		return err
	}
	// On one master, that covers the jobs enqueued before too.
	return q.replicate(ctx, meta)
}

// enqueueChunk is the most jobs one enqueue script takes; a larger batch
// is sent as several scripts in one pipeline. Redis runs them one after the
// other, so a later chunk sees the keys of an earlier one. A chunk runs for
// about a millisecond, so senders leasing meanwhile do not wait long, and
// Lua's unpack limit (about 8000 values) is never reached.
const enqueueChunk = 250

// enqueueBatch is the batch a planner gives Enqueue (EnqueueBatch): 16
// chunks in one pipeline. Between two batches Redis waits for herald (the
// replies, the next request); with 1000 jobs a batch that wait cost about a
// tenth of herald enqueue's time.
const enqueueBatch = 4000

// EnqueueBatch is how many jobs a planner puts in a batch
// (queue.EnqueuePreparer).
func (q *Queue) EnqueueBatch() int { return enqueueBatch }

// Enqueue adds the jobs whose keys are new to the campaign. The suppression
// list is read first (it lives in another hash slot than the campaign, so a
// script cannot read it on a cluster), then the batch goes in chunks of
// enqueueChunk, all in one pipeline. Each chunk is atomic, the batch is not:
// when a chunk fails (SEQTAKEN), the other chunks are stored all the same.
func (q *Queue) Enqueue(ctx context.Context, id string, jobs []queue.Job) (queue.EnqueueResult, error) {
	run, err := q.PrepareEnqueue(ctx, id, jobs)
	if err != nil {
		return queue.EnqueueResult{}, err
	}
	return run(ctx)
}

// PrepareEnqueue is Enqueue's first step (queue.EnqueuePreparer): it
// reads the suppression list and lays out the scripts' arguments, which
// does not depend on the jobs stored before; the function it returns runs
// the scripts. A planner prepares the next batch while Redis runs the
// scripts of the one before, so Redis does not wait for herald.
func (q *Queue) PrepareEnqueue(ctx context.Context, id string, jobs []queue.Job) (func(context.Context) (queue.EnqueueResult, error), error) {
	if len(jobs) == 0 {
		return func(context.Context) (queue.EnqueueResult, error) { return queue.EnqueueResult{}, nil }, nil
	}
	keysList := make([]string, len(jobs))
	for i, j := range jobs {
		keysList[i] = j.Key
	}
	ci, err := q.info(ctx, id)
	if err != nil {
		return nil, err
	}
	if ci.layout != layout {
		return nil, layoutError(id, ci.layout)
	}
	list := ci.list
	// The suppression list is read while the records are encoded.
	var supp []any
	suppErr := make(chan error, 1)
	go func() {
		var err error
		supp, err = q.rdb.HMGet(ctx, q.suppressionKey(list), keysList...).Result()
		suppErr <- err
	}()
	k := q.keys(id)
	var args [][]any
	for lo := 0; lo < len(jobs); lo += enqueueChunk {
		args = append(args, enqueueArgs(jobs[lo:min(lo+enqueueChunk, len(jobs))], ci.base, k.prefix))
	}
	if err := <-suppErr; err != nil {
		return nil, err
	}
	for c := range args {
		lo := c * enqueueChunk
		m := 0
		for i, r := range supp[lo:min(lo+enqueueChunk, len(jobs))] {
			if r != nil {
				args[c] = append(args[c], i+1, queue.SuppressedReply(decodeSuppression(jobs[lo+i].Key, str(r))))
				m++
			}
		}
		args[c][4] = m
	}
	return func(ctx context.Context) (queue.EnqueueResult, error) { return q.runEnqueue(ctx, id, k, args) }, nil
}

// runEnqueue runs the enqueue scripts of a prepared batch, in one
// pipeline.
func (q *Queue) runEnqueue(ctx context.Context, id string, k keys, args [][]any) (queue.EnqueueResult, error) {
	var res queue.EnqueueResult
	ks := []string{k.meta, k.st, k.pending, k.order, k.pendlist, k.orderlist, k.kx}
	cmds := make([]*redis.Cmd, len(args))
	if len(args) == 1 {
		cmds[0] = scriptEnqueue.Run(ctx, q.rdb, ks, args[0]...)
	} else {
		pipe := q.rdb.Pipeline()
		for i, a := range args {
			cmds[i] = scriptEnqueue.EvalSha(ctx, pipe, ks, a...)
		}
		pipe.Exec(ctx) // errors are looked at per chunk
	}
	for i, c := range cmds {
		v, err := c.Slice()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// The server lost its script cache (a restart): this chunk
			// did not run. Run loads the script.
			v, err = scriptEnqueue.Run(ctx, q.rdb, ks, args[i]...).Slice()
		}
		if err != nil {
			if isNoCampaign(err) {
				return res, q.missing(ctx, id)
			}
			if have, ok := strings.CutPrefix(err.Error(), "LAYOUT "); ok {
				return res, layoutError(id, have)
			}
			if strings.Contains(err.Error(), "SEQTAKEN") {
				return res, fmt.Errorf("queue: a job already holds another address at that line (did the recipients file change? use a new campaign id): %w", err)
			}
			return res, err
		}
		res.Added += int(v[0].(int64))
		res.Suppressed += int(v[1].(int64))
		res.Existing += int(v[2].(int64))
		d := v[3].([]any)
		for i := 0; i+1 < len(d); i += 2 {
			seq, _ := strconv.ParseUint(str(d[i]), 10, 64)
			first, _ := strconv.ParseUint(str(d[i+1]), 10, 64)
			res.Duplicates = append(res.Duplicates, queue.Duplicate{Seq: seq, FirstSeq: first})
		}
	}
	return res, nil
}

// enqueueArgs lays out ARGV for scriptEnqueue, but for the suppressed jobs
// (m is 0); prefix is the campaign's key prefix (keys.prefix).
func enqueueArgs(jobs []queue.Job, base int64, prefix string) []any {
	n := len(jobs)
	minSeq, maxSeq := jobs[0].Seq, jobs[0].Seq
	ascending := true
	groups := 1
	for i, j := range jobs {
		minSeq, maxSeq = min(minSeq, j.Seq), max(maxSeq, j.Seq)
		if i > 0 && j.Seq <= jobs[i-1].Seq {
			ascending = false
		}
		if i > 0 && j.Seq/dataBucket != jobs[i-1].Seq/dataBucket {
			groups++
		}
	}
	u := 0
	if ascending {
		u = 2
	} else {
		groups = 0
	}
	a := make([]any, 6+5*n, 6+5*n+2*groups)
	a[0], a[1], a[2], a[3], a[4], a[5] = n, u, minSeq, maxSeq, 0, groups
	// A job's arguments point into nums and strs, whose strings share
	// one allocation: boxing a pointer allocates nothing, and go-redis
	// writes what it points to.
	nums := make([]uint64, 2*n) // seq, d field
	strs := make([]string, 3*n) // record, k hash, k field
	ends := make([]int, 3*n)
	kp := prefix + "k:"
	buf := make([]byte, 0, n*(len(kp)+72))
	for i, j := range jobs {
		b, f := dedupBytes(j.Key)
		buf = appendData(buf, j, base)
		ends[3*i] = len(buf)
		buf = strconv.AppendUint(append(buf, kp...), b, 10)
		ends[3*i+1] = len(buf)
		buf = append(buf, f[:]...)
		ends[3*i+2] = len(buf)
	}
	all := string(buf)
	from := 0
	for x, e := range ends {
		strs[x], from = all[from:e], e
	}
	for i, j := range jobs {
		nums[2*i], nums[2*i+1] = j.Seq, j.Seq%dataBucket
		a[6+i], a[6+n+2*i], a[7+n+2*i], a[6+3*n+i], a[6+4*n+i] = &nums[2*i], &nums[2*i+1], &strs[3*i], &strs[3*i+1], &strs[3*i+2]
	}
	if ascending {
		dp := prefix + "d:"
		c := 0
		for i, j := range jobs {
			c++
			if i == n-1 || jobs[i+1].Seq/dataBucket != j.Seq/dataBucket {
				a = append(a, dp+strconv.FormatUint(j.Seq/dataBucket, 10), c)
				c = 0
			}
		}
	}
	return a
}

// maxLease is the most jobs one Lease call hands out: a token holds a
// job's place in the batch in 4 digits (see scripts.go), and Lua's unpack
// stops at about 8000 values.
const maxLease = 2000

// Lease hands out due retries and expired leases, then pending jobs (at
// most maxLease). While the master has replicas it returns them once one
// has the leases (replicate), as Settle does with outcomes.
func (q *Queue) Lease(ctx context.Context, id string, now time.Time, n int, ttl time.Duration) ([]queue.Job, error) {
	if n <= 0 {
		return nil, nil
	}
	n = min(n, maxLease)
	k := q.keys(id)
	if err := q.caughtUp(ctx, k.meta); err != nil {
		return nil, err
	}
	ci, err := q.info(ctx, id)
	if err != nil {
		return nil, err
	}
	until := time.UnixMilli(now.Add(ttl).UnixMilli())
	v, err := scriptLease.Run(ctx, q.rdb, []string{k.meta, k.st, k.pending, k.timers, k.pendlist}, now.UnixMilli(), n, ms13(until)).Slice()
	if isNoCampaign(err) {
		return nil, q.missing(ctx, id)
	}
	if err != nil {
		if have, ok := strings.CutPrefix(err.Error(), "LAYOUT "); ok {
			return nil, layoutError(id, have)
		}
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	if len(v) < 4 {
		return nil, nil
	}
	call := uint64(v[0].(int64))
	seqs, sts, data := v[1].([]any), v[2].([]any), v[3].([]any)
	jobs := make([]queue.Job, len(seqs))
	for i := range seqs {
		j, err := decodeData(str(data[i]), ci.base)
		if err != nil {
			return nil, err
		}
		j.Seq, _ = strconv.ParseUint(str(seqs[i]), 10, 64)
		if i < len(sts) { // else fresh from pendlist
			if st := str(sts[i]); st != "" {
				h, err := parseState(st)
				if err != nil {
					return nil, err
				}
				j.Attempts, j.Provider, j.Reply = h.Attempts, h.Provider, h.Reply
			}
		}
		j.Lease = call*10000 + uint64(i) + 1
		j.State, j.At = queue.Leased, until
		jobs[i] = j
	}
	// The leases must survive a failover before anything is sent under
	// them: a replica that took over without them would hand the jobs to
	// another sender while this one sends them too.
	if err := q.replicate(ctx, k.meta); err != nil {
		q.Release(ctx, id, jobs) // best effort: else they come back when the lease runs out
		return nil, err
	}
	return jobs, nil
}

// parseState decodes an st value (see scripts.go) into the mutable fields
// of a Job.
func parseState(v string) (queue.Job, error) {
	var j queue.Job
	if len(v) < stHeaderLen || v[1] != ':' || v[6] != ':' || v[22] != ':' || v[36] != ':' || v[0] < '1' || v[0] > '7' {
		return j, fmt.Errorf("redisq: job state %.40q is not in the format this version writes", v)
	}
	j.State = queue.State(v[0] - '0')
	j.Attempts, _ = strconv.Atoi(v[2:6])
	j.Lease, _ = strconv.ParseUint(v[7:22], 10, 64)
	if ms, _ := strconv.ParseInt(v[23:36], 10, 64); ms != 0 {
		j.At = time.UnixMilli(ms)
	}
	if len(v) > stHeaderLen {
		j.Provider, j.Reply = splitReply(v[stHeaderLen:])
	}
	return j, nil
}

// ms13 is t in Unix milliseconds, zero-padded to 13 digits (clamped to
// what 13 digits hold).
func ms13(t time.Time) string {
	return string(appendPad(nil, uint64(min(max(t.UnixMilli(), 0), maxMs)), 13))
}

// lease15 is a lease token as the st header holds it.
func lease15(l uint64) string { return string(appendPad(nil, min(l, maxToken), 15)) }

// The largest values the st header holds.
const (
	maxMs    = 9_999_999_999_999
	maxToken = 999_999_999_999_999
)

// appendPad appends v in decimal, zero-padded to width digits.
func appendPad(b []byte, v uint64, width int) []byte {
	b = append(b, "000000000000000000000"[:width]...)
	for i := len(b) - 1; i >= len(b)-width; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return b
}

func splitReply(v string) (provider, reply string) {
	p, r, _ := strings.Cut(v, "\x00")
	return p, r
}

// Settle records outcomes; suppression and usage follow in one pipeline.
func (q *Queue) Settle(ctx context.Context, id string, batch []queue.Settlement) ([]uint64, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	for _, s := range batch {
		if s.State < queue.Pending || s.State > queue.Cancelled {
			return nil, fmt.Errorf("redisq: settle job %d: invalid state %d", s.Seq, s.State)
		}
	}
	k := q.keys(id)
	var lost []uint64
	lostSet := map[uint64]bool{}
	var written []string
	for lo := 0; lo < len(batch); lo += scriptBatch {
		chunk := batch[lo:min(lo+scriptBatch, len(batch))]
		l, w, err := q.settle(ctx, k, chunk)
		if err != nil {
			return lost, err
		}
		written = append(written, w...)
		for _, seq := range l {
			lost = append(lost, seq)
			lostSet[seq] = true
		}
	}
	w, err := q.suppression(ctx, k, batch, lostSet)
	if err != nil {
		return lost, err
	}
	// What the sender is told is recorded must survive a failover.
	return lost, q.replicate(ctx, append(append(written, w...), k.meta)...)
}

// scriptBatch is the most jobs one Settle, Release or Extend script takes
// (Lua's unpack stops at about 8000 values).
const scriptBatch = 1000

// settle runs scriptSettle for at most scriptBatch settlements and counts
// the sent ones toward their provider's usage in the same round trip (a
// sender may be waiting for this commit before its next message). The
// usage of a settlement the script refused (lost) is taken back after.
// It returns the lost seqs and the usage keys it wrote.
func (q *Queue) settle(ctx context.Context, k keys, batch []queue.Settlement) ([]uint64, []string, error) {
	usage := usageOf(batch)
	pipe := q.rdb.Pipeline()
	script := scriptSettle.EvalSha(ctx, pipe, []string{k.meta, k.st, k.timers}, settleArgs(batch)...)
	var written []string
	for p, m := range usage {
		for minute, n := range m {
			pipe.HIncrBy(ctx, q.usageKey(p), minute, n)
		}
		written = append(written, q.usageKey(p))
	}
	_, err := pipe.Exec(ctx)
	v, serr := script.Slice()
	if redis.HasErrorPrefix(serr, "NOSCRIPT") {
		// A restarted Redis forgot the script (the usage went in).
		v, serr = scriptSettle.Run(ctx, q.rdb, []string{k.meta, k.st, k.timers}, settleArgs(batch)...).Slice()
	} else if serr == nil && err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, err // the script ran, a usage count did not
	}
	if serr != nil && !errors.Is(serr, redis.Nil) {
		// Nothing was settled: the usage counted with it goes back.
		if err := q.takeBackUsage(ctx, batch); err != nil {
			return nil, nil, err
		}
		if isNoCampaign(serr) {
			return nil, nil, q.missing(ctx, k.id)
		}
		return nil, nil, serr
	}
	lost := seqList(v)
	if len(lost) > 0 {
		lostSet := map[uint64]bool{}
		for _, seq := range lost {
			lostSet[seq] = true
		}
		var refused []queue.Settlement
		for _, s := range batch {
			if lostSet[s.Seq] {
				refused = append(refused, s)
			}
		}
		if err := q.takeBackUsage(ctx, refused); err != nil {
			return nil, nil, err
		}
	}
	return lost, written, nil
}

// takeBackUsage undoes the usage counted for settlements that were not
// recorded; a count that comes back to nothing is removed, so that no key
// is left that the settlement did not make.
func (q *Queue) takeBackUsage(ctx context.Context, batch []queue.Settlement) error {
	for p, m := range usageOf(batch) {
		args := make([]any, 0, 2*len(m))
		for minute, n := range m {
			args = append(args, minute, n)
		}
		if err := scriptUsageBack.Run(ctx, q.rdb, []string{q.usageKey(p)}, args...).Err(); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
	}
	return nil
}

// scriptUsageBack: KEYS: a provider's usage hash. ARGV: minute, n pairs.
var scriptUsageBack = redis.NewScript(`
for i = 1, #ARGV, 2 do
  if redis.call('HINCRBY', KEYS[1], ARGV[i], -tonumber(ARGV[i+1])) <= 0 then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 0
`)

// usageOf counts the sent settlements of batch per provider and minute.
func usageOf(batch []queue.Settlement) map[string]map[string]int64 {
	usage := map[string]map[string]int64{}
	for _, s := range batch {
		if s.State != queue.Sent {
			continue
		}
		at := s.SentAt
		if at.IsZero() {
			at = time.Now()
		}
		if usage[s.Provider] == nil {
			usage[s.Provider] = map[string]int64{}
		}
		usage[s.Provider][strconv.FormatInt(at.Unix()/60, 10)]++
	}
	return usage
}

// settleArgs is scriptSettle's ARGV for batch.
func settleArgs(batch []queue.Settlement) []any {
	args := make([]any, 0, 1+2*len(batch))
	args = append(args, len(batch))
	for _, s := range batch {
		args = append(args, s.Seq)
	}
	var buf []byte
	for _, s := range batch {
		// See scriptSettle: S C :lease:at:provider\x00reply
		buf = append(buf[:0], '0'+byte(s.State), '0', ':')
		if s.CountAttempt {
			buf[1] = '1'
		}
		buf = appendPad(buf, min(s.Lease, maxToken), 15)
		buf = append(buf, ':')
		if s.State == queue.Retry {
			buf = appendPad(buf, uint64(min(max(s.At.UnixMilli(), 0), maxMs)), 13)
		} else {
			buf = append(buf, "0000000000000"...)
		}
		buf = append(buf, ':')
		buf = append(buf, s.Provider...)
		buf = append(buf, 0)
		buf = append(buf, s.Reply...)
		args = append(args, string(buf))
	}
	return args
}

func seqList(v []any) []uint64 {
	var out []uint64
	for _, e := range v {
		seq, _ := strconv.ParseUint(str(e), 10, 64)
		out = append(out, seq)
	}
	return out
}

// suppression adds the addresses of the settled (not lost) jobs of batch
// that are hard bounces to the campaign's suppression list, and returns
// the keys it wrote.
func (q *Queue) suppression(ctx context.Context, k keys, batch []queue.Settlement, lostSet map[uint64]bool) ([]string, error) {
	pipe := q.rdb.Pipeline()
	var written []string
	var suppressSeqs []uint64
	for _, s := range batch {
		if !lostSet[s.Seq] && s.Suppress {
			suppressSeqs = append(suppressSeqs, s.Seq)
		}
	}
	if len(suppressSeqs) > 0 {
		ci, err := q.info(ctx, k.id)
		if err != nil {
			return nil, err
		}
		if ci.layout != layout {
			return nil, layoutError(k.id, ci.layout)
		}
		now := time.Now()
		// The keys live in the data records.
		data, err := q.readData(ctx, k, suppressSeqs)
		if err != nil {
			return nil, err
		}
		reasons := map[uint64]string{}
		for _, s := range batch {
			reasons[s.Seq] = s.Reply
		}
		for i, d := range data {
			j, err := decodeData(d, ci.base)
			if err != nil {
				return nil, err
			}
			pipe.HSetNX(ctx, q.suppressionKey(ci.list), j.Key, encodeSuppression(now, reasons[suppressSeqs[i]]))
		}
		if len(data) > 0 {
			pipe.SAdd(ctx, q.suppressionListsKey(), ci.list)
			written = append(written, q.suppressionKey(ci.list))
		}
	}
	if len(written) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, err
		}
	}
	return written, nil
}

// Release returns leased jobs to pending without counting an attempt.
func (q *Queue) Release(ctx context.Context, id string, jobs []queue.Job) error {
	if len(jobs) == 0 {
		return nil
	}
	k := q.keys(id)
	for lo := 0; lo < len(jobs); lo += scriptBatch {
		if err := scriptRelease.Run(ctx, q.rdb, []string{k.meta, k.st, k.timers, k.pending}, seqsAndLeases(jobs[lo:min(lo+scriptBatch, len(jobs))])...).Err(); err != nil {
			if isNoCampaign(err) {
				return q.missing(ctx, id)
			}
			return err
		}
	}
	return nil
}

// seqsAndLeases is the ARGV of scriptRelease and (after until) of
// scriptExtend: n, the seqs, the leases.
func seqsAndLeases(jobs []queue.Job, before ...any) []any {
	args := make([]any, 0, len(before)+1+2*len(jobs))
	args = append(append(args, before...), len(jobs))
	for _, j := range jobs {
		args = append(args, j.Seq)
	}
	for _, j := range jobs {
		args = append(args, lease15(j.Lease))
	}
	return args
}

// Extend moves the deadline of leases still held.
func (q *Queue) Extend(ctx context.Context, id string, jobs []queue.Job, until time.Time) ([]uint64, error) {
	if len(jobs) == 0 {
		return nil, nil
	}
	k := q.keys(id)
	var lost []uint64
	for lo := 0; lo < len(jobs); lo += scriptBatch {
		v, err := scriptExtend.Run(ctx, q.rdb, []string{k.st, k.timers, k.meta}, seqsAndLeases(jobs[lo:min(lo+scriptBatch, len(jobs))], ms13(until))...).Slice()
		if isNoCampaign(err) {
			return lost, q.missing(ctx, id)
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			return lost, err
		}
		lost = append(lost, seqList(v)...)
	}
	// A renewal lost in a failover would let the lease run out under its
	// sender.
	return lost, q.replicate(ctx, k.meta)
}

// NextDue is the earliest time a retry or a lease comes due.
func (q *Queue) NextDue(ctx context.Context, id string) (time.Time, bool, error) {
	z, err := q.rdb.ZRangeWithScores(ctx, q.keys(id).timers, 0, 0).Result()
	if err != nil || len(z) == 0 || z[0].Member == timersPin {
		return time.Time{}, false, err
	}
	return time.UnixMilli(int64(z[0].Score)), true, nil
}

// Counts returns the number of jobs per state.
func (q *Queue) Counts(ctx context.Context, id string) (queue.Counts, error) {
	v, err := q.rdb.HMGet(ctx, q.keys(id).meta, "rec", "c1", "c2", "c3", "c4", "c5", "c6", "c7").Result()
	if err != nil {
		return queue.Counts{}, err
	}
	if v[0] == nil {
		return queue.Counts{}, q.missing(ctx, id)
	}
	var c queue.Counts
	for i := 1; i <= 7; i++ {
		n, _ := strconv.ParseInt(str(v[i]), 10, 64)
		c.Add(queue.State(i), n)
	}
	q.sawCounts(id, c)
	return c, nil
}

// Walk calls fn for every job in Seq order, reading 500 at a time: it
// merges orderlist and order (see scripts.go).
func (q *Queue) Walk(ctx context.Context, id string, fn func(queue.Job) error) error {
	k := q.keys(id)
	v, err := q.rdb.HMGet(ctx, k.meta, "status", "layout").Result()
	if err != nil {
		return err
	}
	if v[0] == nil {
		return q.missing(ctx, id)
	}
	if have := str(v[1]); have != layout {
		return layoutError(id, have)
	}
	ci, err := q.info(ctx, id)
	if err != nil {
		return err
	}
	const page = 500
	list := &seqSource{fetch: func(start int64) ([]string, error) {
		return q.rdb.LRange(ctx, k.orderlist, start, start+page-1).Result()
	}}
	zset := &seqSource{fetch: func(start int64) ([]string, error) {
		return q.rdb.ZRange(ctx, k.order, start, start+page-1).Result()
	}}
	seqs := make([]string, 0, page)
	var nums []uint64
	for {
		seqs = seqs[:0]
		for len(seqs) < page {
			a, aok, err := list.peek()
			if err != nil {
				return err
			}
			b, bok, err := zset.peek()
			if err != nil {
				return err
			}
			if !aok && !bok {
				break
			}
			if aok && (!bok || a < b) {
				seqs = append(seqs, list.next())
			} else {
				seqs = append(seqs, zset.next())
			}
		}
		if len(seqs) == 0 {
			return nil
		}
		nums = nums[:0]
		for _, seq := range seqs {
			n, _ := strconv.ParseUint(seq, 10, 64)
			nums = append(nums, n)
		}
		st, err := q.rdb.HMGet(ctx, k.st, seqs...).Result()
		if err != nil {
			return err
		}
		data, err := q.readData(ctx, k, nums)
		if err != nil {
			return err
		}
		for i := range seqs {
			j, err := decodeData(data[i], ci.base)
			if err != nil {
				return err
			}
			j.Seq = nums[i]
			j.State = queue.Pending // no st field: pending, never leased
			if v := str(st[i]); v != "" {
				h, err := parseState(v)
				if err != nil {
					return err
				}
				j.State, j.Attempts, j.Lease, j.At, j.Provider, j.Reply = h.State, h.Attempts, h.Lease, h.At, h.Provider, h.Reply
			}
			if err := fn(j); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// seqSource reads an ascending list of seqs a page at a time.
type seqSource struct {
	fetch func(start int64) ([]string, error)
	buf   []string
	nums  []uint64
	start int64 // index of the next page
	done  bool
}

// peek returns the next seq without taking it; ok is false at the end.
func (s *seqSource) peek() (seq uint64, ok bool, err error) {
	if len(s.buf) == 0 && !s.done {
		if s.buf, err = s.fetch(s.start); err != nil {
			return 0, false, err
		}
		s.start += int64(len(s.buf))
		s.done = len(s.buf) == 0
		s.nums = s.nums[:0]
		for _, v := range s.buf {
			n, _ := strconv.ParseUint(v, 10, 64)
			s.nums = append(s.nums, n)
		}
	}
	if len(s.buf) == 0 {
		return 0, false, nil
	}
	return s.nums[0], true, nil
}

// next takes the seq peek returned.
func (s *seqSource) next() string {
	v := s.buf[0]
	s.buf, s.nums = s.buf[1:], s.nums[1:]
	return v
}

// Recipient reports whether key is one of the campaign's jobs: its k
// field names a job with that key, or kx holds it (see layout.go).
func (q *Queue) Recipient(ctx context.Context, id, key string) (bool, error) {
	k := q.keys(id)
	b, f := dedupSlot(key)
	pipe := q.rdb.Pipeline()
	meta := pipe.HMGet(ctx, k.meta, "status", "layout")
	hit := pipe.HGet(ctx, k.prefix+"k:"+strconv.FormatUint(b, 10), f)
	other := pipe.HExists(ctx, k.kx, key)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return false, err
	}
	if meta.Val()[0] == nil {
		return false, q.missing(ctx, id)
	}
	if have := str(meta.Val()[1]); have != layout {
		return false, layoutError(id, have)
	}
	if other.Val() {
		return true, nil
	}
	seq, err := strconv.ParseUint(hit.Val(), 10, 64)
	if err != nil {
		return false, nil // no k field
	}
	data, err := q.readData(ctx, k, []uint64{seq})
	if err != nil {
		return false, err
	}
	j, err := decodeData(data[0], 0) // (only its key)
	if err != nil {
		return false, err
	}
	return j.Key == key, nil
}

// Suppressed returns the entries of list among keys.
func (q *Queue) Suppressed(ctx context.Context, list string, keys ...string) (map[string]queue.Suppression, error) {
	out := map[string]queue.Suppression{}
	if len(keys) == 0 {
		return out, nil
	}
	v, err := q.rdb.HMGet(ctx, q.suppressionKey(list), keys...).Result()
	if err != nil {
		return nil, err
	}
	for i, r := range v {
		if r != nil {
			out[keys[i]] = decodeSuppression(keys[i], str(r))
		}
	}
	return out, nil
}

// Suppress adds keys to list; keys already on it keep their entry.
func (q *Queue) Suppress(ctx context.Context, list, reason string, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	val := encodeSuppression(time.Now(), reason)
	pipe := q.rdb.Pipeline()
	for _, k := range keys {
		pipe.HSetNX(ctx, q.suppressionKey(list), k, val)
	}
	pipe.SAdd(ctx, q.suppressionListsKey(), list)
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	// An unsubscribe or a hard bounce lost in a failover would be mailed.
	return q.replicate(ctx, q.suppressionKey(list))
}

// Unsuppress removes keys from list, and their soft-bounce counts.
func (q *Queue) Unsuppress(ctx context.Context, list string, keys ...string) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	pipe := q.rdb.Pipeline()
	del := pipe.HDel(ctx, q.suppressionKey(list), keys...)
	for _, k := range keys {
		pipe.Del(ctx, q.softKey(list, k))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	return int(del.Val()), q.replicate(ctx, q.suppressionKey(list))
}

// WalkSuppressed calls fn for every entry of list in key order.
func (q *Queue) WalkSuppressed(ctx context.Context, list string, fn func(queue.Suppression) error) error {
	m, err := q.rdb.HGetAll(ctx, q.suppressionKey(list)).Result()
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := fn(decodeSuppression(k, m[k])); err != nil {
			return err
		}
	}
	return nil
}

// SuppressionLists names the lists with entries.
func (q *Queue) SuppressionLists(ctx context.Context) ([]string, error) {
	names, err := q.rdb.SMembers(ctx, q.suppressionListsKey()).Result()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range names {
		n, err := q.rdb.HLen(ctx, q.suppressionKey(l)).Result()
		if err != nil {
			return nil, err
		}
		if n > 0 {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out, nil
}

// legacySuppressionKey is the single suppression list an earlier herald
// kept for every sending domain.
func (q *Queue) legacySuppressionKey() string { return q.prefix + "suppression" }

// LegacySuppressions counts the entries of the legacy list.
func (q *Queue) LegacySuppressions(ctx context.Context) (int, error) {
	n, err := q.rdb.HLen(ctx, q.legacySuppressionKey()).Result()
	return int(n), err
}

// MigrateSuppressions moves the legacy entries onto list, keeping their
// reasons; an address already on list keeps its entry.
func (q *Queue) MigrateSuppressions(ctx context.Context, list string) (int, error) {
	old, err := q.rdb.HGetAll(ctx, q.legacySuppressionKey()).Result()
	if err != nil || len(old) == 0 {
		return 0, err
	}
	now := time.Now()
	pipe := q.rdb.Pipeline()
	for k, reason := range old {
		pipe.HSetNX(ctx, q.suppressionKey(list), k, encodeSuppression(now, reason))
	}
	pipe.SAdd(ctx, q.suppressionListsKey(), list)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	// Only what was copied goes: an entry added meanwhile stays for the
	// next run.
	fields := make([]string, 0, len(old))
	for k := range old {
		fields = append(fields, k)
	}
	if err := q.rdb.HDel(ctx, q.legacySuppressionKey(), fields...).Err(); err != nil {
		return 0, err
	}
	return len(old), nil
}

// SoftBounce records one soft bounce of key and returns its count.
func (q *Queue) SoftBounce(ctx context.Context, list, key, bounceID string) (int, error) {
	pipe := q.rdb.TxPipeline()
	pipe.SAdd(ctx, q.softKey(list, key), bounceID)
	n := pipe.SCard(ctx, q.softKey(list, key))
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	return int(n.Val()), nil
}

// Usage counts messages sent through provider since t (to the minute).
func (q *Queue) Usage(ctx context.Context, provider string, since time.Time) (int64, error) {
	m, err := q.rdb.HGetAll(ctx, q.usageKey(provider)).Result()
	if err != nil {
		return 0, err
	}
	from := since.Unix() / 60
	var n int64
	for minute, v := range m {
		if mm, _ := strconv.ParseInt(minute, 10, 64); mm >= from {
			c, _ := strconv.ParseInt(v, 10, 64)
			n += c
		}
	}
	return n, nil
}
