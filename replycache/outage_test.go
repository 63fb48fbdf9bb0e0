package replycache_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/replycache"
	"github.com/budhq/bud/upstreamtest"
)

// switchProxy forwards TCP connections to Redis while it is up; down, it
// cuts every connection it holds and refuses new ones, as a Redis that
// goes away does.
type switchProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	up     bool
	conns  []net.Conn
}

func startProxy(t *testing.T, target string) *switchProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &switchProxy{ln: ln, target: target, up: true}
	t.Cleanup(func() {
		_ = ln.Close()
		p.setUp(false)
	})
	go p.serve()
	return p
}

func (p *switchProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		up := p.up
		p.mu.Unlock()
		if !up {
			_ = c.Close()
			continue
		}
		r, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, r)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(r, c); _ = r.Close() }()
		go func() { _, _ = io.Copy(c, r); _ = c.Close() }()
	}
}

func (p *switchProxy) setUp(up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = up
	if !up {
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.conns = nil
	}
}

// TestRedisOutage: with Redis gone, requests are answered by the upstream
// as misses, the outage is logged once however many requests meet it, the
// store is left alone between retries, and its return is logged once and
// caching resumes.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	proxy := startProxy(t, redisAddr)
	client := newRedisClient(t, proxy.ln.Addr().String())
	prefix := testPrefix(t, newRedisClient(t, redisAddr))
	logs := &logRecorder{}
	clk := newClock()
	cache := replycache.New(replycache.NewRedis(client, replycache.RedisOptions{}),
		replycache.Options{Prefix: prefix, Logger: slog.New(logs), RetryAfter: time.Second})
	replycache.SetCacheClock(cache, clk.now)
	up := upstreamtest.Start(t)
	rt := &route{cache: cache, settings: cacheOn, upstream: up.URL() + "/chat/completions", done: make(chan struct{}, 16)}
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	h := &harness{t: t, upstream: up, route: rt, server: srv}

	require.Equal(t, "miss", h.post(question).cache)
	require.Equal(t, "hit", h.post(question).cache)
	require.Empty(t, logs.logged())

	proxy.setUp(false)
	for range 5 {
		a := h.post(question)
		require.Equal(t, 200, a.status)
		require.Equal(t, "miss", a.cache, "answered by the upstream")
	}
	require.Equal(t, 6, up.Received())
	require.Equal(t, []string{"response cache unavailable: requests are answered without it until it is back"}, logs.logged())

	// Redis is back, but the cache leaves it alone until RetryAfter has
	// passed since the last failure.
	proxy.setUp(true)
	require.Equal(t, "miss", h.post(question).cache)
	clk.advance(time.Second)
	require.Equal(t, "hit", h.post(question).cache, "the entry stored before the outage")
	require.Equal(t, 7, up.Received())
	require.Equal(t, 2, len(logs.logged()))
	require.Equal(t, "response cache available again", logs.logged()[1])

	// A call whose caller went away is no outage.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q := cache.Chat(cacheOn, gen, []byte(question), nil)
	_, ok := q.Lookup(ctx)
	require.False(t, ok)
	require.False(t, slices.Contains(logs.logged()[2:], "response cache unavailable: requests are answered without it until it is back"))
}
