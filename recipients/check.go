package recipients

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"hash/maphash"
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

// stamper hashes and counts what passes through it, the whole and each
// block of it (Checked).
type stamper struct {
	h      hash.Hash
	n      int64
	seed   maphash.Seed
	block  maphash.Hash // of the block being written
	blocks []uint64     // of the blocks written whole
}

func newStamper() *stamper {
	s := &stamper{h: sha256.New(), seed: maphash.MakeSeed()}
	s.block.SetSeed(s.seed)
	return s
}

func (s *stamper) Write(p []byte) (int, error) {
	n := len(p)
	s.h.Write(p)
	for len(p) > 0 {
		k := min(len(p), BlockSize-int(s.n%BlockSize))
		s.block.Write(p[:k])
		s.n += int64(k)
		p = p[k:]
		if s.n%BlockSize == 0 {
			s.blocks = append(s.blocks, s.block.Sum64())
			s.block.Reset()
		}
	}
	return n, nil
}

func (s *stamper) stamp() Stamp {
	st := Stamp{Size: s.n}
	s.h.Sum(st.Sum[:0])
	return st
}

// checked is what the stamper saw: its stamp and its blocks.
func (s *stamper) checked() *Checked {
	sums := s.blocks
	if s.n%BlockSize != 0 {
		sums = append(sums, s.block.Sum64()) // the last, short block
	}
	return &Checked{Stamp: s.stamp(), seed: s.seed, sums: sums}
}

// StampOf reads r to its end and returns the stamp of what it read.
func StampOf(r io.Reader) (Stamp, error) {
	s := newStamper()
	_, err := io.Copy(s, r)
	return s.stamp(), err
}

// Check reads the whole of r, a recipients file in enc, as Reader does, and
// returns its stamp with what a reader of the same file needs to tell, as
// it reads, that the file is still the one checked (Checked.Reader); or
// the first problem that makes the file unreadable:
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
func Check(r io.Reader, enc Encoding) (*Checked, error) {
	if rs, ok := r.(io.ReadSeeker); ok && enc.IsUTF8() {
		c, plain, err := checkPlain(rs)
		if err != nil || plain {
			return c, err
		}
		if _, err := rs.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
	}
	return checkRows(r, enc)
}

// checkPlain stamps rs and says whether it is plain: UTF-8 with no quote,
// its header readable. When it is not plain, rs is left anywhere and the
// result is nil.
func checkPlain(rs io.ReadSeeker) (*Checked, bool, error) {
	s := newStamper()
	buf := make([]byte, 0, 256<<10)
	for {
		n, err := rs.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		s.Write(buf[len(buf)-n:])
		if bytes.IndexByte(buf[len(buf)-n:], '"') >= 0 {
			return nil, false, nil
		}
		if err == io.EOF {
			if !utf8.Valid(buf) {
				return nil, false, nil
			}
			break
		}
		if err != nil {
			return nil, false, err
		}
		// Whole lines are checked; the rest waits for the next read (a
		// newline never sits inside a UTF-8 sequence).
		if nl := bytes.LastIndexByte(buf, '\n'); nl >= 0 {
			if !utf8.Valid(buf[:nl+1]) {
				return nil, false, nil
			}
			buf = buf[:copy(buf, buf[nl+1:])]
		}
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf))
		}
	}
	if _, err := rs.Seek(0, io.SeekStart); err != nil {
		return nil, false, err
	}
	if _, err := NewEncodedReader(rs, UTF8); err != nil {
		return nil, true, err
	}
	return s.checked(), true, nil
}

// checkRows is Check reading r row by row.
func checkRows(r io.Reader, enc Encoding) (*Checked, error) {
	s := newStamper()
	tee := io.TeeReader(r, s)
	rd, err := NewEncodedReader(tee, enc)
	if err != nil {
		return nil, err
	}
	for {
		_, err := rd.record()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	// The reader stopped at the end of its input; hash anything a
	// decoder left unread.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, err
	}
	return s.checked(), nil
}
