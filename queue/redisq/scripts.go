package redisq

import "github.com/redis/go-redis/v9"

// Every multi-key step is one script; all its keys share the campaign's
// hash tag, so the scripts also run on Redis Cluster.
//
// A job's mutable state is one hash field "state:attempts:lease:at_ms"
// (state numbers as in queue.State); counters are fields c1..c7 of meta.

// KEYS: meta. ARGV: rec json, created.
var scriptCreate = redis.NewScript(`
if redis.call('HSETNX', KEYS[1], 'rec', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'status', '1', 'reason', '', 'planned', '0', 'lease', '0',
    'c1', 0, 'c2', 0, 'c3', 0, 'c4', 0, 'c5', 0, 'c6', 0, 'c7', 0)
end
return redis.call('HGET', KEYS[1], 'rec')
`)

// KEYS: meta data st reply keys pending order.
// ARGV: n, then per job: seq key blob suppressed(0|1) reason.
var scriptEnqueue = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOCAMPAIGN') end
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local seq, key = ARGV[2 + i*5], ARGV[3 + i*5]
  if not redis.call('HGET', KEYS[5], key) and redis.call('HEXISTS', KEYS[2], seq) == 1 then
    return redis.error_reply('SEQTAKEN ' .. seq)
  end
end
local added, supp, existing, dups = 0, 0, 0, {}
for i = 0, n - 1 do
  local b = 1 + i*5
  local seq, key, blob, s, reason = ARGV[b+1], ARGV[b+2], ARGV[b+3], ARGV[b+4], ARGV[b+5]
  local prev = redis.call('HGET', KEYS[5], key)
  if prev then
    if prev == seq then existing = existing + 1 else table.insert(dups, seq); table.insert(dups, prev) end
  else
    redis.call('HSET', KEYS[5], key, seq)
    redis.call('HSET', KEYS[2], seq, blob)
    redis.call('ZADD', KEYS[7], seq, seq)
    if s == '1' then
      redis.call('HSET', KEYS[3], seq, '6:0:0:0')
      redis.call('HSET', KEYS[4], seq, '\0on the suppression list: ' .. reason)
      redis.call('HINCRBY', KEYS[1], 'c6', 1)
      supp = supp + 1
    else
      redis.call('HSET', KEYS[3], seq, '1:0:0:0')
      redis.call('ZADD', KEYS[6], seq, seq)
      redis.call('HINCRBY', KEYS[1], 'c1', 1)
    end
    added = added + 1
  end
end
return {added, supp, existing, dups}
`)

// KEYS: meta st pending timers data reply. ARGV: now_ms n until_ms.
// Returns per job {seq, attempts, lease, data, reply}.
var scriptLease = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'status') ~= '1' then return {} end
local n = tonumber(ARGV[2])
local seqs = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[1], 'LIMIT', 0, n)
for _, seq in ipairs(seqs) do redis.call('ZREM', KEYS[4], seq) end
if #seqs < n then
  local p = redis.call('ZPOPMIN', KEYS[3], n - #seqs)
  for i = 1, #p, 2 do table.insert(seqs, p[i]) end
end
local out = {}
for _, seq in ipairs(seqs) do
  local s, a = string.match(redis.call('HGET', KEYS[2], seq), '^(%d+):(%d+):')
  local lease = redis.call('HINCRBY', KEYS[1], 'lease', 1)
  redis.call('HSET', KEYS[2], seq, '2:' .. a .. ':' .. lease .. ':' .. ARGV[3])
  redis.call('ZADD', KEYS[4], ARGV[3], seq)
  redis.call('HINCRBY', KEYS[1], 'c' .. s, -1)
  redis.call('HINCRBY', KEYS[1], 'c2', 1)
  table.insert(out, {seq, a, lease, redis.call('HGET', KEYS[5], seq) or '', redis.call('HGET', KEYS[6], seq) or ''})
end
return out
`)

// KEYS: meta st timers reply.
// ARGV: n, then per settlement: seq lease state at_ms count(0|1) provider reply.
// Returns the seqs whose lease did not match.
var scriptSettle = redis.NewScript(`
local n = tonumber(ARGV[1])
local lost = {}
for i = 0, n - 1 do
  local b = 1 + i*7
  local seq = ARGV[b+1]
  local v = redis.call('HGET', KEYS[2], seq)
  local s, a, l
  if v then s, a, l = string.match(v, '^(%d+):(%d+):(%d+):') end
  if (not v) or s ~= '2' or l ~= ARGV[b+2] then
    table.insert(lost, seq)
  else
    redis.call('ZREM', KEYS[3], seq)
    local to, at = ARGV[b+3], '0'
    if to == '4' then
      at = ARGV[b+4]
      redis.call('ZADD', KEYS[3], at, seq)
    end
    redis.call('HSET', KEYS[2], seq, to .. ':' .. (tonumber(a) + tonumber(ARGV[b+5])) .. ':' .. l .. ':' .. at)
    redis.call('HSET', KEYS[4], seq, ARGV[b+6] .. '\0' .. ARGV[b+7])
    redis.call('HINCRBY', KEYS[1], 'c2', -1)
    redis.call('HINCRBY', KEYS[1], 'c' .. to, 1)
  end
end
return lost
`)

// KEYS: meta st timers pending. ARGV: n, then per job: seq lease.
var scriptRelease = redis.NewScript(`
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local seq = ARGV[2 + i*2]
  local v = redis.call('HGET', KEYS[2], seq)
  local s, a, l
  if v then s, a, l = string.match(v, '^(%d+):(%d+):(%d+):') end
  if v and s == '2' and l == ARGV[3 + i*2] then
    redis.call('ZREM', KEYS[3], seq)
    redis.call('ZADD', KEYS[4], seq, seq)
    redis.call('HSET', KEYS[2], seq, '1:' .. a .. ':' .. l .. ':0')
    redis.call('HINCRBY', KEYS[1], 'c2', -1)
    redis.call('HINCRBY', KEYS[1], 'c1', 1)
  end
end
return n
`)

// KEYS: meta st pending timers. ARGV: limit.
// Cancels up to limit pending or retrying jobs; returns how many.
var scriptCancel = redis.NewScript(`
local limit = tonumber(ARGV[1])
local done = 0
local p = redis.call('ZPOPMIN', KEYS[3], limit)
for i = 1, #p, 2 do
  local a, l = string.match(redis.call('HGET', KEYS[2], p[i]), '^%d+:(%d+):(%d+):')
  redis.call('HSET', KEYS[2], p[i], '7:' .. a .. ':' .. l .. ':0')
  redis.call('HINCRBY', KEYS[1], 'c1', -1)
  redis.call('HINCRBY', KEYS[1], 'c7', 1)
  done = done + 1
end
if done < limit then
  for _, seq in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
    if done >= limit then break end
    local s, a, l = string.match(redis.call('HGET', KEYS[2], seq), '^(%d+):(%d+):(%d+):')
    if s == '4' then
      redis.call('ZREM', KEYS[4], seq)
      redis.call('HSET', KEYS[2], seq, '7:' .. a .. ':' .. l .. ':0')
      redis.call('HINCRBY', KEYS[1], 'c4', -1)
      redis.call('HINCRBY', KEYS[1], 'c7', 1)
      done = done + 1
    end
  end
end
return done
`)
