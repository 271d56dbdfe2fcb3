// Package redisq is the Redis queue backend (github.com/redis/go-redis/v9)
// that lets many herald workers on many machines deliver one campaign. Keys
// are namespaced and hash-tagged per campaign (herald:{ID}:...), every
// multi-key step is one Lua script, and expired leases come back through
// the same timer set as due retries. It implements queue.Queue and passes
// queuetest unchanged. Open takes a single server, a Redis Cluster or a
// Sentinel-managed master (see Open); scripts.go documents the keys and the
// per-job state encoding.
//
// Durability (durability.go, vanished.go): CheckPersistence tells whether
// the masters keep their data across a restart; a campaign this process
// had seen that is then missing returns queue.ErrVanished and leaves a
// tombstone, so that it is never planned again silently; and while a
// master has replicas, the writes that record outcomes (Settle, SetStatus,
// MarkPlanned, RetryFailed, Suppress, Unsuppress) and the leases (Lease,
// Extend) return only once a replica has them (WAIT), or fail with
// ErrUnreplicated; until a replica has caught up, Lease hands out nothing
// (it fails the same way). A master that lost its replica is waited for a
// while longer (the replica may have been promoted in its place); a
// promoted replica without replicas of its own is not waited for.
//
// Failover: on a cluster, a node's failure makes the client read the slot
// map again (watchHook), so commands reach the replica that took over;
// through Sentinel, each new connection asks the Sentinels for the master.
package redisq
