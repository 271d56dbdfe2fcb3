package redisq

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/internal/redistest"
	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/queue/queuetest"
)

// TestPersistenceCheck runs CheckPersistence against real servers set up
// to keep their data, or not, with CONFIG allowed or renamed away.
func TestPersistenceCheck(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		args []string
		want Persistence // Server is not compared
		ok   bool
	}{
		{"appendonly", []string{"--appendonly", "yes"}, Persistence{AOF: true}, true},
		{"rdb save points", []string{"--appendonly", "no", "--save", "3600 1 300 100"}, Persistence{Save: "3600 1 300 100"}, true},
		{"nothing", []string{"--save", "", "--appendonly", "no"}, Persistence{}, false},
		// CONFIG renamed away, as managed services do: INFO persistence
		// shows the append-only file...
		{"no CONFIG, appendonly", []string{"--appendonly", "yes", "--rename-command", "CONFIG", ""}, Persistence{AOF: true, SaveUnknown: true}, true},
		{"no CONFIG, nothing", []string{"--save", "", "--appendonly", "no", "--rename-command", "CONFIG", ""}, Persistence{SaveUnknown: true}, false},
		// ...but not the save points: nothing shows the data is kept.
		{"no CONFIG, rdb", []string{"--appendonly", "no", "--save", "60 1", "--rename-command", "CONFIG", ""}, Persistence{SaveUnknown: true}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t, append(tt.args, "--requirepass", "s3cret-pw")...)
			ctx := context.Background()
			url := "unix://:s3cret-pw@" + strings.TrimPrefix(srv.URL(), "unix://")
			q, err := Open(ctx, url, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			ps, err := q.Persistence(ctx)
			if err != nil || len(ps) != 1 {
				t.Fatalf("Persistence: %+v %v", ps, err)
			}
			got := ps[0]
			if !strings.HasSuffix(got.Server, filepath.Join(filepath.Base(filepath.Dir(got.Server)), "redis.sock")) {
				t.Errorf("server named %q, want the socket", got.Server)
			}
			got.Server = ""
			if got != tt.want {
				t.Errorf("Persistence = %+v, want %+v", got, tt.want)
			}
			err = q.CheckPersistence(ctx)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrVolatile)) {
				t.Fatalf("CheckPersistence = %v, want ok %v", err, tt.ok)
			}
			if err != nil {
				t.Logf("refused: %v", err)
				if strings.Contains(err.Error(), "s3cret-pw") {
					t.Fatal("the error shows the password")
				}
			}
		})
	}
}

// TestVanishedAfterRestart restarts a Redis without persistence under a
// queue that had created and read a campaign: every call on it returns
// queue.ErrVanished (queuetest.RunVanished), the tombstone holds what was
// seen, and no call recreates a partial campaign.
func TestVanishedAfterRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--save", "", "--appendonly", "no")
	ctx := context.Background()
	q, err := Open(ctx, srv.URL(), Options{Prefix: "v:"})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	other, err := Open(ctx, srv.URL(), Options{Prefix: "v:"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	queuetest.RunVanished(t, q, other, func() {
		srv.Restart()
		if n, err := srv.Do("DBSIZE"); err != nil || n != "0" {
			t.Fatalf("the restart kept %s keys (%v)", n, err)
		}
	})

	rdb := q.Client()
	keys, err := rdb.Keys(ctx, "v:*").Result()
	slices.Sort(keys)
	if err != nil || !slices.Equal(keys, []string{"v:campaigns", "v:{vanishing}:lost"}) {
		t.Fatalf("after the loss Redis holds %v (%v): want only the tombstone and the campaign list", keys, err)
	}
	tomb, err := rdb.HGetAll(ctx, "v:{vanishing}:lost").Result()
	ms, _ := strconv.ParseInt(tomb["at"], 10, 64)
	if err != nil || tomb["sent"] != "2" || tomb["total"] != "10" || time.Since(time.UnixMilli(ms)).Abs() > time.Minute {
		t.Fatalf("tombstone %v %v", tomb, err)
	}
	if ids, _ := other.Campaigns(ctx); !slices.Equal(ids, []string{"vanishing"}) {
		t.Fatalf("Campaigns = %v: the lost campaign is listed so that status shows it", ids)
	}
}

// TestSettleWaitsForReplica settles on a master with a replica: what
// Settle acknowledged is on the replica when it returns; with the replica
// hung (SIGSTOP), Settle returns ErrUnreplicated after ReplicaWait, and
// the same batch settles once it is back; after a failover to the replica
// every acknowledged outcome is there.
func TestSettleWaitsForReplica(t *testing.T) {
	t.Parallel()
	master := redistest.StartTCP(t)
	replica := master.Replica()
	ctx := context.Background()
	const wait = time.Second // a loaded machine can take a few hundred ms
	q, err := Open(ctx, master.URL(), Options{Prefix: "r:", ReplicaWait: wait})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	onReplica, err := Open(ctx, replica.URL(), Options{Prefix: "r:"})
	if err != nil {
		t.Fatal(err)
	}
	defer onReplica.Close()
	fill(t, q, "w", 300)
	leased, err := q.Lease(ctx, "w", time.Now(), 300, time.Hour)
	if err != nil || len(leased) != 300 {
		t.Fatal(len(leased), err)
	}
	settle := func(jobs []queue.Job) error {
		var s []queue.Settlement
		for _, j := range jobs {
			s = append(s, queue.Settlement{Seq: j.Seq, Lease: j.Lease, State: queue.Sent, Provider: "p"})
		}
		lost, err := q.Settle(ctx, "w", s)
		if len(lost) > 0 {
			t.Fatalf("lost %v", lost)
		}
		return err
	}
	sentOn := func(q *Queue) int64 {
		c, err := q.Counts(ctx, "w")
		if err != nil {
			t.Fatal(err)
		}
		return c.Sent
	}

	if err := settle(leased[:100]); err != nil {
		t.Fatal(err)
	}
	if n := sentOn(onReplica); n != 100 {
		t.Fatalf("Settle returned; the replica has %d of 100 sent", n)
	}

	replica.Pause()
	start := time.Now()
	err = settle(leased[100:200])
	took := time.Since(start)
	t.Logf("with the replica hung: %v after %s", err, took.Round(time.Millisecond))
	if !errors.Is(err, ErrUnreplicated) || took < wait || took > wait+2*time.Second {
		t.Fatalf("Settle with the replica hung: %v after %s, want ErrUnreplicated after %s", err, took, wait)
	}
	// Meanwhile nothing more is handed out to send.
	if jobs, err := q.Lease(ctx, "w", time.Now(), 1, time.Hour); !errors.Is(err, ErrUnreplicated) || len(jobs) != 0 {
		t.Fatalf("Lease while outcomes cannot reach the replica: %d jobs, %v", len(jobs), err)
	}
	replica.Resume()
	// The engine keeps a failed batch and settles it again.
	if err := settle(leased[100:200]); err != nil {
		t.Fatalf("the same batch once the replica is back: %v", err)
	}
	if _, err := q.Lease(ctx, "w", time.Now(), 1, time.Hour); err != nil {
		t.Fatalf("Lease once the replica is back: %v", err)
	}
	if err := settle(leased[200:]); err != nil {
		t.Fatal(err)
	}

	// Failover: the master dies; the replica becomes the master.
	master.Kill()
	if _, err := replica.Do("REPLICAOF", "NO", "ONE"); err != nil {
		t.Fatal(err)
	}
	if n := sentOn(onReplica); n != 300 {
		t.Fatalf("after the failover the replica has %d of 300 acknowledged outcomes", n)
	}
}

// TestReplicaNoticedNowAndThen: a replica that connects after Open is
// waited for within ReplicaCheck, and one that is gone for good stops
// being waited for (a stalled WAIT looks again at once).
func TestReplicaNoticedNowAndThen(t *testing.T) {
	t.Parallel()
	master := redistest.StartTCP(t)
	ctx := context.Background()
	q, err := Open(ctx, master.URL(), Options{ReplicaWait: 200 * time.Millisecond, ReplicaCheck: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	fill(t, q, "n", 10)
	leased, err := q.Lease(ctx, "n", time.Now(), 10, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Failed, not suppressed: only the job's state is written (no usage,
	// no suppression entry), so only the settle script's WAIT can wait.
	s := []queue.Settlement{{Seq: leased[0].Seq, Lease: leased[0].Lease, State: queue.Failed, Reply: "550 no"}}
	if _, err := q.Settle(ctx, "n", s); err != nil {
		t.Fatalf("no replica: %v", err)
	}

	replica := master.Replica()
	replica.Pause()
	// Settling the same again changes nothing but is waited for, once the
	// queue has looked again.
	deadline := time.Now().Add(10 * time.Second)
	for _, err := q.Settle(ctx, "n", s); !errors.Is(err, ErrUnreplicated); _, err = q.Settle(ctx, "n", s) {
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("a hung replica that connected after Open was not waited for: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	replica.Kill() // its connection closes: the master drops it
	deadline = time.Now().Add(10 * time.Second)
	for _, err := q.Settle(ctx, "n", s); err != nil; _, err = q.Settle(ctx, "n", s) {
		if !errors.Is(err, ErrUnreplicated) || time.Now().After(deadline) {
			t.Fatalf("with the replica gone: %v", err)
		}
	}
}

func TestOnlineReplicas(t *testing.T) {
	info := "# Replication\r\nrole:master\r\nconnected_slaves:3\r\n" +
		"slave0:ip=127.0.0.1,port=7001,state=online,offset=10,lag=0\r\n" +
		"slave1:ip=127.0.0.1,port=7002,state=wait_bgsave,offset=0,lag=0\r\n" +
		"slave2:ip=127.0.0.1,port=7003,state=online,offset=10,lag=1\r\n" +
		"slave_read_repl_offset:10\r\nmaster_repl_offset:10\r\n"
	if n := onlineReplicas(info); n != 2 {
		t.Fatalf("onlineReplicas = %d, want 2 (one is still syncing)", n)
	}
	if n := onlineReplicas("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"); n != 0 {
		t.Fatalf("no replicas: %d", n)
	}
}

// TestClusterDurability: on a Redis Cluster of two masters,
// CheckPersistence looks at both and names the one that keeps nothing;
// Settle waits for the replica of the master holding the campaign, and
// only there.
func TestClusterDurability(t *testing.T) {
	t.Parallel()
	nodes := redistest.StartCluster(t, []string{"--appendonly", "yes"}, []string{"--save", "", "--appendonly", "no"})
	ctx := context.Background()
	q, err := Open(ctx, redistest.ClusterURL(nodes), Options{Prefix: "c:", ReplicaWait: 300 * time.Millisecond, ReplicaCheck: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	a, b := fmt.Sprintf("127.0.0.1:%d", nodes[0].Port()), fmt.Sprintf("127.0.0.1:%d", nodes[1].Port())
	ps, err := q.Persistence(ctx)
	want := []Persistence{{Server: a, AOF: true}, {Server: b}}
	if b < a {
		want[0], want[1] = want[1], want[0]
	}
	if err != nil || !slices.Equal(ps, want) {
		t.Fatalf("Persistence = %+v %v, want %+v", ps, err, want)
	}
	err = q.CheckPersistence(ctx)
	if !errors.Is(err, ErrVolatile) || !strings.Contains(err.Error(), b) || strings.Contains(err.Error(), a) {
		t.Fatalf("CheckPersistence = %v: want %s named, and not %s", err, b, a)
	}

	// A campaign on each master (by the slot of its hash tag).
	onMaster := map[int]string{}
	for i := 0; len(onMaster) < 2; i++ {
		id := fmt.Sprintf("camp%d", i)
		slot, err := nodes[0].Do("CLUSTER", "KEYSLOT", q.keys(id).meta)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(slot)
		if _, ok := onMaster[n/8192]; !ok {
			onMaster[n/8192] = id
		}
	}
	leases := map[string][]queue.Job{}
	for _, id := range onMaster {
		fill(t, q, id, 200)
		if leases[id], err = q.Lease(ctx, id, time.Now(), 200, time.Hour); err != nil || len(leases[id]) != 200 {
			t.Fatal(len(leases[id]), err)
		}
	}
	next := map[string]int{}
	settle := func(id string) error {
		if next[id] == len(leases[id]) {
			t.Fatalf("settled all of %s and no WAIT failed", id)
		}
		j := leases[id][next[id]]
		next[id]++
		// Failed, not suppressed: no usage or suppression entry, which
		// would live in other slots.
		_, err := q.Settle(ctx, id, []queue.Settlement{{Seq: j.Seq, Lease: j.Lease, State: queue.Failed, Reply: "550 no"}})
		return err
	}

	replica := nodes[0].ClusterReplica()
	replica.Pause()
	defer replica.Resume()
	deadline := time.Now().Add(10 * time.Second)
	for err := settle(onMaster[0]); !errors.Is(err, ErrUnreplicated); err = settle(onMaster[0]) {
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("the campaign on the master with a hung replica: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	if err := settle(onMaster[1]); err != nil || time.Since(start) > 200*time.Millisecond {
		t.Fatalf("the campaign on the master without replicas: %v after %s", err, time.Since(start))
	}
	replica.Resume()
	// Once it has caught up: on a loaded machine that can take longer
	// than one ReplicaWait.
	deadline = time.Now().Add(10 * time.Second)
	for err := settle(onMaster[0]); err != nil; err = settle(onMaster[0]) {
		if !errors.Is(err, ErrUnreplicated) || time.Now().After(deadline) {
			t.Fatalf("once the replica is back: %v", err)
		}
	}
}

// TestSentinelDurability: through Sentinel, the master it names is
// checked, and named so in the refusal.
func TestSentinelDurability(t *testing.T) {
	t.Parallel()
	master := redistest.StartTCP(t, "--save", "", "--appendonly", "no")
	sentinel := master.Sentinel("herald-m")
	ctx := context.Background()
	q, err := Open(ctx, fmt.Sprintf("redis+sentinel://127.0.0.1:%d?master_name=herald-m", sentinel.Port()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	err = q.CheckPersistence(ctx)
	if !errors.Is(err, ErrVolatile) || !strings.Contains(err.Error(), "master herald-m") {
		t.Fatalf("CheckPersistence = %v", err)
	}
	if _, err := master.Do("CONFIG", "SET", "appendonly", "yes"); err != nil {
		t.Fatal(err)
	}
	if err := q.CheckPersistence(ctx); err != nil {
		t.Fatalf("with appendonly turned on: %v", err)
	}
}

// TestKeySlot checks the hash slots against redis-server's own CLUSTER
// KEYSLOT, and that a wait key lands in its key's slot, also for keys
// without a hash tag or with an empty one ("{}" hashes the whole key).
func TestKeySlot(t *testing.T) {
	t.Parallel()
	nodes := redistest.StartCluster(t, nil)
	q := &Queue{prefix: "herald:"}
	for _, key := range []string{"", "a", "herald:{c1}:meta", "herald:usage:{}", "herald:usage:{smtp}", "{}x", "x{y", "a}{b}", "{{a}}", "herald:campaigns", "é{ü}"} {
		want, err := nodes[0].Do("CLUSTER", "KEYSLOT", key)
		if err != nil {
			t.Fatal(err)
		}
		if got := keySlot(key); strconv.Itoa(got) != want {
			t.Errorf("keySlot(%q) = %d, redis says %s", key, got, want)
		}
		w := q.waitKey(key)
		if ws, _ := nodes[0].Do("CLUSTER", "KEYSLOT", w); ws != want {
			t.Errorf("waitKey(%q) = %q in slot %s, want %s", key, w, ws, want)
		}
	}
}

// TestLeaseWaitsForReplica: jobs are handed out once a replica has their
// leases, as outcomes are acknowledged once it has them: a failover to a
// replica without them would hand the jobs to another sender. With the
// replica hung, Lease returns ErrUnreplicated and hands nothing out (the
// jobs go back to pending), and so does Extend; once it is back, both
// work.
func TestLeaseWaitsForReplica(t *testing.T) {
	t.Parallel()
	master := redistest.StartTCP(t)
	replica := master.Replica()
	ctx := context.Background()
	const wait = time.Second // a loaded machine can take a few hundred ms
	q, err := Open(ctx, master.URL(), Options{Prefix: "l:", ReplicaWait: wait})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	onReplica, err := Open(ctx, replica.URL(), Options{Prefix: "l:"})
	if err != nil {
		t.Fatal(err)
	}
	defer onReplica.Close()
	fill(t, q, "l", 20)
	first, err := q.Lease(ctx, "l", time.Now(), 5, time.Hour)
	if err != nil || len(first) != 5 {
		t.Fatal(len(first), err)
	}
	if c, err := onReplica.Counts(ctx, "l"); err != nil || c.Leased != 5 {
		t.Fatalf("Lease returned; the replica has %+v (%v), want 5 leased", c, err)
	}

	replica.Pause()
	start := time.Now()
	jobs, err := q.Lease(ctx, "l", time.Now(), 5, time.Hour)
	t.Logf("with the replica hung: %d jobs, %v after %s", len(jobs), err, time.Since(start).Round(time.Millisecond))
	if !errors.Is(err, ErrUnreplicated) || len(jobs) != 0 {
		t.Fatalf("Lease with the replica hung: %d jobs, %v; want none and ErrUnreplicated", len(jobs), err)
	}
	if c, err := q.Counts(ctx, "l"); err != nil || c.Leased != 5 || c.Pending != 15 {
		t.Fatalf("the jobs leased while the replica hung did not go back: %+v %v", c, err)
	}
	if _, err := q.Extend(ctx, "l", first, time.Now().Add(2*time.Hour)); !errors.Is(err, ErrUnreplicated) {
		t.Fatalf("Extend with the replica hung: %v", err)
	}
	replica.Resume()
	if jobs, err := q.Lease(ctx, "l", time.Now(), 5, time.Hour); err != nil || len(jobs) != 5 {
		t.Fatalf("Lease once the replica is back: %d jobs, %v", len(jobs), err)
	}
	if _, err := q.Extend(ctx, "l", first, time.Now().Add(2*time.Hour)); err != nil {
		t.Fatalf("Extend once the replica is back: %v", err)
	}
}

// sentinelRun settles jobs one at a time through Sentinel, as senders do,
// and checks what was acknowledged.
type sentinelRun struct {
	t      *testing.T
	set    *redistest.SentinelSet
	q      *Queue
	leased []queue.Job
	acked  []queue.Job
}

// newSentinelRun opens a queue through set's Sentinels and leases n jobs.
func newSentinelRun(t *testing.T, set *redistest.SentinelSet, wait time.Duration, n int) *sentinelRun {
	ctx := context.Background()
	q, err := Open(ctx, set.URL(), Options{Prefix: "s:", ReplicaWait: wait, ReplicaCheck: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	fill(t, q, "s", n)
	r := &sentinelRun{t: t, set: set, q: q}
	for len(r.leased) < n {
		jobs, err := q.Lease(ctx, "s", time.Now(), n, time.Hour)
		if err != nil || len(jobs) == 0 {
			t.Fatal(len(jobs), err)
		}
		r.leased = append(r.leased, jobs...)
	}
	return r
}

// settle settles the next job (Failed: a write to the campaign's slot
// only).
func (r *sentinelRun) settle() error {
	if len(r.acked) == len(r.leased) {
		r.t.Fatal("out of jobs")
	}
	j := r.leased[len(r.acked)]
	_, err := r.q.Settle(context.Background(), "s", []queue.Settlement{{Seq: j.Seq, Lease: j.Lease, State: queue.Failed, Reply: "550 no"}})
	if err == nil {
		r.acked = append(r.acked, j)
	}
	return err
}

// first settles n jobs before a failover; a WAIT may time out now and
// then on a loaded machine.
func (r *sentinelRun) first(n int) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(r.acked) < n {
		if err := r.settle(); err != nil && (!errors.Is(err, ErrUnreplicated) || time.Now().After(deadline)) {
			r.t.Fatal(err)
		}
	}
}

// until settles until done says so, then for another second, and returns
// how many writes were refused, and how many of them for want of a
// replica's acknowledgement.
func (r *sentinelRun) until(done func() bool) (refused, unreplicated int) {
	r.t.Helper()
	var end time.Time
	for deadline := time.Now().Add(30 * time.Second); end.IsZero() || time.Now().Before(end); {
		if err := r.settle(); err != nil {
			refused++
			if errors.Is(err, ErrUnreplicated) {
				unreplicated++
			}
			time.Sleep(10 * time.Millisecond)
		} else {
			time.Sleep(time.Millisecond) // about as often as senders
		}
		if end.IsZero() && done() {
			end = time.Now().Add(time.Second)
		}
		if time.Now().After(deadline) {
			r.t.Fatal("the failover did not end")
		}
	}
	return refused, unreplicated
}

// on checks that every acknowledged outcome is on master m.
func (r *sentinelRun) on(m *redistest.Server) {
	r.t.Helper()
	ctx := context.Background()
	q, err := Open(ctx, m.URL(), Options{Prefix: "s:"})
	if err != nil {
		r.t.Fatal(err)
	}
	defer q.Close()
	states := map[uint64]queue.State{}
	if err := q.Walk(ctx, "s", func(j queue.Job) error { states[j.Seq] = j.State; return nil }); err != nil {
		r.t.Fatal(err)
	}
	lost := 0
	for _, j := range r.acked {
		if states[j.Seq] != queue.Failed {
			lost++
		}
	}
	if lost > 0 {
		r.t.Fatalf("%d of %d acknowledged outcomes are not on the new master", lost, len(r.acked))
	}
}

// TestSentinelManualFailover: jobs are settled while the Sentinels fail
// the master over to its replica on request (SENTINEL FAILOVER): the old
// master stays up a while without its replica, then follows the new
// master and drops what it took meanwhile. A replica promoted away is not
// taken for one gone for good: every acknowledged outcome is on the new
// master.
func TestSentinelManualFailover(t *testing.T) {
	t.Parallel()
	set := redistest.StartSentinelSet(t, "herald-m")
	// A short wait: the old master's WAIT fails well before this client
	// follows the switch (about a second after the promotion), and the
	// writes that follow must not be acknowledged.
	r := newSentinelRun(t, set, 300*time.Millisecond, 20000)
	r.first(20)
	if _, err := set.Sentinels[0].Do("SENTINEL", "FAILOVER", set.Name); err != nil {
		t.Fatal(err)
	}
	refused, unreplicated := r.until(func() bool { return set.MasterAddr() == set.Replica.Addr() })
	t.Logf("SENTINEL FAILOVER: %d outcomes acknowledged; %d writes refused meanwhile, %d of them unreplicated", len(r.acked), refused, unreplicated)
	r.on(set.Replica)
}

// TestSentinelFailoverToLoneReplica: the master is killed while jobs are
// settled; the Sentinels promote its replica, which has no replica of
// its own: every acknowledged outcome is on it, and it is written to
// without a WAIT for a replica it does not have.
func TestSentinelFailoverToLoneReplica(t *testing.T) {
	t.Parallel()
	set := redistest.StartSentinelSet(t, "herald-k")
	const wait = time.Second
	r := newSentinelRun(t, set, wait, 10000)
	r.first(20)
	set.Master.Kill()
	killed := time.Now()
	refused, unreplicated := r.until(func() bool { return set.MasterAddr() == set.Replica.Addr() })
	t.Logf("master killed: %d outcomes acknowledged; %d writes refused meanwhile, %d of them unreplicated", len(r.acked), refused, unreplicated)
	r.on(set.Replica)
	if unreplicated > 0 {
		t.Fatalf("%d writes on the promoted replica waited for a replica it does not have", unreplicated)
	}
	start := time.Now()
	for range 10 {
		if err := r.settle(); err != nil {
			t.Fatalf("on the promoted replica, %s after the kill: %v", time.Since(killed).Round(time.Millisecond), err)
		}
	}
	if took := time.Since(start); took > wait {
		t.Fatalf("10 outcomes on the promoted replica took %s: they waited for a replica it does not have", took)
	}
}
