package main

// The control socket of the embedded queue. The store file is one
// process's at a time (bbolt's lock), so while herald send delivers from
// it, herald status, pause, resume, cancel, report and retry-failed could
// not open it. The process holding the store therefore listens on a unix
// socket next to it (herald.db.ctl) and runs those commands itself, on the
// store it has open, for whoever connects: the command's arguments go in,
// its output and exit status come back. Only the store's owner can reach
// the socket (mode 0600, in the store's folder).
//
// Wire format: the client sends its arguments as one JSON array and a
// newline; the server answers with frames, each a tag byte ('o' stdout,
// 'e' stderr, 'x' exit status), a 4-byte big-endian length and that many
// bytes (for 'x': the status as decimal text). 'x' is the last frame.

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldmail/herald/queue/boltq"
)

// forwarded are the commands a running herald runs for another: they read
// or change a campaign's state and write only to stdout and stderr.
var forwarded = map[string]bool{"status": true, "report": true, "preview": true, "pause": true, "resume": true, "cancel": true, "retry-failed": true}

// attached holds the embedded stores this process has open and serves on
// their control sockets, by absolute path: a forwarded command opens the
// store through it instead of the file.
var attached sync.Map // string → *boltq.Queue

// controlPath is the control socket of the store at path (absolute). A
// unix socket's path is at most 107 bytes; a longer one moves to the
// temporary folder under a name derived from the store's path.
func controlPath(store string) string {
	p := store + ".ctl"
	if len(p) < 100 {
		return p
	}
	sum := sha256.Sum256([]byte(store))
	return filepath.Join(os.TempDir(), "herald-"+hex.EncodeToString(sum[:8])+".ctl")
}

// serveControl listens on the control socket of the store q has open at
// path until the returned func is called. A socket that cannot be made is
// reported and not fatal: the send goes on, and the other commands wait for
// it as before.
func serveControl(path string, q *boltq.Queue, stderr io.Writer) (stop func()) {
	sock := controlPath(path)
	// A socket file left by a process that died: the store's lock (held
	// now by this process) says nobody serves it any more.
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err == nil {
		err = os.Chmod(sock, 0o600)
	}
	if err != nil {
		fmt.Fprintf(stderr, "herald: no control socket (herald status, pause and the like cannot reach this run): %v\n", err)
		return func() {}
	}
	attached.Store(path, q)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				handleControl(conn)
			}()
		}
	}()
	return func() {
		ln.Close() // removes the socket file
		wg.Wait()
		attached.Delete(path)
	}
}

// handleControl runs one forwarded command.
func handleControl(conn net.Conn) {
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReaderSize(conn, 64<<10).ReadSlice('\n')
	var args []string
	if err == nil {
		err = json.Unmarshal(line, &args)
	}
	_ = conn.SetReadDeadline(time.Time{})
	w := &frames{w: conn}
	if err != nil || len(args) == 0 || !forwarded[args[0]] {
		fmt.Fprintf(w.stream('e'), "herald: the running herald does not take this command (%q)\n", first(args))
		w.exit(exitInput)
		return
	}
	w.exit(commands[args[0]].run(args[1:], w.stream('o'), w.stream('e')))
}

func first(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

// frames writes the server's side of the wire format.
type frames struct {
	mu sync.Mutex
	w  io.Writer
}

type frameWriter struct {
	f   *frames
	tag byte
}

func (f *frames) stream(tag byte) io.Writer { return frameWriter{f, tag} }

func (fw frameWriter) Write(p []byte) (int, error) {
	if err := fw.f.frame(fw.tag, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (f *frames) frame(tag byte, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var h [5]byte
	h[0] = tag
	binary.BigEndian.PutUint32(h[1:], uint32(len(p)))
	if _, err := f.w.Write(h[:]); err != nil {
		return err
	}
	_, err := f.w.Write(p)
	return err
}

func (f *frames) exit(code int) { _ = f.frame('x', []byte(strconv.Itoa(code))) }

// forward runs args on the herald that holds the embedded store at path,
// when one listens on its control socket; ok is false when none does.
func forward(store string, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	conn, err := net.DialTimeout("unix", controlPath(store), 2*time.Second)
	if err != nil {
		return 0, false
	}
	defer conn.Close()
	line, _ := json.Marshal(args)
	if _, err := conn.Write(append(line, '\n')); err != nil {
		return 0, false
	}
	r := bufio.NewReader(conn)
	for {
		var h [5]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			fmt.Fprintf(stderr, "herald: the running herald that holds %s stopped answering: %v\n", store, err)
			return exitInterrupted, true
		}
		n := binary.BigEndian.Uint32(h[1:])
		switch h[0] {
		case 'o', 'e':
			w := stdout
			if h[0] == 'e' {
				w = stderr
			}
			if _, err := io.CopyN(w, r, int64(n)); err != nil {
				return exitInterrupted, true
			}
		case 'x':
			b := make([]byte, min(n, 16))
			if _, err := io.ReadFull(r, b); err != nil {
				return exitInterrupted, true
			}
			code, err := strconv.Atoi(string(b))
			if err != nil {
				return exitInterrupted, true
			}
			return code, true
		default:
			fmt.Fprintf(stderr, "herald: unexpected answer from the running herald that holds %s\n", store)
			return exitInterrupted, true
		}
	}
}

// absConfig rewrites the --config argument of args to an absolute path,
// for a process that runs in another folder.
func absConfig(args []string) []string {
	out := append([]string(nil), args...)
	for i, a := range out {
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			continue
		}
		if hasVal {
			if abs, err := filepath.Abs(val); err == nil {
				out[i] = "--config=" + abs
			}
		} else if i+1 < len(out) {
			if abs, err := filepath.Abs(out[i+1]); err == nil {
				out[i+1] = abs
			}
		}
	}
	return out
}

// exitForward is open's status when the embedded store busyStore is held
// by another process: run then forwards the command to it (a forwarded
// command) or says the store is busy. Never a process's exit status.
const exitForward = -1

var busyStore string

// forwardOrBusy finishes a command that found the store busy.
func forwardOrBusy(args []string, stdout, stderr io.Writer) int {
	if forwarded[args[0]] {
		if code, ok := forward(busyStore, absConfig(args), stdout, stderr); ok {
			return code
		}
	}
	fmt.Fprintf(stderr, "herald: queue.path: %s: %v\n", busyStore, boltq.ErrBusy)
	if forwarded[args[0]] {
		fmt.Fprintln(stderr, "herald: and it does not answer on its control socket; wait for it to finish")
	} else {
		fmt.Fprintln(stderr, "herald: a herald send is running on it: herald status, pause, resume, cancel and report reach it; this command waits until it is done")
	}
	return exitInput
}
