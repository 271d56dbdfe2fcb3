package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldmail/herald/queue/boltq"
)

// An unsubscribe that arrives while another process holds the embedded
// store waits in the journal and reaches the store when it is next opened;
// a torn last line (a crash while appending) is skipped; applying twice
// changes nothing.
func TestUnsubscribeJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	held, err := boltq.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var said bytes.Buffer
	s := &boltStore{path: path, log: discardLog(), errs: &said}
	// The store is held: Suppress answers from the journal.
	if err := s.Suppress(context.Background(), "news.example", "unsubscribed (one-click)", "ann@example.org"); err != nil {
		t.Fatal(err)
	}
	if got, _ := held.Suppressed(context.Background(), "news.example", "ann@example.org"); len(got) != 0 {
		t.Fatal("stored although the store was held")
	}
	// A crash tears an append; the next acknowledged one must survive it.
	f, _ := os.OpenFile(journalPath(path), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"list":"news.example","key":"bob@exa`)
	f.Close()
	if err := s.Suppress(context.Background(), "news.example", "unsubscribed (one-click)", "dee@example.org"); err != nil {
		t.Fatal(err)
	}
	// The holder (herald send) moves the journal in.
	if n, err := journalApply(context.Background(), path, held, &said); err != nil || n != 2 {
		t.Fatalf("journalApply = %d, %v", n, err)
	}
	if !strings.Contains(said.String(), "line 2: unreadable") {
		t.Fatalf("the torn line was not reported: %q", said.String())
	}
	got, _ := held.Suppressed(context.Background(), "news.example", "ann@example.org", "bob@example.org", "dee@example.org")
	if got["ann@example.org"].Reason != "unsubscribed (one-click)" || got["dee@example.org"].Reason == "" || len(got) != 2 {
		t.Fatalf("after the journal: %+v", got)
	}
	if st, _ := os.Stat(journalPath(path)); st.Size() != 0 {
		t.Fatalf("journal not emptied: %d bytes", st.Size())
	}
	if n, err := journalApply(context.Background(), path, held, &said); err != nil || n != 0 {
		t.Fatalf("second apply = %d, %v", n, err)
	}
	held.Close()
	// Free store: Suppress writes straight into it.
	if err := s.Suppress(context.Background(), "news.example", "unsubscribed (web page)", "cy@example.org"); err != nil {
		t.Fatal(err)
	}
	got, err = s.Suppressed(context.Background(), "news.example", "cy@example.org")
	if err != nil || got["cy@example.org"].Reason != "unsubscribed (web page)" {
		t.Fatalf("Suppressed = %+v, %v", got, err)
	}
	if st, _ := os.Stat(journalPath(path)); st.Size() != 0 {
		t.Fatal("a free store went through the journal")
	}
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
