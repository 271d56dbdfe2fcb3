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

// RedisPacer is a Pacer whose state every process shares through Redis:
// one hash per provider holds the pace, the cool-down and the window of
// messages let go, so that every worker sending through the account
// counts into one window and learns one limit.
type RedisPacer struct {
	rdb redis.UniversalClient
	key string
	p   Policy

	// With no rate configured and none learned, a message costs no round
	// trip: Take counts it here (pending, the first of them at first) and,
	// at most every pausePoll, adds the count to the shared window and
	// reads the shared state back (a cool-down, a pace learned by any
	// process). Every call of the script also adds what is pending, so a
	// throttle reply measures this process's messages up to the last one;
	// another process's last pausePoll of messages may be missing.
	mu        sync.Mutex
	paused    time.Time // the shared state as last read
	cur       float64
	readAt    time.Time
	pending   float64
	first     time.Time
	pausePoll time.Duration
}

var _ Pacer = (*RedisPacer)(nil)

// NewRedisPacer returns the shared pacer of provider name; prefix
// namespaces the keys ("herald:").
func NewRedisPacer(rdb redis.UniversalClient, prefix, name string, p Policy) *RedisPacer {
	return &RedisPacer{rdb: rdb, key: prefix + "pace:{" + name + "}", p: p, pausePoll: 100 * time.Millisecond}
}

// run runs op at now, adding what is pending, and notes the shared state
// it returns; out is op's answer (scriptPace).
func (r *RedisPacer) run(ctx context.Context, op string, now time.Time) (out float64, err error) {
	r.mu.Lock()
	n, first := r.pending, r.first
	r.pending, r.first = 0, time.Time{}
	r.mu.Unlock()
	if first.IsZero() {
		first = now
	}
	v, err := scriptPace.Run(ctx, r.rdb, []string{r.key}, op, fmt.Sprintf("%.3f", ms(now)), r.p.Rate, r.p.Burst, msOf(r.p.Cooldown),
		n, fmt.Sprintf("%.3f", ms(first))).StringSlice()
	if err == nil && len(v) != 3 {
		err = fmt.Errorf("the script answered %q", v)
	}
	var paused, cur float64
	if err == nil {
		out, err = strconv.ParseFloat(v[0], 64)
		paused, _ = strconv.ParseFloat(v[1], 64)
		cur, _ = strconv.ParseFloat(v[2], 64)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.pending += n // counted at the next call
		if r.first.IsZero() || first.Before(r.first) {
			r.first = first
		}
		return 0, fmt.Errorf("rate limit: %w", err)
	}
	r.paused, r.cur, r.readAt = fromMsTime(paused), cur, now
	return out, nil
}

// local reports whether, by the shared state read less than pausePoll
// ago, Take need not ask Redis: no rate, configured or learned.
func (r *RedisPacer) local(now time.Time) bool {
	return r.p.Rate == 0 && r.cur == 0 && !r.readAt.IsZero() && !now.Before(r.readAt) && now.Sub(r.readAt) < r.pausePoll
}

func (r *RedisPacer) Take(ctx context.Context, now time.Time) (time.Duration, error) {
	r.mu.Lock()
	if r.local(now) {
		defer r.mu.Unlock()
		if now.Before(r.paused) {
			return r.paused.Sub(now), nil
		}
		if r.first.IsZero() {
			r.first = now
		}
		r.pending++
		return 0, nil
	}
	r.mu.Unlock()
	w, err := r.run(ctx, "take", now)
	return fromMs(w), err
}

func (r *RedisPacer) Undo(ctx context.Context, now time.Time) error {
	r.mu.Lock()
	if r.local(now) {
		r.pending--
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	_, err := r.run(ctx, "undo", now)
	return err
}

func (r *RedisPacer) Throttled(ctx context.Context, now time.Time) error {
	_, err := r.run(ctx, "throttle", now)
	return err
}

func (r *RedisPacer) Rate(ctx context.Context, now time.Time) (float64, error) {
	return r.run(ctx, "rate", now)
}

func (r *RedisPacer) PausedUntil(ctx context.Context, now time.Time) (time.Time, error) {
	r.mu.Lock()
	fresh := !r.readAt.IsZero() && !now.Before(r.readAt) && now.Sub(r.readAt) < r.pausePoll
	until := r.paused
	r.mu.Unlock()
	if !fresh {
		v, err := r.run(ctx, "paused", now)
		if err != nil {
			return time.Time{}, err
		}
		until = fromMsTime(v)
	}
	if until.After(now) {
		return until, nil
	}
	return time.Time{}, nil
}

// scriptPace is pace (pace.go) in Lua, function for function and line for
// line, with the same constants; before op it adds the messages a process
// counted without asking (RedisPacer.pending). KEYS: the provider's pace
// hash. ARGV: op (take, undo, throttle, rate, paused), now (ms), rate,
// burst, cool-down (ms), messages pending, when the first of them went
// (ms). Returns, as strings, {out, the end of the cool-down, the pace}:
// out is, for take: the wait in ms (0: taken); rate: the pace; paused:
// the end of the cool-down.
var scriptPace = redis.NewScript(`
local op, now, base, burst, cool = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local pending, first = tonumber(ARGV[6]), tonumber(ARGV[7])
local windowBuckets, minWindow, backoff, climbSteps, knee, creepSteps = 10, 1000, 0.85, 20, 0.9, 100
local guessSpan, forgetAfter, rateFloor = 250, 100, 64
local v = redis.call('HMGET', KEYS[1], 'tat', 'cur', 'paused', 'changed', 'cut', 'ceil', 'head', 'from',
  'w0', 'w1', 'w2', 'w3', 'w4', 'w5', 'w6', 'w7', 'w8', 'w9')
local tat, cur, paused, changed = tonumber(v[1]) or 0, tonumber(v[2]) or base, tonumber(v[3]) or 0, tonumber(v[4]) or 0
local cut, ceil, head, from = tonumber(v[5]) or 0, tonumber(v[6]) or 0, tonumber(v[7]) or 0, tonumber(v[8]) or 0
local win = {}
for i = 0, windowBuckets - 1 do win[i] = tonumber(v[9 + i]) or 0 end

local function window()
  local length = math.max(cool, minWindow)
  return length, length / windowBuckets
end

local function advance()
  local _, bucket = window()
  local h = math.floor(now / bucket)
  if h <= head then
    return
  end
  for i = math.max(head + 1, h - windowBuckets + 1), h do
    win[i % windowBuckets] = 0
  end
  head = h
end

local function count(n, at)
  advance()
  local total = 0
  for i = 0, windowBuckets - 1 do
    total = total + win[i]
  end
  if total <= 0 then
    from = at
  end
  win[head % windowBuckets] = win[head % windowBuckets] + n
end

local function sent()
  advance()
  local n = 0
  for i = 0, windowBuckets - 1 do
    n = n + win[i]
  end
  local _, bucket = window()
  local start = math.max(from, (head - windowBuckets + 1) * bucket)
  return math.max(n, 0), now - start
end

local function recover()
  if cur < 0 or cur ~= cur then
    cur = 0
  end
  if base > 0 and (cur == 0 or cur > base) then
    cur = base
  end
  local period = math.max(cool, 1)
  if base == 0 and cur > 0 and now - paused >= forgetAfter * period then
    cur, ceil = 0, 0
    return
  end
  local quiet = math.max(changed, paused)
  if cur > 0 and (base == 0 or cur < base) and now - quiet >= period then
    local k = math.floor((now - quiet) / period)
    if ceil > 0 then
      local fast = math.max(0, math.min(k, math.ceil((knee * ceil - cur) * climbSteps / ceil - 0.001)))
      cur = cur + fast * ceil / climbSteps + (k - fast) * ceil / creepSteps
    else
      cur = cur * 2 ^ math.min(k, 30)
    end
    if base > 0 then
      cur = math.min(cur, base)
    end
    changed = quiet + k * period
  end
end

local function take()
  recover()
  if now < paused then
    return paused - now
  end
  if cur > 0 then
    local t = 1000 / cur
    local start = tat
    if start < now - t / 2 then
      start = now
    end
    local nxt = start + t
    local limit = math.max(burst, 1) * t
    if nxt - now > limit + 0.001 then
      return nxt - now - limit
    end
    tat = nxt
  end
  count(1, now)
  return 0
end

local function undo()
  recover()
  if cur > 0 then
    tat = tat - 1000 / cur
  end
  count(-1, now)
end

local function throttled()
  recover()
  paused = now + cool
  if now - cut >= cool / 2 then
    local n, span = sent()
    n = n - 1
    local length = window()
    if n > 0 and span >= length / 2 then
      local r = 1000 * n / span
      if cur > 0 then
        r = math.min(r, cur)
      end
      if ceil == 0 and cur > 0 and (base == 0 or cur < base) then
        ceil, cur = cur, math.max(r * backoff, cur / 2)
      else
        ceil, cur = r, r * backoff
      end
    elseif n > 0 then
      local r = 1000 * n / math.max(span, guessSpan)
      if cur > 0 then
        r = math.min(r, cur / 2)
      end
      ceil, cur = 0, r
    end
    if n > 0 then
      local floor = 1000 / math.max(cool, 1)
      if base > 0 then
        floor = base / rateFloor
      end
      cur = math.max(cur, floor)
      if base > 0 then
        cur = math.min(cur, base)
      end
    end
    cut = now
    for i = 0, windowBuckets - 1 do win[i] = 0 end
  end
  changed = now
  if cur > 0 then
    tat = paused + (math.max(burst, 1) - 1) * 1000 / cur
  end
end

if pending ~= 0 then
  count(pending, first)
end
local out = 0
if op == 'take' then
  out = take()
elseif op == 'undo' then
  undo()
elseif op == 'throttle' then
  throttled()
elseif op == 'rate' then
  recover()
  out = cur
elseif op == 'paused' then
  recover()
  out = paused
end
local f, g = '%.3f', '%.0f'
redis.call('HSET', KEYS[1], 'tat', string.format(f, tat), 'cur', string.format('%.6f', cur), 'paused', string.format(f, paused),
  'changed', string.format(f, changed), 'cut', string.format(f, cut), 'ceil', string.format('%.6f', ceil),
  'head', string.format(g, head), 'from', string.format(f, from),
  'w0', string.format(g, win[0]), 'w1', string.format(g, win[1]), 'w2', string.format(g, win[2]), 'w3', string.format(g, win[3]),
  'w4', string.format(g, win[4]), 'w5', string.format(g, win[5]), 'w6', string.format(g, win[6]), 'w7', string.format(g, win[7]),
  'w8', string.format(g, win[8]), 'w9', string.format(g, win[9]))
redis.call('PEXPIRE', KEYS[1], 86400000)
return {string.format('%.6f', out), string.format(f, paused), string.format('%.6f', cur)}
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
