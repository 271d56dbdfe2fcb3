// Package dnstest runs a real DNS server on loopback for a test: UDP and
// TCP on one port of 127.0.0.1 (a resolver falls back to TCP when an
// answer is truncated), answering TXT queries from a zone the test gives.
// A name outside the zone gets NXDOMAIN; a name of the zone asked for
// another type, or an empty non-terminal (the parent of a name of the
// zone), gets an empty answer (NODATA), as a real server does.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Zone maps a name (without the final dot, any case) to its TXT records,
// each given whole: the server splits a record into character-strings of
// at most 255 octets, as a zone file must for a long DKIM key.
type Zone map[string][]string

// Server is a DNS server owned by one test; Set may change its zone while
// it runs. Safe for concurrent use.
type Server struct {
	addr string
	mu   sync.Mutex
	zone map[string][]string // lower case, rooted
	udp  *dns.Server
	tcp  *dns.Server
}

// Start serves zone on 127.0.0.1 until the test ends.
func Start(t testing.TB, zone Zone) *Server {
	t.Helper()
	s := &Server{zone: map[string][]string{}}
	for name, txt := range zone {
		s.Set(name, txt...)
	}
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	// The same port for both: a resolver asks the same address over TCP.
	for range 20 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatalf("dnstest: %v", err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("dnstest: no port free for both UDP and TCP: %v", err)
	}
	s.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.answer)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: ln, Handler: h}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan error, 1)
		go func() { done <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("dnstest: %v", err)
		}
		t.Cleanup(func() {
			srv.Shutdown()
			<-done
		})
	}
	return s
}

// Addr is the server's HOST:PORT, for UDP and TCP alike.
func (s *Server) Addr() string { return s.addr }

// Set replaces name's TXT records (none: the name exists without any).
func (s *Server) Set(name string, txt ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zone[dns.Fqdn(strings.ToLower(name))] = txt
}

func (s *Server) answer(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	txt, ok := s.zone[name]
	if !ok {
		for n := range s.zone {
			if strings.HasSuffix(n, "."+name) {
				ok = true // an empty non-terminal
				break
			}
		}
	}
	s.mu.Unlock()
	switch {
	case !ok:
		m.SetRcode(req, dns.RcodeNameError)
	case q.Qtype == dns.TypeTXT:
		for _, t := range txt {
			m.Answer = append(m.Answer, &dns.TXT{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
				Txt: split(t),
			})
		}
	}
	// Over UDP, an answer larger than the client's buffer is sent
	// truncated; the client asks again over TCP.
	m.Truncate(udpSize(w, req))
	w.WriteMsg(m)
}

// udpSize is the largest answer the client takes: unbounded over TCP,
// its EDNS0 buffer (or 512 octets) over UDP.
func udpSize(w dns.ResponseWriter, req *dns.Msg) int {
	if _, tcp := w.RemoteAddr().(*net.TCPAddr); tcp {
		return dns.MaxMsgSize
	}
	if o := req.IsEdns0(); o != nil {
		return int(o.UDPSize())
	}
	return dns.MinMsgSize
}

// split cuts a record into character-strings of at most 255 octets.
func split(s string) []string {
	var parts []string
	for len(s) > 255 {
		parts = append(parts, s[:255])
		s = s[255:]
	}
	return append(parts, s)
}
