// Package dovecottest starts a real Dovecot (IMAP and POP3) for a test, with
// its own configuration in a temporary folder: it listens on 127.0.0.1 on
// free ports (imap with STARTTLS, imaps, pop3 with STLS, pop3s), with TLS
// from a self-signed certificate made for the test, one user from a
// passwd-file, and a maildir in the folder. A test that needs Dovecot skips
// only when the dovecot binary is absent and the CI variable is unset; in CI
// a missing binary fails the test (Debian: apt-get install dovecot-imapd
// dovecot-pop3d).
//
// Run as root, Dovecot refuses to run its login processes or to open mail
// as root: the login processes then run as Debian's dovenull and dovecot
// users, and the mail as nobody (the maildir is chowned to it). Run as
// another user, everything runs as that user.
package dovecottest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Server is a dovecot owned by one test.
type Server struct {
	// User and Password log in; the address is also the user name.
	User, Password string
	// Addresses (127.0.0.1:port) of the four listeners.
	IMAP, IMAPS, POP3, POP3S string
	// CAFile is the PEM file of the self-signed certificate the server
	// presents (for 127.0.0.1): the CA a client must trust.
	CAFile string

	t        testing.TB
	dir      string
	maildir  string
	uid, gid int // owner of the maildir (-1: the current user)
	cmd      *exec.Cmd
	exited   chan struct{}
}

var seq atomic.Int64

// Start runs dovecot and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		for _, p := range []string{"/usr/sbin/dovecot", "/usr/local/sbin/dovecot"} {
			if _, err := os.Stat(p); err == nil {
				bin = p
			}
		}
	}
	if bin == "" {
		if os.Getenv("CI") == "" {
			t.Skip("dovecot is not installed (CI installs it; apt-get install dovecot-imapd dovecot-pop3d)")
		}
		t.Fatal("dovecot is not installed, and CI must run the mailbox tests")
	}
	dir, err := os.MkdirTemp("", "dovecottest")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, dir: dir, User: "bounces@example.com", Password: "s3cret-" + strconv.FormatInt(time.Now().UnixNano(), 36), uid: -1, gid: -1}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "dovecot.log")); err == nil {
				t.Logf("dovecot log:\n%s", b)
			}
		}
		os.RemoveAll(dir)
	})
	s.CAFile = filepath.Join(dir, "cert.pem")
	if err := writeCert(s.CAFile, filepath.Join(dir, "key.pem")); err != nil {
		t.Fatal(err)
	}
	users, err := s.users()
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	s.maildir = filepath.Join(home, "Maildir")
	for _, d := range []string{"new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(s.maildir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if s.uid >= 0 {
		// The mail processes run as nobody: they must reach the folder.
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := chownAll(home, s.uid, s.gid); err != nil {
			t.Fatal(err)
		}
	}
	passwd := fmt.Sprintf("%s:{PLAIN}%s::::\n", s.User, s.Password)
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		err := s.start(bin, users, home)
		if err == nil {
			return s
		}
		if attempt == 3 {
			t.Fatal(err)
		}
		// Most likely a port taken between picking and binding: again.
	}
}

// users says who runs what: login processes, internal processes, mail.
type roles struct{ login, internal, internalGroup, mailUID, mailGID string }

func (s *Server) users() (roles, error) {
	me, err := user.Current()
	if err != nil {
		return roles{}, err
	}
	if me.Uid != "0" {
		g, err := user.LookupGroupId(me.Gid)
		if err != nil {
			return roles{}, err
		}
		return roles{me.Username, me.Username, g.Name, me.Uid, me.Gid}, nil
	}
	for _, name := range []string{"dovecot", "dovenull"} {
		if _, err := user.Lookup(name); err != nil {
			return roles{}, fmt.Errorf("running as root, dovecot needs the user %s (made by Debian's dovecot-core): %w", name, err)
		}
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		return roles{}, err
	}
	s.uid, _ = strconv.Atoi(nobody.Uid)
	s.gid, _ = strconv.Atoi(nobody.Gid)
	return roles{"dovenull", "dovecot", "dovecot", nobody.Uid, nobody.Gid}, nil
}

func (s *Server) start(bin string, r roles, home string) error {
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	addr := func(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)) }
	s.IMAP, s.IMAPS, s.POP3, s.POP3S = addr(ports[0]), addr(ports[1]), addr(ports[2]), addr(ports[3])
	d := s.dir
	conf := fmt.Sprintf(`# written by dovecottest
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
# required: no login without TLS, even from 127.0.0.1
ssl = required
ssl_cert = <%[1]s/cert.pem
ssl_key = <%[1]s/key.pem
auth_mechanisms = plain
# tests try wrong passwords: answer at once
auth_failure_delay = 0
auth_verbose = yes
default_internal_user = %[2]s
default_internal_group = %[3]s
default_login_user = %[4]s
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[1]s/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%%u %[1]s/passwd
  default_fields = uid=%[5]s gid=%[6]s home=%[7]s
}
mail_location = maildir:~/Maildir
service imap-login {
  inet_listener imap {
    port = %[8]d
  }
  inet_listener imaps {
    port = %[9]d
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    port = %[10]d
  }
  inet_listener pop3s {
    port = %[11]d
    ssl = yes
  }
}
`, d, r.internal, r.internalGroup, r.login, r.mailUID, r.mailGID, home, ports[0], ports[1], ports[2], ports[3])
	confPath := filepath.Join(d, "dovecot.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return err
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-F", "-c", confPath)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for _, a := range []string{s.IMAP, s.IMAPS, s.POP3, s.POP3S} {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-s.exited:
				log, _ := os.ReadFile(filepath.Join(d, "dovecot.log"))
				s.cmd = nil
				return fmt.Errorf("dovecot exited: %s%s", out.String(), log)
			default:
			}
			if time.Now().After(deadline) {
				s.stop()
				return fmt.Errorf("dovecot did not listen on %s", a)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// stop ends dovecot and every process it started (its process group).
func (s *Server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	pid := s.cmd.Process.Pid
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-s.exited
	}
	// Children of the master that outlived it (a login process).
	syscall.Kill(-pid, syscall.SIGKILL)
	s.cmd = nil
}

// Deliver puts a message into the INBOX (Maildir/new) as a local delivery
// agent would, and returns its file name.
func (s *Server) Deliver(raw []byte) string {
	s.t.Helper()
	name := fmt.Sprintf("%d.M%dP%d.dovecottest", time.Now().Unix(), seq.Add(1), os.Getpid())
	tmp := filepath.Join(s.maildir, "tmp", name)
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		s.t.Fatal(err)
	}
	if s.uid >= 0 {
		if err := os.Chown(tmp, s.uid, s.gid); err != nil {
			s.t.Fatal(err)
		}
	}
	if err := os.Rename(tmp, filepath.Join(s.maildir, "new", name)); err != nil {
		s.t.Fatal(err)
	}
	return name
}

// Message is one message file of the maildir.
type Message struct {
	Name  string // file name without the flags
	Flags string // maildir flags: S seen, T deleted (trashed), …
	Data  []byte
}

// Messages returns the messages in a folder ("INBOX" or another mailbox
// name), read from the maildir, in name order (the order of delivery).
// Expunged messages are gone; messages flagged \Deleted but not expunged
// are still there, with flag T.
func (s *Server) Messages(folder string) []Message {
	s.t.Helper()
	root := s.maildir
	if !strings.EqualFold(folder, "INBOX") {
		root = filepath.Join(s.maildir, "."+folder)
	}
	var msgs []Message
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(root, sub))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			s.t.Fatal(err)
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(root, sub, e.Name()))
			if err != nil {
				s.t.Fatal(err)
			}
			m := Message{Name: e.Name(), Data: b}
			if i := strings.Index(m.Name, ":2,"); i >= 0 {
				m.Name, m.Flags = m.Name[:i], m.Name[i+3:]
			}
			msgs = append(msgs, m)
		}
	}
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].Name < msgs[j].Name })
	return msgs
}

// Log is the server's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "dovecot.log"))
	return string(b)
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func chownAll(root string, uid, gid int) error {
	return filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, gid)
	})
}

// writeCert makes a self-signed certificate for 127.0.0.1 and localhost.
func writeCert(certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "dovecottest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	// dovecot reads the key as root before dropping privileges.
	return os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
}
