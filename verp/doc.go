// Package verp encodes a campaign and a recipient into an envelope sender
// and decodes them back from the address a bounce is sent to (Variable
// Envelope Return Path).
//
// The address for campaign "nov-2026", recipient ann@example.org and the
// bounce address bounces@example.com is
//
//	bounces+nov-2026+ann=example.org@example.com
//
// Campaign ids hold only letters, digits, '-', '_' and '.', so the first
// '+' after the bounce local part ends the campaign; the recipient's local
// part may itself hold '+' and '=' signs, so its domain starts after the
// last '='. The mail system of the bounce domain must deliver
// "bounces+anything" to "bounces" (Postfix: recipient_delimiter = +).
package verp
