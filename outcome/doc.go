// Package outcome says what happened to a delivery attempt and what it
// does next. Classify turns an SMTP reply, or a connection that failed
// without one, into a DeliveryError with its Class and Stage (by reply
// code, enhanced status code (RFC 3463), the stage of the conversation and
// the text; never by the first digit alone). Decide turns that outcome,
// the job and the retry policy into a Decision: the job's next state and
// time, whether the attempt counts, whether the address is suppressed, and
// the effect on the provider (slow down, stop, back off) and on the
// campaign (count toward the policy pause). Nothing else in herald decides
// what a reply does; the table tests here are built from
// shared/reference/smtp-replies.md. Besides replies, ClassUnsendable is
// herald's own verdict on a message it will not send as it is (larger than
// the size limit, or an address needing SMTPUTF8 the server lacks).
package outcome
