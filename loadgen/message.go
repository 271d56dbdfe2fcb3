package loadgen

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/heraldmail/herald/internal/smtpdata"
)

// idDigits is the width of the per-message number in the Message-ID,
// written into a fixed slot of the pre-rendered message.
const idDigits = 16

// words fill the body; a line starting with "." now and then (and one line
// that is a lone ".") makes the dot-stuffing matter.
var words = []string{"herald", "bench", "load", "test", "message", "the", "quick", "brown", "fox",
	"jumps", "over", "lazy", "dog", "lorem", "ipsum", "dolor", "sit", "amet", "mail", "queue"}

// messageTemplate is a message rendered once for the whole run: its
// unstuffed RFC 5322 text (exactly size bytes) and its wire form for DATA
// (dot-stuffed, ending in CRLF.CRLF), with the offset of the Message-ID's
// number slot in the wire form.
type messageTemplate struct {
	text []byte
	wire []byte
	idAt int // offset of the idDigits slot in wire
}

// headerBytes is the size of the header block for from, the smallest
// message --size can ask for.
func headerBytes(from string) int { return len(renderHeaders(from, time.Time{}, "")) }

func renderHeaders(from string, now time.Time, subjectPad string) []byte {
	dom := "localhost"
	if i := strings.LastIndexByte(from, '@'); i >= 0 {
		dom = from[i+1:]
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "Date: %s\r\n", now.UTC().Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	fmt.Fprintf(&b, "From: herald bench <%s>\r\n", from)
	b.WriteString("To: undisclosed-recipients:;\r\n")
	fmt.Fprintf(&b, "Subject: herald bench message%s\r\n", subjectPad)
	fmt.Fprintf(&b, "Message-ID: <%s.bench@%s>\r\n", strings.Repeat("0", idDigits), dom)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
	return b.Bytes()
}

// newMessage renders a message of exactly size bytes (headers and body,
// CRLF line ends) from from.
func newMessage(size int, from string, now time.Time) (*messageTemplate, error) {
	head := renderHeaders(from, now, "")
	if size < len(head) {
		return nil, fmt.Errorf("--size %d is smaller than the message headers (%d bytes)", size, len(head))
	}
	if size == len(head)+1 {
		head = renderHeaders(from, now, ".") // a body line needs at least its CRLF
	}
	text := make([]byte, 0, size)
	text = append(text, head...)
	const lineMax = 76 // text, not counting CRLF
	w := 0
	for line, left := 0, size-len(text); left > 0; line, left = line+1, size-len(text) {
		n := min(lineMax, left-2)
		if line == 5 && left != 4 {
			n = 1 // a line that is a lone dot
		}
		if left-(n+2) == 1 {
			n-- // never leave one byte: a line needs its CRLF
		}
		start := len(text)
		if n > 0 && (line == 5 || line%7 == 3) {
			text = append(text, '.')
		}
		for len(text)-start < n {
			if c := text[len(text)-1]; len(text) > start && c != '.' && c != ' ' {
				text = append(text, ' ')
				continue
			}
			wd := words[w%len(words)]
			w++
			text = append(text, wd[:min(len(wd), n-(len(text)-start))]...)
		}
		text = append(text, '\r', '\n')
	}
	m := &messageTemplate{text: text}
	m.wire = smtpdata.Stuff(text)
	m.idAt = bytes.Index(m.wire, []byte("Message-ID: <")) + len("Message-ID: <")
	return m, nil
}

// setID writes seq, zero-padded hexadecimal, into the idDigits bytes of
// wire at at.
func setID(wire []byte, at int, seq uint64) {
	var buf [idDigits]byte
	for i := range buf {
		buf[i] = '0'
	}
	s := strconv.AppendUint(buf[:0:0], seq, 16)
	copy(buf[idDigits-len(s):], s)
	copy(wire[at:at+idDigits], buf[:])
}
