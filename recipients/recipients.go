package recipients

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
)

// EmailColumn is the column every recipients file must have.
const EmailColumn = "email"

// Row is one valid recipient.
type Row struct {
	Line   int      // line number in the file where the record starts (1-based)
	Email  string   // the address, trimmed
	Key    string   // the address lower-cased, its domain in A-labels (Key)
	Fields []string // every column, in header order; Fields[EmailIndex] == Email
	// Span is where the record is in the file; zero (Size 0) for a file
	// read in another encoding than UTF-8, whose bytes are not the ones
	// read.
	Span   Span
	header []string
}

// Header returns the column names Fields follow.
func (r Row) Header() []string { return r.header }

// RowError reports a row that is not sent.
type RowError struct {
	Line   int
	Reason string
}

func (e *RowError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// SyntaxError says the file cannot be split into rows from Line on: a
// quote that does not open or close a field where CSV (RFC 4180) allows
// it. It is final: encoding/csv would resume at some later line, and the
// rows in between (for a quote that never closes, every row to the end of
// the file) would be lost without a word, so the reader stops instead.
type SyntaxError struct {
	Line    int // where the record that cannot be split begins
	EndLine int // where the reader gave up (>= Line)
	Column  int // of EndLine, 1-based, in bytes
	// ToEnd: EndLine is the last line of the file.
	ToEnd bool
	Err   error // csv.ErrQuote or csv.ErrBareQuote
}

func (e *SyntaxError) Error() string {
	const fix = `a quote that is part of a value is written twice, in a value in quotes ("say ""hi""")`
	switch {
	case e.EndLine > e.Line:
		end := ""
		if e.ToEnd {
			end = ", the end of the file"
		}
		swallowed := e.EndLine - e.Line
		lines := "lines"
		if swallowed == 1 {
			lines = "line"
		}
		return fmt.Sprintf("line %d: a quoted field opens on this line and is not closed where a field ends: "+
			"it runs to line %d%s, swallowing the %d %s after this one (close the quote; %s)",
			e.Line, e.EndLine, end, swallowed, lines, fix)
	case errors.Is(e.Err, csv.ErrBareQuote):
		return fmt.Sprintf("line %d, column %d: a quote in a field that does not begin with one (%s)", e.Line, e.Column, fix)
	default:
		return fmt.Sprintf("line %d, column %d: a quote ends a quoted field but the field goes on (%s)", e.Line, e.Column, fix)
	}
}

func (e *SyntaxError) Unwrap() error { return e.Err }

// Reader streams recipients from CSV in constant memory. It is not safe for
// concurrent use.
type Reader struct {
	csv        *csv.Reader
	enc        Encoding
	header     []string
	emailIndex int
	err        error // final: every Next returns it again
	// rec keeps the bytes of the records being read, for their spans;
	// nil when the file is decoded from another encoding.
	rec *recorder
	bom int64 // bytes of byte order mark skipped
	// HeaderFields are the columns whose values reach a message header
	// (beyond email): a CR or LF in them makes the row invalid.
	HeaderFields []int
}

// ErrNoEmailColumn is returned by NewReader when the header has no email column.
var ErrNoEmailColumn = errors.New(`recipients: the header row has no "email" column`)

// NewReader reads the header row of r, a UTF-8 file. A byte order mark is
// skipped; header names are trimmed; the email column is found
// case-insensitively.
func NewReader(r io.Reader) (*Reader, error) { return NewEncodedReader(r, UTF8) }

// NewEncodedReader is NewReader for a file in enc: the reader decodes it
// and returns UTF-8.
func NewEncodedReader(r io.Reader, enc Encoding) (*Reader, error) {
	var rec *recorder
	if enc.enc != nil {
		r = enc.enc.NewDecoder().Reader(r)
	} else {
		rec = &recorder{r: r}
		r = rec
	}
	br := bufio.NewReaderSize(r, 64<<10)
	// A byte order mark, as UTF-8 once decoded (UTF-16 and GB18030 have
	// theirs too).
	var skipped int64
	if bom, err := br.Peek(3); err == nil && bytes.Equal(bom, []byte{0xEF, 0xBB, 0xBF}) {
		_, _ = br.Discard(3)
		skipped = 3
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1 // we report the wrong number ourselves, with the line
	cr.ReuseRecord = true
	rd := &Reader{csv: cr, enc: enc, emailIndex: -1, rec: rec, bom: skipped}
	head, err := rd.record()
	if err == io.EOF {
		return nil, errors.New("recipients: the file is empty (a header row with an \"email\" column is required)")
	}
	if err != nil {
		return nil, fmt.Errorf("recipients: header row: %w", err)
	}
	seen := map[string]int{}
	for i, h := range head {
		h = strings.TrimSpace(h)
		if h == "" {
			return nil, fmt.Errorf("recipients: header column %d has no name", i+1)
		}
		if prev, dup := seen[h]; dup {
			return nil, fmt.Errorf("recipients: header column %d %q repeats column %d", i+1, h, prev+1)
		}
		seen[h] = i
		if strings.EqualFold(h, EmailColumn) && rd.emailIndex < 0 {
			rd.emailIndex = i
			h = EmailColumn
		}
		rd.header = append(rd.header, h)
	}
	if rd.emailIndex < 0 {
		return nil, ErrNoEmailColumn
	}
	return rd, nil
}

// Header returns the column names in file order.
func (r *Reader) Header() []string { return r.header }

// EmailIndex is the position of the email column.
func (r *Reader) EmailIndex() int { return r.emailIndex }

// record reads the next record and checks that every field is text in the
// file's encoding. Every error is final, io.EOF included: it is returned
// again by every later call.
func (r *Reader) record() ([]string, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.rec != nil {
		r.rec.forget(r.csv.InputOffset() + r.bom) // the records before are done with
	}
	rec, err := r.csv.Read()
	if err != nil {
		var perr *csv.ParseError
		if errors.As(err, &perr) && (errors.Is(perr.Err, csv.ErrQuote) || errors.Is(perr.Err, csv.ErrBareQuote)) {
			serr := &SyntaxError{Line: perr.StartLine, EndLine: perr.Line, Column: perr.Column, Err: perr.Err}
			if serr.EndLine > serr.Line {
				// Did the field run to the end of the file? Then there
				// is nothing more to read.
				_, next := r.csv.Read()
				serr.ToEnd = next == io.EOF
			}
			err = serr
		}
		r.err = err
		return nil, err
	}
	for i, f := range rec {
		if at := r.enc.invalid(f); at >= 0 {
			line, _ := r.csv.FieldPos(i)
			r.err = &EncodingError{Line: line + strings.Count(f[:at], "\n"), Encoding: r.enc}
			return nil, r.err
		}
	}
	return rec, nil
}

// Next returns the next valid row. A row that cannot be sent is returned as
// a *RowError, after which Next may be called again; io.EOF ends the file.
// Any other error is final and returned again by every later call: a
// *SyntaxError (the file cannot be split into rows from there on), an
// *EncodingError (a line is not text in the file's encoding), or a read
// failure. Blank lines are skipped.
func (r *Reader) Next() (Row, error) {
	start := r.csv.InputOffset() + r.bom
	rec, err := r.record()
	if err != nil {
		return Row{}, err
	}
	var span Span
	if r.rec != nil {
		end := r.csv.InputOffset() + r.bom
		if b := r.rec.bytes(start, end); b != nil {
			span = Span{Offset: start, Size: len(b), Sum: SpanSum(b)}
		}
	}
	line, _ := r.csv.FieldPos(0)
	if len(rec) != len(r.header) {
		return Row{}, &RowError{Line: line, Reason: fmt.Sprintf("%d fields, the header has %d", len(rec), len(r.header))}
	}
	email := strings.TrimSpace(rec[r.emailIndex])
	if reason := CheckAddress(email); reason != "" {
		return Row{}, &RowError{Line: line, Reason: reason}
	}
	for _, i := range r.HeaderFields {
		if strings.ContainsAny(rec[i], "\r\n") {
			return Row{}, &RowError{Line: line, Reason: fmt.Sprintf("column %q contains a line break and would reach a header", r.header[i])}
		}
	}
	fields := make([]string, len(rec))
	copy(fields, rec)
	fields[r.emailIndex] = email
	return Row{Line: line, Email: email, Key: Key(email), Fields: fields, Span: span, header: r.header}, nil
}

// Key is the deduplication and suppression key of a valid address: lower
// case, its domain in A-labels (ASCIIDomain), so that "user@例子.测试" and
// "user@xn--fsqu00a.xn--0zwm56d" are one recipient, and a bounce, which
// names the address as it was sent, finds it.
func Key(email string) string {
	if a, err := ASCIIDomain(email); err == nil {
		email = a
	}
	return strings.ToLower(email)
}

// CheckAddress returns why s is not a plain address (addr-spec), or "".
func CheckAddress(s string) string {
	if s == "" {
		return "no address in the email column"
	}
	if strings.ContainsAny(s, "\r\n") {
		return "the address contains a line break"
	}
	if strings.ContainsAny(s, " <>,\"") {
		return fmt.Sprintf("%q is not a plain address (name@domain)", s)
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s {
		return fmt.Sprintf("%q is not a valid address", s)
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return fmt.Sprintf("%q is not a valid address", s)
	}
	return checkDomain(s)
}
