package bounce

import (
	"context"
	"errors"
	"fmt"

	"github.com/heraldmail/herald/queue"
)

// CampaignReader is the part of queue.Queue that QueueLists needs.
type CampaignReader interface {
	Campaign(ctx context.Context, id string) (queue.Campaign, error)
}

// QueueLists is the ListFunc of a queue: the List of the stored campaign
// (its sending domain).
func QueueLists(q CampaignReader) ListFunc {
	return func(ctx context.Context, id string) (string, error) {
		c, err := q.Campaign(ctx, id)
		if errors.Is(err, queue.ErrNoCampaign) {
			return "", fmt.Errorf("%w %q", ErrUnknownCampaign, id)
		}
		if err != nil {
			return "", err
		}
		return c.List, nil
	}
}

// The queue keeps the suppression lists and soft-bounce counts.
var _ Store = queue.Queue(nil)
