package recipients

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestCheckedReader: a file read through its Checked reader comes back
// whole when it is the file checked, in whatever pieces the reads ask for;
// a file changed anywhere (a byte, cut short, added to, emptied) is
// ErrChanged, and no byte of the block that changed, or after it, is
// handed out before.
func TestCheckedReader(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("email,name\n")
	for i := 0; b.Len() < 3*BlockSize+BlockSize/3; i++ {
		fmt.Fprintf(&b, "u%d@example.com,Name %d\n", i, i)
	}
	orig := b.String()
	exact := orig[:2*BlockSize] // a file of whole blocks
	for name, in := range map[string]string{"blocks and a part": orig, "whole blocks": exact, "less than a block": orig[:100]} {
		c, err := Check(strings.NewReader(in), UTF8)
		if err != nil {
			t.Fatal(name, err)
		}
		if c.Stamp.Size != int64(len(in)) {
			t.Fatalf("%s: stamp of %d bytes, want %d", name, c.Stamp.Size, len(in))
		}
		for _, r := range []io.Reader{strings.NewReader(in), iotest.OneByteReader(strings.NewReader(in)), iotest.HalfReader(strings.NewReader(in))} {
			back, err := io.ReadAll(c.Reader(r))
			if err != nil || string(back) != in {
				t.Fatalf("%s read again: %d bytes of %d, %v", name, len(back), len(in), err)
			}
		}
	}

	c, err := Check(strings.NewReader(orig), UTF8)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(at int) string { return orig[:at] + "X" + orig[at+1:] }
	exactly, err := Check(strings.NewReader(exact), UTF8)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := io.ReadAll(exactly.Reader(strings.NewReader(exact + "z@example.com,Z\n"))); !errors.Is(err, ErrChanged) || len(back) != len(exact) {
		t.Errorf("a file of whole blocks added to: %d bytes, %v", len(back), err)
	}
	// A read that fails mid-block is that error, with nothing of the block.
	broken := io.MultiReader(strings.NewReader(orig[:BlockSize+100]), iotest.ErrReader(io.ErrClosedPipe))
	if back, err := io.ReadAll(c.Reader(broken)); !errors.Is(err, io.ErrClosedPipe) || len(back) != BlockSize {
		t.Errorf("a read that fails: %d bytes, %v", len(back), err)
	}
	for name, tc := range map[string]struct {
		in    string
		clean int // bytes before the first block that differs
	}{
		"a byte in the first block":   {flip(20), 0},
		"a byte in the third block":   {flip(2*BlockSize + 5), 2 * BlockSize},
		"a byte in the last block":    {flip(len(orig) - 3), 3 * BlockSize},
		"the last byte of a block":    {flip(BlockSize - 1), 0},
		"cut short within a block":    {orig[:BlockSize+10], BlockSize},
		"cut at a block's end":        {orig[:2*BlockSize], 2 * BlockSize},
		"added to":                    {orig + "late@example.com,Late\n", 3 * BlockSize},
		"added to past a block's end": {orig + strings.Repeat("z@example.com,Z\n", BlockSize/8), 3 * BlockSize},
		"emptied":                     {"", 0},
	} {
		back, err := io.ReadAll(c.Reader(strings.NewReader(tc.in)))
		if !errors.Is(err, ErrChanged) {
			t.Errorf("%s: %v, want ErrChanged", name, err)
		}
		if len(back) != tc.clean || !strings.HasPrefix(orig, string(back)) {
			t.Errorf("%s: %d bytes handed out before the error, want the %d before the block that changed, as checked", name, len(back), tc.clean)
		}
	}
}

// stampOrZero is c's stamp, zero for none (Check failed).
func (c *Checked) stampOrZero() Stamp {
	if c == nil {
		return Stamp{}
	}
	return c.Stamp
}
