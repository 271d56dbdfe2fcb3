// Package recipients streams a campaign's recipients from CSV (RFC 4180) in
// constant memory: a header row naming the columns, an "email" column
// required, one recipient a record. It handles a byte order mark, quoted
// fields with commas and line breaks, CRLF line ends, blank lines and
// spaces around the address, and reports every row it cannot send with its
// line number and the reason.
//
// A file is UTF-8 unless another Encoding is named (GB18030, Big5,
// Shift_JIS, ... through golang.org/x/text); every value Reader returns is
// UTF-8. Two kinds of damage end the file instead of one row, because the
// rows after them could not be read as they were meant: a quote that makes
// the rest of the file unsplittable (SyntaxError: a quoted field never
// closed swallows every row after it) and a line that is not text in the
// file's encoding (EncodingError: a GBK file read as UTF-8). Check reads a
// whole file for them before anything is planned.
package recipients
