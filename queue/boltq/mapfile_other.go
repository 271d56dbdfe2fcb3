//go:build !linux

package boltq

import (
	"errors"
	"os"
)

// mapFile: segments are written with write(2) here (a sparse mapped file
// could meet a full disk as SIGBUS; Linux's fallocate rules that out).
func mapFile(*os.File, int) ([]byte, error) { return nil, errors.ErrUnsupported }

func unmapFile([]byte) {}
