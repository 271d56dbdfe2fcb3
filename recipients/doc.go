// Package recipients streams a campaign's recipients from CSV (RFC 4180) in
// constant memory: a header row naming the columns, an "email" column
// required, one recipient a record. It handles a UTF-8 byte order mark,
// quoted fields with commas and line breaks, CRLF line ends, blank lines and
// spaces around the address, and reports every row it cannot send with its
// line number and the reason.
package recipients
