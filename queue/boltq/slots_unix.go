//go:build unix

package boltq

import (
	"syscall"
	"unsafe"
)

// allocSlots returns n zeroed slots outside the Go heap (an anonymous
// mapping): a key index of a million recipients holds 16 MB the
// collector never scans, and which would otherwise count in the heap its
// pace is set from (GOGC 400 lets the heap grow to five times what is
// live: 80 MB more for 16). freeSlots gives them back.
func allocSlots(n int) []uint64 {
	b, err := syscall.Mmap(-1, 0, n*8, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]uint64, n)
	}
	return unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

func freeSlots(s []uint64) {
	if len(s) == 0 {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*8)
	_ = syscall.Munmap(b) // EINVAL: it came from make, for the collector
}
