package engine

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/textproto"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/heraldmail/herald/outcome"
)

// chunked reads from b in pieces of the sizes in cuts, in turn.
type chunked struct {
	b    []byte
	cuts []byte
	i    int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := len(c.b)
	if len(c.cuts) > 0 {
		n = int(c.cuts[c.i%len(c.cuts)]) + 1
		c.i++
	}
	n = min(n, len(p), len(c.b))
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

// TestReplyBound: replies within the bounds read as they are, through
// textproto as go-mail reads them; past a bound the read fails with the
// protocol error and textproto never sees a piece of the long line as a
// line of its own.
func TestReplyBound(t *testing.T) {
	t.Parallel()
	long := "250 " + strings.Repeat("x", outcome.MaxReplyLine) + "\r\n"
	many := strings.Repeat("250-x\r\n", outcome.MaxReplyLines-1) + "250 last\r\n"
	tests := []struct {
		name string
		in   string
		want []int // the codes read before the end
		err  error // the error that ends the reading
	}{
		{"plain", "220 hi\r\n250-a\r\n250 b\r\n", []int{220, 250}, io.EOF},
		{"longest line allowed", "220 " + strings.Repeat("x", outcome.MaxReplyLine-4) + "\r\n", []int{220}, io.EOF},
		{"most lines allowed", many, []int{250}, io.EOF},
		{"line too long", "220 hi\r\n" + long + "250 after\r\n", []int{220}, outcome.ErrReplyLineTooLong},
		{"endless line", "220 " + strings.Repeat("x", 1<<20), nil, outcome.ErrReplyLineTooLong},
		{"too many lines", "220 hi\r\n250-x\r\n" + many, []int{220}, outcome.ErrReplyTooLong},
		{"piece of a line, then the end", "220 hi\r\n25", []int{220}, io.EOF},
	}
	for _, tt := range tests {
		for _, cuts := range [][]byte{nil, {0}, {6, 200, 3}} {
			b := &replyBound{r: &chunked{b: []byte(tt.in), cuts: cuts}}
			tp := textproto.NewReader(bufio.NewReader(b))
			var got []int
			var err error
			for {
				var code int
				if code, _, err = tp.ReadResponse(0); err != nil {
					break
				}
				got = append(got, code)
			}
			if !slicesEqual(got, tt.want) || !errors.Is(err, tt.err) {
				t.Errorf("%s (cuts %v): codes %v, %v; want %v, %v", tt.name, cuts, got, err, tt.want, tt.err)
			}
			if cap(b.buf) > boundBuf {
				t.Errorf("%s: buffered %d octets", tt.name, cap(b.buf))
			}
		}
	}
	// A read that fails mid-line (a timeout) passes the error, not the
	// piece of the line: textproto would read "2" as a garbled reply.
	b := &replyBound{r: iotest.TimeoutReader(&chunked{b: []byte("220 hi\r\n2"), cuts: []byte{7, 0}})}
	tp := textproto.NewReader(bufio.NewReader(b))
	if code, _, err := tp.ReadResponse(220); code != 220 || err != nil {
		t.Fatalf("first reply: %d %v", code, err)
	}
	if _, _, err := tp.ReadResponse(220); !errors.Is(err, iotest.ErrTimeout) {
		t.Fatalf("a read that timed out mid-line: %v", err)
	}
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzReplyBound: whatever a server sends, cut however, the reader never
// panics, never holds more than its bound, passes on only complete lines
// within the bounds, exactly the input's up to the first fault, and fails
// with the protocol error when and only when the input breaks a bound.
func FuzzReplyBound(f *testing.F) {
	f.Add([]byte("220 hi\r\n250-a\r\n250 b\r\n"), []byte{3})
	f.Add([]byte("250 "+strings.Repeat("x", outcome.MaxReplyLine+10)), []byte{200})
	f.Add([]byte(strings.Repeat("250-x\r\n", outcome.MaxReplyLines+1)), []byte{})
	f.Add([]byte("\n\n-\r\n2-\n250-"), []byte{0, 1})
	f.Fuzz(func(t *testing.T, in, cuts []byte) {
		b := &replyBound{r: &chunked{b: in, cuts: cuts}}
		var out bytes.Buffer
		p := make([]byte, 97)
		var err error
		for {
			var n int
			n, err = b.Read(p)
			out.Write(p[:n])
			if cap(b.buf) > boundBuf {
				t.Fatalf("holds %d octets", cap(b.buf))
			}
			if err != nil {
				break
			}
		}
		got := out.Bytes()
		if !bytes.HasPrefix(in, got) || (len(got) > 0 && got[len(got)-1] != '\n') {
			t.Fatalf("passed on %q of %q", got, in)
		}
		// The reference: the first fault of the input, line by line.
		var fault error
		cont, done := 0, 0
		rest := in
		for {
			i := bytes.IndexByte(rest, '\n')
			line := rest
			if i >= 0 {
				line = rest[:i]
			}
			if len(line) > outcome.MaxReplyLine+1 {
				fault = outcome.ErrReplyLineTooLong
				break
			}
			if i < 0 {
				break
			}
			if len(line) >= 4 && line[3] == '-' {
				if cont++; cont >= outcome.MaxReplyLines {
					fault = outcome.ErrReplyTooLong
					break
				}
			} else {
				cont = 0
			}
			done += i + 1
			rest = rest[i+1:]
		}
		switch {
		case fault != nil && !errors.Is(err, fault):
			t.Fatalf("want %v, got %v", fault, err)
		case fault == nil && err != io.EOF:
			t.Fatalf("want EOF, got %v", err)
		case len(got) != done:
			t.Fatalf("passed on %d octets, want the %d before the fault or the last line end", len(got), done)
		}
	})
}
