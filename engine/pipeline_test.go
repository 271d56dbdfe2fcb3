package engine

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestDotWriter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []string // written in these pieces
		want string
	}{
		{[]string{"a\r\nb\r\n"}, "a\r\nb\r\n.\r\n"},
		{[]string{".leading\r\n..two\r\nmid.dot\r\n"}, "..leading\r\n...two\r\nmid.dot\r\n.\r\n"},
		{[]string{"bare\nlf\n"}, "bare\r\nlf\r\n.\r\n"},
		{[]string{"split\r", "\n.x\r\n"}, "split\r\n..x\r\n.\r\n"},
		{[]string{"line\r\n", ".", "dot after a write boundary"}, "line\r\n..dot after a write boundary\r\n.\r\n"},
		{[]string{"no final newline"}, "no final newline\r\n.\r\n"},
		{[]string{""}, ".\r\n"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		dw := dotWriter{w: bw, bol: true}
		for _, piece := range tt.in {
			if n, err := dw.Write([]byte(piece)); err != nil || n != len(piece) {
				t.Fatalf("%q: wrote %d, %v", piece, n, err)
			}
		}
		if err := dw.end(); err != nil {
			t.Fatal(err)
		}
		if buf.Len() != 0 {
			t.Fatalf("%q: the writer flushed before the caller did", tt.in)
		}
		bw.Flush()
		if got := buf.String(); got != tt.want {
			t.Errorf("%q: got %q, want %q", strings.Join(tt.in, "|"), got, tt.want)
		}
	}
}

// TestDotWriterRandom: content of dots, CRs, LFs and letters, written in
// random pieces, comes out as a byte-at-a-time reference stuffs it.
func TestDotWriterRandom(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 5))
	for range 2000 {
		in := make([]byte, rng.IntN(60))
		for i := range in {
			in[i] = ".\r\nx"[rng.IntN(4)]
		}
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		dw := dotWriter{w: bw, bol: true}
		for rest := in; len(rest) > 0; {
			k := 1 + rng.IntN(len(rest))
			if n, err := dw.Write(rest[:k]); err != nil || n != k {
				t.Fatalf("wrote %d of %d: %v", n, k, err)
			}
			rest = rest[k:]
		}
		dw.end()
		bw.Flush()
		if want := stuffReference(in); buf.String() != want {
			t.Fatalf("%q: got %q, want %q", in, buf.String(), want)
		}
	}
}

// stuffReference is the dot-stuffing and CRLF rule, one byte at a time.
func stuffReference(in []byte) string {
	var out []byte
	bol, cr := true, false
	for _, c := range in {
		if bol && c == '.' {
			out = append(out, '.')
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
	return string(append(out, ".\r\n"...))
}
