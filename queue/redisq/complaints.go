package redisq

import "context"

func (q *Queue) complaintKey(campaign string) string {
	return q.prefix + "complaints:{" + campaign + "}"
}

// Complaint records that key complained about campaign; it returns how
// many distinct recipients of the campaign did.
func (q *Queue) Complaint(ctx context.Context, campaign, key string) (int, error) {
	pipe := q.rdb.TxPipeline()
	pipe.SAdd(ctx, q.complaintKey(campaign), key)
	n := pipe.SCard(ctx, q.complaintKey(campaign))
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	return int(n.Val()), nil
}

// Complaints counts the recipients who complained about campaign.
func (q *Queue) Complaints(ctx context.Context, campaign string) (int, error) {
	n, err := q.rdb.SCard(ctx, q.complaintKey(campaign)).Result()
	return int(n), err
}
