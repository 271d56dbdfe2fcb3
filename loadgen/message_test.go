package loadgen

import (
	"bytes"
	"testing"
	"time"
)

// unstuff is what a server makes of DATA content (RFC 5321, 4.5.2).
func unstuff(t *testing.T, wire []byte) []byte {
	t.Helper()
	if !bytes.HasSuffix(wire, []byte("\r\n.\r\n")) {
		t.Fatalf("content does not end with CRLF.CRLF: %q", wire[max(0, len(wire)-10):])
	}
	lines := bytes.SplitAfter(wire[:len(wire)-3], []byte("\r\n"))
	var out []byte
	for _, l := range lines {
		if bytes.HasPrefix(l, []byte(".")) {
			l = l[1:]
		}
		out = append(out, l...)
	}
	return out
}

func TestMessageSizeAndStuffing(t *testing.T) {
	t.Parallel()
	from := "bench@example.com"
	min := headerBytes(from)
	sizes := []int{2000, 100000, 1 << 20}
	for s := min; s < min+300; s++ {
		sizes = append(sizes, s)
	}
	for _, size := range sizes {
		m, err := newMessage(size, from, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if len(m.text) != size {
			t.Fatalf("size %d: message is %d bytes", size, len(m.text))
		}
		if got := unstuff(t, m.wire); !bytes.Equal(got, m.text) {
			t.Fatalf("size %d: unstuffed content differs from the message", size)
		}
		for i, l := range bytes.Split(m.text[:len(m.text)-2], []byte("\r\n")) {
			if bytes.ContainsAny(l, "\r\n") || len(l) > 78 {
				t.Fatalf("size %d: line %d is bad: %q", size, i, l)
			}
		}
		if size >= 2000 && !bytes.Contains(m.text, []byte("\r\n.\r\n")) {
			t.Fatalf("size %d: no line that is a lone dot: the test would not exercise stuffing", size)
		}
	}
	if _, err := newMessage(min-1, from, time.Now()); err == nil {
		t.Fatal("a size below the headers must be refused")
	}
	m, _ := newMessage(2000, from, time.Now())
	w := append([]byte(nil), m.wire...)
	setID(w, m.idAt, 0xabc)
	if !bytes.Contains(w, []byte("Message-ID: <0000000000000abc.bench@example.com>\r\n")) {
		t.Fatalf("Message-ID slot: %q", w[m.idAt-13:m.idAt+40])
	}
}
