package gateway_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/replycache"
	"github.com/budhq/bud/upstreamtest"
)

// TestUsageTotalsEqualTheRequestsSent: chat completions across two keys
// and two deployments, some refused by a deployment's rate limit, are
// counted in usage_hourly per key and per deployment exactly as they were
// answered: requests, 429s, and the upstream's tokens of those admitted.
func TestUsageTotalsEqualTheRequestsSent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.up.SetDefault(upstreamtest.Text("ok").WithUsage(upstreamtest.Usage{PromptTokens: 5, CompletionTokens: 2}))
	project := b.project("usage")
	limited := b.deployment(project, "limited", map[string]any{"settings": map[string]any{
		"rate_limit": map[string]any{"enabled": true, "requests_per_minute": 1, "burst": 3}}})
	open := b.deployment(project, "open", nil)
	k1, s1 := b.key(project)
	k2, s2 := b.key(project)

	type row struct{ requests, limited, in, out int64 }
	want := map[[2]string]*row{}
	send := func(keyID, secret, deploymentID, model string, n int) {
		for range n {
			res, err := b.post(context.Background(), t, "/v1/chat/completions", secret, map[string]any{
				"model": model, "messages": []any{map[string]any{"role": "user", "content": "hi"}}})
			require.NoError(t, err)
			k := [2]string{keyID, deploymentID}
			if want[k] == nil {
				want[k] = &row{}
			}
			want[k].requests++
			switch res.status {
			case http.StatusOK:
				want[k].in += 5
				want[k].out += 2
			case http.StatusTooManyRequests:
				want[k].limited++
			default:
				t.Fatalf("status %d: %s", res.status, res.body)
			}
		}
	}
	send(k1, s1, limited, "limited", 5)
	send(k2, s2, open, "open", 4)
	send(k2, s2, limited, "limited", 2)
	send(k1, s1, open, "open", 3)
	require.Equal(t, int64(4), want[[2]string{k1, limited}].limited+want[[2]string{k2, limited}].limited, "burst 3 of 7")

	require.NoError(t, b.usage.Flush(context.Background()))
	rows, err := b.pool.Query(context.Background(), `SELECT api_key_id::text, deployment_id::text, sum(requests), sum(rate_limited), sum(input_tokens), sum(output_tokens), sum(errors)
		FROM usage_hourly WHERE project_id = $1 GROUP BY 1, 2`, project)
	require.NoError(t, err)
	got := map[[2]string]*row{}
	for rows.Next() {
		var k [2]string
		var r row
		var errs int64
		require.NoError(t, rows.Scan(&k[0], &k[1], &r.requests, &r.limited, &r.in, &r.out, &errs))
		require.Zero(t, errs)
		got[k] = &r
	}
	require.NoError(t, rows.Err())
	require.Equal(t, want, got)
}

// TestChatCompletionsFromTheCache: with the deployment's cache on, a
// repeated chat completion is answered from the cache (x-bud-cache: hit)
// without reaching the upstream, streamed with the same events; a
// sampling request without a seed is not cached; hits count in usage.
func TestChatCompletionsFromTheCache(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.up.SetDefault(upstreamtest.Text("cached words").WithUsage(upstreamtest.Usage{PromptTokens: 4, CompletionTokens: 2}))
	project := b.project("cache")
	b.deployment(project, "m", map[string]any{"settings": map[string]any{"cache": map[string]any{"enabled": true, "ttl_seconds": 60}}})
	_, secret := b.key(project)
	chat := func(extra map[string]any) result {
		body := map[string]any{"model": "m", "messages": []any{map[string]any{"role": "user", "content": "hi"}}}
		for k, v := range extra {
			body[k] = v
		}
		res, err := b.post(context.Background(), t, "/v1/chat/completions", secret, body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.status, string(res.body))
		return res
	}

	first := chat(nil)
	require.Equal(t, "miss", first.header.Get(replycache.Header))
	require.Equal(t, 1, b.up.Received())
	second := chat(nil)
	require.Equal(t, "hit", second.header.Get(replycache.Header))
	require.Equal(t, 1, b.up.Received(), "a hit does not reach the upstream")
	require.Equal(t, string(first.body), string(second.body))

	stream := map[string]any{"stream": true}
	s1 := chat(stream)
	require.Equal(t, "miss", s1.header.Get(replycache.Header))
	require.Equal(t, 2, b.up.Received())
	s2 := chat(stream)
	require.Equal(t, "hit", s2.header.Get(replycache.Header))
	require.Equal(t, 2, b.up.Received())
	require.Equal(t, string(s1.body), string(s2.body), "the same events")
	require.Contains(t, string(s2.body), "data: [DONE]")

	sampling := map[string]any{"temperature": 0.7}
	for range 2 {
		require.Empty(t, chat(sampling).header.Get(replycache.Header), "sampling without a seed is not cacheable")
	}
	require.Equal(t, 4, b.up.Received())
	seeded := map[string]any{"temperature": 0.7, "seed": 1}
	require.Equal(t, "miss", chat(seeded).header.Get(replycache.Header))
	require.Equal(t, "hit", chat(seeded).header.Get(replycache.Header))
	require.Equal(t, 5, b.up.Received())

	require.NoError(t, b.usage.Flush(context.Background()))
	var requests, hits, in int64
	b.dbScalar(&requests, `SELECT sum(requests) FROM usage_hourly WHERE project_id = $1`, project)
	b.dbScalar(&hits, `SELECT sum(cache_hits) FROM usage_hourly WHERE project_id = $1`, project)
	b.dbScalar(&in, `SELECT sum(input_tokens) FROM usage_hourly WHERE project_id = $1`, project)
	require.Equal(t, int64(8), requests)
	require.Equal(t, int64(3), hits)
	require.Equal(t, int64(4*4), in, "a hit spends no tokens; the upstream's four replies with usage did (the stream did not ask for its usage)")
}
