package boltq

import (
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// unmapPages drops the store's pages from the process's address space
// (madvise MADV_DONTNEED on bbolt's read-only, shared mapping). bbolt
// writes through the file, never through the mapping, so nothing is lost:
// the kernel keeps the pages in its page cache while memory allows, and
// the next read of one maps it again. Without it, every page a campaign
// ever touched stays counted in the process's resident memory until it
// exits: a campaign of a million, the whole store. The read transaction
// holds off a remap while it runs.
func (q *Queue) unmapPages() {
	_ = q.db.View(func(tx *bolt.Tx) error {
		_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, q.db.Info().Data, uintptr(tx.Size()), syscall.MADV_DONTNEED)
		return nil
	})
}
