package unsubscribe

import (
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/heraldmail/herald/queue"
)

// Store is where unsubscribes go: the queue's suppression lists.
type Store interface {
	Suppressed(ctx context.Context, list string, keys ...string) (map[string]queue.Suppression, error)
	Suppress(ctx context.Context, list, reason string, keys ...string) error
}

// Handler answers the links of Signer's tokens:
//
//   - POST (RFC 8058 one-click, from the mail client, or the confirmation
//     page's button): suppresses the recipient on the list the token names
//     and answers 200 with a short page; no redirect, no cookie.
//   - GET (a person following the link in the body): a confirmation page
//     with one button. A GET changes nothing: mail scanners fetch links.
//
// A forged, altered or truncated token gets 400 and changes nothing.
type Handler struct {
	Signer *Signer
	Store  Store
	Log    *slog.Logger
	// Timeout bounds one store operation (default 10 s).
	Timeout time.Duration
	// Page renders every page (nil: DefaultPage); see Page and ParsePage.
	Page *template.Template
	// Language is the pages' language: "en", "zh", or "" / "auto" for the
	// reader's Accept-Language (English when it names neither).
	Language string
}

// page fills the built-in texts of a page in the request's language.
func (h *Handler) page(r *http.Request, kind, address, list string) Page {
	return newPage(kind, language(h.Language, r.Header.Get("Accept-Language")), address, list)
}

// Reason is the suppression reason recorded for an unsubscribe.
func Reason(how, campaign string) string {
	r := "unsubscribed (" + how + ")"
	if campaign != "" {
		r += " from campaign " + campaign
	}
	return r
}

func (h *Handler) write(w http.ResponseWriter, code int, p Page) {
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
	w.WriteHeader(code)
	t := h.Page
	if t == nil {
		t = DefaultPage
	}
	if err := t.Execute(w, p); err != nil {
		h.log().Error("unsubscribe page", "kind", p.Kind, "error", err)
	}
}

func (h *Handler) log() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.Default()
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD, POST")
		h.write(w, http.StatusMethodNotAllowed, h.page(r, KindNotAllowed, "", ""))
		return
	}
	sub, err := h.Signer.Verify(r.URL.Query().Get(Param))
	if err != nil {
		h.log().Warn("unsubscribe link refused", "remote", r.RemoteAddr, "method", r.Method)
		h.write(w, http.StatusBadRequest, h.page(r, KindInvalid, "", ""))
		return
	}
	timeout := h.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	if r.Method != http.MethodPost {
		on, err := h.Store.Suppressed(ctx, sub.List, sub.Key)
		if err == nil && len(on) > 0 {
			h.write(w, http.StatusOK, h.page(r, KindDone, sub.Key, sub.List))
			return
		}
		// Even when the store cannot be read, the button works once it can.
		p := h.page(r, KindConfirm, sub.Key, sub.List)
		p.Action, p.Form = r.URL.RequestURI(), true
		h.write(w, http.StatusOK, p)
		return
	}
	// RFC 8058: the body is "List-Unsubscribe=One-Click"; a client that
	// sends the POST at all asks for it, so a missing body is accepted too.
	if err := r.ParseForm(); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		h.write(w, http.StatusBadRequest, h.page(r, KindBadRequest, "", ""))
		return
	}
	how := "one-click"
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		how = "web page"
	}
	if err := h.Store.Suppress(ctx, sub.List, Reason(how, sub.Campaign), sub.Key); err != nil {
		h.log().Error("cannot store an unsubscribe", "list", sub.List, "error", err)
		w.Header().Set("Retry-After", "60")
		h.write(w, http.StatusServiceUnavailable, h.page(r, KindTryAgain, sub.Key, sub.List))
		return
	}
	h.log().Info("unsubscribed", "list", sub.List, "campaign", sub.Campaign, "how", how)
	h.write(w, http.StatusOK, h.page(r, KindDone, sub.Key, sub.List))
}
