// Package check is herald check: the pre-flight of a campaign against the
// rules mailbox providers hold bulk senders to (Gmail and Yahoo since
// 2024, Outlook.com since May 2025). Each check says PASS, WARN or FAIL,
// what it found and, when it is not a pass, the fix:
//
//   - SPF (RFC 7208) of the envelope domain: one record that parses,
//     within the 10 DNS-querying terms of §4.6.4 counted through includes
//     and redirects, and authorising each provider's servers;
//   - DKIM (RFC 6376, RFC 8463 for Ed25519): the record at
//     <selector>._domainkey.<domain> holds the public key of
//     dkim.private_key;
//   - DMARC (RFC 7489): a record for the From domain or its organisational
//     domain, and the From domain aligned with the DKIM or the SPF domain
//     under its adkim and aspf;
//   - the headers of the first recipient's message: one-click unsubscribe
//     (RFC 2369, RFC 8058), List-Id (RFC 2919), Message-ID and Date (RFC
//     5322);
//   - each provider: it answers, encrypts, takes the login and the sender
//     (engine.Probe, the diagnosis of a send's first connection).
//
// DNS goes through a Resolver: the system's, or a server given by
// address. Nothing here sends a message.
package check
