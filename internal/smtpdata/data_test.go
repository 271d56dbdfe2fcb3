package smtpdata

import (
	"math/rand/v2"
	"testing"
)

// TestStuff: the DATA content of a message, and the size of the message
// it carries (what the server receives: CRLF line ends, the last line's
// included, no stuffing).
func TestStuff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		size     int64
	}{
		{"a\r\nb\r\n", "a\r\nb\r\n.\r\n", 6},
		{".leading\r\n..two\r\nmid.dot\r\n", "..leading\r\n...two\r\nmid.dot\r\n.\r\n", 26},
		{"bare\nlf\n", "bare\r\nlf\r\n.\r\n", 10},
		{"split\r\n.x\r\n", "split\r\n..x\r\n.\r\n", 11},
		{"line\r\n.dot\r\n.", "line\r\n..dot\r\n..\r\n.\r\n", 15},
		{"no final newline", "no final newline\r\n.\r\n", 18},
		{".", "..\r\n.\r\n", 3},
		{"\n", "\r\n.\r\n", 2},
		{"", ".\r\n", 0},
	}
	for _, tt := range tests {
		got := Stuff([]byte(tt.in))
		if string(got) != tt.want {
			t.Errorf("%q: got %q, want %q", tt.in, got, tt.want)
		}
		if size := Size(got); size != tt.size {
			t.Errorf("%q: size %d, want %d", tt.in, size, tt.size)
		}
		wire, size := Content([]byte(tt.in))
		if string(wire) != tt.want || size != tt.size {
			t.Errorf("Content(%q) = %q, %d; want %q, %d", tt.in, wire, size, tt.want, tt.size)
		}
	}
}

// TestStuffRandom: content of dots, CRs, LFs and letters comes out as a
// byte-at-a-time reference stuffs it, and the input is left as it was.
func TestStuffRandom(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 5))
	for range 5000 {
		in := make([]byte, rng.IntN(60))
		for i := range in {
			in[i] = ".\r\nx"[rng.IntN(4)]
		}
		was := string(in)
		want, wantSize := stuffReference(in)
		wire, size := Content(append([]byte(nil), in...))
		if string(wire) != want || size != wantSize {
			t.Fatalf("Content(%q) = %q, %d; want %q, %d", in, wire, size, want, wantSize)
		}
		got := Stuff(in)
		if string(got) != want {
			t.Fatalf("%q: got %q, want %q", in, got, want)
		}
		if string(in) != was {
			t.Fatalf("stuff changed its input %q to %q", was, in)
		}
	}
}

// stuffReference is the dot-stuffing and CRLF rule, one byte at a time,
// and the size of the message the content carries (every byte but the
// stuffing dots and the final dot).
func stuffReference(in []byte) (wire string, size int64) {
	var out []byte
	bol, cr := true, false
	for _, c := range in {
		if bol && c == '.' {
			out = append(out, '.')
			size--
		}
		if c == '\n' && !cr {
			out = append(out, '\r')
		}
		out = append(out, c)
		bol, cr = c == '\n', c == '\r'
	}
	if !bol {
		out = append(out, '\r', '\n')
	}
	size += int64(len(out))
	return string(append(out, ".\r\n"...)), size
}
