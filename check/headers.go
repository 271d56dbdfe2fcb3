package check

import (
	"bytes"
	"fmt"
	"net/mail"
	"strings"

	"github.com/heraldmail/herald/config"
)

// headers checks the first recipient's message as herald renders it.
func (c *checker) headers(msg []byte) {
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		c.add("headers", Fail, "report this: herald renders every message", "the first recipient's message does not parse: %v", err)
		return
	}
	h := m.Header

	unsub, post := h.Get("List-Unsubscribe"), h.Get("List-Unsubscribe-Post")
	switch {
	case unsub == "":
		c.add("headers", Fail, "add an [unsubscribe] section (url = the https address herald serve answers at, secret_env) and run herald serve behind it",
			"no List-Unsubscribe: Gmail and Yahoo require one-click unsubscribe (RFC 8058) of bulk senders")
	case !strings.Contains(unsub, "<https://") || strings.TrimSpace(post) != "List-Unsubscribe=One-Click":
		// herald writes both from [unsubscribe]; campaign.headers cannot.
		c.add("headers", Fail, "report this: herald writes both headers from [unsubscribe]",
			"List-Unsubscribe %q with List-Unsubscribe-Post %q is not one-click (RFC 8058: an https link, and \"List-Unsubscribe=One-Click\")", unsub, post)
	default:
		link := unsub
		if i := strings.Index(link, "?"); i > 0 {
			link = link[:i] + "?…>"
		}
		c.add("headers", Pass, "", "one-click unsubscribe (RFC 8058): List-Unsubscribe %s and List-Unsubscribe-Post: %s", link, post)
	}
	if id := h.Get("List-Id"); id != "" {
		c.add("headers", Pass, "", "List-Id: %s", id)
	} else {
		c.add("headers", Warn, fmt.Sprintf("set campaign.list_id, e.g. \"News <news.%s>\"", c.from),
			"no List-Id (RFC 2919): mailbox providers use it to group and rate a list's mail")
	}

	if id := h.Get("Message-ID"); validMsgID(id) {
		c.add("headers", Pass, "", "Message-ID: %s", id)
	} else {
		c.add("headers", Fail, "report this: herald makes one per message", "Message-ID %q is not <left@right> (RFC 5322 §3.6.4)", id)
	}
	if d, err := h.Date(); err == nil {
		c.add("headers", Pass, "", "Date: %s", d.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	} else {
		c.add("headers", Fail, "report this: herald dates every message", "Date %q is not an RFC 5322 date", h.Get("Date"))
	}
}

// validMsgID checks msg-id = "<" id-left "@" id-right ">" with dot-atom
// parts (RFC 5322 §3.6.4; the obsolete and literal forms are not made by
// herald).
func validMsgID(s string) bool {
	s = strings.TrimSpace(s)
	if len(s) < 5 || s[0] != '<' || s[len(s)-1] != '>' {
		return false
	}
	left, right, ok := strings.Cut(s[1:len(s)-1], "@")
	return ok && config.DotAtom(left) && config.DotAtom(right)
}
