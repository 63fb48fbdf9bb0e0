package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/upstreamtest"
)

// TestGatewaysShareLimitsThroughRedis runs two `bud gateway` processes on
// one database and one Redis (BUD_REDIS_URL, BUD_REDIS_PREFIX): together
// they admit no more than a deployment's burst and its rate's refill, and
// hold no more than its max_concurrency requests in flight at once.
func TestGatewaysShareLimitsThroughRedis(t *testing.T) {
	ctx := t.Context()
	const redisURL = "redis://127.0.0.1:6379/0"
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	require.NoError(t, rc.Ping(ctx).Err(), "Redis on 127.0.0.1:6379")
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "budtest:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		if keys, _ := rc.Keys(context.Background(), prefix+"*").Result(); len(keys) > 0 {
			_ = rc.Del(context.Background(), keys...).Err()
		}
		_ = rc.Close()
	})

	dbURL := dbtest.NewDatabase(t)
	pool, err := db.Open(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, db.Migrate(ctx, pool, nil))
	stand := upstreamtest.Start(t)
	stand.SetRecording(false)
	stand.SetDefault(upstreamtest.Text("ok").WithDelay(20 * time.Millisecond))
	// The upstream counts the requests it serves at once.
	var now, peak atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		defer now.Add(-1)
		stand.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)

	q := dbsqlc.New(pool)
	p, err := q.CreateProject(ctx, dbsqlc.CreateProjectParams{Name: "shared"})
	require.NoError(t, err)
	const rpm, burst = 600, 10
	for name, settings := range map[string]string{
		"rated":  `{"rate_limit": {"enabled": true, "requests_per_minute": 600, "burst": 10}}`,
		"narrow": `{"max_concurrency": 2, "queue_timeout_ms": 30000}`,
	} {
		_, err = q.CreateDeployment(ctx, dbsqlc.CreateDeploymentParams{
			ProjectID: p.ID, Name: name, Kind: bud.KindModel, BaseURL: up.URL + "/v1", UpstreamModel: "stand-in",
			DefaultParams: []byte(`{}`), Settings: []byte(settings),
		})
		require.NoError(t, err)
	}
	secret, display, hash := bud.NewAPIKeySecret()
	_, err = q.CreateAPIKey(ctx, dbsqlc.CreateAPIKeyParams{ProjectID: p.ID, Name: "k", Prefix: display, SecretHash: hash})
	require.NoError(t, err)

	var gateways []*gatewayUnderTest
	for range 2 {
		gateways = append(gateways, startGatewayOn(t, dbURL, "BUD_REDIS_URL="+redisURL, "BUD_REDIS_PREFIX="+prefix))
	}
	client := &http.Client{}
	chat := func(g *gatewayUnderTest, model string) int {
		req, err := http.NewRequest("POST", g.url+"/v1/chat/completions", bytes.NewReader([]byte(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`)))
		if err != nil {
			return 0
		}
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	t.Run("rate", func(t *testing.T) {
		var admitted, refused atomic.Int64
		start := time.Now()
		var wg sync.WaitGroup
		for _, g := range gateways {
			for range 4 {
				wg.Go(func() {
					for time.Since(start) < time.Second {
						switch chat(g, "rated") {
						case http.StatusOK:
							admitted.Add(1)
						case http.StatusTooManyRequests:
							refused.Add(1)
						default:
							t.Error("neither admitted nor refused")
							return
						}
					}
				})
			}
		}
		wg.Wait()
		elapsed := time.Since(start)
		allowed := burst + elapsed.Milliseconds()*rpm/60_000
		t.Logf("two gateways admitted %d and refused %d in %s; the burst and the refill allow %d", admitted.Load(), refused.Load(), elapsed, allowed)
		require.GreaterOrEqual(t, admitted.Load(), int64(burst))
		require.LessOrEqual(t, admitted.Load(), allowed)
		require.Positive(t, refused.Load())
	})

	t.Run("concurrency", func(t *testing.T) {
		peak.Store(0)
		statuses := make(chan int, 24)
		var wg sync.WaitGroup
		for _, g := range gateways {
			for range 12 {
				wg.Go(func() { statuses <- chat(g, "narrow") })
			}
		}
		wg.Wait()
		close(statuses)
		for s := range statuses {
			require.Equal(t, http.StatusOK, s, "every request got a slot within its queue time")
		}
		t.Logf("peak in flight at the upstream: %d", peak.Load())
		require.Equal(t, int64(2), peak.Load())
	})
}

// TestRedisCheckedAtStart: a Redis that cannot be used fails the start
// with the setting's name, and no URL keeps the limits in the process.
func TestRedisCheckedAtStart(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	for _, url := range []string{"http://127.0.0.1:6379", "redis://127.0.0.1:1", "redis://127.0.0.1:6379/99999"} {
		_, err := connectRedis(t.Context(), log, &config{RedisURL: url}, "gateway")
		require.ErrorContains(t, err, "BUD_REDIS_URL", url)
	}
	c, err := connectRedis(t.Context(), log, &config{}, "gateway")
	require.NoError(t, err)
	require.Nil(t, c)
	c, err = connectRedis(t.Context(), log, &config{RedisURL: "redis://127.0.0.1:6379/0"}, "gateway")
	require.NoError(t, err)
	require.NoError(t, c.Close())
}
