package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Circuit is a provider's breaker: open, with a reason, while the provider
// must not be used (it refused the login, its sending quota is spent).
// LocalCircuit is this process's; RedisCircuit is every process's, so that
// one refused login keeps the other workers from trying (and locking the
// account out) and herald status can say why. Both are safe for concurrent
// use.
type Circuit interface {
	// Open opens the circuit until until (zero: until the credentials
	// change; a shared circuit then closes after an hour at most).
	Open(ctx context.Context, reason string, until time.Time) error
	// State is the reason the circuit is open at now, and until when
	// (zero: no set time), or "".
	State(ctx context.Context, now time.Time) (reason string, until time.Time, err error)
}

// LocalCircuit is a Circuit kept in this process.
type LocalCircuit struct {
	mu     sync.Mutex
	reason string
	until  time.Time
}

var _ Circuit = (*LocalCircuit)(nil)

func (c *LocalCircuit) Open(_ context.Context, reason string, until time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reason, c.until = reason, until
	return nil
}

func (c *LocalCircuit) State(_ context.Context, now time.Time) (string, time.Time, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reason != "" && !c.until.IsZero() && !now.Before(c.until) {
		c.reason, c.until = "", time.Time{}
	}
	return c.reason, c.until, nil
}

// RedisCircuit is a Circuit shared through Redis. A circuit is bound to
// the credentials in use when it opened (fingerprint: a hash, never the
// password): a worker configured with other credentials does not see it.
type RedisCircuit struct {
	rdb         redis.UniversalClient
	key         string
	fingerprint string
}

var _ Circuit = (*RedisCircuit)(nil)

// openFor is how long a shared circuit with no set end stays open.
const openFor = time.Hour

// NewRedisCircuit returns the shared circuit of provider name for the
// credentials with the given fingerprint.
func NewRedisCircuit(rdb redis.UniversalClient, prefix, name, fingerprint string) *RedisCircuit {
	return &RedisCircuit{rdb: rdb, key: prefix + "circuit:{" + name + "}", fingerprint: fingerprint}
}

func (c *RedisCircuit) Open(ctx context.Context, reason string, until time.Time) error {
	expire := until
	if expire.IsZero() {
		expire = time.Now().Add(openFor)
	}
	var ms int64
	if !until.IsZero() {
		ms = until.UnixMilli()
	}
	pipe := c.rdb.TxPipeline()
	pipe.HSet(ctx, c.key, "reason", reason, "until", ms, "fp", c.fingerprint)
	pipe.PExpireAt(ctx, c.key, expire)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("circuit: %w", err)
	}
	return nil
}

func (c *RedisCircuit) State(ctx context.Context, now time.Time) (string, time.Time, error) {
	v, err := c.rdb.HMGet(ctx, c.key, "reason", "until", "fp").Result()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("circuit: %w", err)
	}
	reason, _ := v[0].(string)
	fp, _ := v[2].(string)
	if reason == "" || fp != c.fingerprint {
		return "", time.Time{}, nil
	}
	var until time.Time
	if s, _ := v[1].(string); s != "" && s != "0" {
		var ms int64
		fmt.Sscan(s, &ms)
		until = time.UnixMilli(ms)
		if !now.Before(until) {
			return "", time.Time{}, nil
		}
	}
	return reason, until, nil
}
