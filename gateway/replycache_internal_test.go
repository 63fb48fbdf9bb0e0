package gateway

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
	"github.com/budhq/bud/prompt"
	"github.com/budhq/bud/replycache"
	"github.com/budhq/bud/run"
)

// TestCachedTurnIsAnsweredAsAFinishedTurn: a prompt turn from the cache is
// answered by the gateway's own renderers, as a turn it has just awaited:
// writeTurn for a request that does not stream, a responseStream started
// and finished at once for one that does. Both name the run the turn
// comes from, in the Response's id and in metadata.cached_from, and the
// stream's last Response is the one writeTurn sends.
func TestCachedTurnIsAnsweredAsAFinishedTurn(t *testing.T) {
	ctx := context.Background()
	d, err := prompt.Parse([]byte(textDocument))
	require.NoError(t, err)
	c, err := prompt.Compile(d)
	require.NoError(t, err)
	v := &version{raw: []byte(textDocument), doc: d, compiled: c}
	cache := replycache.New(replycache.NewMemory(0), replycache.Options{})
	settings := bud.CacheSettings{Enabled: true, TTLSeconds: 60}
	input := func(id string, metadata map[string]string) run.Input {
		return run.Input{ResponseID: id, Deployment: "p", PromptVersion: 1, Document: []byte(textDocument), Text: "Hi", Metadata: metadata}
	}

	first := input("resp_first", nil)
	started := time.Unix(1700000000, 0)
	turn := run.Turn{ResponseID: "resp_first", Turn: 1, Status: run.StatusCompleted, Model: "qwen", Text: "Hello there",
		Usage: run.Usage{InputTokens: 3, OutputTokens: 2, TotalTokens: 5}, ModelCalls: 1, StartedAt: started, FinishedAt: started.Add(time.Second)}
	require.True(t, cache.Prompt(settings, first, d.ModelParams, nil).Store(ctx, turn))

	second := input("resp_second", map[string]string{"caller": "b"})
	q := cache.Prompt(settings, second, d.ModelParams, nil)
	cached, ok := q.Lookup(ctx)
	require.True(t, ok)
	second.Metadata = replycache.CachedFrom(second.Metadata, cached.ResponseID)

	w := httptest.NewRecorder()
	replycache.MarkHit(w)
	writeTurn(w, second, v, cached, cached.StartedAt)
	require.Equal(t, "hit", w.Header().Get(replycache.Header))
	var whole map[string]any
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &whole))
	require.Equal(t, "resp_first", whole["id"])
	require.Equal(t, map[string]any{"caller": "b", "cached_from": "resp_first"}, whole["metadata"])
	require.Equal(t, "Hello there", whole["output_text"])

	h := &streamHarness{t: t}
	h.s = newResponseStream(&h.buf, func() error { return nil }, second, v, run.Turn{ResponseID: cached.ResponseID, Turn: cached.Turn}, cached.StartedAt)
	h.s.start()
	h.s.finish(cached)
	evs := h.events()
	want := append([]string{"response.created", "response.in_progress"}, textItemEvents...)
	want = append(want, "response.output_text.delta")
	want = append(want, closingEvents...)
	require.Equal(t, append(want, "response.completed"), types(evs))
	require.Equal(t, "Hello there", evs[4].Delta)
	var last map[string]any
	require.NoError(t, json.Unmarshal([]byte(evs[len(evs)-1].Response.RawJSON()), &last))
	require.Equal(t, whole, last, "the stream ends with the Response a request without a stream gets")
}
