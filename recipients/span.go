package recipients

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

// Span is where a row's record lies in a UTF-8 recipients file, so that
// a queue can keep the place instead of the fields, and the row can be
// read back when its message is sent (ReadSpan).
type Span struct {
	Offset int64  // of the record's first byte (after blank lines skipped before it, if any)
	Size   int    // bytes, up to and including the line ending; 0: no span
	Sum    uint32 // CRC-32C of those bytes
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SpanSum is the checksum a Span keeps of its bytes.
func SpanSum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// recorder keeps the bytes read through it from base on, so that the
// reader can checksum each record's bytes; forget drops what is done with.
type recorder struct {
	r    io.Reader
	base int64 // file offset of buf[0]
	buf  []byte
}

func (rc *recorder) Read(p []byte) (int, error) {
	n, err := rc.r.Read(p)
	rc.buf = append(rc.buf, p[:n]...)
	return n, err
}

// bytes returns the bytes at [from, to) of the file; nil when they are no
// longer (or not yet) kept.
func (rc *recorder) bytes(from, to int64) []byte {
	if from < rc.base || to > rc.base+int64(len(rc.buf)) || from > to {
		return nil
	}
	return rc.buf[from-rc.base : to-rc.base]
}

// forget drops the bytes before off. It moves the bytes kept down only
// once at least half of the buffer is done with, so that each byte is
// copied about once, however short the records.
func (rc *recorder) forget(off int64) {
	if d := off - rc.base; d > 0 && d <= int64(len(rc.buf)) && 2*d >= int64(len(rc.buf)) {
		rc.buf = rc.buf[:copy(rc.buf, rc.buf[d:])]
		rc.base = off
	}
}

// ErrSpanChanged says a row read back through ReadSpan is not the row the
// span was taken of.
var ErrSpanChanged = errors.New("the row is not the one planned: the file changed")

// ReadSpan parses the record at sp, given its bytes b (sp.Size of them,
// read from sp.Offset), as Reader.Next did when the span was taken: the
// fields in header order, the email field (at emailIndex) trimmed. It
// returns ErrSpanChanged when b is not what the span was taken of, or is
// not one record of width fields.
func ReadSpan(b []byte, sp Span, width, emailIndex int) ([]string, error) {
	if len(b) != sp.Size || SpanSum(b) != sp.Sum {
		return nil, ErrSpanChanged
	}
	rec, ok := plainRecord(b, width)
	if !ok {
		cr := csv.NewReader(bytes.NewReader(b))
		cr.FieldsPerRecord = -1
		var err error
		rec, err = cr.Read()
		if err != nil || len(rec) != width {
			return nil, fmt.Errorf("%w (%v)", ErrSpanChanged, err)
		}
		if _, err := cr.Read(); err != io.EOF {
			return nil, ErrSpanChanged
		}
	}
	if emailIndex < 0 || emailIndex >= width {
		return nil, ErrSpanChanged
	}
	rec[emailIndex] = strings.TrimSpace(rec[emailIndex])
	return rec, nil
}

// plainRecord splits a record without quotes or carriage returns (the
// common case) as encoding/csv would, without its reader's buffers: one
// line, its line ending dropped, cut at every comma. ok is false for any
// other record, or one not of width fields; csv reads those.
func plainRecord(b []byte, width int) (rec []string, ok bool) {
	line := b
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
		if n > 1 && line[n-2] == '\r' {
			line = line[:n-2]
		}
	}
	if len(line) == 0 || bytes.IndexAny(line, "\"\r\n") >= 0 || bytes.Count(line, []byte{','}) != width-1 {
		return nil, false
	}
	s := string(line)
	rec = make([]string, 0, width)
	for {
		i := strings.IndexByte(s, ',')
		if i < 0 {
			return append(rec, s), true
		}
		rec = append(rec, s[:i])
		s = s[i+1:]
	}
}
