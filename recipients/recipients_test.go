package recipients

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

type got struct {
	rows     []Row
	problems []*RowError
}

func readAll(t testing.TB, in string) (got, error) {
	rd, err := NewReader(strings.NewReader(in))
	if err != nil {
		return got{}, err
	}
	var g got
	for {
		row, err := rd.Next()
		if err == io.EOF {
			return g, nil
		}
		var re *RowError
		if errors.As(err, &re) {
			g.problems = append(g.problems, re)
			continue
		}
		if err != nil {
			return g, err
		}
		g.rows = append(g.rows, row)
	}
}

func TestReaderFormats(t *testing.T) {
	t.Parallel()
	in := "\xEF\xBB\xBFEmail,name,note\r\n" +
		"  ada@example.com ,Ada,plain\r\n" +
		"\r\n" +
		"grace@example.com,\"Hopper, Grace\",\"two\r\nlines\"\r\n" +
		"linus@example.com,Linus,\"say \"\"hi\"\"\"\r\n"
	g, err := readAll(t, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.problems) != 0 {
		t.Fatalf("problems: %v", g.problems)
	}
	if len(g.rows) != 3 {
		t.Fatalf("rows: %+v", g.rows)
	}
	if r := g.rows[0]; r.Email != "ada@example.com" || r.Line != 2 || r.Fields[0] != "ada@example.com" {
		t.Errorf("BOM/trim/line: %+v", r)
	}
	if r := g.rows[1]; r.Fields[1] != "Hopper, Grace" || r.Fields[2] != "two\r\nlines" && r.Fields[2] != "two\nlines" || r.Line != 4 {
		t.Errorf("quoted comma/newline: %+v", r)
	}
	if r := g.rows[2]; r.Fields[2] != `say "hi"` || r.Line != 6 {
		t.Errorf("escaped quotes or line after a multi-line record: %+v", r)
	}
	if h := g.rows[0].Header(); h[0] != "email" {
		t.Errorf("the email column is named %q, want it normalised to email", h[0])
	}
}

func TestReaderProblemsCarryLineNumbers(t *testing.T) {
	t.Parallel()
	in := "email,name\n" +
		"ok@example.com,A\n" + // 2
		"not-an-address,B\n" + // 3
		",C\n" + // 4
		"short@example.com\n" + // 5
		"long@example.com,D,extra\n" + // 6
		"Name <x@example.com>,E\n" + // 7
		"y@example.com,\"bad \"quote\n" + // 8: a quote closes the field, then text
		"z@example.com,F\n"
	rd, err := NewReader(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	rd.HeaderFields = []int{1}
	var lines []int
	var valid []string
	var final error
	for {
		row, err := rd.Next()
		if err == io.EOF {
			break
		}
		var re *RowError
		if errors.As(err, &re) {
			lines = append(lines, re.Line)
			continue
		}
		if err != nil {
			final = err
			break
		}
		valid = append(valid, row.Email)
	}
	want := []int{3, 4, 5, 6, 7}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Fatalf("problem lines %v, want %v", lines, want)
	}
	if len(valid) != 1 || valid[0] != "ok@example.com" {
		t.Fatalf("valid rows: %v", valid)
	}
	// A row the reader cannot split ends the file: encoding/csv would go
	// on at some later line, and what it skipped would be lost unsaid.
	var se *SyntaxError
	if !errors.As(final, &se) || se.Line != 8 || se.EndLine != 8 || !strings.Contains(se.Error(), "line 8, column") {
		t.Fatalf("want a syntax error at line 8, got %v", final)
	}
}

func TestReaderHeaderBreak(t *testing.T) {
	t.Parallel()
	rd, err := NewReader(strings.NewReader("email,name\na@example.com,\"x\nBcc: victim@example.com\"\nb@example.com,ok\n"))
	if err != nil {
		t.Fatal(err)
	}
	rd.HeaderFields = []int{1} // name reaches the subject
	_, err = rd.Next()
	var re *RowError
	if !errors.As(err, &re) || re.Line != 2 || !strings.Contains(re.Reason, "line break") {
		t.Fatalf("want a line-break problem at line 2, got %v", err)
	}
	row, err := rd.Next()
	if err != nil || row.Email != "b@example.com" {
		t.Fatalf("the next row must still be read: %v %v", row, err)
	}
}

func TestReaderHeaderErrors(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "name,city\nx,y\n", "email,,x\n", "email,name,name\n"} {
		if _, err := NewReader(strings.NewReader(in)); err == nil {
			t.Errorf("%q: want an error", in)
		}
	}
}

// A record without quotes is split without encoding/csv's reader, and
// exactly as it would split it; any other goes to it.
func TestPlainRecordAsCSV(t *testing.T) {
	rows := []string{
		"a@x.com,Ann,Paris\n", "a@x.com,Ann,Paris\r\n", "a@x.com,Ann,Paris", " a@x.com ,,\n",
		",,\n", "a@x.com,Ann,\n", "a@x.com,\"Ann, B\",Paris\n", "a@x.com,Ann\n", "a@x.com,Ann,Paris,extra\n",
		"a@x.com,An\rn,Paris\n", "a@x.com,Ann,Paris\r", "a@x.com,Ann,Paris\n\n", "a@x.com,Ann,Paris\nb@x.com,Bob,Rome\n",
		"a@x.com,Ann,Pa\"ris\n", "\n", "", "é@x.com,Zoë,Köln\n",
	}
	for _, row := range rows {
		b := []byte(row)
		sp := Span{Size: len(b), Sum: SpanSum(b)}
		got, gerr := ReadSpan(b, sp, 3, 0)
		var want []string
		var werr error
		cr := csv.NewReader(strings.NewReader(row))
		cr.FieldsPerRecord = -1
		want, werr = cr.Read()
		if werr == nil {
			if len(want) != 3 {
				werr = ErrSpanChanged
			} else if _, err := cr.Read(); err != io.EOF {
				werr = ErrSpanChanged
			} else {
				want[0] = strings.TrimSpace(want[0])
			}
		}
		if (gerr != nil) != (werr != nil) || (gerr == nil && strings.Join(got, "|") != strings.Join(want, "|")) {
			t.Errorf("%q: got %q, %v; csv gives %q, %v", row, got, gerr, want, werr)
		}
		plain := !strings.ContainsAny(row, "\"\r") || strings.Count(row, "\r") == 1 && strings.HasSuffix(row, "\r\n")
		if _, ok := plainRecord(b, 3); ok && werr != nil || !ok && werr == nil && plain && strings.Count(row, "\n") <= 1 {
			t.Errorf("%q: split without csv: %v", row, ok)
		}
	}
}
