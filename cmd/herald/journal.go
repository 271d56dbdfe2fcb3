package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/heraldmail/herald/queue"
)

// The embedded queue is one file that one process holds at a time: while
// herald send runs, herald serve cannot write an unsubscribe into it. serve
// then appends the unsubscribe to a journal beside the store, and whoever
// opens the store next (serve itself once it is free, or the next herald
// send, status, suppress...) moves the journal into it. Nothing is lost and
// nothing waits for the user.

type journalEntry struct {
	List   string `json:"list"`
	Key    string `json:"key"`
	Reason string `json:"reason"`
}

func journalPath(store string) string { return store + ".unsubscribes" }

// lockedFile opens path with an exclusive flock held until close.
func lockedFile(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return nil, err
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// journalAppend records e durably.
func journalAppend(store string, e journalEntry) error {
	f, err := lockedFile(journalPath(store), os.O_CREATE|os.O_RDWR|os.O_APPEND)
	if err != nil {
		return err
	}
	defer f.Close()
	b, _ := json.Marshal(e)
	b = append(b, '\n')
	// A torn last line (a crash while appending) must not swallow this
	// entry: start a line of its own.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			b = append([]byte{'\n'}, b...)
		}
	}
	if _, err := f.Write(b); err != nil {
		return err
	}
	return f.Sync()
}

// journalApply moves the journal's entries into q and empties it; it
// returns how many it moved. Suppress keeps an address's first entry, so an
// entry applied twice (a crash before the truncation) changes nothing. A
// line that cannot be read (torn by a crash while it was appended, so never
// acknowledged) is skipped, and said on log.
func journalApply(ctx context.Context, store string, q queue.Queue, log io.Writer) (int, error) {
	f, err := lockedFile(journalPath(store), os.O_RDWR)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var e journalEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Key == "" {
			fmt.Fprintf(log, "herald: unsubscribe journal %s, line %d: unreadable (torn by a crash while it was written, never acknowledged); skipped\n", journalPath(store), line)
			continue
		}
		if err := q.Suppress(ctx, e.List, e.Reason, e.Key); err != nil {
			return n, fmt.Errorf("unsubscribe journal %s, line %d: %w", journalPath(store), line, err)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return n, err
	}
	if err := f.Truncate(0); err != nil {
		return n, err
	}
	return n, f.Sync()
}

// followJournal moves the journal into q now and every two seconds until
// the returned func is called: unsubscribes that herald serve received
// while this process holds the store reach it within seconds.
func followJournal(store string, q queue.Queue, stderr io.Writer) (stop func()) {
	apply := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := journalApply(ctx, store, q, stderr); err != nil {
			fmt.Fprintf(stderr, "herald: %v\n", err)
		}
	}
	apply()
	return periodically(2*time.Second, apply)
}
