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

// A job record: state, then varints and length-prefixed strings. Seq is the
// record's key and not repeated.
func encodeJob(b []byte, j *queue.Job) []byte {
	b = append(b, byte(j.State))
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

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errCorrupt = errors.New("queue: corrupt job record")

func decodeJob(b []byte) (queue.Job, error) {
	var j queue.Job
	if len(b) == 0 {
		return j, errCorrupt
	}
	d := decoder{b: b[1:]}
	j.State = queue.State(b[0])
	j.Attempts = int(d.uvarint())
	j.Lease = d.uvarint()
	j.At = decodeTime(d.uvarint())
	j.Enqueued = decodeTime(d.uvarint())
	j.Key = d.string()
	j.Email = d.string()
	j.Provider = d.string()
	j.Reply = d.string()
	n := d.uvarint()
	if d.err == nil && n <= uint64(len(d.b)) {
		j.Fields = make([]string, n)
		for i := range j.Fields {
			j.Fields[i] = d.string()
		}
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
