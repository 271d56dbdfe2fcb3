package redisq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Two things decide whether an acknowledged outcome survives trouble with
// Redis: whether the server writes its data to disk (Persistence,
// CheckPersistence: a restart of a server that keeps nothing loses every
// campaign), and, when the master has replicas, whether a replica has the
// write before the sender is told it is recorded (WAIT after the writes
// that record outcomes: a failover to a replica that lagged behind would
// lose them, and the jobs would be sent again).

// Persistence is what one Redis master keeps across a restart, as it says
// itself.
type Persistence struct {
	// Server names the master: host:port, a socket path, or for Sentinel
	// the master's name; never credentials.
	Server string
	AOF    bool // appendonly yes
	// Save is the RDB save points ("3600 1 300 100"); "" for none.
	Save string
	// SaveUnknown is set when CONFIG was refused (renamed, disabled, or
	// not allowed by the ACL, as on many managed services) and INFO
	// persistence was read instead: it says whether AOF is on, but not
	// which RDB save points are set.
	SaveUnknown bool
}

// Keeps reports whether the server writes its data to disk (an
// append-only file or RDB save points), so that a restart finds it again.
func (p Persistence) Keeps() bool { return p.AOF || p.Save != "" }

// ErrVolatile says a Redis keeps nothing across a restart.
var ErrVolatile = errors.New("redis does not keep its data across a restart")

// ErrUnreplicated says no replica acknowledged a write in time (WAIT): the
// write is on the master, and a failover now could lose it. Writing the
// same again is safe (every write that WAIT follows is idempotent).
var ErrUnreplicated = errors.New("no replica acknowledged the write")

// Persistence reads what each master keeps: the server, or the Sentinel's
// master, or every master of a cluster (sorted by Server). It asks CONFIG
// GET appendonly and save, or INFO persistence where CONFIG is refused.
func (q *Queue) Persistence(ctx context.Context) ([]Persistence, error) {
	var mu sync.Mutex
	var out []Persistence
	err := q.eachMaster(ctx, func(ctx context.Context, c *redis.Client, name string) error {
		p, err := persistenceOf(ctx, c)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		p.Server = name
		mu.Lock()
		defer mu.Unlock()
		out = append(out, p)
		return nil
	})
	slices.SortFunc(out, func(a, b Persistence) int { return strings.Compare(a.Server, b.Server) })
	return out, err
}

func persistenceOf(ctx context.Context, c *redis.Client) (Persistence, error) {
	var p Persistence
	// One key per CONFIG GET: several at once need Redis 7.
	aof, err := c.ConfigGet(ctx, "appendonly").Result()
	if err == nil {
		var save map[string]string
		if save, err = c.ConfigGet(ctx, "save").Result(); err == nil {
			p.AOF = aof["appendonly"] == "yes"
			p.Save = strings.TrimSpace(save["save"])
			return p, nil
		}
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return p, err // not a refusal: the server is out of reach
	}
	info, ierr := c.Info(ctx, "persistence").Result()
	if ierr != nil {
		return p, fmt.Errorf("CONFIG GET: %v; INFO persistence: %w", err, ierr)
	}
	v, ok := infoField(info, "aof_enabled")
	if !ok {
		return p, fmt.Errorf("CONFIG GET: %v; INFO persistence has no aof_enabled", err)
	}
	p.AOF, p.SaveUnknown = v == "1", true
	return p, nil
}

// CheckPersistence returns nil when every master keeps its data (see
// Persistence), else an error matching ErrVolatile that names each one
// that does not. A master whose save points cannot be read and that has
// no append-only file counts as keeping nothing: nothing shows that it
// does.
func (q *Queue) CheckPersistence(ctx context.Context) error {
	ps, err := q.Persistence(ctx)
	if err != nil {
		return fmt.Errorf("reading its persistence settings: %w", err)
	}
	var bad []string
	for _, p := range ps {
		switch {
		case p.Keeps():
		case p.SaveUnknown:
			bad = append(bad, p.Server+": appendonly is off, and its RDB save points cannot be read (CONFIG is refused; INFO does not show them)")
		default:
			bad = append(bad, p.Server+`: appendonly no, save ""`)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrVolatile, strings.Join(bad, "; "))
	}
	return nil
}

// eachMaster calls fn for every master: the one server (or the Sentinel's
// master: the failover client follows it), or each master of a cluster,
// with a name for it that carries no credentials.
func (q *Queue) eachMaster(ctx context.Context, fn func(ctx context.Context, c *redis.Client, name string) error) error {
	switch c := q.rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			return fn(ctx, n, n.Options().Addr)
		})
	case *redis.Client:
		return fn(ctx, c, q.server)
	}
	return fmt.Errorf("redisq: unexpected client %T", q.rdb)
}

// infoField finds key's value in an INFO reply.
func infoField(info, key string) (string, bool) {
	for line := range strings.Lines(info) {
		if k, v, ok := strings.Cut(strings.TrimRight(line, "\r\n"), ":"); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// Defaults of Options.ReplicaWait and ReplicaCheck.
const (
	DefaultReplicaWait  = 2 * time.Second
	DefaultReplicaCheck = 10 * time.Second
)

// replication is what Queue knows of the masters' replicas, read with
// INFO replication when the Queue opens, again every `every` (not per
// write: a replica that connects is waited for within that time), and on
// the master itself with the first write after one that failed.
type replication struct {
	wait, every time.Duration

	mu      sync.Mutex
	checked time.Time
	masters map[string]*master // by name, as eachMaster names them
	// lagging holds the masters whose last WAIT failed; any says whether
	// it holds one, read without the lock on every Lease.
	lagging map[string]bool
	any     atomic.Bool
	dials   atomic.Uint64 // connections made so far
}

// master is what was last seen of one master.
type master struct {
	// replid is its replication ID (master_replid): another one under
	// the same name is another server, such as the replica promoted in
	// its place through Sentinel, or the master restarted.
	replid string
	// replicas is how many replicas online are waited for. A master
	// that had some and is seen with none is still counted with them
	// until `every` after (lost): its replica may have been promoted in
	// its place (a failover this client has not followed yet), and what
	// is written on it meanwhile would be lost. Only then is a replica
	// taken as gone for good, and no longer waited for.
	replicas int
	lost     time.Time
	// stale: the last write there failed, or (dials) a connection was
	// made since the look (it may reach another server): the next write
	// reads INFO replication on its connection.
	stale bool
	dials uint64 // replication.dials before the look
}

// observe records a look at master name begun when replication.dials was
// dials (r.mu held).
func (r *replication) observe(name, replid string, online int, dials uint64, now time.Time) {
	if r.masters == nil {
		r.masters = map[string]*master{}
	}
	m := r.masters[name]
	if m == nil || m.replid != replid {
		r.masters[name] = &master{replid: replid, replicas: online, dials: dials}
		return
	}
	m.stale, m.dials = false, dials
	switch {
	case online > 0:
		m.replicas, m.lost = online, time.Time{}
	case m.replicas == 0:
	case m.lost.IsZero():
		m.lost = now
	case now.Sub(m.lost) >= r.every:
		m.replicas, m.lost = 0, time.Time{}
	}
}

// observeInfo records an INFO replication reply of master name asked for
// when replication.dials was dials.
func (r *replication) observeInfo(name, info string, dials uint64) {
	replid, _ := infoField(info, "master_replid")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.observe(name, replid, onlineReplicas(info), dials, time.Now())
}

// dialed counts a new connection, maybe to another server than before:
// every master is then stale (a hook calls it, maybe while replicasOf
// holds mu for its look).
func (r *replication) dialed() { r.dials.Add(1) }

// setStale marks master name's last write as failed.
func (r *replication) setStale(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.masters[name]; m != nil {
		m.stale = true
	} else {
		r.checked = time.Time{} // never seen: look at every master again
	}
}

func (r *replication) isStale(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.masters[name]
	return m != nil && (m.stale || m.dials != r.dials.Load())
}

// lag records whether master name's last WAIT failed.
func (r *replication) lag(name string, failed bool) {
	if !failed && !r.any.Load() {
		return // the common case, without the lock
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if failed {
		if r.lagging == nil {
			r.lagging = map[string]bool{}
		}
		r.lagging[name] = true
	} else {
		delete(r.lagging, name)
	}
	r.any.Store(len(r.lagging) > 0)
}

func (r *replication) lags(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lagging[name]
}

// caughtUp returns nil unless the last WAIT on the master holding key
// failed; then it asks again (replicate) and returns what that says.
// Lease calls it: while outcomes cannot reach a replica, sending more
// would only add to what a failover would send twice, so no job is handed
// out until a replica has caught up (or is gone for good).
func (q *Queue) caughtUp(ctx context.Context, key string) error {
	if !q.repl.any.Load() {
		return nil
	}
	_, name, err := q.masterOf(ctx, key)
	if err != nil || !q.repl.lags(name) {
		return err
	}
	return q.replicate(ctx, key)
}

// replicasOf is how many replicas of master name are waited for (see
// master); it looks at every master again when it last did `every` ago.
// Until a look succeeds it is 0: a server whose INFO fails is not waited
// for.
func (q *Queue) replicasOf(ctx context.Context, name string) int {
	r := &q.repl
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= r.every {
		r.checked = time.Now()
		dials := r.dials.Load()
		infos := map[string]string{}
		var mu sync.Mutex
		err := q.eachMaster(ctx, func(ctx context.Context, c *redis.Client, name string) error {
			info, err := c.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			infos[name] = info
			return nil
		})
		for name, info := range infos {
			replid, _ := infoField(info, "master_replid")
			r.observe(name, replid, onlineReplicas(info), dials, time.Now())
		}
		if err != nil {
			// Not at once (every write would wait for it while Redis is
			// out of reach), but soon.
			r.checked = time.Now().Add(lookAgain - r.every)
		}
	}
	if m := r.masters[name]; m != nil {
		return m.replicas
	}
	return 0
}

// lookAgain is how soon a failed look at the masters is tried again.
const lookAgain = 250 * time.Millisecond

// onlineReplicas counts the replicas of an INFO replication reply that
// are online: connected_slaves also counts one still in its first full
// sync, which acknowledges nothing until it is done.
func onlineReplicas(info string) int {
	n := 0
	for line := range strings.Lines(info) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && strings.HasPrefix(k, "slave") {
			// slave0:ip=…,port=…,state=online,offset=…,lag=0 (not
			// slave_repl_offset and the like, which a replica reports).
			if _, err := strconv.Atoi(k[len("slave"):]); err == nil && strings.Contains(","+v+",", ",state=online,") {
				n++
			}
		}
	}
	return n
}

// masterOf is the client of the master that holds key, and its name (as
// eachMaster names it).
func (q *Queue) masterOf(ctx context.Context, key string) (*redis.Client, string, error) {
	switch c := q.rdb.(type) {
	case *redis.ClusterClient:
		n, err := c.MasterForKey(ctx, key)
		if err != nil {
			return nil, "", err
		}
		return n, n.Options().Addr, nil
	case *redis.Client:
		return c, q.server, nil
	}
	return nil, "", fmt.Errorf("redisq: unexpected client %T", q.rdb)
}

// replicate returns once a replica of each master holding one of keys
// has every write made there so far, or an error wrapping ErrUnreplicated
// when none has within ReplicaWait. A master without replicas is not
// waited for. WAIT counts the replicas that have the replication offset
// of its connection's last write, so on that connection a small write
// (the wait key of the keys' hash slot) goes first: its offset is past
// every write made before, on any connection, including a script that
// found its work already done and wrote nothing (a batch settled again).
// Keys must carry a hash tag ({…}), so that on a cluster the wait key is
// on the same master.
//
// After a failed write, the next one reads INFO replication on the same
// connection first: after a failover it may reach the promoted replica
// (under the same name through Sentinel), which has no replica yet, or
// other ones. When a WAIT falls short, INFO on that connection tells
// whether it reached such a new master (nothing to wait for) or the same
// one, which lost its replica (see master).
func (q *Queue) replicate(ctx context.Context, keys ...string) error {
	done := map[string]bool{}
	for _, key := range keys {
		c, name, err := q.masterOf(ctx, key)
		if err != nil {
			return err
		}
		if done[name] {
			continue
		}
		done[name] = true
		if err := q.replicateOn(ctx, c, name, key); err != nil {
			return err
		}
	}
	return nil
}

// replicateOn is replicate for master name, through c, for key's slot.
func (q *Queue) replicateOn(ctx context.Context, c *redis.Client, name, key string) error {
	dials := q.repl.dials.Load()
	stale := q.repl.isStale(name)
	if !stale && q.replicasOf(ctx, name) == 0 {
		q.repl.lag(name, false) // none to wait for (any more)
		return nil
	}
	// One connection: WAIT and INFO are about the server that took the
	// write.
	cn := c.Conn()
	defer cn.Close()
	failed := func(err error) error {
		if cc, ok := q.rdb.(*redis.ClusterClient); ok && (redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK")) {
			cc.ReloadState(ctx) // the slot moved: the caller's retry goes to its new master
		}
		q.repl.setStale(name)
		return err
	}
	set := func(p redis.Pipeliner) {
		p.Set(ctx, q.waitKey(key), time.Now().UnixMilli(), time.Hour)
	}
	// alone reads the replication of the server that took the write and
	// reports whether it has no replica to wait for (a new master without
	// replicas, or the replica gone for good): then nothing lags.
	alone := func() (bool, error) {
		info, err := cn.Info(ctx, "replication").Result()
		if err != nil {
			return false, failed(err)
		}
		q.repl.observeInfo(name, info, dials)
		if q.replicasOf(ctx, name) > 0 {
			return false, nil
		}
		q.repl.lag(name, false)
		return true, nil
	}
	if stale {
		if none, err := alone(); none || err != nil {
			return err
		}
	}
	pipe := cn.Pipeline()
	set(pipe)
	wait := pipe.Do(ctx, "WAIT", 1, q.repl.wait.Milliseconds())
	if _, err := pipe.Exec(ctx); err != nil {
		return failed(err)
	}
	if n, _ := wait.Int(); n < 1 {
		if none, err := alone(); none || err != nil {
			return err
		}
		q.repl.setStale(name)
		q.repl.lag(name, true)
		return fmt.Errorf("redisq: %s: %w within %s: the master has the write, a failover now could lose it", name, ErrUnreplicated, q.repl.wait)
	}
	q.repl.lag(name, false)
	return nil
}

// waitKey is the key replicate writes before WAIT, in key's hash slot
// (so that on a cluster it is on the master holding key): prefix{tag}:wait
// for a key with a hash tag; for one without (or with an empty one, "{}",
// which Redis hashes whole) a tag found to hash to the same slot. It holds
// when it was last written, and expires.
func (q *Queue) waitKey(key string) string {
	tag, ok := hashTag(key)
	if !ok {
		tag = slotTag(keySlot(key))
	}
	return q.prefix + "{" + tag + "}:wait"
}

// hashTag is the part of key that Redis Cluster hashes when it is not the
// whole key: between the first { and the first } after it, if not empty.
func hashTag(key string) (string, bool) {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return "", false
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return "", false
	}
	return key[i+1 : i+1+j], true
}

// keySlot is Redis Cluster's hash slot of key: CRC16 (XMODEM) of its hash
// tag, or of the whole key without one, modulo 16384.
func keySlot(key string) int {
	if tag, ok := hashTag(key); ok {
		key = tag
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc % 16384)
}

// slotTags caches slotTag.
var slotTags sync.Map // slot → tag

// slotTag is a short tag ("w" and a number) that hashes to slot: the first
// such is found in about 16,384 tries, once per slot.
func slotTag(slot int) string {
	if v, ok := slotTags.Load(slot); ok {
		return v.(string)
	}
	for n := 0; ; n++ {
		tag := "w" + strconv.Itoa(n)
		if keySlot(tag) == slot {
			slotTags.Store(slot, tag)
			return tag
		}
	}
}
