package sink

import (
	"bytes"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// wrapListener hands go-smtp every connection as a wrapConn.
type wrapListener struct {
	net.Listener
	s *Server
}

func (l *wrapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &wrapConn{Conn: c, s: l.s, out: make([]byte, 0, 512)}, nil
}

// wrapConn is a client's TCP connection as the server sees it. It
//
//   - buffers replies until the server next reads (or closes): go-smtp
//     flushes every reply line, so an EHLO reply would otherwise cost a
//     write per line; a server reads only once it has answered everything
//     it was sent, so nothing waits;
//   - ends the session as it writes 221 (the answer to QUIT) or reads EOF,
//     before the client can open its next session (session.end);
//   - delays the greeting (Faults.Latencies[StageGreeting]);
//   - removes PIPELINING and ENHANCEDSTATUSCODES from the EHLO reply, and
//     x.y.z codes from replies (Config.NoPipelining,
//     Config.NoEnhancedStatusCodes), and records reads (RecordReads).
//
// go-smtp writes each reply line with one Write, which the rewriting relies
// on. Inside TLS this connection carries records, which it passes through
// untouched.
type wrapConn struct {
	net.Conn
	s    *Server
	sess atomic.Pointer[session]

	mu      sync.Mutex
	out     []byte
	greeted bool
	aborted bool
}

// rawConn finds the wrapConn under a connection go-smtp holds.
func rawConn(c net.Conn) *wrapConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	w, _ := c.(*wrapConn)
	return w
}

var (
	pipeliningLine = []byte("250-PIPELINING\r\n")
	enhancedLine   = []byte("250-ENHANCEDSTATUSCODES\r\n")
	quitReply      = []byte("221 ")
)

func (c *wrapConn) Write(b []byte) (int, error) {
	n := len(b)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aborted {
		return 0, net.ErrClosed
	}
	if !c.greeted {
		c.greeted = true
		if d := c.s.cfg.Faults.latency(StageGreeting); d > 0 {
			c.mu.Unlock()
			time.Sleep(d)
			c.mu.Lock()
		}
	}
	cfg := &c.s.cfg
	switch {
	case cfg.NoPipelining && bytes.Equal(b, pipeliningLine),
		cfg.NoEnhancedStatusCodes && bytes.Equal(b, enhancedLine):
		return n, nil
	case cfg.NoEnhancedStatusCodes:
		b = stripEnhanced(b)
	}
	if bytes.HasPrefix(b, quitReply) {
		c.endSession()
	}
	c.out = append(c.out, b...)
	if len(c.out) >= 4096 {
		return n, c.flushLocked()
	}
	return n, nil
}

// stripEnhanced removes the x.y.z code after a reply code: "250 2.0.0 OK"
// becomes "250 OK". Anything else passes unchanged.
func stripEnhanced(b []byte) []byte {
	if len(b) < 10 || !digit(b[0]) || !digit(b[1]) || !digit(b[2]) || (b[3] != ' ' && b[3] != '-') {
		return b
	}
	i := 4
	for part := 0; part < 3; part++ {
		j := i
		for j < len(b) && j-i < 3 && digit(b[j]) {
			j++
		}
		if j == i {
			return b
		}
		want := byte('.')
		if part == 2 {
			want = ' '
		}
		if j >= len(b) || b[j] != want {
			return b
		}
		i = j + 1
	}
	return append(b[:4:4], b[i:]...)
}

func digit(b byte) bool { return b >= '0' && b <= '9' }

func (c *wrapConn) flushLocked() error {
	if len(c.out) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.out)
	c.out = c.out[:0]
	return err
}

func (c *wrapConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	err := c.flushLocked()
	c.mu.Unlock()
	if err != nil {
		c.endSession()
		return 0, err
	}
	n, err := c.Conn.Read(b)
	if n > 0 && c.s.cfg.RecordReads {
		c.s.mu.Lock()
		c.s.reads = append(c.s.reads, append([]byte(nil), b[:n]...))
		c.s.mu.Unlock()
	}
	if err != nil {
		c.endSession()
	}
	return n, err
}

// Close sends what is buffered, as an unbuffered server would have, then
// closes.
func (c *wrapConn) Close() error {
	c.mu.Lock()
	if len(c.out) > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		_ = c.flushLocked()
	}
	c.aborted = true
	c.mu.Unlock()
	c.endSession()
	return c.Conn.Close()
}

// abort closes the connection without sending what is buffered.
func (c *wrapConn) abort() {
	c.mu.Lock()
	c.out = c.out[:0]
	c.aborted = true
	c.mu.Unlock()
	c.endSession()
	_ = c.Conn.Close()
}

func (c *wrapConn) endSession() {
	if ss := c.sess.Load(); ss != nil {
		ss.end()
	}
}
