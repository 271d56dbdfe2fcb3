package recipients

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Stamp identifies the content of a recipients file: its size and SHA-256.
// A campaign keeps the stamp of the file it was planned from, so that a
// run on a file that changed since can say so.
type Stamp struct {
	Size int64
	Sum  [sha256.Size]byte
}

// String is the stamp's stored form: "sha256:<hex> size:<bytes>".
func (s Stamp) String() string {
	return fmt.Sprintf("sha256:%x size:%d", s.Sum, s.Size)
}

// ParseStamp reads the form String writes.
func ParseStamp(v string) (Stamp, error) {
	var s Stamp
	sum, size, ok := strings.Cut(v, " size:")
	hexSum, found := strings.CutPrefix(sum, "sha256:")
	b, err := hex.DecodeString(hexSum)
	n, nerr := strconv.ParseInt(size, 10, 64)
	if !ok || !found || err != nil || len(b) != sha256.Size || nerr != nil || n < 0 {
		return s, fmt.Errorf("recipients: %q is not a file stamp", v)
	}
	copy(s.Sum[:], b)
	s.Size = n
	return s, nil
}

// Describe is the stamp for people: "1234 bytes, sha256 3a7bd3e2360a".
func (s Stamp) Describe() string {
	return fmt.Sprintf("%d bytes, sha256 %x", s.Size, s.Sum[:6])
}

// stamper hashes and counts what passes through it.
type stamper struct {
	h hash.Hash
	n int64
}

func newStamper() *stamper { return &stamper{h: sha256.New()} }

func (s *stamper) Write(p []byte) (int, error) {
	s.n += int64(len(p))
	return s.h.Write(p)
}

func (s *stamper) stamp() Stamp {
	st := Stamp{Size: s.n}
	s.h.Sum(st.Sum[:0])
	return st
}

// Stamping returns a reader of r that stamps what passes through it, and
// the function that gives the stamp of what was read so far: read to its
// end, the stamp of r.
func Stamping(r io.Reader) (io.Reader, func() Stamp) {
	s := newStamper()
	return io.TeeReader(r, s), s.stamp
}

// StampOf reads r to its end and returns the stamp of what it read.
func StampOf(r io.Reader) (Stamp, error) {
	s := newStamper()
	_, err := io.Copy(s, r)
	return s.stamp(), err
}

// Check reads the whole of r, a recipients file in enc, as Reader does, and
// returns its stamp, or the first problem that makes the file unreadable:
// a header without an email column, a row that cannot be split
// (*SyntaxError), a line not valid in enc (*EncodingError), a read failure.
// Rows that are merely not sendable (*RowError) are not its concern. Run it
// before planning, so that nothing is planned from a file that turns out
// unreadable halfway.
//
// A UTF-8 file without a quote anywhere, given as an io.ReadSeeker, is
// read once without being split: no row of it can fail to split, so only
// its header is parsed and its bytes checked as UTF-8. Any other file,
// and such a file once a quote or a byte that is not UTF-8 turns up, is
// read again from the start and split row by row, which finds the line.
func Check(r io.Reader, enc Encoding) (Stamp, error) {
	if rs, ok := r.(io.ReadSeeker); ok && enc.IsUTF8() {
		st, plain, err := checkPlain(rs)
		if err != nil || plain {
			return st, err
		}
		if _, err := rs.Seek(0, io.SeekStart); err != nil {
			return Stamp{}, err
		}
	}
	return checkRows(r, enc)
}

// checkPlain stamps rs and says whether it is plain: UTF-8 with no quote,
// its header readable. When it is not plain, rs is left anywhere and the
// stamp is zero.
func checkPlain(rs io.ReadSeeker) (Stamp, bool, error) {
	s := newStamper()
	buf := make([]byte, 0, 256<<10)
	for {
		n, err := rs.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		s.Write(buf[len(buf)-n:])
		if bytes.IndexByte(buf[len(buf)-n:], '"') >= 0 {
			return Stamp{}, false, nil
		}
		if err == io.EOF {
			if !utf8.Valid(buf) {
				return Stamp{}, false, nil
			}
			break
		}
		if err != nil {
			return Stamp{}, false, err
		}
		// Whole lines are checked; the rest waits for the next read (a
		// newline never sits inside a UTF-8 sequence).
		if nl := bytes.LastIndexByte(buf, '\n'); nl >= 0 {
			if !utf8.Valid(buf[:nl+1]) {
				return Stamp{}, false, nil
			}
			buf = buf[:copy(buf, buf[nl+1:])]
		}
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf))
		}
	}
	if _, err := rs.Seek(0, io.SeekStart); err != nil {
		return Stamp{}, false, err
	}
	if _, err := NewEncodedReader(rs, UTF8); err != nil {
		return Stamp{}, true, err
	}
	return s.stamp(), true, nil
}

// checkRows is Check reading r row by row.
func checkRows(r io.Reader, enc Encoding) (Stamp, error) {
	s := newStamper()
	tee := io.TeeReader(r, s)
	rd, err := NewEncodedReader(tee, enc)
	if err != nil {
		return Stamp{}, err
	}
	for {
		_, err := rd.record()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Stamp{}, err
		}
	}
	// The reader stopped at the end of its input; hash anything a
	// decoder left unread.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return Stamp{}, err
	}
	return s.stamp(), nil
}
