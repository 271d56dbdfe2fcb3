package boltq

import (
	"hash/maphash"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The campaigns of layoutMemKeys keep no bucket of keys: a key (the
// lower-cased address) is in its job's record only, and the index that
// finds a job by its key lives in the memory of the process that needs it
// (Enqueue, to find duplicates; Recipient, for the bounce processor). It
// is built from the job records the first time it is needed, updated by
// Enqueue, and dropped once planning is done or it has not been used for
// a while. On disk that saves an entry per recipient (49 MB of a store of
// a million); in memory it costs 8 bytes a slot, 16 MB for a million.

// keyIndex is an open-addressing table of (32-bit hash, Seq) pairs. A
// slot holds hash<<32 | Seq+1, 0 when empty; the slot a key starts at
// is its hash's low bits, so the table grows without the keys. Two keys
// can share a hash: a lookup returns every Seq whose hash matches and the
// caller compares the job's key. Seqs that do not fit in 32 bits go to
// over.
type keyIndex struct {
	slots []uint64
	n     int
	over  map[string]uint64
	used  time.Time
}

// keyIdle is how long an index no call used is kept.
const keyIdle = 5 * time.Minute

var keySeed = maphash.MakeSeed()

func keyHash(key string) uint32 { return fold(maphash.String(keySeed, key)) }

// keyHashBytes is keyHash of string(key).
func keyHashBytes(key []byte) uint32 { return fold(maphash.Bytes(keySeed, key)) }

func fold(h uint64) uint32 { return uint32(h ^ h>>32) }

func newKeyIndex() *keyIndex {
	return &keyIndex{slots: allocSlots(1024), over: map[string]uint64{}}
}

// free gives the slots back; x is not used again.
func (x *keyIndex) free() {
	freeSlots(x.slots)
	x.slots = nil
}

// find calls match with each Seq that may hold key (its hash's), until
// match returns true; ok reports whether it did.
func (x *keyIndex) find(key string, match func(seq uint64) (bool, error)) (seq uint64, ok bool, err error) {
	if s, found := x.over[key]; found {
		if ok, err := match(s); ok || err != nil {
			return s, ok, err
		}
	}
	return x.findHash(keyHash(key), key, match)
}

// findHash is find for a key whose hash is h.
func (x *keyIndex) findHash(h uint32, key string, match func(seq uint64) (bool, error)) (seq uint64, ok bool, err error) {
	mask := uint64(len(x.slots) - 1)
	for i := uint64(h) & mask; ; i = (i + 1) & mask {
		v := x.slots[i]
		if v == 0 {
			return 0, false, nil
		}
		if uint32(v>>32) != h {
			continue
		}
		s := v&0xffffffff - 1
		if ok, err := match(s); ok || err != nil {
			return s, ok, err
		}
	}
}

// add records that the job seq holds key.
func (x *keyIndex) add(key string, seq uint64) {
	if seq >= 0xffffffff {
		x.over[key] = seq
		return
	}
	x.addHash(keyHash(key), seq)
}

func (x *keyIndex) addHash(h uint32, seq uint64) {
	if 4*(x.n+1) > 3*len(x.slots) {
		x.grow()
	}
	x.put(uint64(h)<<32 | (seq + 1))
	x.n++
}

func (x *keyIndex) put(v uint64) {
	mask := uint64(len(x.slots) - 1)
	i := (v >> 32) & mask
	for x.slots[i] != 0 {
		i = (i + 1) & mask
	}
	x.slots[i] = v
}

func (x *keyIndex) grow() {
	old := x.slots
	x.slots = allocSlots(2 * len(old))
	for _, v := range old {
		if v != 0 {
			x.put(v)
		}
	}
	freeSlots(old)
}

// dropIdleKeys forgets the indexes not used for keyIdle, except the one
// of campaign keep; the caller holds q.keysMu.
func (q *Queue) dropIdleKeys(keep string) {
	now := time.Now()
	for id, x := range q.keys {
		if id != keep && now.Sub(x.used) > keyIdle {
			q.dropKeys(id)
		}
	}
}

// dropKeys forgets the campaign's index; the caller holds q.keysMu.
func (q *Queue) dropKeys(id string) {
	if x := q.keys[id]; x != nil {
		x.free()
		delete(q.keys, id)
	}
}

// keysOf returns the campaign's index, built from its job records when
// this process has none. The caller holds q.keysMu; tx may be a read-only
// one.
func (q *Queue) keysOf(c *campaign, id string) (*keyIndex, error) {
	now := time.Now()
	q.dropIdleKeys(id)
	if x := q.keys[id]; x != nil {
		x.used = now
		return x, nil
	}
	x := newKeyIndex()
	cur := c.jobs.Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		key, err := keyOf(v)
		if err != nil {
			x.free()
			return nil, err
		}
		if seq := u64(k); seq >= 0xffffffff {
			x.add(string(key), seq)
		} else {
			x.addHash(keyHashBytes(key), seq)
		}
	}
	x.used = now
	if q.keys == nil {
		q.keys = map[string]*keyIndex{}
	}
	q.keys[id] = x
	return x, nil
}

// keyOf returns the Key of an encoded job: a part of b.
func keyOf(b []byte) ([]byte, error) {
	_, d, err := readHead(b)
	if err != nil {
		return nil, errCorrupt
	}
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		return nil, errCorrupt
	}
	return d.b[:n], nil
}

// seqOfKey finds the job whose Key is key through the index x, reading
// the records in the transaction's view of jobs.
func seqOfKey(x *keyIndex, jobs *bolt.Bucket, key string) (uint64, bool, error) {
	return x.find(key, func(seq uint64) (bool, error) {
		v := jobs.Get(be(seq))
		if v == nil {
			return false, nil
		}
		k, err := keyOf(v)
		return string(k) == key, err
	})
}
