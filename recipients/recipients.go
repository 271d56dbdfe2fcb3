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

// Reader streams recipients from CSV in constant memory. It is not safe for
// concurrent use.
type Reader struct {
	csv        *csv.Reader
	header     []string
	emailIndex int
	// HeaderFields are the columns whose values reach a message header
	// (beyond email): a CR or LF in them makes the row invalid.
	HeaderFields []int
}

// ErrNoEmailColumn is returned by NewReader when the header has no email column.
var ErrNoEmailColumn = errors.New(`recipients: the header row has no "email" column`)

// NewReader reads the header row of r. A UTF-8 byte order mark is skipped;
// header names are trimmed; the email column is found case-insensitively.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if bom, err := br.Peek(3); err == nil && bytes.Equal(bom, []byte{0xEF, 0xBB, 0xBF}) {
		_, _ = br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1 // we report the wrong number ourselves, with the line
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err == io.EOF {
		return nil, errors.New("recipients: the file is empty (a header row with an \"email\" column is required)")
	}
	if err != nil {
		return nil, fmt.Errorf("recipients: header row: %w", err)
	}
	rd := &Reader{csv: cr, emailIndex: -1}
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

// Next returns the next valid row. A row that cannot be sent is returned as
// a *RowError, after which Next may be called again; io.EOF ends the file.
// Any other error (a read failure) is final. Blank lines are skipped.
func (r *Reader) Next() (Row, error) {
	rec, err := r.csv.Read()
	if err != nil {
		var perr *csv.ParseError
		if errors.As(err, &perr) {
			// encoding/csv resynchronises at the next line for most
			// errors; a bare quote may swallow the rest of the file, and
			// then the next Read returns EOF.
			return Row{}, &RowError{Line: perr.StartLine, Reason: perr.Err.Error()}
		}
		return Row{}, err
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
	return Row{Line: line, Email: email, Key: Key(email), Fields: fields, header: r.header}, nil
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
