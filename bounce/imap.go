package bounce

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// imapBox is an IMAP mailbox. Not safe for concurrent use.
type imapBox struct {
	c       *imapclient.Client
	conn    net.Conn // the TCP connection, for deadlines
	timeout time.Duration
	moveTo  string // "" with delete
	delete  bool
	expunge bool // messages were flagged \Deleted without UID EXPUNGE: EXPUNGE at Close
}

func openIMAP(ctx context.Context, e Endpoint, a Account, tc *tls.Config) (*imapBox, error) {
	d := net.Dialer{Timeout: a.Timeout}
	conn, err := d.DialContext(ctx, "tcp", e.Host)
	if err != nil {
		return nil, err
	}
	b := &imapBox{conn: conn, timeout: a.Timeout, delete: a.Delete}
	if !a.Delete {
		b.moveTo = a.MoveTo
		if b.moveTo == "" {
			b.moveTo = "Processed"
		}
	}
	err = b.do(ctx, func() error {
		if e.Implicit {
			tc = tc.Clone()
			tc.NextProtos = []string{"imap"}
			tconn := tls.Client(conn, tc)
			if err := tconn.HandshakeContext(ctx); err != nil {
				return fmt.Errorf("TLS: %w", err)
			}
			b.c = imapclient.New(tconn, nil)
		} else {
			c, err := imapclient.NewStartTLS(conn, &imapclient.Options{TLSConfig: tc})
			if err != nil {
				return fmt.Errorf("STARTTLS: %w", err)
			}
			b.c = c
		}
		if err := b.c.WaitGreeting(); err != nil {
			return err
		}
		if err := b.c.Login(a.Username, a.Password).Wait(); err != nil {
			var ie *imap.Error
			if errors.As(err, &ie) && (ie.Type == imap.StatusResponseTypeNo || ie.Code == imap.ResponseCodeAuthenticationFailed) {
				return fmt.Errorf("%w: %s", ErrLogin, ie.Text)
			}
			return fmt.Errorf("login: %w", err)
		}
		if b.moveTo != "" {
			if b.moveTo == e.Mailbox {
				return fmt.Errorf("bounces.move_to is the mailbox being read (%s)", e.Mailbox)
			}
			boxes, err := b.c.List("", b.moveTo, nil).Collect()
			if err != nil {
				return fmt.Errorf("LIST %s: %w", b.moveTo, err)
			}
			if len(boxes) == 0 {
				if err := b.c.Create(b.moveTo, nil).Wait(); err != nil {
					return fmt.Errorf("create mailbox %s (bounces.move_to): %w", b.moveTo, err)
				}
			}
		}
		if _, err := b.c.Select(e.Mailbox, nil).Wait(); err != nil {
			return fmt.Errorf("select %s: %w", e.Mailbox, err)
		}
		return nil
	})
	if err != nil {
		if b.c != nil {
			b.c.Close()
		}
		conn.Close()
		return nil, err
	}
	return b, nil
}

// do runs f with the per-command deadline, and aborts it (closing the
// connection) when ctx ends.
func (b *imapBox) do(ctx context.Context, f func() error) error {
	return guarded(ctx, b.conn, b.timeout, f)
}

func (b *imapBox) List(ctx context.Context) ([]string, error) {
	var ids []string
	err := b.do(ctx, func() error {
		data, err := b.c.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagDeleted}}, nil).Wait()
		if err != nil {
			return fmt.Errorf("search: %w", err)
		}
		for _, uid := range data.AllUIDs() {
			ids = append(ids, strconv.FormatUint(uint64(uid), 10))
		}
		return nil
	})
	return ids, err
}

func parseUID(id string) (imap.UIDSet, error) {
	n, err := strconv.ParseUint(id, 10, 32)
	if err != nil || n == 0 {
		return nil, fmt.Errorf("not an IMAP UID: %q", id)
	}
	return imap.UIDSetNum(imap.UID(n)), nil
}

func (b *imapBox) Fetch(ctx context.Context, id string) ([]byte, error) {
	set, err := parseUID(id)
	if err != nil {
		return nil, err
	}
	var raw []byte
	err = b.do(ctx, func() error {
		section := &imap.FetchItemBodySection{Peek: true} // BODY.PEEK[]: leave \Seen alone
		msgs, err := b.c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
		if err != nil {
			return fmt.Errorf("fetch %s: %w", id, err)
		}
		if len(msgs) == 0 {
			return fmt.Errorf("fetch %s: message gone", id)
		}
		raw = msgs[0].FindBodySection(section)
		return nil
	})
	return raw, err
}

func (b *imapBox) Done(ctx context.Context, id string) error {
	set, err := parseUID(id)
	if err != nil {
		return err
	}
	return b.do(ctx, func() error {
		if !b.delete {
			if _, err := b.c.Move(set, b.moveTo).Wait(); err != nil {
				return fmt.Errorf("move %s to %s: %w", id, b.moveTo, err)
			}
			return nil
		}
		flags := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen, imap.FlagDeleted}}
		if err := b.c.Store(set, flags, nil).Close(); err != nil {
			return fmt.Errorf("flag %s deleted: %w", id, err)
		}
		if b.c.Caps().Has(imap.CapUIDPlus) {
			if err := b.c.UIDExpunge(set).Close(); err != nil {
				return fmt.Errorf("expunge %s: %w", id, err)
			}
			return nil
		}
		b.expunge = true
		return nil
	})
}

func (b *imapBox) Close() error {
	b.conn.SetDeadline(time.Now().Add(b.timeout))
	var err error
	if b.expunge {
		err = b.c.Expunge().Close()
	}
	if lerr := b.c.Logout().Wait(); err == nil && lerr != nil && !errors.Is(lerr, net.ErrClosed) {
		err = lerr
	}
	b.c.Close()
	return err
}
