package redisq

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldmail/herald/queue"
)

// Layout 2 keeps a campaign's recipients in many small hashes instead of
// two large ones. Redis stores a hash of up to hash-max-listpack-entries
// fields (default 128) whose values are at most hash-max-listpack-value
// bytes (default 64) as one flat listpack: a field costs its bytes and
// two or three more. A large hash is a hash table, which costs about 50
// bytes a field over its contents. So:
//
//	d:<seq/64>   hash: seq%64 -> the job's immutable record (encodeData);
//	             a planned file fills one bucket per 64 lines (not 128:
//	             writing n new fields into a listpack costs n²/2
//	             comparisons, and a hash of 64 costs Redis about 1.5
//	             bytes a field over its contents)
//	k:<h%16384>  hash: 4 bytes of h -> seq, where h is the FNV-1a hash of
//	             the job's key (dedupSlot): the deduplication index
//	kx           hash: key -> seq, for the rare key whose 4 bytes in its k
//	             bucket are taken by another key (a collision)
//
// The address is stored once, in the record (the key is derived from it
// when it is the address lower-cased, as it nearly always is); k holds
// no address: a hit there is checked against the record of the seq it
// names (keyOf), and goes on to kx when that holds another key.
//
// Every key is under the campaign's hash tag; the scripts derive the
// bucket names from their first key (meta), so they stay in its slot on
// a cluster.
//
// The campaign record (meta) says which layout it uses (field layout);
// a campaign planned by an earlier herald has none (layout 1: the data
// and keys hashes) and is refused with ErrLayout, never read as layout 2.

// layout is the version this herald writes and reads.
const layout = "2"

// Bucket sizes: dataBucket lines share a d hash, and the dedup index has
// dedupBuckets k hashes: up to about two million recipients they stay
// listpacks (past that Redis turns them into hash tables, which still
// work, at more bytes a recipient). Fewer would cost fewer bytes on a
// small campaign (a hash costs about 100 bytes of its own) but more CPU
// on a large one: every HSETNX scans its listpack.
const (
	dataBucket   = 64
	dedupBuckets = 16384
)

// dataBucketLua is dataBucket for the scripts (TestDataRoundTrip checks
// that they agree).
const dataBucketLua = "64"

// ErrLayout says a campaign was stored by an earlier herald in a layout
// this one does not read.
var ErrLayout = errors.New("campaign stored in an older Redis layout")

// layoutError is the error for a campaign in another layout.
func layoutError(id, have string) error {
	if have == "" {
		have = "1"
	}
	return fmt.Errorf("%w: campaign %s was planned by an earlier herald, which stored its recipients in Redis layout %s; this herald reads layout %s only: deliver it with the herald version that planned it, or cancel it (herald cancel) and plan the file again under a new campaign id",
		ErrLayout, id, have, layout)
}

// dataKey is the d hash holding seq, and its field there.
func (k keys) dataKey(seq uint64) (key, field string) {
	return k.prefix + "d:" + strconv.FormatUint(seq/dataBucket, 10), strconv.FormatUint(seq%dataBucket, 10)
}

// keyHash is the hash of the dedup index (a test makes every key
// collide with it).
var keyHash = fnv64a

// fnv64a is FNV-1a (hash/fnv's New64a) of s, without its allocations.
func fnv64a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// dedupSlot is key's k hash (its number) and its field there.
func dedupSlot(key string) (bucket uint64, field string) {
	b, f := dedupBytes(key)
	return b, string(f[:])
}

// dedupBytes is dedupSlot with the field as bytes.
func dedupBytes(key string) (bucket uint64, field [4]byte) {
	s := keyHash(key)
	binary.BigEndian.PutUint32(field[:], uint32(s>>32))
	return s % dedupBuckets, field
}

// readData reads the records of seqs with one HMGET per d bucket, in one
// round trip; records missing come back "".
func (q *Queue) readData(ctx context.Context, k keys, seqs []uint64) ([]string, error) {
	pipe := q.rdb.Pipeline()
	var cmds []*redis.SliceCmd
	for i := 0; i < len(seqs); {
		key, _ := k.dataKey(seqs[i])
		var fields []string
		j := i
		for ; j < len(seqs); j++ {
			kj, f := k.dataKey(seqs[j])
			if kj != key {
				break
			}
			fields = append(fields, f)
		}
		cmds = append(cmds, pipe.HMGet(ctx, key, fields...))
		i = j
	}
	if len(cmds) == 0 {
		return nil, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]string, 0, len(seqs))
	for _, c := range cmds {
		for _, v := range c.Val() {
			out = append(out, str(v))
		}
	}
	return out, nil
}

// campaignInfo is what does not change of a campaign: read once.
type campaignInfo struct {
	list   string
	layout string
	// base is the campaign's Created in Unix nanoseconds (0 if unset):
	// the records hold Enqueued as the time since (see encodeData).
	base int64
}

// info returns campaign id's suppression list and layout.
func (q *Queue) info(ctx context.Context, id string) (campaignInfo, error) {
	if v, ok := q.lists.Load(id); ok {
		return v.(campaignInfo), nil
	}
	c, lay, err := q.campaign(ctx, id)
	if err != nil {
		return campaignInfo{}, err
	}
	ci := campaignInfo{list: c.List, layout: lay}
	if !c.Created.IsZero() {
		ci.base = c.Created.UnixNano()
	}
	q.lists.Store(id, ci)
	return ci, nil
}

// current returns an error unless campaign id is stored in this layout.
func (q *Queue) current(ctx context.Context, id string) error {
	ci, err := q.info(ctx, id)
	if err != nil {
		return err
	}
	if ci.layout != layout {
		return layoutError(id, ci.layout)
	}
	return nil
}

// encodeData is a job's immutable record (layout 2):
//
//	flags    1 byte: bit 0 set when Key is Email in ASCII lower case (not
//	         stored); bit 1 set when Enqueued is zero (not stored)
//	at       1 byte: 1 + the index of Email among Fields (not stored
//	         there), or 0
//	Email    uvarint length, bytes
//	Key      uvarint length, bytes (only without bit 0)
//	Enqueued zig-zag varint, nanoseconds since base, the campaign's
//	         Created (a planned job's Enqueued is its campaign's Created,
//	         or a little later: one byte or a few, not nine)
//	Fields   uvarint count, then each: uvarint length, bytes (without
//	         the one at)
//
// The scripts read the key at the front (keyOf in Lua).
func encodeData(j queue.Job, base int64) string {
	return string(appendData(nil, j, base))
}

// appendData appends j's record (encodeData) to b.
func appendData(b []byte, j queue.Job, base int64) []byte {
	var flags byte
	if asciiLower(j.Email) == j.Key {
		flags = 1
	}
	if j.Enqueued.IsZero() {
		flags |= 2
	}
	at := -1
	for i, f := range j.Fields {
		if i < 255 && f == j.Email {
			at = i
			break
		}
	}
	b = append(b, flags, byte(at+1))
	b = appendString(b, j.Email)
	if flags&1 == 0 {
		b = appendString(b, j.Key)
	}
	if flags&2 == 0 {
		b = binary.AppendVarint(b, j.Enqueued.UnixNano()-base)
	}
	n := len(j.Fields)
	if at >= 0 {
		n--
	}
	b = binary.AppendUvarint(b, uint64(n))
	for i, f := range j.Fields {
		if i != at {
			b = appendString(b, f)
		}
	}
	return b
}

// asciiLower is s in lower case if it is ASCII (as Lua's string.lower
// does it in Redis), else "\xff" (no key equals it).
func asciiLower(s string) string {
	lower := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return "\xff"
		}
		if 'A' <= c && c <= 'Z' {
			lower = false
		}
	}
	if lower {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errCorrupt = errors.New("redisq: corrupt job record")

func decodeData(s string, base int64) (queue.Job, error) {
	// Substrings of s, not copies where it can.
	var j queue.Job
	if len(s) < 2 {
		return j, errCorrupt
	}
	flags, at := s[0], int(s[1])-1
	s = s[2:]
	next := func() (string, bool) {
		l, n := uvarint(s)
		if n <= 0 || l > uint64(len(s)-n) {
			return "", false
		}
		v := s[n : n+int(l)]
		s = s[n+int(l):]
		return v, true
	}
	var ok bool
	if j.Email, ok = next(); !ok {
		return j, errCorrupt
	}
	if flags&1 != 0 {
		j.Key = asciiLower(j.Email)
	} else if j.Key, ok = next(); !ok {
		return j, errCorrupt
	}
	if flags&2 == 0 {
		ux, n := uvarint(s)
		if n <= 0 {
			return j, errCorrupt
		}
		s = s[n:]
		j.Enqueued = time.Unix(0, base+(int64(ux>>1)^-int64(ux&1))) // binary.Varint's zig-zag
	}
	cnt, n := uvarint(s)
	if n <= 0 || cnt > uint64(len(s)) {
		return j, errCorrupt
	}
	s = s[n:]
	total := int(cnt)
	if at >= 0 {
		total++
		if at >= total {
			return j, errCorrupt
		}
	}
	j.Fields = make([]string, total)
	for i := range j.Fields {
		if i == at {
			j.Fields[i] = j.Email
			continue
		}
		if j.Fields[i], ok = next(); !ok {
			return j, errCorrupt
		}
	}
	return j, nil
}

// uvarint is binary.Uvarint on a string.
func uvarint(s string) (uint64, int) {
	var x uint64
	var shift uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		b := s[i]
		if b < 0x80 {
			if i == binary.MaxVarintLen64-1 && b > 1 {
				return 0, -(i + 1) // overflow
			}
			return x | uint64(b)<<shift, i + 1
		}
		x |= uint64(b&0x7f) << shift
		shift += 7
	}
	return 0, 0
}

// luaData defines, for the scripts, pre (the campaign's key prefix,
// from meta: KEYS[1]), keyOf (the key of a record, as decodeData reads
// it), and readData (the records of a list of seqs, one HMGET per d
// bucket; false where there is none).
const luaData = `
local pre = string.sub(KEYS[1], 1, -5)
local function uv(v, i)
  local x, m = 0, 1
  while true do
    local b = string.byte(v, i)
    i = i + 1
    if b < 128 then return x + b * m, i end
    x = x + (b - 128) * m
    m = m * 128
  end
end
local function keyOf(v)
  local l, i = uv(v, 3)
  local e = string.sub(v, i, i + l - 1)
  if string.byte(v, 1) % 2 == 1 then return string.lower(e) end
  local l2, j = uv(v, i + l)
  return string.sub(v, j, j + l2 - 1)
end
local function dkey(seq)
  local s = tonumber(seq)
  local lo = s % ` + dataBucketLua + `
  return pre .. 'd:' .. ((s - lo) / ` + dataBucketLua + `), lo
end
local function readData(seqs)
  local out, i, k = {}, 1, #seqs
  while i <= k do
    local b = dkey(seqs[i])
    local fs, j = {}, i
    while j <= k do
      local bj, f = dkey(seqs[j])
      if bj ~= b then break end
      fs[#fs + 1] = f
      j = j + 1
    end
    local v = redis.call('HMGET', b, unpack(fs))
    for x = 1, #v do out[i + x - 1] = v[x] end
    i = j
  end
  return out
end
`
