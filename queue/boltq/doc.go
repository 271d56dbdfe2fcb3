// Package boltq is the embedded, durable queue backend: one bbolt file used
// by one herald process. What changes the store is one transaction (a
// settle batch, a plan batch), fsync on commit; leases are the process's
// own, kept in memory and granted in the outcome journal beside the store
// (leases.go, outcomes.go). It implements queue.Queue and passes
// queuetest.
package boltq
