package main

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/heraldmail/herald/sink"
)

// openPTY opens a pseudo-terminal: the program gets tty (its stderr
// then is a terminal), the test reads what it writes from master.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), unix.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatal(e)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	ws := &unix.Winsize{Row: 40, Col: 200}
	_ = unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, ws)
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// TestProgressBarAfterInterrupt: on a terminal, herald send draws a live
// bar; interrupted with Ctrl-C half way, its last frame shows where the
// campaign stands, not 100 %.
func TestProgressBarAfterInterrupt(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	const n = 2000
	c := newCampaign(t, s, n, "rate = 300\nburst = 5\nconnections = 2")
	master, tty := openPTY(t)
	cmd := exec.Command(herald, "send", "--config", c.conf)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		screen bytes.Buffer
		done   = make(chan struct{})
	)
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			k, err := master.Read(buf)
			mu.Lock()
			screen.Write(buf[:k])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	waitFor(t, 30*time.Second, func() bool { return s.Stats().Messages >= 400 })
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitInterrupted {
		t.Fatalf("interrupted send: %v\n%s", err, stdout.String())
	}
	time.Sleep(200 * time.Millisecond) // the last bytes through the terminal
	tty.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	mu.Lock()
	out := screen.String()
	mu.Unlock()
	frames := regexp.MustCompile(`(\d+) %`).FindAllStringSubmatch(out, -1)
	if len(frames) < 2 {
		t.Fatalf("no progress bar drawn on the terminal:\n%q", tail(out, 2000))
	}
	last, _ := strconv.Atoi(frames[len(frames)-1][1])
	sent := int(s.Stats().Messages)
	want := sent * 100 / n
	t.Logf("%d frames; the last says %d %%, %d of %d were sent", len(frames), last, sent, n)
	if last >= 100 || last < want-2 || last > want+2 {
		t.Fatalf("the last frame says %d %% where %d of %d (%d %%) were sent", last, sent, n, want)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
