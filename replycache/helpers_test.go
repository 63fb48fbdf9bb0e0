package replycache_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/replycache"
)

// redisAddr is the machine's Redis, which tests share, each under a key
// prefix of its own.
const redisAddr = "127.0.0.1:6379"

// newRedisClient returns a client of the test Redis, closed when the test
// ends. It fails fast: no retries, timeouts from the context.
func newRedisClient(tb testing.TB, addr string) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ContextTimeoutEnabled: true, DialTimeout: time.Second})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// testPrefix is a key prefix of the test's own; its keys are deleted when
// the test ends.
func testPrefix(tb testing.TB, client *redis.Client) string {
	tb.Helper()
	var b [8]byte
	_, _ = rand.Read(b[:])
	prefix := "budtest:replycache:" + hex.EncodeToString(b[:]) + ":"
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := client.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
	})
	return prefix
}

// storeKind makes one kind of store for a test, and the cache options
// (its prefix) that go with it.
type storeKind struct {
	name string
	make func(tb testing.TB, maxEntry int) (replycache.Store, replycache.Options)
}

// storeKinds are the stores every behaviour is tested on, so that the
// in-process cache and Redis behave alike.
var storeKinds = []storeKind{
	{"memory", func(tb testing.TB, maxEntry int) (replycache.Store, replycache.Options) {
		return replycache.NewMemory(int64(maxEntry) * 16), replycache.Options{Prefix: "test:"}
	}},
	{"redis", func(tb testing.TB, maxEntry int) (replycache.Store, replycache.Options) {
		c := newRedisClient(tb, redisAddr)
		require.NoError(tb, c.Ping(context.Background()).Err(), "the tests need Redis on %s", redisAddr)
		return replycache.NewRedis(c, replycache.RedisOptions{MaxEntryBytes: maxEntry}), replycache.Options{Prefix: testPrefix(tb, c)}
	}},
	{"redis with a near cache", func(tb testing.TB, maxEntry int) (replycache.Store, replycache.Options) {
		c := newRedisClient(tb, redisAddr)
		require.NoError(tb, c.Ping(context.Background()).Err(), "the tests need Redis on %s", redisAddr)
		far := replycache.NewRedis(c, replycache.RedisOptions{MaxEntryBytes: maxEntry})
		return replycache.NewTiered(replycache.NewMemory(int64(maxEntry)*16), far), replycache.Options{Prefix: testPrefix(tb, c)}
	}},
}

// logRecorder is a slog.Handler that keeps the messages logged.
type logRecorder struct {
	mu       sync.Mutex
	messages []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.messages = append(l.messages, r.Message)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) logged() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.messages...)
}

// clock is a settable time for stores and caches.
type clock struct{ t atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.t.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *clock) advance(d time.Duration) { c.t.Add(int64(d)) }
