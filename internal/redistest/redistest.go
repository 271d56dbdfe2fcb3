// Package redistest starts a real redis-server for a test, on a unix socket
// in the test's temporary folder. A test that needs Redis skips only when
// the redis-server binary is absent and the CI variable is unset; in CI a
// missing binary fails the test.
//
// The server keeps its data in an append-only file unless the test's
// arguments say otherwise ("--appendonly", "no"; later arguments win), as
// herald refuses a Redis that keeps nothing unless queue.volatile says so.
package redistest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a redis-server owned by one test.
type Server struct {
	t      testing.TB
	dir    string
	socket string
	port   int // 0: the unix socket only
	bus    int // a cluster node's bus port
	args   []string
	cmd    *exec.Cmd
}

// Start runs redis-server with extra arguments (e.g. "--appendonly", "no")
// and stops it when the test ends.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return start(t, false, args)
}

// StartTCP is Start with a TCP port on 127.0.0.1 besides the socket, for
// replicas (replicaof takes a host and a port).
func StartTCP(t testing.TB, args ...string) *Server {
	t.Helper()
	return start(t, true, args)
}

func start(t testing.TB, tcp bool, args []string) *Server {
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
	if tcp {
		s.port = freePort(t)
	}
	t.Cleanup(func() {
		s.Kill()
		os.RemoveAll(dir)
	})
	s.start()
	return s
}

// freePort is a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// URL is the address for go-redis: unix:///path/redis.sock.
func (s *Server) URL() string { return "unix://" + s.socket }

// Port is the TCP port on 127.0.0.1 (StartTCP), else 0.
func (s *Server) Port() int { return s.port }

func (s *Server) start() {
	s.t.Helper()
	// appendfsync no: the file is written, the kernel flushes it when it
	// likes (a test restarts the process, not the machine), so fsync
	// stalls on a busy disk do not slow timed tests.
	args := []string{"--port", strconv.Itoa(s.port), "--unixsocket", s.socket, "--dir", s.dir, "--save", "", "--appendonly", "yes", "--appendfsync", "no"}
	if s.port != 0 {
		// A master: loopback only, and a replica's first sync at once
		// (diskless sync waits 5 s for more replicas by default).
		args = append(args, "--bind", "127.0.0.1", "--repl-diskless-sync-delay", "0")
	}
	s.cmd = exec.Command("redis-server", append(args, s.args...)...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Connected and past loading the data (PING answers LOADING
		// until then; NOAUTH from a server with a password is an answer).
		if reply, err := s.Do("PING"); reply == "PONG" || err != nil && strings.Contains(err.Error(), "NOAUTH") {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatal("redis-server did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Do sends one command over the socket and returns the reply: a simple
// string or an integer without its type byte ("PONG", "1"), a bulk
// string's content, or an error for an error reply. Enough for a harness
// that sets up and looks at a server without a client library.
func (s *Server) Do(args ...string) (string, error) {
	c, err := net.DialTimeout("unix", s.socket, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case line == "":
		return "", fmt.Errorf("redistest: empty reply")
	case line[0] == '-':
		return "", fmt.Errorf("redistest: %s", line[1:])
	case line[0] == '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "", nil
		}
		body := make([]byte, n+2)
		if _, err := io.ReadFull(r, body); err != nil {
			return "", err
		}
		return string(body[:n]), nil
	}
	return line[1:], nil
}

// Info returns one field of an INFO section (e.g. "replication",
// "master_link_status"), "" when absent or out of reach.
func (s *Server) Info(section, field string) string {
	info, err := s.Do("INFO", section)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(info) {
		if k, v, ok := strings.Cut(strings.TrimRight(line, "\r\n"), ":"); ok && k == field {
			return v
		}
	}
	return ""
}

// Replica starts a redis-server replicating s (which must come from
// StartTCP), with extra arguments, and waits until it holds a copy of s's
// data and s counts it as an online replica.
func (s *Server) Replica(args ...string) *Server {
	s.t.Helper()
	if s.port == 0 {
		s.t.Fatal("redistest: Replica needs a master from StartTCP")
	}
	r := start(s.t, false, append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(s.port)}, args...))
	deadline := time.Now().Add(20 * time.Second)
	for r.Info("replication", "master_link_status") != "up" || !strings.Contains(s.Info("replication", "slave0"), "state=online") {
		if time.Now().After(deadline) {
			s.t.Fatal("redistest: the replica did not sync with its master")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

// StartCluster starts a Redis Cluster of one master per entry of args
// (each that master's extra arguments) on loopback ports, the 16384 slots
// split evenly in order, and returns the masters once the cluster is ok.
func StartCluster(t testing.TB, args ...[]string) []*Server {
	t.Helper()
	var nodes []*Server
	for i, a := range args {
		n := startClusterNode(t, a)
		lo, hi := i*16384/len(args), (i+1)*16384/len(args)-1
		if _, err := n.Do("CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi)); err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			if _, err := n.Do("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(nodes[0].port), strconv.Itoa(nodes[0].bus)); err != nil {
				t.Fatal(err)
			}
		}
		nodes = append(nodes, n)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range nodes {
		for n.clusterInfo("cluster_state") != "ok" || n.clusterInfo("cluster_size") != strconv.Itoa(len(nodes)) {
			if time.Now().After(deadline) {
				t.Fatal("redistest: the cluster did not form")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nodes
}

// startClusterNode starts a cluster node; its bus port is chosen like its
// port (the default, port+10000, may be taken or past 65535).
func startClusterNode(t testing.TB, args []string) *Server {
	t.Helper()
	bus := freePort(t)
	n := StartTCP(t, append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", strconv.Itoa(bus)}, args...)...)
	n.bus = bus
	return n
}

// clusterInfo is a field of CLUSTER INFO (cluster_state, cluster_size:
// the masters serving slots).
func (s *Server) clusterInfo(field string) string {
	v, _ := s.Do("CLUSTER", "INFO")
	for line := range strings.Lines(v) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == field {
			return v
		}
	}
	return ""
}

// ClusterURL is the redis+cluster:// URL with every node as a seed.
func ClusterURL(nodes []*Server) string {
	u := fmt.Sprintf("redis+cluster://127.0.0.1:%d", nodes[0].port)
	for i, n := range nodes[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += fmt.Sprintf("%saddr=127.0.0.1:%d", sep, n.port)
	}
	return u
}

// ClusterReplica starts a cluster node replicating master s (from
// StartCluster), with extra arguments, and waits until s counts it online.
func (s *Server) ClusterReplica(args ...string) *Server {
	s.t.Helper()
	id, err := s.Do("CLUSTER", "MYID")
	if err != nil {
		s.t.Fatal(err)
	}
	r := startClusterNode(s.t, args)
	if _, err := r.Do("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(s.port), strconv.Itoa(s.bus)); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		// REPLICATE fails until the node has learnt of the master.
		if _, err := r.Do("CLUSTER", "REPLICATE", id); err == nil {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatal("redistest: the replica did not learn of its master")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for !strings.Contains(s.Info("replication", "slave0"), "state=online") {
		if time.Now().After(deadline) {
			s.t.Fatal("redistest: the cluster replica did not sync")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

// Sentinel starts a redis-sentinel on a loopback port monitoring master s
// (from StartTCP) as name, and waits until it answers for it. Its address
// is 127.0.0.1:Port().
func (s *Server) Sentinel(name string) *Server {
	s.t.Helper()
	dir := s.t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	// Sentinel rewrites its configuration file: it must be its own.
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1\n", name, s.port)), 0o644); err != nil {
		s.t.Fatal(err)
	}
	sn := &Server{t: s.t, dir: dir, socket: filepath.Join(dir, "sentinel.sock"), port: freePort(s.t)}
	sn.cmd = exec.Command("redis-server", conf, "--sentinel", "--port", strconv.Itoa(sn.port), "--bind", "127.0.0.1", "--unixsocket", sn.socket, "--dir", dir)
	if err := sn.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(sn.Kill)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if v, err := sn.Do("SENTINEL", "MASTER", name); err == nil && v != "" {
			return sn
		}
		if time.Now().After(deadline) {
			s.t.Fatal("redistest: the sentinel did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Pause stops the server's process (SIGSTOP): its connections stay open
// but nothing is answered, as a server that hangs. Resume continues it.
func (s *Server) Pause() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGSTOP)
	}
}

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGCONT)
	}
}

// Kill stops the server at once (SIGKILL).
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGCONT) // a paused process dies only once continued
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
	os.Remove(s.socket)
}

// Restart stops the server and starts it again with the same data folder:
// by default (appendonly) nothing acknowledged is lost; with "--save", "",
// "--appendonly", "no" it comes back empty.
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
