package usage

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLatencyBucket(t *testing.T) {
	t.Parallel()
	require.Equal(t, 0, latencyBucket(0))
	require.Equal(t, 0, latencyBucket(time.Millisecond), "bounds are inclusive")
	require.Equal(t, 1, latencyBucket(time.Millisecond+1))
	require.Equal(t, 9, latencyBucket(time.Second))
	require.Equal(t, len(LatencyBucketBounds)-1, latencyBucket(time.Minute))
	require.Equal(t, len(LatencyBucketBounds), latencyBucket(time.Minute+1), "past the last bound")
	require.Equal(t, len(LatencyBucketBounds), latencyBucket(time.Hour))
	for i, b := range LatencyBucketBounds {
		require.Equal(t, i, latencyBucket(b))
		if i > 0 {
			require.Less(t, LatencyBucketBounds[i-1], b, "bounds ascend")
		}
	}
}

// observed builds the Latency of ds as a rollup keeps it.
func observed(ds ...time.Duration) Latency {
	var l Latency
	for _, d := range ds {
		l.Count++
		l.Sum += d
		l.Max = max(l.Max, d)
		l.Buckets[latencyBucket(d)]++
	}
	return l
}

func TestLatencyQuantile(t *testing.T) {
	t.Parallel()
	require.Zero(t, Latency{}.Quantile(0.5), "nothing timed")
	require.Zero(t, Latency{}.Mean())

	// One request: every quantile is within its bucket and at most it.
	one := observed(40 * time.Millisecond)
	require.Equal(t, 40*time.Millisecond, one.Mean())
	for _, q := range []float64{0, 0.5, 0.95, 1} {
		got := one.Quantile(q)
		require.GreaterOrEqual(t, got, 25*time.Millisecond, q)
		require.LessOrEqual(t, got, 40*time.Millisecond, q)
	}
	require.Equal(t, 40*time.Millisecond, one.Quantile(1), "the slowest bounds its bucket")

	// 100 requests of 1..100 ms: the estimate lands in the true value's
	// bucket.
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	l := observed(ds...)
	require.Equal(t, 50500*time.Microsecond, l.Mean())
	p50, p95 := l.Quantile(0.5), l.Quantile(0.95)
	require.Equal(t, latencyBucket(50*time.Millisecond), latencyBucket(p50), "p50 %v", p50)
	require.Equal(t, latencyBucket(95*time.Millisecond), latencyBucket(p95), "p95 %v", p95)
	require.InDelta(t, float64(50*time.Millisecond), float64(p50), float64(time.Millisecond))
	require.InDelta(t, float64(95*time.Millisecond), float64(p95), float64(time.Millisecond))
	require.Equal(t, 100*time.Millisecond, l.Quantile(1))

	// Past the last bound, the slowest request is the top bucket's bound.
	slow := observed(2*time.Minute, 4*time.Minute)
	require.Equal(t, 4*time.Minute, slow.Quantile(1))
	got := slow.Quantile(0.5)
	require.Greater(t, got, time.Minute)
	require.LessOrEqual(t, got, 4*time.Minute)

	// Out-of-range q is clamped.
	require.Equal(t, l.Quantile(1), l.Quantile(7))
	require.Equal(t, l.Quantile(0), l.Quantile(-1))
}

func TestLatencyFromRowAndAdd(t *testing.T) {
	t.Parallel()
	a := observed(time.Millisecond, 3*time.Second)
	b := LatencyFromRow(2000, 2000, []int64{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	require.EqualValues(t, 1, b.Count)
	require.Equal(t, 2*time.Millisecond, b.Max)
	a.Add(b)
	require.EqualValues(t, 3, a.Count)
	require.Equal(t, 3*time.Second+3*time.Millisecond, a.Sum)
	require.Equal(t, 3*time.Second, a.Max)
	require.EqualValues(t, 1, a.Buckets[1])
}
