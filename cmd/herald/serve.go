package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/heraldmail/herald/config"
	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/queue/boltq"
	"github.com/heraldmail/herald/queue/redisq"
	"github.com/heraldmail/herald/unsubscribe"
)

func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("serve", "--config FILE [--listen ADDR]", stderr)
	cfgPath := fs.String("config", "", "configuration `file`: its [unsubscribe] and [queue]")
	listen := fs.String("listen", "127.0.0.1:8080", "`address` to answer on; put a TLS proxy for unsubscribe.url's host in front")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "herald serve: --config FILE is required")
		return exitInput
	}
	cfg, err := config.LoadServe(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "herald: %s\n", err)
		return exitInput
	}
	if cfg.Unsubscribe == nil {
		fmt.Fprintln(stderr, "herald serve: the configuration has no [unsubscribe] section (url, secret_env)")
		return exitInput
	}
	signer, err := unsubscribe.NewSigner(cfg.Unsubscribe.Secret)
	if err != nil {
		fmt.Fprintf(stderr, "herald serve: unsubscribe.secret_env: %v\n", err)
		return exitInput
	}
	path := "/"
	if u, err := url.Parse(cfg.Unsubscribe.URL); err == nil && u.Path != "" {
		path = u.Path
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	var store unsubscribe.Store
	switch cfg.Queue.Backend {
	case "redis":
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		q, err := redisq.Open(ctx, cfg.Queue.URL, redisq.Options{})
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "herald serve: queue.url: %s\n", err)
			return exitInput
		}
		defer q.Close()
		store = q
	default:
		bs := &boltStore{path: cfg.Queue.Path, log: log, errs: stderr}
		stop := bs.start()
		defer stop()
		store = bs
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "herald serve: --listen: %v\n", err)
		return exitInput
	}
	h := &unsubscribe.Handler{Signer: signer, Store: store, Log: log, Language: cfg.Unsubscribe.Language}
	if cfg.Unsubscribe.Page != "" {
		if h.Page, err = unsubscribe.ParsePage(cfg.Unsubscribe.Page); err != nil {
			fmt.Fprintf(stderr, "herald serve: unsubscribe.page: %v\n", err)
			return exitInput
		}
	}
	// The path is compared as it is (not as a ServeMux pattern, where
	// braces and spaces mean something).
	route := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: route, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	fmt.Fprintf(stderr, "herald serve: answering unsubscribe links at http://%s%s (queue: %s)\n", ln.Addr(), path, cfg.Queue.Backend)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	select {
	case err := <-done:
		fmt.Fprintf(stderr, "herald serve: %v\n", err)
		return exitFailed
	case <-sig:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	return exitOK
}

// boltStore reaches the embedded queue, which one process holds at a time,
// by opening it for each request, waiting at most storeWait. When another
// herald holds it (a campaign being sent), an unsubscribe goes into the
// journal (journal.go) and is answered at once, and the confirmation page
// is shown without looking the address up; a background loop moves the
// journal into the store once it is free. A request never holds the store
// longer than its own lookup, so herald send, waiting up to a second to
// open it, gets it.
type boltStore struct {
	path string
	log  *slog.Logger
	errs io.Writer  // where the journal's unreadable lines are said
	mu   sync.Mutex // one open at a time within this process
}

const storeWait = 50 * time.Millisecond

func (s *boltStore) with(fn func(q *boltq.Queue) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := boltq.OpenWait(s.path, storeWait)
	if err != nil {
		return err
	}
	defer q.Close()
	if _, err := journalApply(context.Background(), s.path, q, s.errs); err != nil {
		s.log.Error("cannot apply the unsubscribe journal", "error", err)
	}
	return fn(q)
}

func (s *boltStore) Suppressed(ctx context.Context, list string, keys ...string) (map[string]queue.Suppression, error) {
	var out map[string]queue.Suppression
	err := s.with(func(q *boltq.Queue) error {
		var err error
		out, err = q.Suppressed(ctx, list, keys...)
		return err
	})
	return out, err
}

func (s *boltStore) Suppress(ctx context.Context, list, reason string, keys ...string) error {
	err := s.with(func(q *boltq.Queue) error { return q.Suppress(ctx, list, reason, keys...) })
	if err == nil {
		return nil
	}
	if errors.Is(err, boltq.ErrBusy) {
		s.log.Info("queue store busy; unsubscribe kept in the journal", "list", list)
	} else {
		s.log.Error("cannot open the queue store; unsubscribe kept in the journal", "list", list, "error", err)
	}
	for _, k := range keys {
		if jerr := journalAppend(s.path, journalEntry{List: list, Key: k, Reason: reason}); jerr != nil {
			return errors.Join(err, jerr)
		}
	}
	return nil
}

// start moves the journal into the store every few seconds while it has
// entries; the returned func stops it.
func (s *boltStore) start() (stop func()) {
	return periodically(5*time.Second, func() {
		if st, err := os.Stat(journalPath(s.path)); err == nil && st.Size() > 0 {
			_ = s.with(func(*boltq.Queue) error { return nil }) // with applies the journal
		}
	})
}
