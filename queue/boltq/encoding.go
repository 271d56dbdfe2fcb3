package boltq

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/heraldmail/herald/queue"
)

func be(v uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v) }

func u64(b []byte) uint64 {
	if len(b) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// Times are stored as unix nanoseconds; the zero time as 0.
func encodeTime(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixNano())
}

func decodeTime(v uint64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(v))
}

// timerKey orders timers by due time, then job.
func timerKey(at time.Time, seq uint64) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 16), encodeTime(at))
	return binary.BigEndian.AppendUint64(k, seq)
}

func encodeCounts(c queue.Counts) []byte {
	b := make([]byte, 0, 7*8)
	for _, v := range []int64{c.Pending, c.Leased, c.Sent, c.Retry, c.Failed, c.Suppressed, c.Cancelled} {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	return b
}

func decodeCounts(b []byte) queue.Counts {
	if len(b) < 7*8 {
		return queue.Counts{}
	}
	v := func(i int) int64 { return int64(binary.BigEndian.Uint64(b[i*8:])) }
	return queue.Counts{Pending: v(0), Leased: v(1), Sent: v(2), Retry: v(3), Failed: v(4), Suppressed: v(5), Cancelled: v(6)}
}

// A job record has two encodings. The first, written by older versions,
// is: the state byte, then varints and length-prefixed strings (Attempts,
// Lease, At, Enqueued, Key, Email, Provider, Reply, Fields). The second
// sets recV2 in the first byte, beside the state, and leaves out what the
// flags say is known: Email when it is Key, Enqueued when it is the
// campaign's (keyEnqueued: every job a plan adds has the same), and
// Fields when the job has a place in the recipients file (recRow), which
// it keeps instead (offset, size, a 4-byte checksum). Both are read; only
// the second is written. Seq is the record's key and not repeated.
const (
	recState    = 0x0f // the state, in either encoding
	recRow      = 0x10 // a queue.RowRef, no Fields
	recEnqueued = 0x20 // Enqueued is the campaign's
	recEmail    = 0x40 // Email is Key
	recV2       = 0x80
)

// stateOf reads the state of an encoded job.
func stateOf(v []byte) queue.State { return queue.State(v[0] & recState) }

// encodeJob appends j's record to b; enqueued is the campaign's Enqueued
// (encodeTime; 0: none).
func encodeJob(b []byte, j *queue.Job, enqueued uint64) []byte {
	flags := byte(j.State)&recState | recV2
	enq := encodeTime(j.Enqueued)
	if enq == enqueued && enq != 0 {
		flags |= recEnqueued
	}
	if j.Email == j.Key {
		flags |= recEmail
	}
	if j.Row.Size > 0 {
		flags |= recRow
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(j.Attempts))
	b = binary.AppendUvarint(b, j.Lease)
	b = binary.AppendUvarint(b, encodeTime(j.At))
	if flags&recEnqueued == 0 {
		b = binary.AppendUvarint(b, enq)
	}
	b = appendString(b, j.Key)
	if flags&recEmail == 0 {
		b = appendString(b, j.Email)
	}
	b = appendString(b, j.Provider)
	b = appendString(b, j.Reply)
	if flags&recRow != 0 {
		b = binary.AppendUvarint(b, j.Row.Offset)
		b = binary.AppendUvarint(b, uint64(j.Row.Size))
		return binary.LittleEndian.AppendUint32(b, j.Row.Sum)
	}
	b = binary.AppendUvarint(b, uint64(len(j.Fields)))
	for _, f := range j.Fields {
		b = appendString(b, f)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errCorrupt = errors.New("queue: corrupt job record")

// recHead is the part of a record before the Key, in either encoding.
type recHead struct {
	flags               byte // 0 for the first encoding: everything is there
	attempts, lease, at uint64
	enqueued            uint64 // unless flags has recEnqueued
}

// readHead reads a record's head; d is left at the Key. A record too
// short for its head is corrupt.
func readHead(b []byte) (h recHead, d decoder, err error) {
	if len(b) == 0 {
		return h, d, errCorrupt
	}
	h.flags = b[0]
	if h.flags&recV2 == 0 {
		h.flags = 0
	}
	d = decoder{b: b[1:]}
	h.attempts, h.lease, h.at = d.uvarint(), d.uvarint(), d.uvarint()
	if h.flags&recEnqueued == 0 {
		h.enqueued = d.uvarint()
	}
	return h, d, d.err
}

// decodeJob reads a record in either encoding; enqueued is the
// campaign's Enqueued (encodeTime).
func decodeJob(b []byte, enqueued uint64) (queue.Job, error) {
	var j queue.Job
	h, d, err := readHead(b)
	if err != nil {
		return j, errCorrupt
	}
	flags := h.flags
	j.State = stateOf(b)
	j.Attempts = int(h.attempts)
	j.Lease = h.lease
	j.At = decodeTime(h.at)
	if flags&recEnqueued != 0 {
		j.Enqueued = decodeTime(enqueued)
	} else {
		j.Enqueued = decodeTime(h.enqueued)
	}
	j.Key = d.string()
	if flags&recEmail != 0 {
		j.Email = j.Key
	} else {
		j.Email = d.string()
	}
	j.Provider = d.string()
	j.Reply = d.string()
	if flags&recRow != 0 {
		j.Row.Offset = d.uvarint()
		size := d.uvarint()
		j.Row.Size = uint32(size)
		if size == 0 || size > 1<<32-1 || len(d.b) < 4 {
			d.err = errCorrupt
		} else {
			j.Row.Sum = binary.LittleEndian.Uint32(d.b)
		}
	} else if n := d.uvarint(); d.err == nil && n <= uint64(len(d.b)) {
		j.Fields = make([]string, n)
		for i := range j.Fields {
			j.Fields[i] = d.string()
		}
	} else {
		d.err = errCorrupt // more fields than bytes left: cut short
	}
	if d.err != nil {
		return j, errCorrupt
	}
	return j, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.err = errCorrupt
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errCorrupt
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
