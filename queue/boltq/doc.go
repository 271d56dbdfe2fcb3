// Package boltq is the embedded, durable queue backend: one bbolt file used
// by one herald process, every operation one transaction (leases and
// settlements in batches), fsync on commit. It implements queue.Queue and
// passes queuetest.
package boltq
