package recipients

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// twenty is the file: 20 rows, line 6 opens a quote it never closes.
func twenty() string {
	var b strings.Builder
	b.WriteString("email,city\n")
	for i := 1; i <= 20; i++ {
		if i == 5 {
			b.WriteString("user5@example.com,\"Broken quote,City5\n")
			continue
		}
		fmt.Fprintf(&b, "user%d@example.com,City%d\n", i, i)
	}
	return b.String()
}

// drain reads rd to its end: the rows' and problems' lines, in order, and
// the error that ended it.
func drain(t *testing.T, rd *Reader) (rows, problems []int, final error) {
	t.Helper()
	for range 100_000 {
		row, err := rd.Next()
		var re *RowError
		switch {
		case err == nil:
			rows = append(rows, row.Line)
		case errors.As(err, &re):
			problems = append(problems, re.Line)
		default:
			return rows, problems, err
		}
	}
	t.Fatal("the reader did not end")
	return
}

func TestUnclosedQuoteEndsTheFile(t *testing.T) {
	t.Parallel()
	rd, err := NewReader(strings.NewReader(twenty()))
	if err != nil {
		t.Fatal(err)
	}
	rows, problems, final := drain(t, rd)
	if fmt.Sprint(rows) != "[2 3 4 5]" || len(problems) != 0 {
		t.Fatalf("rows %v, problems %v before the damage", rows, problems)
	}
	var se *SyntaxError
	if !errors.As(final, &se) {
		t.Fatalf("the 15 rows after line 6 were dropped without an error: %v", final)
	}
	if se.Line != 6 || se.EndLine != 21 || !se.ToEnd {
		t.Errorf("%+v", se)
	}
	for _, w := range []string{"line 6:", "line 21, the end of the file", "swallowing the 15 lines after this one"} {
		if !strings.Contains(se.Error(), w) {
			t.Errorf("%q does not say %q", se.Error(), w)
		}
	}
	if _, err := rd.Next(); err != final {
		t.Errorf("Next after a final error: %v", err)
	}
	if _, err := Check(strings.NewReader(twenty()), UTF8); !errors.As(err, &se) || se.Line != 6 {
		t.Errorf("Check: %v", err)
	}
}

func TestQuoteClosedLinesLaterEndsTheFile(t *testing.T) {
	t.Parallel()
	in := "email,note\n" +
		"a@example.com,ok\n" + // 2
		"b@example.com,\"opens\n" + // 3
		"c@example.com,x\n" + // 4
		"d@example.com,\"closes here\"\n" + // 5: the quote before d closes, then text
		"e@example.com,y\n" // 6
	rd, err := NewReader(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	rows, _, final := drain(t, rd)
	var se *SyntaxError
	if fmt.Sprint(rows) != "[2]" || !errors.As(final, &se) || se.Line != 3 || se.EndLine != 5 || se.ToEnd {
		t.Fatalf("rows %v, final %v (%+v)", rows, final, se)
	}
	if !strings.Contains(se.Error(), "runs to line 5, swallowing the 2 lines after this one") {
		t.Errorf("%s", se)
	}
}

func TestBareQuoteEndsTheFile(t *testing.T) {
	t.Parallel()
	rd, err := NewReader(strings.NewReader("email,name\na@example.com,A\nb@example.com,say \"hi\"\nc@example.com,C\n"))
	if err != nil {
		t.Fatal(err)
	}
	rows, _, final := drain(t, rd)
	var se *SyntaxError
	if fmt.Sprint(rows) != "[2]" || !errors.As(final, &se) || se.Line != 3 || se.Column != 19 {
		t.Fatalf("rows %v, final %v", rows, final)
	}
	if !strings.Contains(se.Error(), "line 3, column 19: a quote in a field that does not begin with one") {
		t.Errorf("%s", se)
	}
}

func gbk(t testing.TB, s string) string {
	t.Helper()
	b, err := simplifiedchinese.GBK.NewEncoder().String(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGBKFile(t *testing.T) {
	t.Parallel()
	text := "email,name,city\n" +
		"li@example.com,李雷,北京\n" +
		"han@example.com,\"韩梅梅\n第二行\",上海\n" +
		"wang@example.com,王芳,广州\n"
	file := gbk(t, text)

	// Read as UTF-8 (the default): the first line with GBK bytes is
	// refused, nothing after it is read.
	rd, err := NewReader(strings.NewReader("email,name\n" + file[len("email,name,city\n"):]))
	if err != nil {
		t.Fatal(err)
	}
	rows, _, final := drain(t, rd)
	var ee *EncodingError
	if len(rows) != 0 || !errors.As(final, &ee) || ee.Line != 2 || ee.Error() != "line 2 is not valid UTF-8" {
		t.Fatalf("GBK read as UTF-8: rows %v, final %v", rows, final)
	}
	// The same in the header.
	if _, err := NewReader(strings.NewReader(gbk(t, "email,姓名\n"))); !errors.As(err, &ee) || ee.Line != 1 {
		t.Fatalf("GBK header read as UTF-8: %v", err)
	}

	for _, name := range []string{"gbk", "GBK", "gb18030", "gb2312", "cp936"} {
		enc, err := LookupEncoding(name)
		if err != nil {
			t.Fatal(err)
		}
		rd, err := NewEncodedReader(strings.NewReader(file), enc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var got []string
		for {
			row, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got = append(got, fmt.Sprintf("%d %s", row.Line, strings.Join(row.Fields, "|")))
		}
		want := "[2 li@example.com|李雷|北京 3 han@example.com|韩梅梅\n第二行|上海 5 wang@example.com|王芳|广州]"
		if fmt.Sprint(got) != want {
			t.Errorf("%s: %q\nwant %q", name, got, want)
		}
	}
}

func TestInvalidBytesNamed(t *testing.T) {
	t.Parallel()
	gbkEnc, _ := LookupEncoding("gbk")
	cp1252, _ := LookupEncoding("windows-1252")
	for _, c := range []struct {
		name string
		enc  Encoding
		in   string
		line int
		msg  string
	}{
		// a byte on the second line of a quoted field is on line 3
		{"utf-8 in a quoted field", UTF8, "email,note\na@example.com,\"one\ntwo \xff\"\n", 3, "line 3 is not valid UTF-8"},
		{"utf-8 truncated sequence", UTF8, "email,note\na@example.com,ok\nb@example.com,\xe4\xb8\n", 3, "line 3 is not valid UTF-8"},
		{"gbk: a lead byte without its trail", gbkEnc, "email,note\na@example.com,ok\nb@example.com,\x81\n", 3, "line 3 is not valid gbk"},
		{"windows-1252: 0x81 is no character", cp1252, "email,note\na@example.com,caf\xe9\nb@example.com,\x81\n", 3, "line 3 is not valid windows-1252"},
	} {
		rd, err := NewEncodedReader(strings.NewReader(c.in), c.enc)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		_, _, final := drain(t, rd)
		var ee *EncodingError
		if !errors.As(final, &ee) || ee.Line != c.line || ee.Error() != c.msg {
			t.Errorf("%s: %v", c.name, final)
		}
	}
	// windows-1252 decodes what it defines.
	rd, err := NewEncodedReader(strings.NewReader("email,note\na@example.com,caf\xe9 \x80\n"), cp1252)
	if err != nil {
		t.Fatal(err)
	}
	if row, err := rd.Next(); err != nil || row.Fields[1] != "café €" {
		t.Fatalf("%q %v", row.Fields, err)
	}
}

func TestByteOrderMarks(t *testing.T) {
	t.Parallel()
	gb18030, _ := LookupEncoding("gb18030")
	bomGB, err := gb18030.enc.NewEncoder().String("\uFEFFemail,名\na@example.com,王\n")
	if err != nil {
		t.Fatal(err)
	}
	utf16, _ := LookupEncoding("utf-16le")
	bom16, err := utf16.enc.NewEncoder().String("\uFEFFemail,名\r\na@example.com,王\r\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		enc  Encoding
		in   string
	}{
		{"utf-8", UTF8, "\xEF\xBB\xBFemail,名\na@example.com,王\n"},
		{"gb18030", gb18030, bomGB},
		{"utf-16le", utf16, bom16},
	} {
		rd, err := NewEncodedReader(strings.NewReader(c.in), c.enc)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		row, err := rd.Next()
		if err != nil || rd.Header()[0] != "email" || rd.Header()[1] != "名" || row.Fields[1] != "王" {
			t.Errorf("%s: header %q, row %q, %v", c.name, rd.Header(), row.Fields, err)
		}
	}
}

func TestLookupEncoding(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{
		"": "utf-8", "UTF-8": "utf-8", "utf8": "utf-8", "gbk": "gbk", "GB18030": "gb18030", "gb2312": "gbk",
		"big5": "big5", "Shift_JIS": "shift_jis", "sjis": "shift_jis", "euc-kr": "euc-kr",
		"windows-1252": "windows-1252", "cp1252": "windows-1252", "latin1": "windows-1252", "cp936": "gbk",
	} {
		if name == "" {
			if UTF8.String() != want || !UTF8.IsUTF8() {
				t.Errorf("zero Encoding is %s", UTF8)
			}
			continue
		}
		e, err := LookupEncoding(name)
		if err != nil || e.String() != want {
			t.Errorf("%q: %s %v, want %s", name, e, err, want)
		}
	}
	for _, bad := range []string{"klingon", "replacement", "iso-2022-kr", "utf-9"} {
		if _, err := LookupEncoding(bad); err == nil || !strings.Contains(err.Error(), "gb18030") {
			t.Errorf("%q: want an error listing encodings, got %v", bad, err)
		}
	}
}

func TestCheckStampsTheFile(t *testing.T) {
	t.Parallel()
	in := "email,name\na@example.com,A\nnot-an-address,B\n"
	checked, err := Check(strings.NewReader(in), UTF8)
	st := checked.stampOrZero()
	if err != nil {
		t.Fatal(err) // a bad address is a row problem, not damage
	}
	if st.Size != int64(len(in)) || st.Sum != sha256.Sum256([]byte(in)) {
		t.Fatalf("stamp %s", st)
	}
	if again, err := StampOf(strings.NewReader(in)); err != nil || again != st {
		t.Fatalf("StampOf %s %v", again, err)
	}
	if back, err := ParseStamp(st.String()); err != nil || back != st {
		t.Fatalf("ParseStamp(%s): %s %v", st, back, err)
	}
	if _, err := ParseStamp("sha256:00 size:1"); err == nil {
		t.Fatal("a short sum parsed")
	}
	var ee *EncodingError
	if _, err := Check(strings.NewReader(in+"b@example.com,\xff\n"), UTF8); !errors.As(err, &ee) || ee.Line != 4 {
		t.Fatalf("Check of a file with a bad byte: %v", err)
	}
}

// TestCheckPlainAsRows: Check's read of a file without quotes (checkPlain)
// gives what reading it row by row gives: the same stamp, or the same
// error, with its line; files of several reads' length included, with a
// character or a bad byte across a read's end and a line longer than a
// read.
func TestCheckPlainAsRows(t *testing.T) {
	t.Parallel()
	rows := func(n int, extra string) string {
		var b strings.Builder
		b.WriteString("email,name\n")
		for i := range n {
			fmt.Fprintf(&b, "user%d@example.com,Zoë %d\n", i, i)
		}
		return b.String() + extra
	}
	big := rows(20000, "") // ~0.5 MB: more than one read
	at := 256<<10 - 1      // a read ends after this byte
	cut := strings.LastIndexByte(big[:at], '\n') + 1
	straddle := big[:cut] + strings.Repeat("x", at-cut-1) + "é" + big[cut:] // é's two bytes across the read's end
	for name, in := range map[string]string{
		"empty":              "",
		"header only":        "email,name\n",
		"no email column":    "name\nA\n",
		"plain":              rows(3, ""),
		"no final newline":   rows(3, "z@example.com,Z"),
		"big":                big,
		"straddling rune":    straddle,
		"bad byte late":      big + "b@example.com,\xff\n",
		"bad byte at end":    big + "b@example.com,\xe4\xb8",
		"quote late":         big + "q@example.com,\"Q\"\n",
		"bare quote late":    big + "q@example.com,Q\"\n",
		"long line":          "email,name\n" + strings.Repeat("y", 600<<10) + "\n" + rows(2, ""),
		"long line, bad end": "email,name\n" + strings.Repeat("y", 600<<10) + "\xff\n",
		"byte order mark":    "\xef\xbb\xbf" + rows(2, ""),
		"CR line ends":       strings.ReplaceAll(rows(3, ""), "\n", "\r\n"),
	} {
		rowed, werr := checkRows(strings.NewReader(in), UTF8)
		plain, gerr := Check(strings.NewReader(in), UTF8)
		if got, want := plain.stampOrZero(), rowed.stampOrZero(); got != want || fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Errorf("%s: Check gave %s, %v; row by row %s, %v", name, got, gerr, want, werr)
		}
		// Either way, the blocks taken let the same file be read again.
		for how, c := range map[string]*Checked{"row by row": rowed, "plain": plain} {
			if c == nil {
				continue
			}
			if back, err := io.ReadAll(c.Reader(strings.NewReader(in))); err != nil || string(back) != in {
				t.Errorf("%s: read again as checked %s: %d bytes of %d, %v", name, how, len(back), len(in), err)
			}
		}
	}
}
