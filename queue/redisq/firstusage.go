package redisq

import (
	"context"
	"strconv"
	"time"
)

// FirstUsage is the minute of provider's first recorded message: the
// smallest minute in its usage hash.
func (q *Queue) FirstUsage(ctx context.Context, provider string) (time.Time, error) {
	minutes, err := q.rdb.HKeys(ctx, q.usageKey(provider)).Result()
	if err != nil {
		return time.Time{}, err
	}
	var first int64
	for _, m := range minutes {
		if v, err := strconv.ParseInt(m, 10, 64); err == nil && (first == 0 || v < first) {
			first = v
		}
	}
	if first == 0 {
		return time.Time{}, nil
	}
	return time.Unix(first*60, 0), nil
}
