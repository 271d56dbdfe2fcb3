// Package bounce reads a bounce mailbox (IMAP or POP3, always over TLS),
// recognises the delivery reports in it, matches each to a campaign and a
// recipient, and records the outcome: a hard bounce puts the recipient on
// the sending domain's suppression list, soft bounces are counted per
// recipient and suppress after a limit. Only after that is stored is the
// message moved away (IMAP) or deleted (IMAP, POP3), so a crash in between
// makes the next run see the message again; recording it again changes
// nothing (soft bounces are counted once per bounce ID).
//
// Formats: RFC 3464 delivery status notifications (multipart/report;
// report-type=delivery-status, RFC 6533's message/global-delivery-status),
// with the returned message (message/rfc822, text/rfc822-headers), and the
// plain-text bounces of qmail, Exim, Postfix and Sendmail without DSN,
// Microsoft Exchange / Office 365 and Gmail. Auto-replies (RFC 3834
// Auto-Submitted, out-of-office subjects) and delay notices (Action:
// delayed) are recognised and are not bounces. Status codes follow RFC 3463.
//
// Protocols: IMAP4rev1 (RFC 3501) through github.com/emersion/go-imap/v2,
// with UIDPLUS and MOVE when offered; POP3 (RFC 1939, STLS from RFC 2595,
// CAPA and UIDL) with the small client in pop3.go.
package bounce
