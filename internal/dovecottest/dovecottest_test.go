package dovecottest

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"os"
	"strings"
	"testing"
)

// TestStart checks that the server answers over TLS with the test's
// certificate and logs the user in.
func TestStart(t *testing.T) {
	s := Start(t)
	s.Deliver([]byte("Subject: hi\r\n\r\nbody\r\n"))
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := tls.Dial("tcp", s.POP3S, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	line := func(cmd string) string {
		t.Helper()
		if cmd != "" {
			c.Write([]byte(cmd + "\r\n"))
		}
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	for _, step := range []struct{ cmd, want string }{
		{"", "+OK"}, {"USER " + s.User, "+OK"}, {"PASS " + s.Password, "+OK"}, {"STAT", "+OK 1 "},
	} {
		if got := line(step.cmd); !strings.HasPrefix(got, step.want) {
			t.Fatalf("%q: got %q, want %q", step.cmd, got, step.want)
		}
	}
	if n := len(s.Messages("INBOX")); n != 1 {
		t.Fatalf("INBOX holds %d messages, want 1", n)
	}
}
