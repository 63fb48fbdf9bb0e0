package replycache_test

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/replycache"
)

// TestStores runs one table on the in-process store and on Redis: they
// must behave alike.
func TestStores(t *testing.T) {
	t.Parallel()
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			store, o := kind.make(t, 1024)
			key := func(k string) string { return o.Prefix + k }
			require.Equal(t, 1024, store.MaxEntryBytes())

			_, ok, err := store.Get(ctx, key("absent"))
			require.NoError(t, err)
			require.False(t, ok, "a key never set is a miss")

			value := []byte("first answer")
			require.NoError(t, store.Set(ctx, key("a"), value, time.Minute))
			copy(value, "XXXXX")
			got, ok, err := store.Get(ctx, key("a"))
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, "first answer", string(got), "the store keeps a copy, not the caller's buffer")

			require.NoError(t, store.Set(ctx, key("a"), []byte("second answer"), time.Minute))
			got, _, _ = store.Get(ctx, key("a"))
			require.Equal(t, "second answer", string(got), "a Set replaces")

			require.ErrorIs(t, store.Set(ctx, key("big"), bytes.Repeat([]byte("x"), 1025), time.Minute), replycache.ErrTooLarge)
			_, ok, _ = store.Get(ctx, key("big"))
			require.False(t, ok, "an entry over the cap is not stored")
			require.NoError(t, store.Set(ctx, key("fits"), bytes.Repeat([]byte("x"), 1024), time.Minute))

			// Within its TTL an entry is there; after it, it is gone.
			require.NoError(t, store.Set(ctx, key("short"), []byte("soon gone"), 50*time.Millisecond))
			_, ok, _ = store.Get(ctx, key("short"))
			require.True(t, ok, "hit within the TTL")
			require.Eventually(t, func() bool {
				_, ok, err := store.Get(ctx, key("short"))
				return err == nil && !ok
			}, 5*time.Second, 5*time.Millisecond, "miss after the TTL")
			_, ok, _ = store.Get(ctx, key("a"))
			require.True(t, ok, "an entry with a longer TTL stays")
		})
	}
}

// TestMemoryExpiresOnTheClock: an entry is served up to its TTL and not
// at it.
func TestMemoryExpiresOnTheClock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	m := replycache.NewMemory(1 << 20)
	replycache.SetMemoryClock(m, clk.now)
	require.NoError(t, m.Set(ctx, "k", []byte("v"), 10*time.Second))
	clk.advance(10*time.Second - time.Nanosecond)
	_, ok, _ := m.Get(ctx, "k")
	require.True(t, ok)
	clk.advance(time.Nanosecond)
	_, ok, _ = m.Get(ctx, "k")
	require.False(t, ok)
	require.Zero(t, m.Len(), "an expired entry read is dropped")
	require.Zero(t, m.Bytes())
}

// TestMemoryEvictsLeastRecentlyUsed: the byte bound holds, and what goes
// is what was used longest ago, not what was stored first.
func TestMemoryEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const entries = 20
	value := bytes.Repeat([]byte("v"), 200)
	key := func(i int) string { return fmt.Sprintf("key-%02d", i) }
	// Room for entries values with their keys and overhead, and not one
	// more.
	perEntry := int64(len(key(0)) + len(value) + 128)
	m := replycache.NewMemory(entries * perEntry)
	for i := range entries {
		require.NoError(t, m.Set(ctx, key(i), value, time.Hour))
	}
	require.Equal(t, entries, m.Len())
	require.Equal(t, entries*perEntry, m.Bytes())

	// key-00 is the oldest, but it is read now: key-01 is the least
	// recently used.
	_, ok, _ := m.Get(ctx, key(0))
	require.True(t, ok)
	require.NoError(t, m.Set(ctx, key(entries), value, time.Hour))
	require.Equal(t, entries, m.Len())
	require.LessOrEqual(t, m.Bytes(), entries*perEntry)
	for i := range entries + 1 {
		_, ok, _ := m.Get(ctx, key(i))
		require.Equal(t, i != 1, ok, key(i))
	}

	// A larger entry evicts as many as it needs, the least recently used
	// first: key-00 was read before all the others.
	require.NoError(t, m.Set(ctx, "key-big", bytes.Repeat([]byte("b"), 2*len(value)), time.Hour))
	require.LessOrEqual(t, m.Bytes(), entries*perEntry)
	require.Equal(t, entries-1, m.Len())
	_, ok, _ = m.Get(ctx, "key-big")
	require.True(t, ok)
	for i, want := range map[int]bool{0: false, 2: false, 3: true} {
		_, ok, _ := m.Get(ctx, key(i))
		require.Equal(t, want, ok, key(i))
	}
}

// TestMemoryEntryShare: one entry may take a sixteenth of the bound.
func TestMemoryEntryShare(t *testing.T) {
	t.Parallel()
	m := replycache.NewMemory(16 << 10)
	require.Equal(t, 1<<10, m.MaxEntryBytes())
	require.Equal(t, replycache.DefaultMemoryBytes/16, replycache.NewMemory(0).MaxEntryBytes())
}

// TestRedisSetsMillisecondTTL: entries are set with PX, so a TTL below a
// second, or not a whole number of seconds, is kept as it is.
func TestRedisSetsMillisecondTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := newRedisClient(t, redisAddr)
	prefix := testPrefix(t, client)
	store := replycache.NewRedis(client, replycache.RedisOptions{})
	require.NoError(t, store.Set(ctx, prefix+"k", []byte("v"), 1500*time.Millisecond))
	ttl, err := client.PTTL(ctx, prefix+"k").Result()
	require.NoError(t, err)
	require.Greater(t, ttl, time.Second)
	require.LessOrEqual(t, ttl, 1500*time.Millisecond)
}

// commandCounter counts the commands a Redis client sends, pipelined ones
// included.
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// TestTieredServesNearWithinRedisTTL: an entry another process stored is
// found in Redis once, then served from this process's memory without a
// round trip, and never after Redis has expired it.
func TestTieredServesNearWithinRedisTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ca, cb := newRedisClient(t, redisAddr), newRedisClient(t, redisAddr)
	require.NoError(t, ca.Ping(ctx).Err(), "the tests need Redis on %s", redisAddr)
	var counted commandCounter
	cb.AddHook(&counted)
	a := replycache.NewTiered(replycache.NewMemory(1<<20), replycache.NewRedis(ca, replycache.RedisOptions{}))
	b := replycache.NewTiered(replycache.NewMemory(1<<20), replycache.NewRedis(cb, replycache.RedisOptions{}))
	key := testPrefix(t, ca) + "k"

	require.NoError(t, a.Set(ctx, key, []byte("answer"), 600*time.Millisecond))
	got, ok, err := b.Get(ctx, key)
	require.NoError(t, err)
	require.True(t, ok, "stored by another process, found in Redis")
	require.Equal(t, "answer", string(got))
	sent := counted.n.Load()
	require.Positive(t, sent)
	for range 10 {
		got, ok, err = b.Get(ctx, key)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "answer", string(got))
	}
	require.Equal(t, sent, counted.n.Load(), "hits on an entry seen before cost no round trip")

	// Redis expires it; the near copy goes with it.
	require.Eventually(t, func() bool {
		n, err := ca.Exists(ctx, key).Result()
		return err == nil && n == 0
	}, 5*time.Second, 10*time.Millisecond)
	_, ok, err = b.Get(ctx, key)
	require.NoError(t, err)
	require.False(t, ok, "not served after Redis expired it")
	_, ok, _ = a.Get(ctx, key)
	require.False(t, ok, "nor by the process that stored it")
}
