package gateway_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/replycache"
	"github.com/budhq/bud/upstreamtest"
)

// TestEmbeddingsRouted: /v1/embeddings reaches the deployment's upstream
// with its model name, its defaults and its key, answers through the
// official SDK, counts in metrics and usage, is cached when the
// deployment caches, and is admitted by the deployment's rate limit.
func TestEmbeddingsRouted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.project("acme")
	b.deployment(p, "embed", map[string]any{
		"upstream":       map[string]any{"base_url": b.up.URL(), "model": "BAAI/bge-m3", "api_key": "sk-provider"},
		"default_params": map[string]any{"dimensions": 4},
		"settings": map[string]any{"cache": map[string]any{"enabled": true, "ttl_seconds": 60},
			"rate_limit": map[string]any{"enabled": true, "requests_per_minute": 1, "burst": 3}},
	})
	_, secret := b.key(p)
	b.up.RequireAPIKey("sk-provider")
	c := b.client(secret)

	params := openai.EmbeddingNewParams{
		Model: "embed",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"first text", "second one here"}},
	}
	resp, err := c.Embeddings.New(ctx(t), params)
	require.NoError(t, err)
	require.Len(t, resp.Data, 2)
	for i, text := range []string{"first text", "second one here"} {
		want := upstreamtest.Embedding(text, 4)
		require.Len(t, resp.Data[i].Embedding, 4, "the deployment's default dimensions")
		for j := range want {
			require.InDelta(t, want[j], resp.Data[i].Embedding[j], 1e-6)
		}
	}
	require.EqualValues(t, 5, resp.Usage.PromptTokens)
	reqs := b.up.Requests()
	require.Len(t, reqs, 1)
	require.Equal(t, "/v1/embeddings", reqs[0].Path)
	require.Equal(t, "BAAI/bge-m3", reqs[0].JSON["model"])
	require.Equal(t, 4.0, reqs[0].JSON["dimensions"])

	// The same request again: a hit, without the upstream.
	again, err := b.post(ctx(t), t, "/v1/embeddings", secret, map[string]any{"model": "embed", "input": []string{"first text", "second one here"}})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, again.status, string(again.body))
	require.Equal(t, "hit", again.header.Get(replycache.Header))
	require.Equal(t, 1, b.up.Received())

	// The third request of the burst passes; the fourth is refused in
	// OpenAI's envelope without reaching the upstream.
	_, err = c.Embeddings.New(ctx(t), openai.EmbeddingNewParams{Model: "embed", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("third")}})
	require.NoError(t, err)
	_, err = c.Embeddings.New(ctx(t), openai.EmbeddingNewParams{Model: "embed", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("fourth")}})
	requireAPIError(t, err, http.StatusTooManyRequests, "rate_limit_exceeded")
	require.Equal(t, 2, b.up.Received())

	_, err = c.Embeddings.New(ctx(t), openai.EmbeddingNewParams{Model: "nope", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}})
	requireAPIError(t, err, http.StatusNotFound, "model_not_found")

	m := b.metricsText()
	require.Contains(t, m, `bud_gateway_requests_total{deployment="embed",endpoint="embeddings",project="`+p+`",status="200"} 3`)
	require.Contains(t, m, `bud_gateway_requests_total{deployment="embed",endpoint="embeddings",project="`+p+`",status="429"} 1`)
	require.Contains(t, m, `bud_gateway_tokens_total{deployment="embed",direction="in",project="`+p+`"} 6`)

	require.NoError(t, b.usage.Flush(context.Background()))
	var requests, hits, limited, in int64
	b.dbScalar(&requests, `SELECT sum(requests) FROM usage_hourly WHERE project_id = $1`, p)
	b.dbScalar(&hits, `SELECT sum(cache_hits) FROM usage_hourly WHERE project_id = $1`, p)
	b.dbScalar(&limited, `SELECT sum(rate_limited) FROM usage_hourly WHERE project_id = $1`, p)
	b.dbScalar(&in, `SELECT sum(input_tokens) FROM usage_hourly WHERE project_id = $1`, p)
	require.Equal(t, int64(4), requests, "the 404 names no deployment of the project")
	require.Equal(t, int64(1), hits)
	require.Equal(t, int64(1), limited)
	require.Equal(t, int64(6), in)
}

// TestCompletionsRouted: /v1/completions reaches the upstream as a chat
// completion does, whole and streamed through the official SDK, with the
// stream's usage counted (and asked for by the gateway under a token
// limit, without passing it to a caller that did not ask).
func TestCompletionsRouted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.project("acme")
	b.deployment(p, "base", map[string]any{
		"upstream":       map[string]any{"base_url": b.up.URL(), "model": "Qwen/Qwen3-8B-Base"},
		"default_params": map[string]any{"max_tokens": 50, "temperature": 0.2},
		"settings":       map[string]any{"rate_limit": map[string]any{"enabled": true, "tokens_per_minute": 100000}},
	})
	_, secret := b.key(p)
	c := b.client(secret)

	b.up.Script(upstreamtest.Text("once upon a time"))
	resp, err := c.Completions.New(ctx(t), openai.CompletionNewParams{
		Model:     "base",
		Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("Tell me a story:")},
		MaxTokens: openai.Int(9),
	})
	require.NoError(t, err)
	require.Equal(t, "once upon a time", resp.Choices[0].Text)
	require.EqualValues(t, 4, resp.Usage.CompletionTokens)
	got := b.up.Requests()[0]
	require.Equal(t, "/v1/completions", got.Path)
	require.Equal(t, "Qwen/Qwen3-8B-Base", got.JSON["model"])
	require.Equal(t, 9.0, got.JSON["max_tokens"], "the caller's value wins")
	require.Equal(t, 0.2, got.JSON["temperature"], "a default fills what the caller left out")

	text := "one two three four five six"
	b.up.Script(upstreamtest.Text(text).WithUsage(upstreamtest.Usage{PromptTokens: 3, CompletionTokens: 6}))
	stream := c.Completions.NewStreaming(ctx(t), openai.CompletionNewParams{
		Model:  "base",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("count")},
	})
	var parts []string
	for stream.Next() {
		ch := stream.Current()
		require.NotEmpty(t, ch.Choices, "the usage chunk the gateway asked for is not passed on")
		parts = append(parts, ch.Choices[0].Text)
	}
	require.NoError(t, stream.Err())
	require.Greater(t, len(parts), 3, "the text arrives in several events")
	require.Equal(t, text, strings.Join(parts, ""))
	streamed := b.up.Requests()[1]
	require.Equal(t, map[string]any{"include_usage": true}, streamed.JSON["stream_options"], "the token limit needs the stream's usage")

	_, err = c.Completions.New(ctx(t), openai.CompletionNewParams{Model: "missing", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")}})
	requireAPIError(t, err, http.StatusNotFound, "model_not_found")

	m := b.metricsText()
	require.Contains(t, m, `bud_gateway_requests_total{deployment="base",endpoint="completions",project="`+p+`",status="200"} 2`)
	require.Contains(t, m, `bud_gateway_tokens_total{deployment="base",direction="out",project="`+p+`"} `+strconv.Itoa(4+6)+"\n")
}
