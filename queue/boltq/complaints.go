package boltq

import (
	"context"

	bolt "go.etcd.io/bbolt"
)

// Complaint records that key complained about campaign; it returns how
// many distinct recipients of the campaign did.
func (q *Queue) Complaint(_ context.Context, campaign, key string) (int, error) {
	var n int
	err := q.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketComplaints).CreateBucketIfNotExists([]byte(campaign))
		if err != nil {
			return err
		}
		if err := b.Put([]byte(key), nil); err != nil {
			return err
		}
		n = b.Stats().KeyN
		return nil
	})
	return n, err
}

// Complaints counts the recipients who complained about campaign.
func (q *Queue) Complaints(_ context.Context, campaign string) (int, error) {
	var n int
	err := q.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketComplaints).Bucket([]byte(campaign)); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	return n, err
}
