package boltq

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heraldmail/herald/queue"
)

// A campaign planned by place (Job.Row), leased and sent in full, costs
// the store a bounded number of bytes a recipient. Its rows are the
// benchmark's ("user123@example.com,User 123,City 26"); a store keeping
// the rows and splitting its pages at half full took about 390 bytes a
// recipient, one with a bucket of keys about 140, this one (keys found
// through an index in memory) about 90.
func TestStoreBytesPerRecipient(t *testing.T) {
	t.Parallel()
	const n = 20_000
	path := filepath.Join(t.TempDir(), "q.db")
	q, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := q.CreateCampaign(ctx, queue.Campaign{ID: "c", Header: []string{"email", "name", "city"}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var off uint64 = 16
	for seq := 2; seq < n+2; seq += 1000 {
		var batch []queue.Job
		for s := seq; s < seq+1000; s++ {
			email := fmt.Sprintf("user%d@example.com", s)
			fields := []string{email, fmt.Sprintf("User %d", s), fmt.Sprintf("City %d", s%97)}
			size := uint32(len(fields[0]) + len(fields[1]) + len(fields[2]) + 3)
			batch = append(batch, queue.Job{Seq: uint64(s), Key: email, Email: email, Fields: fields, Enqueued: now,
				Row: queue.RowRef{Offset: off, Size: size, Sum: uint32(s) * 2654435761}})
			off += uint64(size)
		}
		if r, err := q.Enqueue(ctx, "c", batch); err != nil || r.Added != len(batch) {
			t.Fatal(r, err)
		}
	}
	for {
		jobs, err := q.Lease(ctx, "c", time.Now(), 500, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) == 0 {
			break
		}
		var s []queue.Settlement
		for _, j := range jobs {
			if j.Fields != nil || j.Row.Size == 0 {
				t.Fatalf("job %d leased with fields %q, row %+v: the store kept the row", j.Seq, j.Fields, j.Row)
			}
			s = append(s, queue.Settlement{Seq: j.Seq, Lease: j.Lease, State: queue.Sent, Reply: "250 2.0.0 Ok", Provider: "sink", CountAttempt: true})
		}
		if _, err := q.Settle(ctx, "c", s); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := q.Counts(ctx, "c"); err != nil || c.Sent != n {
		t.Fatal(c, err)
	}
	// The pages in use, free ones among them: the file grows by them
	// (a small file is rounded up to a power of two).
	var size int64
	_ = q.db.View(func(tx *bolt.Tx) error {
		size = tx.Size()
		b := tx.Bucket(campaignBucket("c"))
		if b.Bucket(subKeys) != nil {
			t.Error("a new campaign has a bucket of keys")
		}
		for _, name := range [][]byte{subJobs, subPending} {
			st := b.Bucket(name).Stats()
			t.Logf("%s: %d leaf pages, %d%% in use", name, st.LeafPageN, 100*st.LeafInuse/max(1, st.LeafAlloc))
		}
		t.Logf("free pages %d of %d", q.db.Stats().FreePageN, size/int64(q.db.Info().PageSize))
		return nil
	})
	q.Close()
	per := float64(size) / n
	t.Logf("%d recipients: store %d bytes, %.0f a recipient", n, size, per)
	if per > 100 {
		t.Errorf("the store takes %.0f bytes a recipient, want at most 100", per)
	}
}

// encodeJobV1 is the record encoding of herald before the second one
// (encodeJob): every field, Fields included.
func encodeJobV1(j *queue.Job) []byte {
	b := []byte{byte(j.State)}
	b = binary.AppendUvarint(b, uint64(j.Attempts))
	b = binary.AppendUvarint(b, j.Lease)
	b = binary.AppendUvarint(b, encodeTime(j.At))
	b = binary.AppendUvarint(b, encodeTime(j.Enqueued))
	b = appendString(b, j.Key)
	b = appendString(b, j.Email)
	b = appendString(b, j.Provider)
	b = appendString(b, j.Reply)
	b = binary.AppendUvarint(b, uint64(len(j.Fields)))
	for _, f := range j.Fields {
		b = appendString(b, f)
	}
	return b
}

// A store written by an older herald (records in the first encoding, no
// campaign Enqueued) opens, and its jobs lease, settle and walk with their
// fields.
func TestOlderRecordsStillRead(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "q.db")
	enq := time.Unix(1_800_000_000, 0)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(campaignBucket("old"))
		if err != nil {
			return err
		}
		for _, name := range [][]byte{subMeta, subJobs, subKeys, subPending, subTimers} {
			if _, err := b.CreateBucket(name); err != nil {
				return err
			}
		}
		c := openCampaign(b)
		if err := c.saveRecord(queue.Campaign{ID: "old", Header: []string{"email", "name"}, Status: queue.Active, Planned: true}); err != nil {
			return err
		}
		c.counts.Pending = 2
		for seq, email := range map[uint64]string{2: "Ann@Example.com", 3: "bob@example.com"} {
			j := queue.Job{Seq: seq, Key: "k" + email, Email: email, Fields: []string{email, "Name " + email}, State: queue.Pending, Enqueued: enq}
			if err := c.jobs.Put(be(seq), encodeJobV1(&j)); err != nil {
				return err
			}
			if err := c.keys.Put([]byte(j.Key), be(seq)); err != nil {
				return err
			}
			if err := c.pending.Put(be(seq), nil); err != nil {
				return err
			}
		}
		return c.saveCounts()
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	q, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	jobs, err := q.Lease(ctx, "old", time.Now(), 10, time.Minute)
	if err != nil || len(jobs) != 2 {
		t.Fatal(jobs, err)
	}
	for _, j := range jobs {
		if len(j.Fields) != 2 || j.Fields[1] != "Name "+j.Email || j.Key != "k"+j.Email || !j.Enqueued.Equal(enq) || j.Row.Size != 0 {
			t.Fatalf("leased %+v", j)
		}
	}
	if lost, err := q.Settle(ctx, "old", []queue.Settlement{{Seq: jobs[0].Seq, Lease: jobs[0].Lease, State: queue.Sent, Reply: "250 ok"}}); err != nil || len(lost) != 0 {
		t.Fatal(lost, err)
	}
	n := 0
	err = q.Walk(ctx, "old", func(j queue.Job) error {
		n++
		if len(j.Fields) != 2 || j.Fields[0] != j.Email || !j.Enqueued.Equal(enq) {
			t.Errorf("walked %+v", j)
		}
		return nil
	})
	if err != nil || n != 2 {
		t.Fatal(n, err)
	}
	if c, _ := q.Counts(ctx, "old"); c.Sent != 1 || c.Leased != 1 {
		t.Fatalf("counts %+v", c)
	}
	// Its keys bucket is keyed by address (the first layout).
	for key, want := range map[string]bool{"kAnn@Example.com": true, "kbob@example.com": true, "knew@example.com": false} {
		if ok, err := q.Recipient(ctx, "old", key); err != nil || ok != want {
			t.Errorf("Recipient(%s) = %v, %v", key, ok, err)
		}
	}
	r, err := q.Enqueue(ctx, "old", []queue.Job{
		{Seq: 4, Key: "knew@example.com", Email: "new@example.com", Fields: []string{"new@example.com", "N"}},
		{Seq: 5, Key: "kbob@example.com", Email: "bob@example.com", Fields: []string{"bob@example.com", "N"}},
	})
	if err != nil || r.Added != 1 || len(r.Duplicates) != 1 || r.Duplicates[0].FirstSeq != 3 {
		t.Fatalf("%+v %v", r, err)
	}
	if ok, err := q.Recipient(ctx, "old", "knew@example.com"); err != nil || !ok {
		t.Errorf("Recipient of a job added to an older campaign: %v %v", ok, err)
	}
}

// Lease hands out Pending jobs in Seq order whether they wait in the
// pending bucket (released, or added behind the frontier) or past the
// frontier in the jobs bucket alone; the ones added to the suppression
// list before they were enqueued are passed over.
func TestLeaseFrontier(t *testing.T) {
	t.Parallel()
	q, err := Open(filepath.Join(t.TempDir(), "q.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	if _, err := q.CreateCampaign(ctx, queue.Campaign{ID: "c", Header: []string{"email"}, List: "l"}); err != nil {
		t.Fatal(err)
	}
	if err := q.Suppress(ctx, "l", "test", "s14@x.com"); err != nil {
		t.Fatal(err)
	}
	job := func(seq uint64) queue.Job {
		key := fmt.Sprintf("s%d@x.com", seq)
		return queue.Job{Seq: seq, Key: key, Email: key, Fields: []string{key}}
	}
	var batch []queue.Job
	for s := uint64(10); s < 20; s++ {
		batch = append(batch, job(s))
	}
	if r, err := q.Enqueue(ctx, "c", batch); err != nil || r.Added != 10 || r.Suppressed != 1 {
		t.Fatal(r, err)
	}
	seqs := func(jobs []queue.Job) (out []uint64) {
		for _, j := range jobs {
			out = append(out, j.Seq)
		}
		return out
	}
	first, err := q.Lease(ctx, "c", time.Now(), 3, time.Minute)
	if err != nil || fmt.Sprint(seqs(first)) != "[10 11 12]" {
		t.Fatal(seqs(first), err)
	}
	if err := q.Release(ctx, "c", first[1:2]); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue(ctx, "c", []queue.Job{job(5), job(25)}); err != nil {
		t.Fatal(err)
	}
	got, err := q.Lease(ctx, "c", time.Now(), 5, time.Minute)
	if err != nil || fmt.Sprint(seqs(got)) != "[5 11 13 15 16]" {
		t.Fatalf("leased %v, %v; want [5 11 13 15 16]", seqs(got), err)
	}
	got, err = q.Lease(ctx, "c", time.Now(), 10, time.Minute)
	if err != nil || fmt.Sprint(seqs(got)) != "[17 18 19 25]" {
		t.Fatalf("leased %v, %v; want [17 18 19 25]", seqs(got), err)
	}
	if c, _ := q.Counts(ctx, "c"); c.Pending != 0 || c.Leased != 11 || c.Suppressed != 1 {
		t.Fatalf("counts %+v", c)
	}
}

// TestRecordKeyAndTruncation: keyOf reads the Key that decodeJob reads,
// in both encodings and with or without the optional fields; a record cut
// short anywhere is corrupt to both, never a panic or a wrong key.
func TestRecordKeyAndTruncation(t *testing.T) {
	t.Parallel()
	enq := time.Unix(1_800_000_000, 0)
	jobs := []queue.Job{
		{Key: "ann@example.com", Email: "ann@example.com", Fields: []string{"ann@example.com", "Ann"}, State: queue.Pending, Enqueued: enq},
		{Key: "bob@example.com", Email: "Bob@Example.com", State: queue.Leased, Lease: 300, At: enq.Add(time.Minute), Enqueued: enq.Add(time.Second), Row: queue.RowRef{Offset: 1 << 20, Size: 40, Sum: 7}},
		{Key: "cy@example.com", Email: "cy@example.com", State: queue.Sent, Attempts: 2, Provider: "p", Reply: "250 ok", Enqueued: enq, Row: queue.RowRef{Offset: 9, Size: 3, Sum: 1}},
	}
	for _, j := range jobs {
		for name, rec := range map[string][]byte{"first": encodeJobV1(&j), "second": encodeJob(nil, &j, encodeTime(enq))} {
			got, err := decodeJob(rec, encodeTime(enq))
			if err != nil || got.Key != j.Key || got.Email != j.Email || got.State != j.State || got.Lease != j.Lease {
				t.Fatalf("%s encoding of %s: %+v, %v", name, j.Key, got, err)
			}
			k, err := keyOf(rec)
			if err != nil || string(k) != j.Key {
				t.Fatalf("%s encoding of %s: keyOf %q, %v", name, j.Key, k, err)
			}
			for cut := range len(rec) {
				if _, err := decodeJob(rec[:cut], encodeTime(enq)); err == nil {
					t.Errorf("%s encoding of %s cut at %d of %d: decoded", name, j.Key, cut, len(rec))
				}
				if k, err := keyOf(rec[:cut]); err == nil && string(k) != j.Key {
					t.Errorf("%s encoding of %s cut at %d: keyOf %q", name, j.Key, cut, k)
				}
			}
		}
	}
}
