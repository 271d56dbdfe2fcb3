package recipients

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"
)

// Encoding is the character encoding of a recipients file. The zero value
// is UTF-8. Whatever the file's encoding, Reader returns UTF-8.
type Encoding struct {
	name string            // canonical name ("gbk", "windows-1252"); "" for UTF-8
	enc  encoding.Encoding // nil for UTF-8
}

// UTF8 is the default encoding.
var UTF8 = Encoding{}

// LookupEncoding finds an encoding by one of its names or labels, as a web
// browser does (WHATWG: "gbk", "gb18030", "big5", "shift_jis", "euc-kr",
// "windows-1252", "utf-16le", ...), then by its IANA name ("cp936",
// "iso-8859-1", ...). Names are case-insensitive.
func LookupEncoding(name string) (Encoding, error) {
	label := strings.ToLower(strings.TrimSpace(name))
	if e, err := htmlindex.Get(label); err == nil && e != encoding.Replacement {
		canon, _ := htmlindex.Name(e)
		if canon == "utf-8" {
			return UTF8, nil
		}
		return Encoding{name: canon, enc: e}, nil
	}
	if e, err := ianaindex.IANA.Encoding(label); err == nil && e != nil {
		canon, err := ianaindex.IANA.Name(e)
		if err != nil {
			canon = label
		}
		canon = strings.ToLower(canon)
		if canon == "utf-8" {
			return UTF8, nil
		}
		return Encoding{name: canon, enc: e}, nil
	}
	return UTF8, fmt.Errorf("%q is not an encoding herald knows; use e.g. \"utf-8\" (the default), \"gb18030\" or \"gbk\", \"big5\", \"shift_jis\", \"euc-kr\", \"windows-1252\"", name)
}

// String is the encoding's name ("utf-8", "gbk", ...).
func (e Encoding) String() string {
	if e.enc == nil {
		return "utf-8"
	}
	return e.name
}

// IsUTF8 says whether files in e are read as they are, without decoding.
func (e Encoding) IsUTF8() bool { return e.enc == nil }

// invalid returns the index of the first byte of s that is not text: an
// invalid UTF-8 sequence, or, in a field decoded from another encoding, the
// replacement character U+FFFD, which the decoders of golang.org/x/text
// write for bytes that are not valid in that encoding. -1 if s is text.
func (e Encoding) invalid(s string) int {
	if e.enc == nil {
		if utf8.ValidString(s) {
			return -1
		}
		for i := 0; i < len(s); {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size <= 1 {
				return i
			}
			i += size
		}
		return -1
	}
	return strings.IndexRune(s, utf8.RuneError)
}

// EncodingError says a line of the file is not text in its encoding (a
// GBK file read as UTF-8, a byte that no character of the named encoding
// uses). It is final: the rows after it are not read, because a file in
// another encoding than the one it is read in would be sent as mojibake.
type EncodingError struct {
	Line     int      // the first line with a byte that is not valid
	Encoding Encoding // the encoding the file was read in
}

func (e *EncodingError) Error() string {
	return fmt.Sprintf("line %d is not valid %s", e.Line, displayName(e.Encoding))
}

func displayName(e Encoding) string {
	if e.IsUTF8() {
		return "UTF-8"
	}
	return e.String()
}
