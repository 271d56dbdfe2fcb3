package redisq

import (
	"context"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldmail/herald/queue"
)

// Spec returns the campaign's Spec. A campaign in another layout has
// none to deliver it with here: a worker skips it (engine: a campaign
// that cannot be loaded) rather than fail on every Lease.
func (q *Queue) Spec(ctx context.Context, id string) ([]byte, error) {
	v, err := q.rdb.HMGet(ctx, q.keys(id).meta, "rec", "spec", "layout").Result()
	if err != nil {
		return nil, err
	}
	if v[0] == nil {
		return nil, q.missing(ctx, id)
	}
	q.saw(id)
	if have := str(v[2]); have != layout {
		return nil, layoutError(id, have)
	}
	if s := str(v[1]); s != "" {
		return []byte(s), nil
	}
	return nil, nil
}

// SetSpec replaces the campaign's Spec.
func (q *Queue) SetSpec(ctx context.Context, id string, spec []byte) error {
	err := scriptSetSpec.Run(ctx, q.rdb, []string{q.keys(id).meta}, spec).Err()
	if isNoCampaign(err) {
		return q.missing(ctx, id)
	}
	return err
}

// Campaigns lists every stored campaign's id, sorted.
func (q *Queue) Campaigns(ctx context.Context) ([]string, error) {
	ids, err := q.rdb.SMembers(ctx, q.campaignsKey()).Result()
	slices.Sort(ids)
	return ids, err
}

// RetryFailed moves failed jobs back to pending, except those whose
// address is on the suppression list. It walks the campaign once; each
// batch is moved by one script that checks the job is still failed.
func (q *Queue) RetryFailed(ctx context.Context, id string, now time.Time) (queue.RetryResult, error) {
	var res queue.RetryResult
	var failed []queue.Job
	err := q.Walk(ctx, id, func(j queue.Job) error {
		if j.State == queue.Failed {
			failed = append(failed, j)
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	k := q.keys(id)
	ci, err := q.info(ctx, id)
	if err != nil {
		return res, err
	}
	const batch = 500
	for start := 0; start < len(failed); start += batch {
		jobs := failed[start:min(start+batch, len(failed))]
		keys := make([]string, len(jobs))
		for i, j := range jobs {
			keys[i] = j.Key
		}
		supp, err := q.rdb.HMGet(ctx, q.suppressionKey(ci.list), keys...).Result()
		if err != nil {
			return res, err
		}
		args := []any{0}
		for i, j := range jobs {
			if supp[i] != nil {
				res.Suppressed++
				continue
			}
			j.Enqueued = now
			args = append(args, j.Seq, encodeData(j, ci.base))
		}
		args[0] = (len(args) - 1) / 2
		if args[0] == 0 {
			continue
		}
		n, err := scriptRetryFailed.Run(ctx, q.rdb, []string{k.meta, k.st, k.pending}, args...).Int()
		if err != nil {
			return res, err
		}
		res.Requeued += n
	}
	if res.Requeued > 0 {
		return res, q.replicate(ctx, k.meta)
	}
	return res, nil
}

// KEYS: meta. ARGV: spec.
var scriptSetSpec = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 'rec') == 0 then return redis.error_reply('NOCAMPAIGN') end
redis.call('HSET', KEYS[1], 'spec', ARGV[1])
return 1
`)

// KEYS: meta st pending. ARGV: n, then per job: seq blob.
// Moves each job that is still failed to pending with no attempts and the
// new data blob (its Enqueued time reset); returns how many moved. The st
// layout is described in scripts.go.
var scriptRetryFailed = redis.NewScript(luaData + `
local n, moved = tonumber(ARGV[1]), 0
for i = 0, n - 1 do
  local seq, blob = ARGV[2 + i*2], ARGV[3 + i*2]
  local v = redis.call('HGET', KEYS[2], seq)
  if v and v:sub(1, 1) == '5' then
    -- Pending, attempts 0, lease token kept, no due time; last reply kept.
    redis.call('HSET', KEYS[2], seq, '1:0000' .. v:sub(7, 23) .. '0000000000000:' .. v:sub(38))
    local b, f = dkey(seq)
    redis.call('HSET', b, f, blob)
    redis.call('ZADD', KEYS[3], seq, seq)
    moved = moved + 1
  end
end
redis.call('HINCRBY', KEYS[1], 'c5', -moved)
redis.call('HINCRBY', KEYS[1], 'c1', moved)
return moved
`)
