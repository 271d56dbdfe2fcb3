package boltq

import (
	"os"
	"syscall"
)

// mapFile gives f size bytes of disk (fallocate: a full disk says so
// here, with an error, rather than with SIGBUS when a copy into the
// mapping finds no block) and maps them, shared and writable: what is
// copied into the mapping is in the page cache, and reaches the file even
// when the process dies right after the copy.
func mapFile(f *os.File, size int) ([]byte, error) {
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(size)); err != nil {
		return nil, err
	}
	return syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
}

func unmapFile(m []byte) { _ = syscall.Munmap(m) }
