package bounce

import (
	"regexp"
	"strings"
)

// Classification (RFC 3463 enhanced status codes, then the text):
//
//   - Action delayed, delivered, relayed or expanded, or a 2.x.x status:
//     not a bounce.
//   - 4.x.x: soft.
//   - 5.x.x: hard when the code or the text says the address does not work
//     (5.1.x bad mailbox, system or syntax; 5.2.1 mailbox disabled; 5.4.4
//     unable to route, i.e. no such domain; "user unknown", "no such user",
//     "does not exist", 用户不存在 …); soft when it says the failure may
//     pass or is not the address's fault: 5.2.2 mailbox full and 5.2.3
//     message too long (a full mailbox often empties again), 5.3.x mail
//     system, other 5.4.x routing and expiry, 5.6.x content, 5.7.x policy
//     and spam rejections (herald's reputation, not the recipient's
//     address), 5.1.7 / 5.1.8 (our sender address), and any text about
//     quotas or storage. Another 5.x.x is hard unless its text speaks of
//     spam, blocking or policy.
//   - No code at all: hard if the text says the user does not exist,
//     otherwise soft (counted, not suppressed at once).

var (
	statusRe       = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}$`)
	statusInTextRe = regexp.MustCompile(`(?:^|[^\d.])([245]\.\d{1,3}\.\d{1,3})(?:$|[^\d.]|\.(?:\s|$))`)
	replyCodeRe    = regexp.MustCompile(`(?:^|[^\d.#])([245]\d\d)(?:[ -]|$)`)
	userUnknownRe  = regexp.MustCompile(`(?i)user unknown|unknown user|no such (user|recipient|mailbox|address|account|domain)|does ?n[o']t exist|not exist|unknown recipient|recipient (address )?(not found|unknown)|recipnotfound|mailbox (not found|unavailable: no such|does not exist|disabled)|invalid (recipient|mailbox)|user not found|account (is |has been )?disabled|unrouteable address|host or domain name not found|domain not found|address not found|not a valid mailbox|no mailbox here|recipient address rejected: access denied|mailbox not found|用户不存在|收件人不存在|邮箱不存在|地址不存在|帐户不存在|账户不存在|账号不存在`)
	quotaRe        = regexp.MustCompile(`(?i)mailbox (is )?full|over ?quota|quota (exceeded|full)|exceeded (its |the )?(storage|quota)|insufficient (system )?storage|out of storage|storage (full|exceeded)|mailbox size limit|邮箱已满|空间不足|容量不足`)
	policyRe       = regexp.MustCompile(`(?i)spam|block|blacklist|black list|reputation|policy|dmarc|\bspf\b|dkim|rate limit|too many|try again|greylist|content rejected|垃圾`)
)

// findStatus returns the enhanced status code in a diagnostic, or one
// made of its reply code ("550" → "5.0.0"), or "".
func findStatus(diag string) string {
	if m := statusInTextRe.FindStringSubmatch(diag); m != nil {
		return m[1]
	}
	if m := replyCodeRe.FindStringSubmatch(diag); m != nil {
		return m[1][:1] + ".0.0"
	}
	return ""
}

// classify decides what a recipient's report means (see the rules above).
func classify(action, status, diag string) Kind {
	switch action {
	case "delayed", "delivered", "relayed", "expanded":
		return NotBounce
	}
	if status == "" {
		status = findStatus(diag)
	}
	parts := strings.SplitN(status, ".", 3)
	if len(parts) != 3 {
		if userUnknownRe.MatchString(diag) {
			return Hard
		}
		return Soft
	}
	switch parts[0] {
	case "2":
		return NotBounce
	case "4":
		return Soft
	}
	subject, detail := parts[1], parts[2]
	if subject == "1" && (detail == "7" || detail == "8") {
		return Soft // our sender address, not the recipient
	}
	if quotaRe.MatchString(diag) {
		return Soft
	}
	if userUnknownRe.MatchString(diag) {
		return Hard
	}
	switch subject {
	case "1":
		return Hard
	case "2":
		if detail == "0" || detail == "1" {
			return Hard
		}
		return Soft
	case "4":
		if detail == "4" {
			return Hard
		}
		return Soft
	case "3", "6", "7":
		return Soft
	}
	if policyRe.MatchString(diag) {
		return Soft
	}
	return Hard
}
