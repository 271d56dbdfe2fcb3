package redisq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldmail/herald/queue"
)

// A campaign vanishes when Redis loses it: a server without persistence
// restarts and comes back empty, or someone deletes the keys. To the
// scripts that is indistinguishable from a campaign never planned, and a
// new herald send would plan it again and send every message a second
// time. So the Queue remembers which campaigns it found stored (created,
// or read) in this process; when one of those is missing, it writes a
// tombstone under the campaign's hash tag ({ID}:lost: when it was noticed,
// and the counts last seen) and returns a *queue.VanishedError. Every
// process, this one or a later one, then gets that error for the id, and
// CreateCampaign refuses it, until someone deletes the tombstone by hand.
//
// A campaign lost while no herald process that had seen it was running
// leaves no tombstone: that is what the persistence check at start is for
// (CheckPersistence).

// sighting is what this Queue last saw of a campaign it found stored.
type sighting struct {
	sent, total atomic.Int64
}

// saw records that campaign id was found stored.
func (q *Queue) saw(id string) *sighting {
	if v, ok := q.seen.Load(id); ok {
		return v.(*sighting)
	}
	v, _ := q.seen.LoadOrStore(id, &sighting{})
	return v.(*sighting)
}

// sawCounts records the counts of campaign id as read.
func (q *Queue) sawCounts(id string, c queue.Counts) {
	s := q.saw(id)
	s.sent.Store(c.Sent)
	s.total.Store(c.Total())
}

// missing is the error for campaign id, found missing: the tombstone's
// *queue.VanishedError if there is one; a new tombstone's if this Queue
// had seen the campaign; else queue.ErrNoCampaign.
func (q *Queue) missing(ctx context.Context, id string) error {
	k := q.keys(id)
	v, err := q.rdb.HMGet(ctx, k.lost, "at", "sent", "total").Result()
	if err != nil {
		return err
	}
	if v[0] != nil {
		return vanishedError(id, v)
	}
	s, ok := q.seen.Load(id)
	if !ok {
		return fmt.Errorf("%w: %s", queue.ErrNoCampaign, id)
	}
	seen := s.(*sighting)
	now := time.Now()
	r, err := scriptBury.Run(ctx, q.rdb, []string{k.meta, k.lost}, now.UnixMilli(), seen.sent.Load(), seen.total.Load()).Slice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	if err := q.replicate(ctx, k.lost); err != nil {
		return err
	}
	if err := q.rdb.SAdd(ctx, q.campaignsKey(), id).Err(); err != nil {
		return err
	}
	if len(r) == 3 {
		return vanishedError(id, r)
	}
	// Planned again meanwhile, by a process that had not seen it: what
	// this process knew of the campaign is gone all the same.
	return &queue.VanishedError{Campaign: id, Store: "Redis", At: now, Sent: seen.sent.Load(), Total: seen.total.Load()}
}

func vanishedError(id string, v []any) error {
	n := func(x any) int64 {
		i, _ := strconv.ParseInt(str(x), 10, 64)
		return i
	}
	return &queue.VanishedError{Campaign: id, Store: "Redis", At: time.UnixMilli(n(v[0])), Sent: n(v[1]), Total: n(v[2])}
}

// isNoCampaign reports whether a script refused to run because the
// campaign's record is missing.
func isNoCampaign(err error) bool {
	return err != nil && strings.Contains(err.Error(), "NOCAMPAIGN")
}

// KEYS: meta lost. ARGV: now_ms, sent, total (as last seen).
// Writes the tombstone unless the record is there (planned again
// meanwhile: returns 0). The first time noticed stays; the counts are
// those of whichever process had seen the most sent.
var scriptBury = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 'rec') == 1 then return 0 end
if redis.call('HSETNX', KEYS[2], 'at', ARGV[1]) == 1 or tonumber(ARGV[2]) > tonumber(redis.call('HGET', KEYS[2], 'sent') or '-1') then
  redis.call('HSET', KEYS[2], 'sent', ARGV[2], 'total', ARGV[3])
end
return redis.call('HMGET', KEYS[2], 'at', 'sent', 'total')
`)
