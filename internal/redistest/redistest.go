// Package redistest starts real redis-servers for a test: one server on a
// unix socket in the test's temporary folder, a master with replicas, a
// Redis Cluster of masters and replicas, or a master watched by Sentinels,
// on loopback ports. A test that needs Redis skips only when the
// redis-server binary is absent and the CI variable is unset; in CI a
// missing binary fails the test.
//
// The server keeps its data in an append-only file unless the test's
// arguments say otherwise ("--appendonly", "no"; later arguments win), as
// herald refuses a Redis that keeps nothing unless queue.volatile says so.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a redis-server (or a redis-sentinel) owned by one test.
type Server struct {
	t      testing.TB
	dir    string
	socket string
	port   int // 0: the unix socket only
	bus    int // a cluster node's bus port
	// cluster: a cluster node (its bus port is chosen with its port);
	// sentinel: a Sentinel run from dir/sentinel.conf.
	cluster, sentinel bool
	args              []string

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// Start runs redis-server with extra arguments (e.g. "--appendonly", "no")
// and stops it when the test ends.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return start(t, true, false, args)
}

// StartTCP is Start with a TCP port on 127.0.0.1 besides the socket, for
// replicas (replicaof takes a host and a port).
func StartTCP(t testing.TB, args ...string) *Server {
	t.Helper()
	return start(t, false, false, args)
}

// need skips or fails t when redis-server is not installed.
func need(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("redis-server is not installed (CI installs it; apt-get install redis-server)")
		}
		t.Fatal("redis-server is not installed, and CI must run the Redis tests")
	}
}

func start(t testing.TB, unixOnly, cluster bool, args []string) *Server {
	t.Helper()
	need(t)
	s := newServer(t)
	s.cluster, s.args = cluster, args
	if !unixOnly {
		s.port = 1 // chosen by launch
	}
	s.launch()
	return s
}

// newServer makes a Server with its own folder, removed when the test
// ends after the process is stopped.
func newServer(t testing.TB) *Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "redistest")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, dir: dir, socket: filepath.Join(dir, "redis.sock")}
	t.Cleanup(func() {
		s.Kill()
		os.RemoveAll(dir)
	})
	return s
}

// Loopback ports are chosen below Linux's ephemeral range (32768 and up),
// where no outgoing connection of another process can take one between the
// check and redis-server's bind; a bus port is chosen the same way (the
// default, port+10000, could be past 65535).
const portLow, portHigh = 20000, 32768

var (
	portsMu sync.Mutex
	taken   = map[int]bool{} // handed out in this process
)

// freePort is a TCP port on 127.0.0.1 that was free a moment ago and that
// this process has not handed out before. Another process may still take
// it first: launch then picks again.
func freePort(t testing.TB) int {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := portLow + rand.IntN(portHigh-portLow)
		if taken[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		taken[p] = true
		return p
	}
	t.Fatal("redistest: no free loopback port")
	return 0
}

// URL is the address for go-redis: unix:///path/redis.sock.
func (s *Server) URL() string { return "unix://" + s.socket }

// Port is the TCP port on 127.0.0.1 (StartTCP, a replica, a cluster node,
// a Sentinel), else 0.
func (s *Server) Port() int { return s.port }

// Addr is 127.0.0.1:Port().
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// launch starts the process for the first time. When it exits before it
// answers (its port was taken meanwhile by another process), it is started
// again on other ports.
func (s *Server) launch() {
	s.t.Helper()
	for try := 1; ; try++ {
		if s.port != 0 {
			s.port = freePort(s.t)
			if s.cluster {
				s.bus = freePort(s.t)
			}
		}
		err := s.run()
		if err == nil {
			return
		}
		if s.port == 0 || try == 5 || !errors.Is(err, errExited) {
			s.t.Fatalf("redistest: %v\n%s", err, s.logTail())
		}
	}
}

var errExited = errors.New("redis-server exited at once")

// run starts the process on s's ports and waits until it answers.
func (s *Server) run() error {
	var argv []string
	if s.sentinel {
		argv = []string{filepath.Join(s.dir, "sentinel.conf"), "--sentinel", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
			"--unixsocket", s.socket, "--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log")}
	} else {
		// appendfsync no: the file is written, the kernel flushes it when
		// it likes (a test restarts the process, not the machine), so
		// fsync stalls on a busy disk do not slow timed tests.
		argv = []string{"--port", strconv.Itoa(s.port), "--unixsocket", s.socket, "--dir", s.dir, "--save", "", "--appendonly", "yes", "--appendfsync", "no",
			"--logfile", filepath.Join(s.dir, "redis.log")}
		if s.port != 0 {
			// Loopback only, and a replica's first sync at once (diskless
			// sync waits 5 s for more replicas by default).
			argv = append(argv, "--bind", "127.0.0.1", "--repl-diskless-sync-delay", "0")
		}
		if s.cluster {
			// A node that stops answering for a second is failed over:
			// tests see a failover in a few seconds, not in the default
			// 15 s and more.
			argv = append(argv, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", strconv.Itoa(s.bus),
				"--cluster-node-timeout", "1000")
		}
		argv = append(argv, s.args...)
	}
	s.cmd = exec.Command("redis-server", argv...)
	if err := s.cmd.Start(); err != nil {
		s.cmd = nil
		return err
	}
	exited := make(chan struct{})
	s.exited = exited
	go func(cmd *exec.Cmd) {
		cmd.Wait()
		close(exited)
	}(s.cmd)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Connected and past loading the data (PING answers LOADING
		// until then; NOAUTH from a server with a password is an answer).
		if reply, err := s.Do("PING"); reply == "PONG" || err != nil && strings.Contains(err.Error(), "NOAUTH") {
			return nil
		}
		select {
		case <-exited:
			s.cmd = nil
			return errExited
		default:
		}
		if time.Now().After(deadline) {
			return errors.New("redis-server did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logTail is the end of the server's log, for a failure message.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Do sends one command over the socket and returns the reply: a simple
// string or an integer without its type byte ("PONG", "1"), a bulk
// string's content, an array's elements one per line (nested arrays
// flattened), or an error for an error reply. Enough for a harness that
// sets up and looks at a server without a client library.
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
	return readReply(bufio.NewReader(c))
}

func readReply(r *bufio.Reader) (string, error) {
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
	case line[0] == '*':
		n, _ := strconv.Atoi(line[1:])
		var elems []string
		for range max(n, 0) {
			e, err := readReply(r)
			if err != nil {
				return "", err
			}
			elems = append(elems, e)
		}
		return strings.Join(elems, "\n"), nil
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

// Replica starts a redis-server replicating s (which must have a TCP
// port), with extra arguments, and waits until it holds a copy of s's
// data and s counts it as an online replica. The replica has a TCP port
// too, so that it can be promoted and reached there.
func (s *Server) Replica(args ...string) *Server {
	s.t.Helper()
	if s.port == 0 {
		s.t.Fatal("redistest: Replica needs a master from StartTCP")
	}
	before := s.onlineReplicas()
	r := start(s.t, false, false, append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(s.port)}, args...))
	deadline := time.Now().Add(20 * time.Second)
	for r.Info("replication", "master_link_status") != "up" || s.onlineReplicas() <= before {
		if time.Now().After(deadline) {
			s.t.Fatal("redistest: the replica did not sync with its master")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

// onlineReplicas counts the replicas s reports online.
func (s *Server) onlineReplicas() int {
	info, _ := s.Do("INFO", "replication")
	return strings.Count(info, "state=online")
}

// StartCluster starts a Redis Cluster of one master per entry of args
// (each that master's extra arguments) on loopback ports, the 16384 slots
// split evenly in order, and returns the masters once the cluster is ok.
// Its nodes fail over a node that stops answering for a second
// (cluster-node-timeout 1000, unless args set it).
func StartCluster(t testing.TB, args ...[]string) []*Server {
	t.Helper()
	var nodes []*Server
	for i, a := range args {
		n := start(t, false, true, a)
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
	before := s.onlineReplicas()
	r := start(s.t, false, true, args)
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
	for s.onlineReplicas() <= before {
		if time.Now().After(deadline) {
			s.t.Fatal("redistest: the cluster replica did not sync")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

// Cluster is a Redis Cluster of masters, each with one replica, on
// loopback (StartReplicatedCluster).
type Cluster struct {
	t testing.TB
	// Nodes are the masters as started, then their replicas: Nodes[i+n]
	// replicates Nodes[i] (until a failover changes the roles).
	Nodes []*Server
}

// StartReplicatedCluster starts a cluster of n masters (the slots split
// evenly) and one replica of each, every node with the extra arguments
// args, and returns once every replica is in sync and every node sees the
// cluster ok. A master that stops answering is failed over to its replica
// in a few seconds (cluster-node-timeout 1000 unless args set it).
func StartReplicatedCluster(t testing.TB, n int, args ...string) *Cluster {
	t.Helper()
	per := make([][]string, n)
	for i := range per {
		per[i] = args
	}
	c := &Cluster{t: t, Nodes: StartCluster(t, per...)}
	for i := range n {
		c.Nodes = append(c.Nodes, c.Nodes[i].ClusterReplica(args...))
	}
	// Every node must know every other and the cluster be ok everywhere
	// before a test kills one: a failover needs a majority of the masters
	// to agree.
	deadline := time.Now().Add(20 * time.Second)
	for _, node := range c.Nodes {
		for node.clusterInfo("cluster_state") != "ok" || node.clusterInfo("cluster_known_nodes") != strconv.Itoa(len(c.Nodes)) {
			if time.Now().After(deadline) {
				t.Fatal("redistest: the replicated cluster did not settle")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return c
}

// URL is the redis+cluster:// URL with every node as a seed.
func (c *Cluster) URL() string { return ClusterURL(c.Nodes) }

// KeySlot is the hash slot of key.
func (c *Cluster) KeySlot(key string) int {
	c.t.Helper()
	for _, n := range c.Nodes {
		if v, err := n.Do("CLUSTER", "KEYSLOT", key); err == nil {
			slot, _ := strconv.Atoi(v)
			return slot
		}
	}
	c.t.Fatal("redistest: no cluster node answers")
	return 0
}

// MasterOf is the node that a live node names as the master serving slot
// and not failed, or nil when none does (during a failover).
func (c *Cluster) MasterOf(slot int) *Server {
	for _, n := range c.Nodes {
		if n.cmd == nil {
			continue
		}
		nodes, err := n.Do("CLUSTER", "NODES")
		if err != nil {
			continue
		}
		for line := range strings.Lines(nodes) {
			// <id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot|lo-hi>...
			f := strings.Fields(line)
			if len(f) < 9 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
				continue
			}
			for _, r := range f[8:] {
				lo, hi, ok := strings.Cut(r, "-")
				if !ok {
					hi = lo
				}
				a, err1 := strconv.Atoi(lo)
				b, err2 := strconv.Atoi(hi)
				if err1 != nil || err2 != nil || slot < a || slot > b {
					continue
				}
				addr, _, _ := strings.Cut(f[1], "@")
				for _, m := range c.Nodes {
					if m.Addr() == addr {
						return m
					}
				}
			}
		}
		return nil
	}
	return nil
}

// WaitPromoted waits until a node other than old serves slot as its master
// and every live node sees the cluster ok, and returns that node; it fails
// the test after d.
func (c *Cluster) WaitPromoted(slot int, old *Server, d time.Duration) *Server {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		if m := c.MasterOf(slot); m != nil && m != old && c.ok() {
			return m
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("redistest: no replica took over slot %d within %s", slot, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ok reports whether every live node sees the cluster ok.
func (c *Cluster) ok() bool {
	for _, n := range c.Nodes {
		if n.cmd != nil && n.clusterInfo("cluster_state") != "ok" {
			return false
		}
	}
	return true
}

// Sentinel starts a redis-sentinel on a loopback port monitoring master s
// (from StartTCP) as name, and waits until it answers for it. Its address
// is 127.0.0.1:Port().
func (s *Server) Sentinel(name string) *Server {
	s.t.Helper()
	return s.startSentinel(name, 1)
}

// startSentinel starts a Sentinel of master s as name with quorum q,
// which takes a master that stops answering for a second as down.
func (s *Server) startSentinel(name string, q int) *Server {
	s.t.Helper()
	sn := newServer(s.t)
	sn.sentinel, sn.port = true, 1
	// Sentinel rewrites its configuration file: it must be its own.
	conf := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d\nsentinel down-after-milliseconds %[1]s 1000\nsentinel failover-timeout %[1]s 10000\n", name, s.port, q)
	if err := os.WriteFile(filepath.Join(sn.dir, "sentinel.conf"), []byte(conf), 0o644); err != nil {
		s.t.Fatal(err)
	}
	sn.launch()
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

// SentinelSet is a master, its replica and three Sentinels watching them
// with a quorum of two (StartSentinelSet).
type SentinelSet struct {
	t         testing.TB
	Name      string
	Master    *Server // as started (a failover swaps the roles)
	Replica   *Server
	Sentinels []*Server
}

// StartSentinelSet starts a master and one replica (each with the extra
// arguments args) and three Sentinels that know each other and the
// replica. A master that stops answering for a second is failed over to
// the replica in a few seconds.
func StartSentinelSet(t testing.TB, name string, args ...string) *SentinelSet {
	t.Helper()
	m := StartTCP(t, args...)
	set := &SentinelSet{t: t, Name: name, Master: m, Replica: m.Replica(args...)}
	for range 3 {
		set.Sentinels = append(set.Sentinels, m.startSentinel(name, 2))
	}
	// The Sentinels find each other and the replica through the master
	// (hello messages every 2 s, INFO every 10 s): a failover before
	// then would find no quorum or no replica.
	deadline := time.Now().Add(30 * time.Second)
	for _, sn := range set.Sentinels {
		for {
			f := sn.fields("SENTINEL", "MASTER", name)
			if f["num-other-sentinels"] == "2" && f["num-slaves"] == "1" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: the Sentinels did not find each other and the replica: %v", f)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return set
}

// fields reads a reply of field and value pairs (SENTINEL MASTER) as a map.
func (s *Server) fields(args ...string) map[string]string {
	v, err := s.Do(args...)
	if err != nil {
		return nil
	}
	l := strings.Split(v, "\n")
	m := map[string]string{}
	for i := 0; i+1 < len(l); i += 2 {
		m[l[i]] = l[i+1]
	}
	return m
}

// URL is the redis+sentinel:// URL naming every Sentinel.
func (set *SentinelSet) URL() string {
	u := fmt.Sprintf("redis+sentinel://%s?master_name=%s", set.Sentinels[0].Addr(), set.Name)
	for _, sn := range set.Sentinels[1:] {
		u += "&addr=" + sn.Addr()
	}
	return u
}

// MasterAddr is the master's address as a live Sentinel gives it, "" when
// none answers.
func (set *SentinelSet) MasterAddr() string {
	for _, sn := range set.Sentinels {
		if sn.cmd == nil {
			continue
		}
		if v, err := sn.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", set.Name); err == nil {
			if host, port, ok := strings.Cut(v, "\n"); ok {
				return net.JoinHostPort(host, port)
			}
		}
	}
	return ""
}

// WaitMaster waits until the Sentinels name s as the master and s answers
// as one (after a failover, s is the replica promoted); it fails the test
// after d.
func (set *SentinelSet) WaitMaster(s *Server, d time.Duration) {
	set.t.Helper()
	deadline := time.Now().Add(d)
	for set.MasterAddr() != s.Addr() || s.Info("replication", "role") != "master" {
		if time.Now().After(deadline) {
			set.t.Fatalf("redistest: the Sentinels did not promote %s within %s (they name %s)", s.Addr(), d, set.MasterAddr())
		}
		time.Sleep(10 * time.Millisecond)
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
		<-s.exited
		s.cmd = nil
	}
	os.Remove(s.socket)
}

// Restart stops the server and starts it again with the same data folder
// and ports: by default (appendonly) nothing acknowledged is lost; with
// "--save", "", "--appendonly", "no" it comes back empty.
func (s *Server) Restart() {
	s.t.Helper()
	if s.cmd != nil {
		s.cmd.Process.Signal(os.Interrupt) // redis-server saves on SIGINT
		<-s.exited
		s.cmd = nil
	}
	if err := s.run(); err != nil {
		s.t.Fatalf("redistest: restart: %v\n%s", err, s.logTail())
	}
}

func (s *Server) String() string { return fmt.Sprintf("redis-server at %s", s.socket) }
