package usage

import "time"

// LatencyBuckets is how many buckets a rollup's latency histogram has: one
// per bound of LatencyBucketBounds and a last one for everything slower.
// The database checks the count (migration 00011).
const LatencyBuckets = len(LatencyBucketBounds) + 1

// LatencyBucketBounds are the inclusive upper bounds of the latency
// histogram's buckets. They span a cache hit (under a millisecond) to a
// long generation (a minute), about 2.5× apart, so a percentile read from
// them is within one bucket's width. They are stored with every row, so
// they never change: other bounds need another column.
var LatencyBucketBounds = [...]time.Duration{
	1 * time.Millisecond,
	2500 * time.Microsecond,
	5 * time.Millisecond,
	10 * time.Millisecond,
	25 * time.Millisecond,
	50 * time.Millisecond,
	100 * time.Millisecond,
	250 * time.Millisecond,
	500 * time.Millisecond,
	1 * time.Second,
	2500 * time.Millisecond,
	5 * time.Second,
	10 * time.Second,
	25 * time.Second,
	60 * time.Second,
}

// latencyBucket is the index of the bucket d falls in.
func latencyBucket(d time.Duration) int {
	// Binary search over 15 bounds: four comparisons.
	lo, hi := 0, len(LatencyBucketBounds)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if d <= LatencyBucketBounds[mid] {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// Latency is the latency of a set of requests as rollups keep it.
type Latency struct {
	// Count is how many requests were timed: all but the rate-limited ones.
	Count int64
	// Sum and Max are their total and their slowest.
	Sum, Max time.Duration
	// Buckets counts them by LatencyBucketBounds.
	Buckets [LatencyBuckets]int64
}

// LatencyFromRow reads a rollup's latency columns: the sum and maximum in
// microseconds and the buckets. A row with another number of buckets
// breaks the schema's check and is read as far as it goes.
func LatencyFromRow(sumUS, maxUS int64, buckets []int64) Latency {
	l := Latency{Sum: time.Duration(sumUS) * time.Microsecond, Max: time.Duration(maxUS) * time.Microsecond}
	copy(l.Buckets[:], buckets)
	for _, n := range l.Buckets {
		l.Count += n
	}
	return l
}

// Add adds o's requests to l's.
func (l *Latency) Add(o Latency) {
	l.Count += o.Count
	l.Sum += o.Sum
	l.Max = max(l.Max, o.Max)
	for i, n := range o.Buckets {
		l.Buckets[i] += n
	}
}

// Mean is the average latency; 0 when nothing was timed.
func (l Latency) Mean() time.Duration {
	if l.Count == 0 {
		return 0
	}
	return l.Sum / time.Duration(l.Count)
}

// Quantile estimates the latency under which a fraction q (0 to 1) of the
// requests fall, as Prometheus's histogram_quantile does: it finds the
// bucket that holds the q-th request and interpolates linearly inside it.
// The slowest request bounds the estimate, and the top bucket, which has
// no bound of its own; 0 when nothing was timed.
func (l Latency) Quantile(q float64) time.Duration {
	if l.Count == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := q * float64(l.Count)
	var below int64
	for i, n := range l.Buckets {
		if n == 0 || float64(below+n) < rank {
			below += n
			continue
		}
		var lower time.Duration
		if i > 0 {
			lower = LatencyBucketBounds[i-1]
		}
		upper := l.Max
		if i < len(LatencyBucketBounds) {
			upper = min(LatencyBucketBounds[i], l.Max)
		}
		if upper <= lower {
			return upper
		}
		frac := (rank - float64(below)) / float64(n)
		return lower + time.Duration(frac*float64(upper-lower))
	}
	return l.Max
}
