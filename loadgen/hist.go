package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// Histogram buckets: values below 2*subCount nanoseconds are exact; above,
// each power of two is split into subCount buckets, so a bucket is at most
// 1/subCount (3%) of its value wide. Values from 2^maxExp ns (18 minutes)
// up share the last bucket; Max stays exact.
const (
	subBits    = 5
	subCount   = 1 << subBits
	maxExp     = 40
	numBuckets = (maxExp-1-subBits)*subCount + 2*subCount
)

// Histogram is a log-bucketed latency histogram. It is not safe for
// concurrent use: each connection records into its own, and Merge adds them
// up at the end.
type Histogram struct {
	counts []uint64
	n      uint64
	max    int64
	sum    float64
}

func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	if v >= 1<<maxExp {
		v = 1<<maxExp - 1
	}
	u := uint64(v)
	if u < 2*subCount {
		return int(u)
	}
	shift := bits.Len64(u) - 1 - subBits
	return shift*subCount + int(u>>shift)
}

// bucketRange is the smallest value of bucket i and its width.
func bucketRange(i int) (low, width int64) {
	if i < 2*subCount {
		return int64(i), 1
	}
	shift := i/subCount - 1
	m := int64(i - shift*subCount)
	return m << shift, 1 << shift
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	if h.counts == nil {
		h.counts = make([]uint64, numBuckets)
	}
	v := int64(d)
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += float64(v)
	if v > h.max {
		h.max = v
	}
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, numBuckets)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest recorded value, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean is the average of the recorded values.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the value below which a fraction q of the recorded
// values lie: the middle of its bucket, never above Max.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			low, w := bucketRange(i)
			return time.Duration(min(low+w/2, h.max))
		}
	}
	return time.Duration(h.max)
}
