package replycache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisEntryBytes is the largest entry a Redis store takes when
// none is configured, the same as an in-process cache of
// DefaultMemoryBytes: a value of megabytes holds Redis's single thread up
// for every other client while it is written.
const DefaultRedisEntryBytes = DefaultMemoryBytes / memoryEntryShare

// DefaultRedisTimeout bounds each Redis call when no timeout is
// configured: an answer from the cache is worth having only when it is
// quicker than the upstream, and a Redis that takes longer is as good as
// down.
const DefaultRedisTimeout = 100 * time.Millisecond

// Redis is a Store in Redis, shared by every gateway process that uses
// the same server: an answer cached by one is served by all. Each entry
// is one string key set with PX, so Redis expires it and evicts it under
// its own maxmemory policy.
type Redis struct {
	client   redis.UniversalClient
	maxEntry int
	timeout  time.Duration
}

// RedisOptions configure a Redis store; zero values take the defaults.
type RedisOptions struct {
	// MaxEntryBytes is the largest value stored (DefaultRedisEntryBytes).
	MaxEntryBytes int
	// Timeout bounds each call (DefaultRedisTimeout). It bounds the
	// network wait only when the client has ContextTimeoutEnabled;
	// otherwise the client's own ReadTimeout and WriteTimeout do.
	Timeout time.Duration
}

// NewRedis returns a store on client, which the caller owns and closes.
func NewRedis(client redis.UniversalClient, o RedisOptions) *Redis {
	if o.MaxEntryBytes <= 0 {
		o.MaxEntryBytes = DefaultRedisEntryBytes
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultRedisTimeout
	}
	return &Redis{client: client, maxEntry: o.MaxEntryBytes, timeout: o.Timeout}
}

// Get implements Store.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	b, err := r.client.Get(ctx, key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("redis get: %w", err)
	}
	return b, true, nil
}

// Set implements Store with SET key value PX ttl (at least a
// millisecond, Redis's resolution).
func (r *Redis) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if len(value) > r.maxEntry {
		return ErrTooLarge
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.client.Do(ctx, "SET", key, value, "PX", max(ttl.Milliseconds(), 1)).Err(); err != nil {
		return fmt.Errorf("redis set: %w", err)
	}
	return nil
}

// MaxEntryBytes implements Store.
func (r *Redis) MaxEntryBytes() int { return r.maxEntry }
