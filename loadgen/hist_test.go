package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	var parts [4]Histogram
	var all []int64
	for i := range 100000 {
		// Log-uniform from 1µs to 10s: every bucket range is used.
		v := int64(1000 * math.Pow(10, rng.Float64()*7))
		all = append(all, v)
		parts[i%4].Record(time.Duration(v))
	}
	var h Histogram
	for i := range parts {
		h.Merge(&parts[i])
	}
	slices.Sort(all)
	if h.Count() != uint64(len(all)) || h.Max() != time.Duration(all[len(all)-1]) {
		t.Fatalf("count %d max %v, want %d %v", h.Count(), h.Max(), len(all), time.Duration(all[len(all)-1]))
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		want := float64(all[int(q*float64(len(all)))-1])
		got := float64(h.Quantile(q))
		if got < want*0.97 || got > want*1.03 {
			t.Errorf("q%v = %v, want %v within 3%%", q, time.Duration(got), time.Duration(want))
		}
	}
}

func TestHistogramBuckets(t *testing.T) {
	t.Parallel()
	// Every value lands in a bucket whose range holds it; buckets are
	// contiguous and ordered.
	prevLow := int64(-1)
	for i := range numBuckets {
		low, w := bucketRange(i)
		if low <= prevLow || bucketOf(low) != i || bucketOf(low+w-1) != i {
			t.Fatalf("bucket %d: [%d,+%d) after %d; bucketOf(low)=%d", i, low, w, prevLow, bucketOf(low))
		}
		prevLow = low
	}
	var h Histogram
	h.Record(-5)
	h.Record(time.Hour) // beyond the last bucket: still counted, max exact
	if h.Count() != 2 || h.Max() != time.Hour || h.Quantile(1) > time.Hour || h.Quantile(0.5) != 0 {
		t.Fatalf("count %d max %v q1 %v q.5 %v", h.Count(), h.Max(), h.Quantile(1), h.Quantile(0.5))
	}
	var empty Histogram
	if empty.Quantile(0.5) != 0 || empty.Max() != 0 {
		t.Fatal("an empty histogram reports zero")
	}
}
