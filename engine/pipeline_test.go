package engine

import (
	"bufio"
	"bytes"
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
