package admission

// A bucket's level counts in units: one request or token is unit units,
// and a bucket of N per minute gains N units per millisecond. Refills are
// then exact integers on a millisecond clock, in Go and in Redis's Lua
// (whose numbers are doubles, exact up to 2^53: a bucket of 10^10 tokens
// per minute holds 6·10^14 units).
const unit = 60_000

// bucket is a token bucket in this process. The Lua scripts keep the same
// arithmetic (bucket.lua).
type bucket struct {
	level int64 // units; below 0 for tokens charged beyond the allowance
	at    int64 // ms of the last refill
	set   bool  // false: never used, full
}

// refill brings b to now for a bucket of size capacity (requests or
// tokens) refilled by perMinute.
func (b *bucket) refill(now, capacity, perMinute int64) {
	full := capacity * unit
	switch {
	case !b.set:
		b.level, b.set = full, true
	case now > b.at:
		if need := full - b.level; need <= 0 || now-b.at >= ceilDiv(need, perMinute) {
			b.level = full
		} else {
			b.level += (now - b.at) * perMinute
		}
	}
	if now > b.at {
		b.at = now
	}
	b.level = min(b.level, full)
}

// requestWait is how long, in ms, until a request bucket at level holds a
// whole request; 0 when it does.
func requestWait(level, perMinute int64) int64 {
	if level >= unit {
		return 0
	}
	return ceilDiv(unit-level, perMinute)
}

// tokenWait is how long, in ms, until a token bucket at level is above 0;
// 0 when it is.
func tokenWait(level, perMinute int64) int64 {
	if level > 0 {
		return 0
	}
	return ceilDiv(1-level, perMinute)
}

// charged is level less tokens, down to a debt of one full bucket.
func charged(level, tokens, capacity int64) int64 {
	full := capacity * unit
	// Past 2·capacity the result is the floor anyway; bounding tokens
	// first keeps the product from overflowing.
	tokens = min(tokens, 2*capacity)
	return max(level-tokens*unit, -full)
}

// window is what OpenAI's x-ratelimit-* headers say of one bucket.
type window struct {
	limit     int64
	remaining int64
	// resetMS is how long until the bucket is full again.
	resetMS int64
}

// windowOf describes a bucket at level of size capacity refilled by
// perMinute (limit is what the limit header names: the per-minute rate).
func windowOf(level, capacity, perMinute int64) window {
	return window{limit: perMinute, remaining: max(level, 0) / unit, resetMS: ceilDiv(capacity*unit-level, perMinute)}
}

func ceilDiv(a, b int64) int64 {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}
