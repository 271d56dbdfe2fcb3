// Package unsubscribe signs and checks the per-recipient tokens carried by
// one-click unsubscribe links (RFC 8058).
//
// A token names the suppression list (the sending domain), the recipient's
// key (the lower-cased address) and the campaign, and carries an HMAC-SHA256
// of the three under the operator's secret: a token cannot be forged or
// altered without the secret, and no state is kept to check it.
package unsubscribe

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
)

// Param is the query parameter of the link that carries the token.
const Param = "t"

// MinSecret is the shortest secret accepted, in bytes.
const MinSecret = 16

// Subject is what a token speaks for.
type Subject struct {
	List     string // suppression list: the sending domain
	Key      string // recipient's key: the lower-cased address
	Campaign string
}

// ErrInvalid is returned for a token that is malformed, altered or signed
// with another secret.
var ErrInvalid = errors.New("unsubscribe: invalid or altered token")

var enc = base64.RawURLEncoding

// Signer makes and checks tokens with one secret.
type Signer struct{ secret []byte }

// NewSigner returns a Signer; the secret must be at least MinSecret bytes.
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < MinSecret {
		return nil, errors.New("unsubscribe: the secret must be at least 16 bytes")
	}
	return &Signer{secret: append([]byte(nil), secret...)}, nil
}

func (s *Signer) mac(payload string) []byte {
	h := hmac.New(sha256.New, s.secret)
	h.Write([]byte("herald-unsubscribe-v1\n"))
	h.Write([]byte(payload))
	return h.Sum(nil)[:16]
}

// Token signs sub.
func (s *Signer) Token(sub Subject) string {
	payload := sub.List + "\n" + sub.Key + "\n" + sub.Campaign
	return enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(s.mac(payload))
}

// Verify checks a token and returns what it speaks for.
func (s *Signer) Verify(token string) (Subject, error) {
	p64, m64, ok := strings.Cut(token, ".")
	if !ok {
		return Subject{}, ErrInvalid
	}
	payload, err := enc.DecodeString(p64)
	if err != nil {
		return Subject{}, ErrInvalid
	}
	mac, err := enc.DecodeString(m64)
	if err != nil || !hmac.Equal(mac, s.mac(string(payload))) {
		return Subject{}, ErrInvalid
	}
	parts := strings.Split(string(payload), "\n")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return Subject{}, ErrInvalid
	}
	return Subject{List: parts[0], Key: parts[1], Campaign: parts[2]}, nil
}

// Link returns base with the token of sub in its query.
func (s *Signer) Link(base *url.URL, sub Subject) string {
	u := *base
	q := u.Query()
	q.Set(Param, s.Token(sub))
	u.RawQuery = q.Encode()
	return u.String()
}
