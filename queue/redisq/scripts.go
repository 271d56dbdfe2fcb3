package redisq

import "github.com/redis/go-redis/v9"

// Every multi-key step is one script; all its keys share the campaign's
// hash tag, so the scripts also run on Redis Cluster.
//
// Keys of campaign ID, all under the hash tag {ID}:
//
//	meta     hash: rec (JSON), status, reason, planned, lease (Lease calls so far),
//	         maxseq (no stored job has a greater Seq), c1..c7 (jobs per state),
//	         layout ("2": see layout.go)
//	d:<n>    hashes: the jobs' immutable records (layout.go)
//	st       hash: seq -> the job's mutable state, below
//	k:<n>, kx hashes: the deduplication index, key -> seq (layout.go)
//	pending  zset: seq scored by seq, pending jobs (see pendlist)
//	pendlist list: pending jobs too, in ascending seq order, only ones never
//	         leased (no st field): a job that becomes pending again goes
//	         to pending
//	timers   zset: seq scored by the Retry due time or the lease deadline (ms);
//	         plus the member timersPin at +inf, see below
//	order    zset: seq scored by seq, every job (Walk; see orderlist)
//	orderlist list: every job too, in ascending seq order
//	lost     hash: at (ms), sent, total: the tombstone of a campaign whose
//	         record was lost (vanished.go); there is no meta then
//	wait     string: when the last WAIT for a replica was asked for in this
//	         hash slot; written only to move the replication offset
//	         (replicate, durability.go), expires after an hour
//
// A pending job is in pending or in pendlist, and every job is in order or
// in orderlist. The lists take the common case, planning a file line by
// line: a chunk whose seqs ascend and are all above maxseq is appended to
// them (RPUSH is far cheaper than ZADD). Everything else (a re-plan filling
// gaps, Release, a requeue) goes into the sorted sets. Lease takes the
// smallest seqs of pending and pendlist together; Walk merges order and
// orderlist.
//
// The state of a job is one st field, a fixed-width header of 37 bytes
// optionally followed by the last reply:
//
//	S:AAAA:LLLLLLLLLLLLLLL:TTTTTTTTTTTTT:provider\0reply
//	1 3    8               24           38            (Lua string positions)
//
// S is the queue.State digit (1 pending .. 7 cancelled), AAAA the attempts
// (zero-padded, capped at 9999), L the lease token (kept after the lease
// ends): 11 digits numbering the Lease call (meta's lease counts them), then
// 4 digits for the job's place in that call's batch, so Job.Lease is
// call*10000 + place; T the Retry due time or lease deadline in Unix
// ms (13 digits, zero-padded; 0 when neither). After the header comes the
// provider of the last attempt, a NUL byte and the reply; a job never tried
// (and not suppressed) has nothing after the header. A job without an st
// field is Pending and was never leased: "1:0000:000000000000000:0000000000000:".
// A script that changes a state rewrites byte 1 (and T when it leaves Retry
// or Leased), keeps the rest, moves the seq between pending and timers and
// adjusts the counters c<S> of meta; e.g. Failed -> Pending is
// '1' .. v:sub(2, 23) .. '0000000000000:' .. v:sub(38), ZADD pending seq seq,
// HINCRBY meta c5 -1, HINCRBY meta c1 1.
//
// timers always holds timersPin, a member longer than the default
// zset-max-listpack-value, scored +inf, so that the set keeps the skiplist
// encoding: as a listpack (up to 128 members) every ZADD and ZREM scans the
// whole set, which made leasing a batch quadratic. Scripts that read timers
// stop before +inf.

// timersPin is the placeholder member of timers (see above), longer than
// 64 bytes.
const timersPin = "~pin: keeps this sorted set a skiplist; not a job (see redisq/scripts.go)~~~~~"

// stHeaderLen is the length of the fixed-width header of an st value.
const stHeaderLen = 37

// twoDigits defines two(), which returns {'00', '01', .. '99'} (index x+1
// holds x): string.format costs about half a microsecond a call, too much
// once per job.
const twoDigits = `
local function two()
  local D, P = {'0', '1', '2', '3', '4', '5', '6', '7', '8', '9'}, {}
  for x = 0, 99 do P[x + 1] = D[(x - x % 10) / 10 + 1] .. D[x % 10 + 1] end
  return P
end
`

// KEYS: meta timers lost. ARGV: rec json, timersPin, spec.
// A campaign with a tombstone (lost: see vanished.go) is not created again.
var scriptCreate = redis.NewScript(`
if redis.call('EXISTS', KEYS[3]) == 1 then return redis.error_reply('VANISHED') end
if redis.call('HSETNX', KEYS[1], 'rec', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'status', '1', 'reason', '', 'planned', '0', 'lease', '0', 'maxseq', '0', 'spec', ARGV[3], 'layout', '` + layout + `',
    'c1', 0, 'c2', 0, 'c3', 0, 'c4', 0, 'c5', 0, 'c6', 0, 'c7', 0)
  redis.call('ZADD', KEYS[2], 'NX', '+inf', ARGV[2])
end
return redis.call('HGET', KEYS[1], 'rec')
`)

// KEYS: meta st pending order pendlist orderlist kx.
// ARGV: n, ascending (2: the seqs ascend, so they differ; 0: not known),
// min seq, max seq, m, g, then the n seqs, the n pairs (d field, data
// record), the n dedup hashes (full key names) and the n dedup fields
// (dedupSlot), then g pairs (d hash, how many jobs go there), then m pairs
// (1-based index of a suppressed job, reason). A job's key is read from
// its record. g is 0 unless the seqs ascend; then the jobs of a d hash are
// next to each other, and the pairs name them in order (enqueueArgs).
// Returns {added, suppressed, existing, {dup seq, first seq, ...}}.
//
// When the seqs ascend and the smallest is above meta's maxseq (planning a
// new file, or the rest of one), no seq can be taken: each key is written
// as it is found new (one HSETNX a job), and the new jobs go to the lists.
// When every job of such a chunk is new and none is suppressed (the common
// case), the records go to their d hashes straight from ARGV, one HSET a
// hash, and the seqs to the lists. Else every key is looked up first, and
// nothing is written if a new key would take a seq another job holds
// (SEQTAKEN).
var scriptEnqueue = redis.NewScript(luaData + `
local meta = redis.call('HMGET', KEYS[1], 'rec', 'maxseq', 'layout')
if not meta[1] then return redis.error_reply('NOCAMPAIGN') end
if meta[3] ~= '` + layout + `' then return redis.error_reply('LAYOUT ' .. (meta[3] or '1')) end
local n, m, g = tonumber(ARGV[1]), tonumber(ARGV[5]), tonumber(ARGV[6])
local S, B, HB, HF = 6, 6 + n, 6 + 3*n, 6 + 4*n
local G = 6 + 5*n
local P = G + 2*g
local lo = tonumber(ARGV[3])
local lists = ARGV[2] == '2' and meta[2] and lo > tonumber(meta[2])
-- the record of job i is ARGV[B + 2*i], its d field ARGV[B + 2*i - 1]
-- Without lists: batchKey holds the keys of this batch's new jobs by seq
-- (their records are not stored yet), seen their seqs by key, claimed
-- the k fields they will take (nothing is written before every key is
-- known).
local batchKey, seen, claimed = {}, {}, {}
-- keyAt is the key of job seq: in this batch (not stored yet), or stored.
local function keyAt(seq)
  local s = tonumber(seq)
  if lists and s >= lo then
    local a, z = 1, n
    while a <= z do
      local mid = (a + z - (a + z) % 2) / 2
      local x = tonumber(ARGV[S + mid])
      if x == s then return keyOf(ARGV[B + 2*mid]) end
      if x < s then a = mid + 1 else z = mid - 1 end
    end
    return nil
  end
  local k = batchKey[seq]
  if k then return k end
  local b, f = dkey(seq)
  local v = redis.call('HGET', b, f)
  if v then return keyOf(v) end
  return nil
end
local fresh, nf, existing, dups, where = {}, 0, 0, {}, {}
if lists then
  for i = 1, n do
    local seq, kb, f = ARGV[S + i], ARGV[HB + i], ARGV[HF + i]
    if redis.call('HSETNX', kb, f, seq) == 1 then
      nf = nf + 1; fresh[nf] = i
    else
      -- a duplicate, or another key with the same k field
      local key = keyOf(ARGV[B + 2*i])
      local v = redis.call('HGET', kb, f)
      if keyAt(v) ~= key then v = redis.call('HGET', KEYS[7], key) end
      if v then
        dups[#dups+1] = seq; dups[#dups+1] = v
      else
        redis.call('HSET', KEYS[7], key, seq)
        nf = nf + 1; fresh[nf] = i
      end
    end
  end
  if nf == n and m == 0 and g > 0 then
    -- every job is new and none is suppressed
    local at = B + 1
    for j = 1, g do
      local c = tonumber(ARGV[G + 2*j])
      redis.call('HSET', ARGV[G + 2*j - 1], unpack(ARGV, at, at + 2*c - 1))
      at = at + 2*c
    end
    redis.call('RPUSH', KEYS[6], unpack(ARGV, S + 1, S + n))
    redis.call('RPUSH', KEYS[5], unpack(ARGV, S + 1, S + n))
    redis.call('HINCRBY', KEYS[1], 'c1', n)
    if tonumber(ARGV[4]) > tonumber(meta[2]) then redis.call('HSET', KEYS[1], 'maxseq', ARGV[4]) end
    return {n, 0, 0, dups}
  end
else
  -- first: the seq holding key i, or nil; where: how to record it when
  -- new ('k': its k field is free; 'x': in kx)
  local function lookup(i)
    local key, seq = keyOf(ARGV[B + 2*i]), ARGV[S + i]
    local first = seen[key]
    if first then return first end
    local kb, f = ARGV[HB + i], ARGV[HF + i]
    local v = redis.call('HGET', kb, f) or claimed[kb .. ':' .. f]
    if not v then
      claimed[kb .. ':' .. f] = seq
      return nil, 'k', key
    end
    if keyAt(v) == key then return v end
    v = redis.call('HGET', KEYS[7], key)
    if v then return v end
    return nil, 'x', key
  end
  for i = 1, n do
    local seq = ARGV[S + i]
    local first, w, key = lookup(i)
    if first then
      if first == seq then existing = existing + 1 else dups[#dups+1] = seq; dups[#dups+1] = first end
    else
      seen[key] = seq; batchKey[seq] = key; nf = nf + 1; fresh[nf] = i; where[nf] = w
    end
  end
  if nf == 0 then return {0, 0, existing, dups} end
  local taken = {}
  for j = 1, nf do
    local seq = ARGV[S + fresh[j]]
    local b, f = dkey(seq)
    if taken[seq] or redis.call('HEXISTS', b, f) == 1 then return redis.error_reply('SEQTAKEN ' .. seq) end
    taken[seq] = true
  end
  for j = 1, nf do
    local i = fresh[j]
    if where[j] == 'k' then
      redis.call('HSET', ARGV[HB + i], ARGV[HF + i], ARGV[S + i])
    else
      redis.call('HSET', KEYS[7], batchKey[ARGV[S + i]], ARGV[S + i])
    end
  end
end
if nf == 0 then return {0, 0, existing, dups} end
local supp = {}
for j = 0, m - 1 do supp[tonumber(ARGV[P + 1 + 2*j])] = ARGV[P + 2 + 2*j] end
local seqs, zs, pend, st = {}, {}, {}, {}
local np, ns = 0, 0
local bn, bv, nv = nil, {}, 0
for j = 1, nf do
  local i = fresh[j]
  local seq = ARGV[S + i]
  seqs[j] = seq
  local sn = tonumber(seq)
  local f = sn % ` + dataBucketLua + `
  local b = (sn - f) / ` + dataBucketLua + `
  if b ~= bn then
    if bn then redis.call('HSET', pre .. 'd:' .. bn, unpack(bv, 1, nv)) end
    bn, nv = b, 0
  end
  bv[nv + 1] = f; bv[nv + 2] = ARGV[B + 2*i]
  nv = nv + 2
  if not lists then zs[2*j-1] = seq; zs[2*j] = seq end
  local r = m > 0 and supp[i]
  if r then
    st[2*ns+1] = seq; st[2*ns+2] = '6:0000:000000000000000:0000000000000:\0' .. r
    ns = ns + 1
  elseif lists then
    np = np + 1
    pend[np] = seq
  else
    pend[2*np+1] = seq; pend[2*np+2] = seq
    np = np + 1
  end
end
redis.call('HSET', pre .. 'd:' .. bn, unpack(bv, 1, nv))
if lists then
  redis.call('RPUSH', KEYS[6], unpack(seqs))
  if np > 0 then redis.call('RPUSH', KEYS[5], unpack(pend)) end
else
  redis.call('ZADD', KEYS[4], unpack(zs))
  if np > 0 then redis.call('ZADD', KEYS[3], unpack(pend)) end
end
if ns > 0 then
  redis.call('HSET', KEYS[2], unpack(st))
  redis.call('HINCRBY', KEYS[1], 'c6', ns)
end
if np > 0 then redis.call('HINCRBY', KEYS[1], 'c1', np) end
if meta[2] and tonumber(ARGV[4]) > tonumber(meta[2]) then redis.call('HSET', KEYS[1], 'maxseq', ARGV[4]) end
return {nf, ns, existing, dups}
`)

// KEYS: meta st pending timers pendlist. ARGV: now_ms n (at most
// 9999) until_ms (13 digits).
// Returns {call, seqs, their st values, their data}; the i-th job's lease
// token is call*10000 + i (see the st layout). The st values are left out
// ({}) when every job came from pendlist, whose jobs were never leased.
// A campaign without a status has no record (vanished.go): NOCAMPAIGN.
var scriptLease = redis.NewScript(twoDigits + luaData + `
local meta = redis.call('HMGET', KEYS[1], 'status', 'layout')
local status = meta[1]
if not status then return redis.error_reply('NOCAMPAIGN') end
if meta[2] ~= '` + layout + `' then return redis.error_reply('LAYOUT ' .. (meta[2] or '1')) end
if status ~= '1' then return {} end
local n = tonumber(ARGV[2])
local seqs = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[1], 'LIMIT', 0, n)
local due = #seqs
if due > 0 then redis.call('ZREMRANGEBYRANK', KEYS[4], 0, due - 1) end
local fresh = false -- all of them come from pendlist: none has an st field
if due < n then
  local want = n - due
  local z = redis.call('ZRANGE', KEYS[3], 0, want - 1)
  local p
  if #z == 0 then
    fresh = due == 0
    p = redis.call('LPOP', KEYS[5], want) or {}
  else
    -- the smallest seqs of both
    local l = redis.call('LRANGE', KEYS[5], 0, want - 1)
    local i, j = 1, 1
    p = {}
    for x = 1, want do
      if i <= #l and (j > #z or tonumber(l[i]) < tonumber(z[j])) then
        p[x] = l[i]; i = i + 1
      elseif j <= #z then
        p[x] = z[j]; j = j + 1
      else
        break
      end
    end
    if i > 1 then redis.call('LTRIM', KEYS[5], i - 1, -1) end
    if j > 1 then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, j - 2) end
  end
  if due == 0 then seqs = p else for i = 1, #p do seqs[due + i] = p[i] end end
end
local k = #seqs
if k == 0 then return {} end
local sts = {}
if not fresh then sts = redis.call('HMGET', KEYS[2], unpack(seqs)) end
local call = redis.call('HINCRBY', KEYS[1], 'lease', 1)
local prefix = string.format('%011d', call)
local P = two()
local st, timers, from = {}, {}, {0, 0, 0, 0, 0, 0, 0}
local untl = ARGV[3]
local tail = ':' .. untl .. ':'
for i = 1, k do
  local seq, v = seqs[i], sts[i]
  local lo = i % 100
  st[2*i-1] = seq; timers[2*i-1] = untl; timers[2*i] = seq
  if v then
    local s = string.byte(v, 1) - 48
    from[s] = from[s] + 1
    st[2*i] = '2:' .. string.sub(v, 3, 7) .. prefix .. P[(i - lo) / 100 + 1] .. P[lo + 1] .. tail .. string.sub(v, 38)
  else
    from[1] = from[1] + 1
    st[2*i] = '2:0000:' .. prefix .. P[(i - lo) / 100 + 1] .. P[lo + 1] .. tail
  end
end
redis.call('HSET', KEYS[2], unpack(st))
redis.call('ZADD', KEYS[4], unpack(timers))
for s = 1, 7 do
  if s ~= 2 and from[s] > 0 then redis.call('HINCRBY', KEYS[1], 'c' .. s, -from[s]) end
end
if from[2] ~= k then redis.call('HINCRBY', KEYS[1], 'c2', k - from[2]) end
return {call, seqs, sts, readData(seqs)}
`)

// KEYS: meta st timers.
// ARGV: n, then n seqs, then per settlement one string: the new state
// digit, count ('0'|'1'), then the rest of the new st value from AAAA on,
// ':' lease ':' at ':' provider '\0' reply, whose lease (15 digits) must
// match the job's (positions 4-18) and whose at (20-32) is the Retry due
// time. Returns the seqs whose lease did not match; a job already in the
// new state under the same lease (a batch settled again after its reply
// was lost) is neither changed nor lost. Without the campaign's record
// (it vanished: every job would look lost) it refuses: NOCAMPAIGN.
var scriptSettle = redis.NewScript(`
local n = tonumber(ARGV[1])
local sts = redis.call('HMGET', KEYS[2], unpack(ARGV, 2, n + 1))
local lost, st, rem, add, to = {}, {}, {}, {}, {0, 0, 0, 0, 0, 0, 0}
local done, na = 0, 0
for i = 1, n do
  local seq, v, x = ARGV[1 + i], sts[i], ARGV[1 + n + i]
  if v and string.byte(v, 1) == 50 and string.sub(v, 8, 22) == string.sub(x, 4, 18) then
    local s = string.byte(x, 1) - 48
    done = done + 1
    rem[done] = seq
    if s == 4 then
      add[na + 1] = string.sub(x, 20, 32); add[na + 2] = seq
      na = na + 2
    end
    st[2*done-1] = seq
    if string.byte(x, 2) == 49 then
      local a = math.min(tonumber(string.sub(v, 3, 6)) + 1, 9999)
      local c, d = a % 10, a % 100
      local m = a % 1000
      st[2*done] = string.sub(x, 1, 1) .. ':' .. string.char(48 + (a - m) / 1000, 48 + (m - d) / 100, 48 + (d - c) / 10, 48 + c) .. string.sub(x, 3)
    else
      st[2*done] = string.sub(x, 1, 1) .. string.sub(v, 2, 6) .. string.sub(x, 3)
    end
    to[s] = to[s] + 1
  elseif not (v and string.byte(v, 1) == string.byte(x, 1) and string.sub(v, 8, 22) == string.sub(x, 4, 18)) then
    -- (the same outcome under the same lease again: a retried batch; done)
    lost[#lost+1] = seq
  end
end
-- Without the record the campaign vanished (every job would look lost),
-- even where a job's lease matched: a Redis that evicts keys may have lost
-- the record and kept the states, and the counts must not be written
-- into a record-less meta.
if redis.call('HEXISTS', KEYS[1], 'rec') == 0 then return redis.error_reply('NOCAMPAIGN') end
if done > 0 then
  redis.call('ZREM', KEYS[3], unpack(rem))
  if na > 0 then redis.call('ZADD', KEYS[3], unpack(add)) end
  redis.call('HSET', KEYS[2], unpack(st))
  redis.call('HINCRBY', KEYS[1], 'c2', -done)
  for s = 1, 7 do
    if to[s] > 0 then redis.call('HINCRBY', KEYS[1], 'c' .. s, to[s]) end
  end
end
return lost
`)

// KEYS: meta st timers pending. ARGV: n, then n seqs, then n leases (15 digits).
var scriptRelease = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 'rec') == 0 then return redis.error_reply('NOCAMPAIGN') end
local n = tonumber(ARGV[1])
local sts = redis.call('HMGET', KEYS[2], unpack(ARGV, 2, n + 1))
local st, rem, pend = {}, {}, {}
local done = 0
for i = 1, n do
  local seq, v = ARGV[1 + i], sts[i]
  if v and string.byte(v, 1) == 50 and string.sub(v, 8, 22) == ARGV[1 + n + i] then
    done = done + 1
    rem[done] = seq
    pend[2*done-1] = seq; pend[2*done] = seq
    st[2*done-1] = seq; st[2*done] = '1' .. string.sub(v, 2, 23) .. '0000000000000' .. string.sub(v, 37)
  end
end
if done > 0 then
  redis.call('ZREM', KEYS[3], unpack(rem))
  redis.call('ZADD', KEYS[4], unpack(pend))
  redis.call('HSET', KEYS[2], unpack(st))
  redis.call('HINCRBY', KEYS[1], 'c2', -done)
  redis.call('HINCRBY', KEYS[1], 'c1', done)
end
return done
`)

// KEYS: meta st pending timers pendlist. ARGV: limit.
// Cancels up to limit pending or retrying jobs; returns how many.
var scriptCancel = redis.NewScript(`
local limit = tonumber(ARGV[1])
local function cancel(v)
  if not v then return '7:0000:000000000000000:0000000000000:' end
  return '7' .. string.sub(v, 2, 23) .. '0000000000000' .. string.sub(v, 37)
end
local done, st = 0, {}
local p = redis.call('ZRANGE', KEYS[3], 0, limit - 1)
if #p > 0 then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, #p - 1) end
if #p < limit then
  for _, seq in ipairs(redis.call('LPOP', KEYS[5], limit - #p) or {}) do p[#p+1] = seq end
end
if #p > 0 then
  local sts = redis.call('HMGET', KEYS[2], unpack(p))
  for i = 1, #p do
    st[2*i-1] = p[i]; st[2*i] = cancel(sts[i])
  end
  done = #p
  redis.call('HINCRBY', KEYS[1], 'c1', -done)
end
local retries = 0
if done < limit then
  local t = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(+inf')
  for i = 1, #t, 500 do
    if done >= limit then break end
    local part = {unpack(t, i, math.min(i + 499, #t))}
    local sts = redis.call('HMGET', KEYS[2], unpack(part))
    local rem = {}
    for j = 1, #part do
      if done >= limit then break end
      if sts[j] and string.byte(sts[j], 1) == 52 then
        done = done + 1
        retries = retries + 1
        rem[#rem+1] = part[j]
        st[2*done-1] = part[j]; st[2*done] = cancel(sts[j])
      end
    end
    if #rem > 0 then redis.call('ZREM', KEYS[4], unpack(rem)) end
  end
  if retries > 0 then redis.call('HINCRBY', KEYS[1], 'c4', -retries) end
end
if done > 0 then
  redis.call('HSET', KEYS[2], unpack(st))
  redis.call('HINCRBY', KEYS[1], 'c7', done)
end
return done
`)

// KEYS: st timers meta. ARGV: until_ms (13 digits) n, then n seqs, then n
// leases (15 digits). Returns the seqs whose lease is no longer held;
// NOCAMPAIGN without the campaign's record.
var scriptExtend = redis.NewScript(`
if redis.call('HEXISTS', KEYS[3], 'rec') == 0 then return redis.error_reply('NOCAMPAIGN') end
local n = tonumber(ARGV[2])
local sts = redis.call('HMGET', KEYS[1], unpack(ARGV, 3, n + 2))
local lost, st, timers = {}, {}, {}
local done = 0
for i = 1, n do
  local seq, v = ARGV[2 + i], sts[i]
  if v and string.byte(v, 1) == 50 and string.sub(v, 8, 22) == ARGV[2 + n + i] then
    done = done + 1
    st[2*done-1] = seq; st[2*done] = '2' .. string.sub(v, 2, 23) .. ARGV[1] .. string.sub(v, 37)
    timers[2*done-1] = ARGV[1]; timers[2*done] = seq
  else
    lost[#lost+1] = seq
  end
end
if done > 0 then
  redis.call('HSET', KEYS[1], unpack(st))
  redis.call('ZADD', KEYS[2], unpack(timers))
end
return lost
`)

// KEYS: meta. ARGV: status, reason. Only a campaign with a record: a
// plain HSET would make a meta hash without one.
var scriptSetStatus = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 'rec') == 0 then return redis.error_reply('NOCAMPAIGN') end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'reason', ARGV[2])
return 1
`)

// KEYS: meta. Records that planning finished (as scriptSetStatus).
var scriptMarkPlanned = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 'rec') == 0 then return redis.error_reply('NOCAMPAIGN') end
redis.call('HSET', KEYS[1], 'planned', '1')
return 1
`)
