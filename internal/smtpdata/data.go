// Package smtpdata is the DATA content of an SMTP transaction (RFC 5321,
// 4.5.2): a message dot-stuffed for the wire, and the size of the message
// such content carries. herald's engine and its load generator write
// messages with it.
package smtpdata

import "bytes"

// Stuff returns the DATA content for msg (RFC 5321, 4.5.2): every line
// ending in CRLF (a lone LF becomes CRLF), a dot that starts a line
// doubled, a CRLF added when msg does not end with one, then the final
// ".\r\n". When no line needs changing, the result shares msg's array
// (room for it permitting).
func Stuff(msg []byte) []byte {
	wire, _ := Content(msg)
	return wire
}

// Content is Stuff(msg) and the size of the message it carries (Size),
// found without a second pass over it when no line needed changing.
func Content(msg []byte) (wire []byte, size int64) {
	switch clean(msg) {
	case endsInCRLF:
		return append(msg, ".\r\n"...), int64(len(msg))
	case lastLineOpen:
		return append(msg, "\r\n.\r\n"...), int64(len(msg)) + 2
	}
	wire = stuff(msg)
	return wire, Size(wire)
}

// stuff is Stuff for a message with a line to change.
func stuff(msg []byte) []byte {
	out := make([]byte, 0, len(msg)+len(msg)/32+8)
	for rest := msg; len(rest) > 0; {
		if rest[0] == '.' {
			out = append(out, '.')
		}
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			out = append(append(out, rest...), '\r', '\n')
			break
		}
		out = append(out, rest[:i]...)
		if i == 0 || rest[i-1] != '\r' {
			out = append(out, '\r')
		}
		out = append(out, '\n')
		rest = rest[i+1:]
	}
	return append(out, ".\r\n"...)
}

// What clean finds.
const (
	needsStuffing = iota // a line starts with a dot, or ends in a lone LF
	endsInCRLF           // every line ends in CRLF
	lastLineOpen         // so do all but the last, which has no line end
)

// clean says whether msg goes into DATA as it is, but for its end.
func clean(msg []byte) int {
	for rest := msg; len(rest) > 0; {
		if rest[0] == '.' {
			return needsStuffing
		}
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			if rest[len(rest)-1] == '\r' {
				return needsStuffing // a CR that a LF would make a line end
			}
			return lastLineOpen
		}
		if i == 0 || rest[i-1] != '\r' {
			return needsStuffing
		}
		rest = rest[i+1:]
	}
	return endsInCRLF
}

// Size is the size of the message that DATA content wire (dot-
// stuffed, ending in the final dot) carries: without the final dot and the
// dots stuffing added, with every line end that stuffing completed (a text
// whose last line has no line end is sent with one).
func Size(wire []byte) int64 {
	body := wire[:len(wire)-len(".\r\n")]
	dots := bytes.Count(body, []byte("\n."))
	if len(body) > 0 && body[0] == '.' {
		dots++
	}
	return int64(len(body) - dots)
}
