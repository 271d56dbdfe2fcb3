package recipients

import (
	"errors"
	"hash/maphash"
	"io"
)

// BlockSize is the size of the blocks Checked sums a file in: what a
// Checked reader holds back until it has compared it.
const BlockSize = 256 << 10

// ErrChanged is a file read through a Checked reader that is not the file
// checked: a block differs, or it ends elsewhere.
var ErrChanged = errors.New("the file is not the one checked: it changed")

// Checked is what Check took of a file: its stamp, and a sum of
// each of its blocks, kept in memory only (the sums are of one process).
type Checked struct {
	Stamp Stamp
	seed  maphash.Seed
	sums  []uint64
}

// Reader reads r, the file checked again, handing out no byte of a block
// before the whole block was read and found as it was checked; a block
// that is not, or a file that ends elsewhere, is ErrChanged. A plan that
// reads the file through it plans no row that was not in the file
// checked, however the file changes while it is read.
func (c *Checked) Reader(r io.Reader) io.Reader {
	return &checkedReader{r: r, c: c, buf: make([]byte, 0, BlockSize)}
}

type checkedReader struct {
	r    io.Reader
	c    *Checked
	buf  []byte // the block being handed out, from off
	off  int
	next int   // blocks read
	read int64 // bytes read
	err  error // once buf is handed out
}

func (cr *checkedReader) Read(p []byte) (int, error) {
	if cr.off == len(cr.buf) {
		if cr.err != nil {
			return 0, cr.err
		}
		cr.fill()
		if cr.off == len(cr.buf) {
			return 0, cr.err
		}
	}
	n := copy(p, cr.buf[cr.off:])
	cr.off += n
	return n, nil
}

// fill reads and compares the next block.
func (cr *checkedReader) fill() {
	cr.buf, cr.off = cr.buf[:cap(cr.buf)], 0
	n, err := io.ReadFull(cr.r, cr.buf)
	cr.buf = cr.buf[:n]
	switch err {
	case nil:
	case io.EOF, io.ErrUnexpectedEOF:
		cr.err = io.EOF // after this block, the last
	default:
		cr.buf, cr.err = cr.buf[:0], err
		return
	}
	if n > 0 {
		if cr.next >= len(cr.c.sums) || maphash.Bytes(cr.c.seed, cr.buf) != cr.c.sums[cr.next] {
			cr.buf, cr.err = cr.buf[:0], ErrChanged
			return
		}
		cr.next++
		cr.read += int64(n)
	}
	if cr.err == io.EOF && (cr.next != len(cr.c.sums) || cr.read != cr.c.Stamp.Size) {
		cr.buf, cr.err = cr.buf[:0], ErrChanged // cut short
	}
}
