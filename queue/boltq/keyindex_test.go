package boltq

import (
	"context"
	"fmt"
	"testing"

	"github.com/heraldmail/herald/queue"
)

// Keys that share a hash are told apart by their records: find offers
// every Seq of the hash, in the order they were added, until one matches.
func TestKeyIndexSharedHash(t *testing.T) {
	x := newKeyIndex()
	for seq := uint64(0); seq < 5000; seq++ {
		x.addHash(uint32(seq)*2654435761, seq)
	}
	x.addHash(7, 10_000)
	x.addHash(7, 10_001)
	x.add("far", 1<<40)
	var offered []uint64
	find := func(h uint32, want uint64) (uint64, bool) {
		offered = offered[:0]
		seq, ok, err := x.findHash(h, "", func(s uint64) (bool, error) {
			offered = append(offered, s)
			return s == want, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return seq, ok
	}
	if seq, ok := find(7, 10_001); !ok || seq != 10_001 || fmt.Sprint(offered) != "[10000 10001]" {
		t.Errorf("shared hash: %d %v, offered %v", seq, ok, offered)
	}
	if _, ok := find(7, 3); ok {
		t.Error("found a Seq the hash does not hold")
	}
	k := uint32(4321)
	if seq, ok := find(k*2654435761, 4321); !ok || seq != 4321 {
		t.Errorf("after growing: %d %v, offered %v", seq, ok, offered)
	}
	if len(x.slots) < 4*5002/3 {
		t.Errorf("%d slots for 5002 keys", len(x.slots))
	}
	if seq, ok, _ := x.find("far", func(s uint64) (bool, error) { return s == 1<<40, nil }); !ok || seq != 1<<40 {
		t.Errorf("a Seq past 32 bits: %d %v", seq, ok)
	}
}

// The index is built again from the job records by a new process (after
// a restart, or once planning ended), and a failed Enqueue leaves nothing
// of its jobs in it.
func TestKeyIndexRebuilt(t *testing.T) {
	t.Parallel()
	path, q := withCampaign(t)
	ctx := context.Background()
	job := func(seq uint64, addr string) queue.Job {
		return queue.Job{Seq: seq, Key: addr, Email: addr, Fields: []string{addr}}
	}
	var batch []queue.Job
	for s := uint64(2); s < 3002; s++ {
		batch = append(batch, job(s, fmt.Sprintf("u%d@x.com", s)))
	}
	if r, err := q.Enqueue(ctx, "c", batch); err != nil || r.Added != 3000 {
		t.Fatal(r, err)
	}
	// Seq 5 holds another address: the whole batch fails, u9000 with it.
	if _, err := q.Enqueue(ctx, "c", []queue.Job{job(9000, "u9000@x.com"), job(5, "other@x.com")}); err == nil {
		t.Fatal("a Seq holding another address was taken")
	}
	if ok, err := q.Recipient(ctx, "c", "u9000@x.com"); err != nil || ok {
		t.Fatalf("the failed batch's address is a recipient: %v %v", ok, err)
	}
	q.Close()

	q, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	r, err := q.Enqueue(ctx, "c", []queue.Job{job(100, "u100@x.com"), job(4000, "u77@x.com"), job(4001, "new@x.com"), job(4002, "new@x.com")})
	if err != nil || r.Existing != 1 || r.Added != 1 || fmt.Sprint(r.Duplicates) != "[{4000 77} {4002 4001}]" {
		t.Fatalf("after reopening: %+v %v", r, err)
	}
	if err := q.MarkPlanned(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{"u2@x.com": true, "u3001@x.com": true, "new@x.com": true, "u3002@x.com": false, "U2@x.com": false} {
		if ok, err := q.Recipient(ctx, "c", key); err != nil || ok != want {
			t.Errorf("Recipient(%s) = %v, %v; want %v", key, ok, err, want)
		}
	}
}
