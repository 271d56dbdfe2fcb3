package sink

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// startLean runs the epoll driver: GOMAXPROCS event loops, each with its
// own epoll set, all watching the listening socket (the ones that lose the
// race for a connection get EAGAIN) and keeping the sessions they accepted.
//
// Why not a goroutine per connection: the sink answers a client measured
// on the same machine, so every microsecond of its CPU is taken from that
// client. With goroutines, a fifth of the sink's CPU went to the runtime:
// the scheduler parking and waking goroutines through its poller, and its
// monitor thread, which wakes every 20 µs while system calls block or the
// process keeps going idle. A loop makes its system calls raw (the sockets
// are non-blocking, so none blocks), and parks in the runtime's poller
// only when it has nothing to do: per message that leaves the reads and
// writes SMTP needs, one accept4, setsockopt and close per session, and
// epoll_wait calls shared by every ready connection.
//
// Config.BusyPoll keeps a loop polling (epoll_wait without waiting) for a
// while after its last event before it parks. A client on the same machine
// then seldom has to wake the sink, a wakeup across CPUs that costs the
// client more than the polling costs the sink's own core. Measured here
// (2 cores, smtp-source -s 16, a connection per message, 8 interleaved
// rounds): 1.11× smtp-sink's rate polling 100 µs at smtp-sink's CPU per
// message, 0.95× without polling at four fifths of it.
func (s *Server) startLean(ln net.Listener) error {
	tl, ok := ln.(*net.TCPListener)
	if s.cfg.leanDriver == "goroutines" || !ok {
		s.startLeanGoroutines(ln)
		return nil
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	lnfd := -1
	if err := rc.Control(func(fd uintptr) { lnfd = int(fd) }); err != nil {
		return err
	}
	n := runtime.GOMAXPROCS(0)
	loops := make([]*epollLoop, 0, n)
	for range n {
		l, err := newEpollLoop(s, lnfd)
		if err != nil {
			for _, l := range loops {
				l.closeFDs()
			}
			return err
		}
		loops = append(loops, l)
	}
	// A loop that fails stops; when none is left, the listener closes,
	// so clients are refused rather than left waiting for a greeting.
	var alive atomic.Int32
	alive.Store(int32(len(loops)))
	for _, l := range loops {
		go func() {
			if !l.run() && alive.Add(-1) == 0 {
				_ = ln.Close()
			}
			close(l.done)
		}()
	}
	s.lean.stop = func() {
		for _, l := range loops {
			l.wake()
		}
		for _, l := range loops {
			<-l.done
			l.closeFDs() // after the loop, so wake never writes to a closed descriptor
		}
		_ = ln.Close()
	}
	return nil
}

type epollLoop struct {
	s                  *Server
	epfd, lnfd, wakefd int
	// The epoll set as a file of the runtime's poller (an epoll set is
	// readable when it has events): a loop with nothing to do parks
	// there like any goroutine waiting for input, and gives its
	// processor back at once.
	epfile *os.File
	eprc   syscall.RawConn
	events []unix.EpollEvent
	n      int // what pollOnce found
	errno  unix.Errno
	pollFn func(uintptr) bool
	conns  []*epollConn // by file descriptor
	buf    []byte       // every session reads into it in turn
	done   chan struct{}
}

// epollConn is a session of a loop. Between reads it keeps only what it
// has not answered yet (carry: the start of a command line, or the last
// octets of the data), not a read buffer: an idle session costs about a
// kilobyte.
type epollConn struct {
	fd      int
	ls      *leanSession
	carry   []byte
	last    time.Time // of the last input
	waiting bool      // out is not all sent: wait for EPOLLOUT, read nothing
}

func newEpollLoop(s *Server, lnfd int) (*epollLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("epoll: %w", err)
	}
	l := &epollLoop{s: s, epfd: epfd, lnfd: lnfd, wakefd: -1, events: make([]unix.EpollEvent, 128),
		buf: make([]byte, leanBufSize), done: make(chan struct{})}
	l.pollFn = l.pollOnce
	l.epfile = os.NewFile(uintptr(epfd), "epoll")
	if l.eprc, err = l.epfile.SyscallConn(); err != nil {
		l.closeFDs()
		return nil, fmt.Errorf("epoll: %w", err)
	}
	if l.wakefd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		l.closeFDs()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	for _, fd := range []int{l.wakefd, lnfd} {
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			l.closeFDs()
			return nil, fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	return l, nil
}

func (l *epollLoop) closeFDs() {
	_ = l.epfile.Close()
	if l.wakefd >= 0 {
		_ = unix.Close(l.wakefd)
	}
}

// wake asks the loop to close its sessions and stop.
func (l *epollLoop) wake() {
	one := [8]byte{1}
	_, _ = unix.Write(l.wakefd, one[:])
}

// run serves until wake (true) or a failure of epoll (false).
func (l *epollLoop) run() bool {
	defer func() {
		for _, c := range l.conns {
			if c != nil {
				l.drop(c)
			}
		}
	}()
	swept := time.Now()
	busy := swept // when the last event came
	for {
		// Busy polling: epoll_wait without waiting, raw (see startLean).
		// Otherwise park in the runtime's poller until the set has
		// events, or a second passes (the idle sweep).
		var n int
		var e unix.Errno
		if time.Since(busy) < l.s.cfg.BusyPoll {
			n, e = epollWait(l.epfd, l.events, 0)
		} else {
			_ = l.epfile.SetReadDeadline(time.Now().Add(time.Second))
			err := l.eprc.Read(l.pollFn)
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				l.s.log.Error("sink: an event loop stopped", "error", fmt.Errorf("epoll: %w", err))
				return false
			}
			n, e = l.n, l.errno
			if err != nil {
				n, e = 0, 0
			}
		}
		if e != 0 && e != unix.EINTR {
			l.s.log.Error("sink: an event loop stopped", "error", fmt.Errorf("epoll_wait: %w", e))
			return false
		}
		now := time.Now()
		if n > 0 {
			busy = now
		}
		for _, ev := range l.events[:max(n, 0)] {
			switch fd := int(ev.Fd); fd {
			case l.wakefd:
				return true
			case l.lnfd:
				l.accept(now)
			default:
				if fd < len(l.conns) && l.conns[fd] != nil {
					l.serve(l.conns[fd], ev.Events, now)
				}
			}
		}
		if now.Sub(swept) >= time.Second {
			swept = now
			for _, c := range l.conns {
				if c != nil && now.Sub(c.last) > l.s.cfg.leanIdle {
					l.drop(c)
				}
			}
		}
		// Let the process's other goroutines run: a busy-polling loop
		// holds its processor.
		runtime.Gosched()
	}
}

// accept takes the connections waiting at the listener, up to 64 a turn.
func (l *epollLoop) accept(now time.Time) {
	for range 64 {
		nfd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(l.lnfd), 0, 0, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		switch {
		case e == unix.EAGAIN, e == unix.ECONNABORTED, e == unix.EINTR:
			return
		case e == unix.EMFILE, e == unix.ENFILE, e == unix.ENOBUFS, e == unix.ENOMEM:
			// The listener stays readable: wait a little rather than
			// spin while descriptors are short.
			l.s.log.Warn("sink: accept", "error", e)
			time.Sleep(10 * time.Millisecond)
			return
		case e != 0:
			l.s.log.Error("sink: accept", "error", e)
			return
		}
		fd := int(nfd)
		one := int32(1)
		unix.RawSyscall6(unix.SYS_SETSOCKOPT, nfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, uintptr(unsafe.Pointer(&one)), 4, 0)
		if !l.s.beginSession() {
			rawWrite(fd, l.s.lean.replies.busy)
			rawClose(fd)
			continue
		}
		c := &epollConn{fd: fd, ls: l.s.newLeanSession(), last: now}
		if e := epollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN); e != 0 {
			l.s.log.Error("sink: epoll_ctl", "error", e)
			c.ls.release()
			rawClose(fd)
			continue
		}
		for fd >= len(l.conns) {
			l.conns = append(l.conns, make([]*epollConn, len(l.conns)+64)...)
		}
		l.conns[fd] = c
		l.send(c) // the greeting
	}
}

// serve handles a ready connection.
func (l *epollLoop) serve(c *epollConn, events uint32, now time.Time) {
	c.last = now
	if c.waiting {
		if events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 || !l.send(c) || c.waiting {
			return
		}
		if c.ls.closing {
			l.drop(c)
		} else if e := epollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, unix.EPOLLIN); e != 0 {
			l.drop(c)
		}
		return
	}
	ls := c.ls
	// The session's carry goes first in the loop's buffer, the read
	// after it; what stays unanswered is carried again.
	ls.buf, ls.r, ls.w = l.buf, 0, copy(l.buf, c.carry)
	n, e := rawRead(c.fd, ls.buf[ls.w:])
	switch {
	case e == unix.EAGAIN:
		ls.buf = nil
		return
	case e != 0 || n == 0: // an error, or EOF
		ls.buf = nil
		l.drop(c)
		return
	}
	ls.w += n
	ls.feed()
	ls.space()
	c.carry = append(c.carry[:0], ls.buf[:ls.w]...)
	ls.buf = nil
	if l.send(c) && ls.closing && !c.waiting {
		l.drop(c)
	}
}

// send writes the session's replies; false when that ended the connection.
// What the socket does not take now waits for EPOLLOUT, and input waits
// with it.
func (l *epollLoop) send(c *epollConn) bool {
	out := c.ls.out
	for len(out) > 0 {
		n, e := rawWrite(c.fd, out)
		switch {
		case e == unix.EAGAIN:
			c.ls.out = append(c.ls.out[:0], out...)
			if !c.waiting {
				c.waiting = true
				if e := epollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, unix.EPOLLOUT); e != 0 {
					l.drop(c)
					return false
				}
			}
			return true
		case e != 0:
			l.drop(c)
			return false
		}
		out = out[n:]
	}
	c.ls.sent()
	c.waiting = false
	return true
}

// drop ends a session and closes its connection.
func (l *epollLoop) drop(c *epollConn) {
	if l.conns[c.fd] != c {
		return
	}
	l.conns[c.fd] = nil
	c.ls.release()
	rawClose(c.fd)
}

// pollOnce takes the ready events without waiting: false (wait for the
// set to be readable) when there are none.
func (l *epollLoop) pollOnce(fd uintptr) bool {
	l.n, l.errno = epollWait(int(fd), l.events, 0)
	return l.n > 0 || (l.errno != 0 && l.errno != unix.EINTR)
}

// The system calls below are raw (see startLean): each returns at once.

func epollWait(epfd int, events []unix.EpollEvent, msec int) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(msec), 0, 0)
	return int(n), e
}

func epollCtl(epfd, op, fd int, events uint32) unix.Errno {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(&ev)), 0, 0)
	return e
}

func rawRead(fd int, p []byte) (int, unix.Errno) {
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e != unix.EINTR {
			return int(n), e
		}
	}
}

func rawWrite(fd int, p []byte) (int, unix.Errno) {
	for {
		n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e != unix.EINTR {
			return int(n), e
		}
	}
}

func rawClose(fd int) { unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0) }
