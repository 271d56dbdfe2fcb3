package redisq

import "github.com/redis/go-redis/v9"

// Every multi-key step is one script; all its keys share the campaign's
// hash tag, so the scripts also run on Redis Cluster.
//
// A job's mutable state is one hash field "state:attempts:lease:at_ms"
// (state numbers as in queue.State); counters are fields c1..c7 of meta.

// KEYS: meta. ARGV: rec json, spec.
var scriptCreate = redis.NewScript(`
if redis.call('HSETNX', KEYS[1], 'rec', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'status', '1', 'reason', '', 'planned', '0', 'lease', '0', 'spec', ARGV[2],
    'c1', 0, 'c2', 0, 'c3', 0, 'c4', 0, 'c5', 0, 'c6', 0, 'c7', 0)
end
return redis.call('HGET', KEYS[1], 'rec')
`)

// KEYS: meta data st reply keys pending order.
// ARGV: n, then per job: seq key blob suppressed(0|1) reason.
// Returns {added, suppressed, existing, {dup seq, first seq, ...}}.
var scriptEnqueue = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOCAMPAIGN') end
local n = tonumber(ARGV[1])
local ks = {}
for i = 0, n - 1 do ks[i+1] = ARGV[3 + i*5] end
local prevs = redis.call('HMGET', KEYS[5], unpack(ks))
local seen, fresh = {}, {}
for i = 0, n - 1 do
  local key = ks[i+1]
  if not prevs[i+1] and not seen[key] then
    seen[key] = ARGV[2 + i*5]
    table.insert(fresh, i)
  end
end
if #fresh > 0 then
  local seqs = {}
  for j, i in ipairs(fresh) do seqs[j] = ARGV[2 + i*5] end
  local taken = redis.call('HMGET', KEYS[2], unpack(seqs))
  for j = 1, #seqs do
    if taken[j] then return redis.error_reply('SEQTAKEN ' .. seqs[j]) end
  end
end
local existing, dups = 0, {}
local added = {}
for i = 0, n - 1 do added[i] = false end
for _, i in ipairs(fresh) do added[i] = true end
for i = 0, n - 1 do
  if not added[i] then
    local seq, first = ARGV[2 + i*5], prevs[i+1] or seen[ks[i+1]]
    if first == seq then existing = existing + 1 else table.insert(dups, seq); table.insert(dups, first) end
  end
end
if #fresh == 0 then return {0, 0, existing, dups} end
local kv, data, order, st, pend, reply = {}, {}, {}, {}, {}, {}
local supp = 0
for _, i in ipairs(fresh) do
  local b = 1 + i*5
  local seq, key, blob, s, reason = ARGV[b+1], ARGV[b+2], ARGV[b+3], ARGV[b+4], ARGV[b+5]
  kv[#kv+1] = key; kv[#kv+1] = seq
  data[#data+1] = seq; data[#data+1] = blob
  order[#order+1] = seq; order[#order+1] = seq
  st[#st+1] = seq
  if s == '1' then
    st[#st+1] = '6:0:0:0'
    reply[#reply+1] = seq; reply[#reply+1] = '\0on the suppression list: ' .. reason
    supp = supp + 1
  else
    st[#st+1] = '1:0:0:0'
    pend[#pend+1] = seq; pend[#pend+1] = seq
  end
end
redis.call('HSET', KEYS[5], unpack(kv))
redis.call('HSET', KEYS[2], unpack(data))
redis.call('HSET', KEYS[3], unpack(st))
redis.call('ZADD', KEYS[7], unpack(order))
if #pend > 0 then redis.call('ZADD', KEYS[6], unpack(pend)) end
if #reply > 0 then redis.call('HSET', KEYS[4], unpack(reply)) end
redis.call('HINCRBY', KEYS[1], 'c1', #fresh - supp)
redis.call('HINCRBY', KEYS[1], 'c6', supp)
return {#fresh, supp, existing, dups}
`)

// KEYS: meta st pending timers data reply. ARGV: now_ms n until_ms.
// Returns per job {seq, attempts, lease, data, reply}.
var scriptLease = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'status') ~= '1' then return {} end
local n = tonumber(ARGV[2])
local seqs = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[1], 'LIMIT', 0, n)
if #seqs > 0 then redis.call('ZREM', KEYS[4], unpack(seqs)) end
if #seqs < n then
  local p = redis.call('ZPOPMIN', KEYS[3], n - #seqs)
  for i = 1, #p, 2 do table.insert(seqs, p[i]) end
end
if #seqs == 0 then return {} end
local sts = redis.call('HMGET', KEYS[2], unpack(seqs))
local last = redis.call('HINCRBY', KEYS[1], 'lease', #seqs)
local st, timers, from, out, atts = {}, {}, {}, {}, {}
for i, seq in ipairs(seqs) do
  local s, a = string.match(sts[i], '^(%d+):(%d+):')
  local lease = last - #seqs + i
  st[#st+1] = seq; st[#st+1] = '2:' .. a .. ':' .. lease .. ':' .. ARGV[3]
  timers[#timers+1] = ARGV[3]; timers[#timers+1] = seq
  from[s] = (from[s] or 0) + 1
  atts[i] = {a, lease}
end
redis.call('HSET', KEYS[2], unpack(st))
redis.call('ZADD', KEYS[4], unpack(timers))
for s, c in pairs(from) do redis.call('HINCRBY', KEYS[1], 'c' .. s, -c) end
redis.call('HINCRBY', KEYS[1], 'c2', #seqs)
local data = redis.call('HMGET', KEYS[5], unpack(seqs))
local replies = redis.call('HMGET', KEYS[6], unpack(seqs))
for i, seq in ipairs(seqs) do
  out[i] = {seq, atts[i][1], atts[i][2], data[i] or '', replies[i] or ''}
end
return out
`)

// KEYS: meta st timers reply.
// ARGV: n, then per settlement: seq lease state at_ms count(0|1) provider reply.
// Returns the seqs whose lease did not match.
var scriptSettle = redis.NewScript(`
local n = tonumber(ARGV[1])
local seqs = {}
for i = 0, n - 1 do seqs[i+1] = ARGV[2 + i*7] end
local sts = redis.call('HMGET', KEYS[2], unpack(seqs))
local lost, st, reply, rem, add, to = {}, {}, {}, {}, {}, {}
local done = 0
for i = 0, n - 1 do
  local b = 1 + i*7
  local seq, v = ARGV[b+1], sts[i+1]
  local s, a, l
  if v then s, a, l = string.match(v, '^(%d+):(%d+):(%d+):') end
  if (not v) or s ~= '2' or l ~= ARGV[b+2] then
    table.insert(lost, seq)
  else
    local state, at = ARGV[b+3], '0'
    rem[#rem+1] = seq
    if state == '4' then
      at = ARGV[b+4]
      add[#add+1] = at; add[#add+1] = seq
    end
    st[#st+1] = seq; st[#st+1] = state .. ':' .. (tonumber(a) + tonumber(ARGV[b+5])) .. ':' .. l .. ':' .. at
    reply[#reply+1] = seq; reply[#reply+1] = ARGV[b+6] .. '\0' .. ARGV[b+7]
    to[state] = (to[state] or 0) + 1
    done = done + 1
  end
end
if done > 0 then
  redis.call('ZREM', KEYS[3], unpack(rem))
  if #add > 0 then redis.call('ZADD', KEYS[3], unpack(add)) end
  redis.call('HSET', KEYS[2], unpack(st))
  redis.call('HSET', KEYS[4], unpack(reply))
  redis.call('HINCRBY', KEYS[1], 'c2', -done)
  for s, c in pairs(to) do redis.call('HINCRBY', KEYS[1], 'c' .. s, c) end
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

// KEYS: st timers. ARGV: until_ms n, then per job: seq lease.
// Returns the seqs whose lease is no longer held.
var scriptExtend = redis.NewScript(`
local n = tonumber(ARGV[2])
local lost = {}
for i = 0, n - 1 do
  local seq = ARGV[3 + i*2]
  local v = redis.call('HGET', KEYS[1], seq)
  local s, a, l
  if v then s, a, l = string.match(v, '^(%d+):(%d+):(%d+):') end
  if v and s == '2' and l == ARGV[4 + i*2] then
    redis.call('HSET', KEYS[1], seq, '2:' .. a .. ':' .. l .. ':' .. ARGV[1])
    redis.call('ZADD', KEYS[2], ARGV[1], seq)
  else
    table.insert(lost, seq)
  end
end
return lost
`)
