package check

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Resolver looks up TXT records; *net.Resolver is one.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// NewResolver is a resolver that asks the DNS server at addr (HOST:PORT)
// over UDP, and over TCP when an answer is truncated; "" is the system's.
func NewResolver(addr string) (Resolver, error) {
	if addr == "" {
		return net.DefaultResolver, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("--resolver %q: want HOST:PORT, e.g. 127.0.0.1:53 or [::1]:53", addr)
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}, nil
}

// lookup is what a TXT query found: the records, none (the name or the
// record does not exist), or an error that says nothing of the record (a
// timeout, a server failure).
type lookup struct {
	txt []string
	err error // nil also when there is no record
}

// lookupTXT asks r for name's TXT records; the name is rooted, so that no
// search domain of the system's configuration is tried.
func lookupTXT(ctx context.Context, r Resolver, name string) lookup {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	txt, err := r.LookupTXT(ctx, strings.TrimSuffix(name, ".")+".")
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return lookup{}
	}
	if err != nil {
		return lookup{err: fmt.Errorf("cannot look up TXT %s: %w", name, err)}
	}
	return lookup{txt: txt}
}
