package replycache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Tiered is a Store in Redis with an in-process Memory in front of it, as
// a CPU keeps a cache near each core in front of a shared one: a hit on
// an entry this process has seen costs no round trip, and an entry stored
// by any process is found in Redis. An entry is kept near only for as
// long as Redis keeps it (the rest of its time to live, read with it), so
// the near copy never outlives the shared one; what is near is what is in
// Redis, or was until it expired there.
type Tiered struct {
	near *Memory
	far  *Redis
}

// NewTiered returns a store of far with near in front of it.
func NewTiered(near *Memory, far *Redis) *Tiered { return &Tiered{near: near, far: far} }

// Get implements Store: near first, then Redis, whose hit is kept near
// for the rest of its time to live.
func (t *Tiered) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if v, ok, _ := t.near.Get(ctx, key); ok {
		return v, true, nil
	}
	v, ttl, ok, err := t.far.getWithTTL(ctx, key)
	if err != nil || !ok {
		return nil, false, err
	}
	if ttl > 0 {
		_ = t.near.Set(ctx, key, v, ttl)
	}
	return v, true, nil
}

// Set implements Store: in Redis, then near when Redis took it.
func (t *Tiered) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := t.far.Set(ctx, key, value, ttl); err != nil {
		return err
	}
	_ = t.near.Set(ctx, key, value, ttl)
	return nil
}

// MaxEntryBytes implements Store: Redis's bound, since every entry is
// stored there. One too large to keep near is served from Redis.
func (t *Tiered) MaxEntryBytes() int { return t.far.MaxEntryBytes() }

// getWithTTL is Get, with the time the entry has left, in one round trip.
func (r *Redis) getWithTTL(ctx context.Context, key string) ([]byte, time.Duration, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var get *redis.StringCmd
	var pttl *redis.DurationCmd
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, key)
		pttl = p.PTTL(ctx, key)
		return nil
	})
	switch {
	case errors.Is(err, redis.Nil):
		return nil, 0, false, nil
	case err != nil:
		return nil, 0, false, fmt.Errorf("redis get: %w", err)
	}
	b, err := get.Bytes()
	if err != nil {
		return nil, 0, false, fmt.Errorf("redis get: %w", err)
	}
	// PTTL is -1 for a key without expiry, which this store never writes,
	// and -2 for one gone since the GET: either is kept near for no time.
	return b, max(pttl.Val(), 0), true, nil
}
