//go:build !linux

package boltq

// unmapPages does nothing here: the store's pages stay mapped (see
// trim_linux.go).
func (q *Queue) unmapPages() {}
