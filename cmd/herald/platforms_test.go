package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// TestBuildsOnWindows: herald builds for Windows as well (people who get
// their recipients from Excel run it there). A Unix-only call (flock, say)
// outside a file built for Unix only breaks that build, and nothing else
// here would notice. Not parallel: the cross-build takes both cores for a
// while, and the timed tests of this package should not share them.
func TestBuildsOnWindows(t *testing.T) {
	if testing.Short() {
		t.Skip("a cross-build takes a while")
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	for _, target := range [][2]string{{"windows", "amd64"}} {
		cmd := exec.Command(gobin, "build", "-o", os.DevNull, ".")
		cmd.Env = append(os.Environ(), "GOOS="+target[0], "GOARCH="+target[1], "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("GOOS=%s GOARCH=%s go build: %v\n%s", target[0], target[1], err, out)
		}
	}
}
