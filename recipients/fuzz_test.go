package recipients

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// refSplit splits a CSV file as RFC 4180 and encoding/csv's conventions
// say (a byte order mark skipped, CRLF or LF line ends, a final CR dropped,
// blank lines skipped, a field in quotes when it begins with one), written
// independently of the reader: it returns the line each record begins on
// (the header's first) up to the first record that cannot be split, and
// that record's line in bad (0 when every record splits).
func refSplit(in string) (starts []int, bad int) {
	in = strings.TrimPrefix(in, "\xEF\xBB\xBF")
	var lines []string // without their line ends
	for len(in) > 0 {
		l, rest, found := strings.Cut(in, "\n")
		lines = append(lines, strings.TrimSuffix(l, "\r"))
		if !found {
			break
		}
		in = rest
	}
	for n := 0; n < len(lines); n++ {
		if lines[n] == "" {
			continue // blank
		}
		start, l := n+1, lines[n]
	record:
		for {
			if rest, quoted := strings.CutPrefix(l, `"`); quoted {
				l = rest
				for {
					j := strings.IndexByte(l, '"')
					if j < 0 {
						if n++; n == len(lines) {
							return starts, start // never closed
						}
						l = lines[n]
						continue
					}
					l = l[j+1:]
					switch {
					case strings.HasPrefix(l, `"`): // an escaped quote
						l = l[1:]
					case strings.HasPrefix(l, ","):
						l = l[1:]
						continue record
					case l == "":
						break record
					default:
						return starts, start // text after the closing quote
					}
				}
			}
			field, rest, more := strings.Cut(l, ",")
			if strings.Contains(field, `"`) {
				return starts, start // a quote inside an unquoted field
			}
			if !more {
				break
			}
			l = rest
		}
		starts = append(starts, start)
	}
	return starts, 0
}

// firstInvalidLine is the line of the first byte of in that is not UTF-8,
// or 0.
func firstInvalidLine(in string) int {
	for i := 0; i < len(in); {
		r, size := utf8.DecodeRuneInString(in[i:])
		if r == utf8.RuneError && size <= 1 {
			return strings.Count(in[:i], "\n") + 1
		}
		i += size
	}
	return 0
}

func TestRefSplit(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"email\n":                          "[1] 0",
		"email\r\n\r\na\r\n\"b\r\nc\"\nd":  "[1 3 4 6] 0",
		"email\na,\"x\"\"y\",z\n\n":        "[1 2] 0",
		"email\na\nb,\"open\nc\nd\n":       "[1 2] 3",
		"email\na\"b\nc\n":                 "[1] 2",
		"email\n\"a\"b\nc\n":               "[1] 2",
		"\xEF\xBB\xBFemail\r\na\r":         "[1 2] 0",
		"email\n\"a\"\r\r\n":               "[1] 2",
		"email\n\"multi\nline\"\nb,\"\"\n": "[1 2 4] 0",
	} {
		starts, bad := refSplit(in)
		if got := fmt.Sprint(starts, " ", bad); got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}

// FuzzReader checks, for any input, that the reader never panics and always
// ends; that every row and every row problem carries the line its record
// begins on (≥ 2), in order; that no row is lost: on a file that splits and
// is UTF-8, rows and problems together are exactly the records refSplit
// finds, and otherwise the reader ends with a final error naming the first
// damaged line after exactly the records before it; that a final error is
// returned again; that Check agrees and stamps the bytes; and that every
// value it returns is UTF-8, in whatever encoding the file is read.
func FuzzReader(f *testing.F) {
	for _, seed := range []string{
		"email,name\na@example.com,A\n",
		"\xEF\xBB\xBFemail,name\r\n\"a@b.c\",\"x\r\ny\"\r\n",
		"email\n\"unterminated\n",
		"email,name\na@b.c\nb@c.d,e,f\n",
		twenty(),
		"email,note\na@example.com,\"opens\nb@example.com,x\nc@example.com,\"closes\"\n",
		"email,note\na@example.com,say \"hi\"\nb@example.com,ok\n",
		"email,note\na@example.com,\"a\"b\n",
		"email,note\na@example.com,\"x\"\"y\"\n\n\r\nb@example.com,\"\"\n",
		"email,name\nli@example.com,\xc0\xee\xc0\xd7\n",      // GBK read as UTF-8
		"email,name\na@example.com,\"one\ntwo \xff\"\n",      // bad byte in a quoted field
		"email,name\na@example.com,\xe4\xb8",                 // truncated at the end
		"email,name\r\na@example.com,A\r",                    // final CR
		"email,name\na@example.com,\"A\"\r\r\n",              // CR after the closing quote
		"email,name\na@example.com,\"A\nb@example.com,B\n\"", // closes at the very end
		"email\n\n\n\na@example.com\n",
		"email\n" + strings.Repeat("x", 4200) + "\n", // a line longer than encoding/csv's buffer
		"\"email\nname\"\na\n",
		"email,name\na@example.com,\"x\nBcc: v@example.com\"\n",
	} {
		f.Add(seed)
	}
	gb18030, err := LookupEncoding("gb18030")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in string) {
		checked, cerr := Check(strings.NewReader(in), UTF8)
		st := checked.stampOrZero()
		rd, err := NewReader(strings.NewReader(in))
		if err != nil {
			if cerr == nil {
				t.Fatalf("NewReader refused the file (%v), Check did not", err)
			}
			return
		}
		rd.HeaderFields = []int{0}
		var lines []int
		var final error
		for range len(in) + 2 { // each call consumes at least a line
			row, err := rd.Next()
			var re *RowError
			if errors.As(err, &re) {
				lines = append(lines, re.Line)
				continue
			}
			if err != nil {
				final = err
				break
			}
			lines = append(lines, row.Line)
			if len(row.Fields) != len(rd.Header()) || row.Email == "" || strings.ContainsAny(row.Email, "\r\n") {
				t.Fatalf("row %+v", row)
			}
			// The key is the address in lower case, its domain in
			// A-labels (the same for an ASCII domain).
			if a, err := ASCIIDomain(row.Email); err != nil || row.Key != strings.ToLower(a) {
				t.Fatalf("key %q for %q (%v)", row.Key, row.Email, err)
			}
		}
		if final == nil {
			t.Fatal("the reader did not end")
		}
		if _, again := rd.Next(); again != final {
			t.Fatalf("after %v, Next returned %v", final, again)
		}
		for i, l := range lines {
			if l < 2 || i > 0 && l <= lines[i-1] {
				t.Fatalf("lines %v", lines)
			}
		}

		starts, bad := refSplit(in)
		records := starts[1:]
		badByte := firstInvalidLine(in)
		var se *SyntaxError
		var ee *EncodingError
		switch {
		case final == io.EOF:
			if bad != 0 || badByte != 0 {
				t.Fatalf("ended without an error; the file has a record that does not split at line %d, or a bad byte at line %d", bad, badByte)
			}
			if fmt.Sprint(lines) != fmt.Sprint(records) {
				t.Fatalf("rows lost or invented: the reader gave lines %v, the records begin on %v", lines, records)
			}
		case errors.As(final, &se):
			if se.Line != bad || se.EndLine < se.Line || se.Column < 1 || badByte != 0 && badByte < bad {
				t.Fatalf("%+v; the bad record begins on line %d, the first bad byte is on line %d", se, bad, badByte)
			}
			if fmt.Sprint(lines) != fmt.Sprint(records) {
				t.Fatalf("before the damage, the reader gave lines %v, the records begin on %v", lines, records)
			}
		case errors.As(final, &ee):
			if ee.Line != badByte || bad != 0 && bad <= badByte {
				t.Fatalf("%v; the first bad byte is on line %d, the first record that does not split on line %d", ee, badByte, bad)
			}
			for i, l := range lines {
				if i >= len(records) || l != records[i] || l >= badByte {
					t.Fatalf("before the bad byte, the reader gave lines %v, the records begin on %v", lines, records)
				}
			}
		default:
			t.Fatalf("unexpected final error %v", final)
		}

		if final == io.EOF {
			if cerr != nil || st.Sum != sha256.Sum256([]byte(in)) || st.Size != int64(len(in)) {
				t.Fatalf("Check: %s %v", st, cerr)
			}
		} else if cerr == nil || cerr.Error() != final.Error() {
			t.Fatalf("Check said %v, the reader %v", cerr, final)
		}

		// Decoded from another encoding, every value is UTF-8.
		rd, err = NewEncodedReader(strings.NewReader(in), gb18030)
		if err != nil {
			return
		}
		for range len(in) + 2 {
			row, err := rd.Next()
			if err != nil && !errors.As(err, new(*RowError)) {
				return
			}
			for _, v := range row.Fields {
				if !utf8.ValidString(v) || strings.ContainsRune(v, utf8.RuneError) {
					t.Fatalf("gb18030: value %q", v)
				}
			}
		}
		t.Fatal("the gb18030 reader did not end")
	})
}
