package gateway_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/budhq/bud/upstreamtest"
)

// BenchmarkChatCompletion measures one non-streaming request through the
// gateway's handler (recorded in memory) to the stand-in over loopback, and
// the same request sent to the stand-in directly; the difference is what
// the gateway adds. `make bench-gateway` measures the same under load. The
// limits rows set every rate limit (deployment and key, high enough never
// to refuse) and max_concurrency, in process and in Redis on loopback;
// the cache-hit row answers every request but the first from the cache.
func BenchmarkChatCompletion(b *testing.B) {
	bb := setupBench(b)
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}`)
	limited := []byte(`{"model":"limited","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}`)
	gateway := func(g http.Handler, secret string, body []byte) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/v1/chat/completions", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+secret)
				rec := httptest.NewRecorder()
				g.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatal(rec.Code, rec.Body.String())
				}
			}
		}
	}
	b.Run("direct", func(b *testing.B) {
		c := &http.Client{}
		b.ReportAllocs()
		for b.Loop() {
			req, _ := http.NewRequest("POST", bb.up.URL()+"/chat/completions", bytes.NewReader(body))
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.Run("gateway", gateway(bb.gateway, bb.secret, body))
	b.Run("gateway/limits-in-process", gateway(bb.gateway, bb.limitedSecret, limited))
	b.Run("gateway/limits-in-redis", gateway(bb.redisGateway, bb.limitedSecret, limited))
	cached := []byte(`{"model":"cached","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}`)
	b.Run("gateway/cache-hit", gateway(bb.gateway, bb.secret, cached))
}

type benchBundle struct {
	*bundle
	secret string
	// limitedSecret is a key with a rate limit of its own.
	limitedSecret string
	// redisGateway is a second gateway on the same database, whose limits
	// are in Redis.
	redisGateway http.Handler
}

func setupBench(b *testing.B) benchBundle {
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	b.Cleanup(func() { _ = rc.Close() })
	prefix := randomName("budbench:") + ":"
	b.Cleanup(func() {
		if keys, _ := rc.Keys(context.Background(), prefix+"*").Result(); len(keys) > 0 {
			_ = rc.Del(context.Background(), keys...).Err()
		}
	})
	bun := setup(b)
	bun.up.SetRecording(false)
	bun.up.SetDefault(upstreamtest.Text("Hello! This is a short fixed reply."))
	p := bun.project("bench")
	bun.deployment(p, "m", map[string]any{"default_params": map[string]any{"temperature": 0.2}})
	bun.deployment(p, "limited", map[string]any{"default_params": map[string]any{"temperature": 0.2}, "settings": map[string]any{
		"max_concurrency": 100_000,
		"rate_limit":      map[string]any{"enabled": true, "requests_per_minute": 10_000_000, "burst": 10_000_000, "tokens_per_minute": 10_000_000_000},
	}})
	bun.deployment(p, "cached", map[string]any{"default_params": map[string]any{"temperature": 0}, "settings": map[string]any{
		"cache": map[string]any{"enabled": true, "ttl_seconds": 3600},
	}})
	_, secret := bun.key(p)
	limitedSecret := bun.keyWithLimit(p, map[string]any{"requests_per_minute": 10_000_000, "burst": 10_000_000, "tokens_per_minute": 10_000_000_000})
	redisBundle := setup(b, setupOpts{pool: bun.pool, box: bun.box, redis: rc, redisPrefix: prefix})
	return benchBundle{bundle: bun, secret: secret, limitedSecret: limitedSecret, redisGateway: redisBundle.gateway}
}
