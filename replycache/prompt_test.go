package replycache_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/replycache"
	"github.com/budhq/bud/response"
	"github.com/budhq/bud/run"
)

func finishedTurn() run.Turn {
	started := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return run.Turn{
		ResponseID: "resp_first", Turn: 1, Status: run.StatusCompleted, Model: "m",
		Text: `{"answer":"4"}`, Parsed: json.RawMessage(`{"answer":"4"}`),
		ToolCalls: []run.ToolCall{{ID: "call_1", Name: "get-sum", ServerLabel: "everything", Arguments: `{"a":2,"b":2}`, Output: "4"}},
		Usage:     run.Usage{InputTokens: 12, OutputTokens: 3, TotalTokens: 15}, ModelCalls: 2,
		StartedAt: started, FinishedAt: started.Add(800 * time.Millisecond),
	}
}

// TestPromptTurns: on both stores, a finished turn is kept and read back
// as it was, and renders the Response the run's own did, naming the run
// it reuses; a turn that may not answer another request is not kept.
func TestPromptTurns(t *testing.T) {
	t.Parallel()
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			store, o := kind.make(t, 1<<20)
			c := replycache.New(store, o)
			in := promptInput()
			q := c.Prompt(cacheOn, in, []byte(`{"temperature":0}`), nil, gen)
			_, ok := q.Lookup(ctx)
			require.False(t, ok)

			turn := finishedTurn()
			turn.ResponseID = "" // the run's id is filled in
			require.True(t, q.Store(ctx, turn))

			// Another caller, same input, other metadata.
			again := promptInput()
			again.ResponseID = "resp_second"
			again.Metadata = map[string]string{"caller": "b"}
			hit := c.Prompt(cacheOn, again, []byte(`{"temperature":0}`), nil, gen)
			got, ok := hit.Lookup(ctx)
			require.True(t, ok)
			want := finishedTurn()
			require.Equal(t, want.ResponseID, got.ResponseID)
			require.True(t, want.StartedAt.Equal(got.StartedAt))
			got.StartedAt, got.FinishedAt = want.StartedAt, want.FinishedAt
			require.Equal(t, want, got)

			// The gateway renders it as it renders the run's own turn.
			opts := response.Options{Now: time.Now()}
			original := response.Build(in, want, opts)
			again.Metadata = replycache.CachedFrom(again.Metadata, got.ResponseID)
			cached := response.Build(again, got, opts)
			require.Equal(t, original.ID, cached.ID, "the answer is the run's turn")
			require.Equal(t, map[string]string{"caller": "b", replycache.MetadataCachedFrom: "resp_first"}, cached.Metadata)
			cached.Metadata = original.Metadata
			require.Equal(t, original, cached)

			for name, change := range map[string]func(*run.Turn){
				"failed":     func(t *run.Turn) { t.Status, t.Error = run.StatusFailed, &run.Error{Code: "model_error", Message: "x"} },
				"incomplete": func(t *run.Turn) { t.Status = run.StatusIncomplete },
				"waiting for outputs": func(t *run.Turn) {
					t.Waiting, t.FunctionCalls = true, []run.FunctionCall{{CallID: "call_2", Name: "f", Arguments: "{}"}}
				},
				"waiting for approval": func(t *run.Turn) {
					t.Waiting, t.ApprovalRequests = true, []run.ApprovalRequest{{ID: "mcpr_3", CallID: "3", Name: "get-sum"}}
				},
			} {
				turn := finishedTurn()
				change(&turn)
				require.False(t, replycache.Reusable(turn), name)
				in := promptInput()
				in.Text = name
				q := c.Prompt(cacheOn, in, nil, nil, gen)
				require.False(t, q.Store(ctx, turn), name)
				_, ok := q.Lookup(ctx)
				require.False(t, ok, name)
			}
		})
	}
}

// TestPromptNilRequest: a run the cache has nothing to do with is left
// alone.
func TestPromptNilRequest(t *testing.T) {
	t.Parallel()
	var q *replycache.PromptRequest
	_, ok := q.Lookup(context.Background())
	require.False(t, ok)
	require.False(t, q.Store(context.Background(), finishedTurn()))
	require.Empty(t, q.Key())
}

func TestCachedFromKeepsTheCallersMetadata(t *testing.T) {
	t.Parallel()
	mine := map[string]string{"trace": "1"}
	got := replycache.CachedFrom(mine, "resp_x")
	require.Equal(t, map[string]string{"trace": "1", "cached_from": "resp_x"}, got)
	require.Equal(t, map[string]string{"trace": "1"}, mine, "not modified")
	require.Equal(t, map[string]string{"cached_from": "resp_x"}, replycache.CachedFrom(nil, "resp_x"))
}
