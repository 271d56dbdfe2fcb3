//go:build !unix

package boltq

import (
	"errors"
	"os"
)

// mapFile: segments are written with write(2) here.
func mapFile(*os.File, int) ([]byte, error) { return nil, errors.ErrUnsupported }

func unmapFile([]byte) {}
