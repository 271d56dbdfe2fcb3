package engine

import (
	"bytes"
	"encoding/base64"
	"mime"
	"strings"
	"sync/atomic"
)

// A message is written straight into one buffer, in the form go-mail
// (which herald used to build messages with) gives it: the same header
// order, folding and encodings, quoted-printable text parts, base64
// attachments. Serialising through go-mail cost a quarter of a send's CPU,
// and it was done again at every write; these functions do it once.

// headerEncoding encodes a header value that is not ASCII as RFC 2047
// encoded words, as go-mail's default encoder did.
func headerEncoding(v string) string { return mime.QEncoding.Encode("UTF-8", v) }

// maxHeaderLine is where a header line is folded (go-mail's MaxHeaderLength).
const maxHeaderLine = 76

// appendHeader appends the header key with values (joined by ", "),
// folded at spaces as go-mail folds: a word that would take the line to
// maxHeaderLine-1 octets or beyond starts a new line.
func appendHeader(dst []byte, key string, values ...string) []byte {
	start := len(dst)
	dst = append(dst, key...)
	if len(values) == 0 {
		return append(dst, ":\r\n"...)
	}
	dst = append(dst, ": "...)
	v := values[0]
	if len(values) > 1 {
		v = strings.Join(values, ", ")
	}
	left := maxHeaderLine - 4 - len(key)
	folded := false
	for {
		word, rest, more := strings.Cut(v, " ")
		if left-len(word) <= 1 {
			dst = append(dst, "\r\n "...)
			left = maxHeaderLine - 3
			folded = true
		}
		dst = append(dst, word...)
		left -= len(word)
		if !more {
			break
		}
		dst = append(dst, ' ')
		left--
		v = rest
	}
	if folded {
		// go-mail drops the space a fold leaves at the end of a line.
		dst = dropSpaceBeforeCRLF(dst, start)
		// A value with runs of spaces folds into lines of only white
		// space, which strict parsers take for the end of the header
		// (go-mail writes them): left out.
		dst = dropBlankFolds(dst, start)
	}
	return append(dst, "\r\n"...)
}

// dropBlankFolds removes, in dst[from:] (one folded header without its
// last CRLF), the continuation lines that hold only spaces.
func dropBlankFolds(dst []byte, from int) []byte {
	lines := bytes.Split(dst[from:], []byte("\r\n"))
	kept := lines[:1]
	for _, l := range lines[1:] {
		if len(bytes.TrimLeft(l, " ")) > 0 {
			kept = append(kept, l)
		}
	}
	if len(kept) == len(lines) {
		return dst
	}
	return append(dst[:from], bytes.Join(kept, []byte("\r\n"))...)
}

// dropSpaceBeforeCRLF removes, in dst[from:], each space followed by CRLF.
func dropSpaceBeforeCRLF(dst []byte, from int) []byte {
	out := from
	for i := from; i < len(dst); i++ {
		if dst[i] == ' ' && i+2 < len(dst) && dst[i+1] == '\r' && dst[i+2] == '\n' {
			continue
		}
		dst[out] = dst[i]
		out++
	}
	return dst[:out]
}

// qpLine is the longest line of quoted-printable, without its CRLF.
const qpLine = 76

// appendQP appends s in quoted-printable (RFC 2045, 6.7) exactly as
// mime/quotedprintable's Writer writes it in one Write and Close: CR, LF
// and CRLF are line breaks and come out as CRLF, a space or tab at the end
// of a line is encoded, lines are broken softly before 76 octets. Runs of
// bytes that need no encoding are copied whole.
func appendQP(dst []byte, s string) []byte {
	dst, _ = appendQPFresh(dst, s)
	return dst
}

// appendQPFresh is appendQP, and whether the encoding ended as it starts:
// at the start of an output line, no CR pending. Only then does the
// encoding of what follows s not depend on s.
func appendQPFresh(dst []byte, s string) (out []byte, fresh bool) {
	start := len(dst) // where the current output line starts
	cr := false       // the last byte taken was a CR (that Writer's state)
	for k := 0; k < len(s); {
		b := s[k]
		switch {
		case qpPlain(b):
			j := k + 1
			for j < len(s) && qpPlain(s[j]) {
				j++
			}
			for k < j {
				if len(dst)-start == qpLine-1 {
					dst = append(dst, "=\r\n"...)
					start = len(dst)
				}
				n := min(j-k, qpLine-1-(len(dst)-start))
				dst = append(dst, s[k:k+n]...)
				k += n
			}
			cr = false
			continue
		case b == '\r' || b == '\n':
			k++
			if cr && b == '\n' {
				cr = false
				continue
			}
			cr = b == '\r'
			dst, start = qpLastByte(dst, start)
			dst = append(dst, '\r', '\n')
			start = len(dst)
			continue
		}
		// Encoded; the Writer leaves cr as it was.
		dst, start = qpEncode(dst, start, b)
		k++
	}
	fresh = len(dst) == start && !cr
	dst, _ = qpLastByte(dst, start)
	return dst, fresh
}

// qpTails remembers, for one body part of a campaign, the end its
// messages share (the template's text after the last field, say) in
// quoted-printable, so that each message encodes only what differs. Safe
// for concurrent use.
//
// Quoted-printable starts afresh after a line break (but for a lone CR
// before bytes it encodes, whose LF does not end the output line): where
// the encoding of a text's head ends afresh (appendQPFresh), the encoding
// of the whole is the head's and the tail's end to end. The shared end is
// the longest one two texts in a row have in common, from just after an
// LF; a text whose head does not end afresh is encoded whole.
type qpTails struct{ last atomic.Pointer[qpTail] }

type qpTail struct {
	prev string // the last text encoded in whole
	src  string // its end shared with the one before it, from a line start ("": none)
	enc  []byte // src in quoted-printable
}

// qpTailMin is the shortest shared end worth remembering.
const qpTailMin = 256

// appendQP appends s in quoted-printable, as appendQP does.
func (t *qpTails) appendQP(dst []byte, s string) []byte {
	last := t.last.Load()
	if last != nil && last.src != "" && len(s) > len(last.src) &&
		s[len(s)-len(last.src)-1] == '\n' && strings.HasSuffix(s, last.src) {
		from := len(dst)
		dst, fresh := appendQPFresh(dst, s[:len(s)-len(last.src)])
		if fresh {
			return append(dst, last.enc...)
		}
		return appendQP(dst[:from], s)
	}
	dst = appendQP(dst, s)
	// A copy: s may be a renderer's bytes (RenderLinkShared), which its
	// next message overwrites.
	next := &qpTail{prev: strings.Clone(s)}
	if last != nil {
		next.src = sharedTail(last.prev, next.prev)
		if len(next.src) >= qpTailMin {
			next.enc = appendQP(nil, next.src)
		} else {
			next.src = ""
		}
	}
	t.last.Store(next)
	return dst
}

// sharedTail is the longest end a and b share that starts just after an
// LF in both.
func sharedTail(a, b string) string {
	n := 0
	for n < len(a) && n < len(b) && a[len(a)-1-n] == b[len(b)-1-n] {
		n++
	}
	tail := b[len(b)-n:]
	// Inside tail, the first line start after an LF that is also in it.
	i := strings.IndexByte(tail, '\n')
	if i < 0 {
		return ""
	}
	return tail[i+1:]
}

// qpPlain reports whether quoted-printable writes b as it is.
func qpPlain(b byte) bool { return qpPlainTable[b] }

var qpPlainTable = func() (t [256]bool) {
	for b := range 256 {
		t[b] = (b >= '!' && b <= '~' && b != '=') || b == ' ' || b == '\t'
	}
	return t
}()

const upperhex = "0123456789ABCDEF"

func qpEncode(dst []byte, start int, b byte) ([]byte, int) {
	if qpLine-1-(len(dst)-start) < 3 {
		dst = append(dst, "=\r\n"...)
		start = len(dst)
	}
	return append(dst, '=', upperhex[b>>4], upperhex[b&0x0f]), start
}

// qpLastByte encodes a space or tab that ends the current line.
func qpLastByte(dst []byte, start int) ([]byte, int) {
	if len(dst) == start {
		return dst, start
	}
	if b := dst[len(dst)-1]; b == ' ' || b == '\t' {
		return qpEncode(dst[:len(dst)-1], start, b)
	}
	return dst, start
}

// base64Lines is data in base64, in lines of 76 characters, each ending
// in CRLF (go-mail's attachments).
func base64Lines(data []byte) []byte {
	enc := make([]byte, base64.StdEncoding.EncodedLen(len(data)))
	base64.StdEncoding.Encode(enc, data)
	out := make([]byte, 0, len(enc)+len(enc)/38+2)
	for len(enc) > 0 {
		n := min(len(enc), 76)
		out = append(append(out, enc[:n]...), '\r', '\n')
		enc = enc[n:]
	}
	return out
}

// sanitizeFilename is an attachment's name as go-mail writes it: control
// characters and those file systems or headers take badly become '_'.
func sanitizeFilename(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch c {
		case '"', '/', ':', '<', '>', '?', '\\', '|', 127:
			b[i] = '_'
		default:
			if c < 32 {
				b[i] = '_'
			}
		}
	}
	return string(b)
}
