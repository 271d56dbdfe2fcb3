package engine

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

// TestQPTailsAsAppendQP: messages whose texts share an end (the template's
// text after its fields), or share one only now and then, or none, are
// encoded by a campaign's qpTails exactly as appendQP encodes each whole,
// whatever the bytes around the split (CR, LF, CRLF, spaces and tabs before
// a line break, bytes to encode, lines longer than 76 octets), and from
// several senders at once; and a shared end is in fact reused.
func TestQPTailsAsAppendQP(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	random := func(n int, alphabet string) string { return randomText(rng, n, alphabet) }
	const alphabet = "ab \t\r\n=.\xff"
	var tails []string
	for range 40 {
		tails = append(tails, random(300+rng.IntN(700), alphabet))
	}
	tails = append(tails, strings.Repeat("x", 400), "\n"+strings.Repeat("line of text\r\n", 40), strings.Repeat("y ", 300)+"\n")
	for _, tail := range tails {
		var qt qpTails
		texts := make([]string, 60)
		for i := range texts {
			head := random(rng.IntN(200), alphabet)
			switch i % 5 {
			case 3: // another end now and then
				texts[i] = head + random(rng.IntN(600), alphabet)
			case 4: // a head ending in CR: the split falls inside a CRLF
				texts[i] = head + "\r" + tail
			default:
				texts[i] = head + "\n" + tail
			}
		}
		var wg sync.WaitGroup
		for g := range 3 {
			wg.Go(func() {
				for i := g; i < len(texts); i += 3 {
					prefix := []byte("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
					got := string(qt.appendQP(prefix, texts[i]))
					want := string(appendQP(prefix, texts[i]))
					if got != want {
						t.Errorf("text %q:\n%s", texts[i], firstDiff(got, want))
						return
					}
				}
			})
		}
		wg.Wait()
	}
	// A lone CR before an encoded byte: the LF after them does not end
	// the output line, so the shared end cannot be copied after them.
	{
		var qt qpTails
		tail := strings.Repeat("a", 74) + "\n" + strings.Repeat("the footer of the template\n", 15)
		for _, head := range []string{"hello\r=\n", "hi!\r\xff\n", "yo\r\xe9\n", "plain\n", "cr\r\x80\n"} {
			if got, want := string(qt.appendQP(nil, head+tail)), string(appendQP(nil, head+tail)); got != want {
				t.Errorf("head %q:\n%s", head, firstDiff(got, want))
			}
		}
	}
	// Two texts with a long end in common: the third reuses it.
	var qt qpTails
	tail := "\n" + strings.Repeat("the same line of the template's text\n", 20)
	for _, name := range []string{"Ann", "Bob"} {
		qt.appendQP(nil, "Hello "+name+tail)
	}
	last := qt.last.Load()
	if want := tail[1:]; last.src != want || string(last.enc) != string(appendQP(nil, want)) {
		t.Fatalf("the shared end is %q, want %q", last.src, want)
	}
	qt.appendQP(nil, "Hello Cy"+tail)
	if qt.last.Load() != last {
		t.Errorf("a text with the shared end was encoded in whole")
	}
}

// TestQPTailsOnLentText: the text a sender encodes is its renderer's own
// bytes (templates' RenderLinkShared), overwritten by the next message
// rendered. qpTails keeps what it remembers as a copy: texts of the same
// length whose ends differ, each written over the one before in one
// buffer, are encoded as appendQP encodes each.
func TestQPTailsOnLentText(t *testing.T) {
	t.Parallel()
	ends := []string{strings.Repeat("the same end for a while\n", 20), strings.Repeat("a different end, as long\n", 20)}
	if len(ends[0]) != len(ends[1]) {
		t.Fatal("the ends must be as long as each other")
	}
	var qt qpTails
	var buf []byte // the renderer's buffer, written over for each text
	for i := range 40 {
		text := fmt.Sprintf("Dear %03d,\n", i) + ends[i/3%2]
		buf = append(buf[:0], text...)
		lent := unsafe.String(&buf[0], len(buf))
		got := string(qt.appendQP(nil, lent))
		if want := string(appendQP(nil, text)); got != want {
			t.Fatalf("text %d:\n%s", i, firstDiff(got, want))
		}
	}
}
