package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Shared limits live in Redis under keys hash-tagged by provider name
// ({name}), so each provider's keys share a slot on Redis Cluster: the
// provider's name identifies the account for every worker that uses it.

// RedisPacer is a Pacer whose state every process shares through Redis.
type RedisPacer struct {
	rdb redis.UniversalClient
	key string
	p   Policy

	// With no rate, only a cool-down can hold a message back: its end is
	// read at most every pausePoll, not once per message.
	mu        sync.Mutex
	paused    time.Time
	pausedAt  time.Time
	pausePoll time.Duration
}

var _ Pacer = (*RedisPacer)(nil)

// NewRedisPacer returns the shared pacer of provider name; prefix
// namespaces the keys ("herald:").
func NewRedisPacer(rdb redis.UniversalClient, prefix, name string, p Policy) *RedisPacer {
	return &RedisPacer{rdb: rdb, key: prefix + "pace:{" + name + "}", p: p, pausePoll: 100 * time.Millisecond}
}

func (r *RedisPacer) run(ctx context.Context, op string, now time.Time) (float64, error) {
	v, err := scriptPace.Run(ctx, r.rdb, []string{r.key}, op, fmt.Sprintf("%.3f", ms(now)), r.p.Rate, r.p.Burst, msOf(r.p.Cooldown)).Text()
	if err != nil {
		return 0, fmt.Errorf("rate limit: %w", err)
	}
	return strconv.ParseFloat(v, 64)
}

func (r *RedisPacer) Take(ctx context.Context, now time.Time) (time.Duration, error) {
	if r.p.Rate == 0 {
		until, err := r.PausedUntil(ctx, now)
		if err != nil || until.IsZero() {
			return 0, err
		}
		return until.Sub(now), nil
	}
	w, err := r.run(ctx, "take", now)
	return fromMs(w), err
}

func (r *RedisPacer) Undo(ctx context.Context, now time.Time) error {
	if r.p.Rate == 0 {
		return nil
	}
	_, err := r.run(ctx, "undo", now)
	return err
}

func (r *RedisPacer) Throttled(ctx context.Context, now time.Time) error {
	_, err := r.run(ctx, "throttle", now)
	r.mu.Lock()
	r.pausedAt = time.Time{} // read it again
	r.mu.Unlock()
	return err
}

func (r *RedisPacer) Rate(ctx context.Context, now time.Time) (float64, error) {
	if r.p.Rate == 0 {
		return 0, nil
	}
	return r.run(ctx, "rate", now)
}

func (r *RedisPacer) PausedUntil(ctx context.Context, now time.Time) (time.Time, error) {
	r.mu.Lock()
	fresh := !r.pausedAt.IsZero() && now.Sub(r.pausedAt) < r.pausePoll && !now.Before(r.pausedAt)
	until := r.paused
	r.mu.Unlock()
	if !fresh {
		v, err := r.run(ctx, "paused", now)
		if err != nil {
			return time.Time{}, err
		}
		until = fromMsTime(v)
		r.mu.Lock()
		r.paused, r.pausedAt = until, now
		r.mu.Unlock()
	}
	if until.After(now) {
		return until, nil
	}
	return time.Time{}, nil
}

// scriptPace is pace (pace.go) in Lua. KEYS: the provider's pace hash.
// ARGV: op (take, undo, throttle, rate, paused), now (ms), rate, burst,
// cool-down (ms). Returns, as a string: take: the wait in ms (0: taken);
// rate: the effective rate; paused: the end of the cool-down (ms).
var scriptPace = redis.NewScript(`
local op, now, base, burst, cool = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local v = redis.call('HMGET', KEYS[1], 'tat', 'cur', 'paused', 'changed', 'ceil', 'cut')
local tat, cur, paused, changed = tonumber(v[1]) or 0, tonumber(v[2]) or base, tonumber(v[3]) or 0, tonumber(v[4]) or 0
local ceil, cut = tonumber(v[5]) or 0, tonumber(v[6]) or 0
if cur <= 0 or cur ~= cur then cur = base end
if cur > base then cur = base end
local quiet = math.max(changed, paused)
if cur < base and now - quiet >= cool then
  local step = base / 10
  if ceil > 0 then step = math.max(ceil / 10, base / 64) end
  cur = math.min(cur + math.floor((now - quiet) / math.max(cool, 1)) * step, base)
  changed = now
end
local out = 0
if op == 'take' then
  if now < paused then
    out = paused - now
  elseif base > 0 then
    local t = 1000 / cur
    local start = tat
    if start < now - t / 2 then start = now end
    local nxt = start + t
    local limit = math.max(burst, 1) * t
    if nxt - now > limit + 0.001 then out = nxt - now - limit else tat = nxt end
  end
elseif op == 'undo' then
  if base > 0 then tat = tat - 1000 / cur end
elseif op == 'throttle' then
  paused = now + cool
  if base > 0 and now - cut >= cool / 2 then ceil = cur; cur = math.max(cur / 2, base / 64); cut = now end
  changed = now
  if base > 0 then tat = paused + (math.max(burst, 1) - 1) * 1000 / cur end
elseif op == 'rate' then
  out = cur
elseif op == 'paused' then
  out = paused
end
local f = '%.3f'
redis.call('HSET', KEYS[1], 'tat', string.format(f, tat), 'cur', string.format('%.6f', cur), 'paused', string.format(f, paused),
  'changed', string.format(f, changed), 'ceil', string.format('%.6f', ceil), 'cut', string.format(f, cut))
redis.call('PEXPIRE', KEYS[1], 86400000)
return string.format('%.6f', out)
`)

// RedisQuota is a Quota every process shares through Redis.
type RedisQuota struct {
	rdb           redis.UniversalClient
	counts, order string
	limit         int64
}

var _ Quota = (*RedisQuota)(nil)

// NewRedisQuota returns the shared quota of limit messages a day of
// provider name (0: unlimited).
func NewRedisQuota(rdb redis.UniversalClient, prefix, name string, limit int) *RedisQuota {
	tag := "{" + name + "}"
	return &RedisQuota{rdb: rdb, counts: prefix + "quota:" + tag, order: prefix + "quota-minutes:" + tag, limit: int64(limit)}
}

func (q *RedisQuota) run(ctx context.Context, op string, now time.Time, n int64) ([]int64, error) {
	minute := now.Unix() / 60
	first := now.Add(-Window).Unix() / 60
	v, err := scriptQuota.Run(ctx, q.rdb, []string{q.counts, q.order}, op, minute, first, q.limit, n).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("daily quota: %w", err)
	}
	return v, nil
}

func (q *RedisQuota) Take(ctx context.Context, now time.Time) (bool, time.Time, error) {
	if q.limit == 0 {
		return true, time.Time{}, nil
	}
	v, err := q.run(ctx, "take", now, 0)
	if err != nil {
		return false, time.Time{}, err
	}
	if v[0] == 1 {
		return true, time.Time{}, nil
	}
	return false, time.Unix((v[1]+1)*60, 0).Add(Window), nil
}

func (q *RedisQuota) Undo(ctx context.Context, t time.Time) error {
	if q.limit == 0 {
		return nil
	}
	_, err := q.run(ctx, "undo", t, 0)
	return err
}

func (q *RedisQuota) Used(ctx context.Context, now time.Time) (int64, error) {
	v, err := q.run(ctx, "used", now, 0)
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

func (q *RedisQuota) Seed(ctx context.Context, t time.Time, n int64) error {
	_, err := q.run(ctx, "seed", t, n)
	return err
}

func (q *RedisQuota) Limit() int64 { return q.limit }

// scriptQuota keeps a rolling day counted per minute. KEYS: counts (hash:
// minute -> n, and total), minutes (sorted set of the minutes counted).
// ARGV: op (take, undo, used, seed), minute, first minute of the window,
// limit, n (seed). Returns take: {1} or {0, oldest minute}; used: {total}.
var scriptQuota = redis.NewScript(`
local op, m, first, limit, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if op == 'seed' then
  if redis.call('EXISTS', KEYS[1]) == 1 or n <= 0 then return {0} end
  redis.call('HSET', KEYS[1], m, n, 'total', n)
  redis.call('ZADD', KEYS[2], m, m)
  return {1}
end
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. first)) do
  local c = tonumber(redis.call('HGET', KEYS[1], old)) or 0
  redis.call('HINCRBY', KEYS[1], 'total', -c)
  redis.call('HDEL', KEYS[1], old)
  redis.call('ZREM', KEYS[2], old)
end
local total = tonumber(redis.call('HGET', KEYS[1], 'total')) or 0
if op == 'used' then return {total} end
if op == 'undo' then
  if (tonumber(redis.call('HGET', KEYS[1], m)) or 0) > 0 then
    redis.call('HINCRBY', KEYS[1], m, -1)
    redis.call('HINCRBY', KEYS[1], 'total', -1)
  end
  return {0}
end
if total >= limit then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  return {0, tonumber(oldest) or m}
end
redis.call('HINCRBY', KEYS[1], m, 1)
redis.call('HINCRBY', KEYS[1], 'total', 1)
redis.call('ZADD', KEYS[2], m, m)
redis.call('PEXPIRE', KEYS[1], 2 * 86400000)
redis.call('PEXPIRE', KEYS[2], 2 * 86400000)
return {1}
`)

// RedisSlots is Slots shared by every process through Redis: a sorted set
// of holders scored by when their slot expires, and a queue of the holders
// waiting for one, served in the order they came, so that a process that
// drops a connection and opens the next one at once does not keep the
// slots from the others.
type RedisSlots struct {
	rdb                 redis.UniversalClient
	key, waiting, alive string
	limit               int

	mu        sync.Mutex
	held      map[string]bool
	contended atomic.Bool
}

var _ Slots = (*RedisSlots)(nil)

// slotWaiterTTL is how long a waiter keeps its place after its last try.
const slotWaiterTTL = 5 * time.Second

// NewRedisSlots returns the shared connection slots of provider name.
func NewRedisSlots(rdb redis.UniversalClient, prefix, name string, limit int) *RedisSlots {
	tag := "{" + name + "}"
	return &RedisSlots{rdb: rdb, key: prefix + "conns:" + tag, waiting: prefix + "conns-waiting:" + tag, alive: prefix + "conns-waiters:" + tag,
		limit: limit, held: map[string]bool{}}
}

func (s *RedisSlots) Acquire(ctx context.Context, holder string, now time.Time) (bool, error) {
	v, err := scriptSlots.Run(ctx, s.rdb, []string{s.key, s.waiting, s.alive}, holder, now.UnixMilli(), now.Add(SlotTTL).UnixMilli(), s.limit, now.Add(slotWaiterTTL).UnixMilli()).Int64Slice()
	if err != nil {
		return false, fmt.Errorf("connection slots: %w", err)
	}
	ok := v[0]
	s.contended.Store(v[1] > 0)
	if ok == 1 {
		s.mu.Lock()
		s.held[holder] = true
		s.mu.Unlock()
	}
	return ok == 1, nil
}

func (s *RedisSlots) Release(ctx context.Context, holder string) error {
	s.mu.Lock()
	delete(s.held, holder)
	s.mu.Unlock()
	if err := s.rdb.ZRem(ctx, s.key, holder).Err(); err != nil {
		return fmt.Errorf("connection slots: %w", err)
	}
	return nil
}

// Renew extends every slot this process holds. A slot that expired
// meanwhile (this process stalled for SlotTTL) is not taken back: its
// holder keeps its connection until it next drops it, so the cap can be
// exceeded by the holders of a stalled process until then.
func (s *RedisSlots) Renew(ctx context.Context, now time.Time) error {
	s.mu.Lock()
	holders := make([]string, 0, len(s.held))
	for h := range s.held {
		holders = append(holders, h)
	}
	s.mu.Unlock()
	pipe := s.rdb.Pipeline()
	for _, h := range holders {
		pipe.ZAddXX(ctx, s.key, redis.Z{Score: float64(now.Add(SlotTTL).UnixMilli()), Member: h})
	}
	waiting := pipe.ZCount(ctx, s.waiting, "-inf", "+inf")
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("connection slots: %w", err)
	}
	s.contended.Store(waiting.Val() > 0)
	return nil
}

func (s *RedisSlots) Contended() bool { return s.contended.Load() }

func (s *RedisSlots) Limit() int { return s.limit }

// scriptSlots: KEYS: holders (sorted set: holder -> slot expiry, ms),
// waiting (sorted set: holder -> when it began to wait), waiters (hash:
// holder -> when its place expires). ARGV: holder, now, slot expiry,
// limit, place expiry. Returns {1 when holder has a slot, holders waiting}.
var scriptSlots = redis.NewScript(`
local me, now = ARGV[1], tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], me) then
  redis.call('ZADD', KEYS[1], ARGV[3], me)
  return {1, redis.call('ZCARD', KEYS[2])}
end
local seen = redis.call('HGETALL', KEYS[3])
for i = 1, #seen, 2 do
  if tonumber(seen[i+1]) < now then
    redis.call('HDEL', KEYS[3], seen[i])
    redis.call('ZREM', KEYS[2], seen[i])
  end
end
local free = tonumber(ARGV[4]) - redis.call('ZCARD', KEYS[1])
local ahead = redis.call('ZRANK', KEYS[2], me) or redis.call('ZCARD', KEYS[2])
if ahead < free then
  redis.call('ZADD', KEYS[1], ARGV[3], me)
  redis.call('ZREM', KEYS[2], me)
  redis.call('HDEL', KEYS[3], me)
  redis.call('PEXPIRE', KEYS[1], 86400000)
  return {1, redis.call('ZCARD', KEYS[2])}
end
redis.call('ZADD', KEYS[2], 'NX', now, me)
redis.call('HSET', KEYS[3], me, ARGV[5])
redis.call('PEXPIRE', KEYS[2], 86400000)
redis.call('PEXPIRE', KEYS[3], 86400000)
return {0, redis.call('ZCARD', KEYS[2])}
`)
