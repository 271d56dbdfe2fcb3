package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/heraldmail/herald/outcome"
)

// tcpConnectTimeout bounds a TCP connect: a server that has not answered
// the SYN by then is not coming (provider.timeout bounds the rest).
const tcpConnectTimeout = 10 * time.Second

// diagnose explains a failure of the first connection to p that more tries
// will not mend, a wrong host, port or tls, with the fix; the provider then
// stops at once instead of after dialTries. It returns nil for a failure
// that may pass (a busy server, a throttle) and for a provider that
// connected before in this run (a restarting server is waited for).
func (p *provider) diagnose(ctx context.Context, derr *outcome.DeliveryError) *outcome.DeliveryError {
	if derr == nil || derr.Err == nil || p.connected.Load() || derr.Stage != outcome.StageConnect {
		return nil
	}
	err := derr.Err
	addr := net.JoinHostPort(p.cfg.Host, strconv.Itoa(p.cfg.Port))
	ports := "submission ports: 587 with tls = \"starttls\", 465 with tls = \"tls\""
	var (
		dnsErr *net.DNSError
		opErr  *net.OpError
		recErr tls.RecordHeaderError
	)
	var why string
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		why = fmt.Sprintf("the host name %q does not exist (DNS): check provider.host", p.cfg.Host)
	case errors.Is(err, syscall.ECONNREFUSED):
		why = fmt.Sprintf("nothing accepts connections at %s (connection refused): check provider.host and provider.port (%s)", addr, ports)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		why = fmt.Sprintf("%s cannot be reached from this machine (%v): check provider.host, and that a firewall lets this machine connect out to port %d", addr, err, p.cfg.Port)
	case errors.As(err, &opErr) && opErr.Op == "dial" && opErr.Timeout():
		why = fmt.Sprintf("no answer from %s within %s: check provider.host and provider.port (%s), and that a firewall lets this machine connect out to port %d", addr, tcpConnectTimeout, ports, p.cfg.Port)
	case errors.As(err, &recErr) && p.cfg.TLS == "tls":
		why = fmt.Sprintf("%s does not speak TLS from the first byte: it answered in clear text (%q). Port 587 (and 25) use tls = \"starttls\"; tls = \"tls\" is for port 465", addr, strings.TrimRight(string(recErr.RecordHeader[:]), "\r\n"))
	case p.cfg.TLS != "tls" && isTimeout(err) && p.probed.CompareAndSwap(false, true) && p.speaksTLS(ctx, addr):
		why = fmt.Sprintf("%s speaks TLS from the first byte (as port 465 does) and sent no greeting in clear text: set tls = \"tls\"", addr)
	default:
		return nil
	}
	return &outcome.DeliveryError{Class: outcome.ClassAuth, Stage: outcome.StageConnect, Text: why, Err: err}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// speaksTLS reports whether a TLS handshake succeeds at addr: a server
// that waits in silence for a plaintext client may be waiting for its TLS
// hello. Only to tell the user; the certificate is not looked at here.
func (p *provider) speaksTLS(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: tcpConnectTimeout}, Config: &tls.Config{InsecureSkipVerify: true, ServerName: p.cfg.Host}} //nolint:gosec // a probe that sends nothing
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// certificateHint is said with a certificate herald does not trust.
func certificateHint(err error) string {
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	switch {
	case errors.As(err, &uae):
		return "; if the server's certificate comes from a private CA or is self-signed (herald sink --tls-cert-out writes its own), give that certificate (PEM) in provider.ca_file"
	case errors.As(err, &hne):
		return "; provider.host must be a name the certificate is for"
	case errors.As(err, &cie):
		return "; the certificate is not valid (expired, or not for a server)"
	}
	return ""
}
