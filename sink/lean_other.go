//go:build !linux

package sink

import "net"

// startLean runs the portable driver; Linux has an epoll one.
func (s *Server) startLean(ln net.Listener) error {
	s.startLeanGoroutines(ln)
	return nil
}
