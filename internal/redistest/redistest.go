// Package redistest starts a real redis-server for a test, on a unix socket
// in the test's temporary folder. A test that needs Redis skips only when
// the redis-server binary is absent and the CI variable is unset; in CI a
// missing binary fails the test.
package redistest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Server is a redis-server owned by one test.
type Server struct {
	t      testing.TB
	dir    string
	socket string
	args   []string
	cmd    *exec.Cmd
}

// Start runs redis-server with extra arguments (e.g. "--appendonly", "yes")
// and stops it when the test ends.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("redis-server is not installed (CI installs it; apt-get install redis-server)")
		}
		t.Fatal("redis-server is not installed, and CI must run the Redis tests")
	}
	dir, err := os.MkdirTemp("", "redistest")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, dir: dir, socket: filepath.Join(dir, "redis.sock"), args: args}
	t.Cleanup(func() {
		s.Kill()
		os.RemoveAll(dir)
	})
	s.start()
	return s
}

// URL is the address for go-redis: unix:///path/redis.sock.
func (s *Server) URL() string { return "unix://" + s.socket }

func (s *Server) start() {
	s.t.Helper()
	args := append([]string{"--port", "0", "--unixsocket", s.socket, "--dir", s.dir, "--save", "", "--appendonly", "no"}, s.args...)
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", s.socket); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatal("redis-server did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill stops the server at once (SIGKILL).
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
	os.Remove(s.socket)
}

// Restart stops the server and starts it again with the same data folder:
// with "--appendonly yes" nothing acknowledged is lost.
func (s *Server) Restart() {
	s.t.Helper()
	if s.cmd != nil {
		s.cmd.Process.Signal(os.Interrupt) // redis-server saves on SIGINT
		s.cmd.Wait()
		s.cmd = nil
	}
	s.start()
}

func (s *Server) String() string { return fmt.Sprintf("redis-server at %s", s.socket) }
