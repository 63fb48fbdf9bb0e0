package workflows_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/connection"
	"github.com/budhq/bud/run"
)

// A replay with recorded tools lists its connections from the replayed
// run's record, answers every call with RecordedToolCall (the n-th call of
// a tool with the same arguments asking for the n-th result), never calls
// a tool, and does not pause for approvals, since nothing is called. Its
// row names the run it replays and keeps the listings.
func TestReplayWithRecordedToolsCallsNothing(t *testing.T) {
	h := newHarness(t)
	var (
		mu       sync.Mutex
		resolved []activities.ResolveToolsInput
		answered []activities.RecordedToolCallInput
	)
	h.env.OnActivity("ResolveTools", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ResolveToolsInput) (activities.ResolveToolsResult, error) {
		mu.Lock()
		defer mu.Unlock()
		resolved = append(resolved, in)
		return activities.ResolveToolsResult{
			Tools:    []chat.Tool{{Type: "function", Function: chat.Function{Name: "echo", Parameters: json.RawMessage(`{"type":"object"}`)}}},
			Routes:   []activities.ToolRoute{{Name: "echo", ConnectionID: connID, ServerLabel: "everything", Tool: "echo", RequireApproval: true}},
			Listings: []activities.ToolListing{{ConnectionID: connID, ServerLabel: "everything", Tools: []connection.Tool{{Name: "echo"}}}},
		}, nil
	})
	h.env.OnActivity("RecordedToolCall", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RecordedToolCallInput) (activities.CallToolResult, error) {
		mu.Lock()
		defer mu.Unlock()
		answered = append(answered, in)
		return activities.CallToolResult{Output: "recorded " + in.Arguments, Attempt: 1}, nil
	})
	h.env.OnActivity("CallTool", mock.Anything, mock.Anything).Return(func(context.Context, activities.CallToolInput) (activities.CallToolResult, error) {
		t.Error("a replay with recorded tools called a tool")
		return activities.CallToolResult{}, nil
	}).Maybe()
	h.replies(t,
		callsReply(toolCall("c1", "echo", `{"message":"hi"}`), toolCall("c2", "echo", `{ "message": "hi" }`), toolCall("c3", "echo", `{"message":"ho"}`)),
		"done",
	)
	in := textInput("echo")
	in.Document = connDoc("always", true)
	in.ReplayOf, in.ReplayTools = "resp_original", run.ReplayToolsRecorded
	out := h.execute(t, in)

	require.Equal(t, run.StatusCompleted, out.Status)
	require.False(t, out.Waiting, "nothing waits for approval")
	require.Empty(t, out.ApprovalRequests)
	require.Equal(t, "done", out.Text)
	require.Len(t, resolved, 1)
	require.Equal(t, "resp_original", resolved[0].RecordedFrom)
	require.Len(t, answered, 3)
	// The calls run at once, so they may be answered in any order; the
	// occurrence each gets is the workflow's, fixed by the calls' order.
	occurrences := map[string]int{}
	for _, a := range answered {
		occurrences[a.Arguments] = a.Occurrence
	}
	require.Equal(t, map[string]int{`{"message":"hi"}`: 1, `{ "message": "hi" }`: 2, `{"message":"ho"}`: 1}, occurrences)
	require.Equal(t, "resp_original", answered[0].ReplayOf)
	require.Equal(t, connID, answered[0].ConnectionID)
	last := h.records[len(h.records)-1]
	require.Equal(t, "resp_original", last.ReplayOf)
	require.JSONEq(t, `[{"connection_id":"`+connID.String()+`","server_label":"everything","tools":[{"name":"echo","input_schema":null}]}]`, string(last.ToolListings))
}

// With live tools a replay lists and calls its tools as any run does.
func TestReplayWithLiveToolsCallsThem(t *testing.T) {
	h := newToolHarness(t, false)
	h.outputs["echo"] = "Echo: hi"
	h.replies(t, callsReply(toolCall("c1", "echo", `{"message":"hi"}`)), "done")
	in := textInput("echo")
	in.Document = connDoc("never", true)
	in.ReplayOf, in.ReplayTools = "resp_original", run.ReplayToolsLive
	out := h.execute(t, in)
	require.Equal(t, run.StatusCompleted, out.Status)
	require.Len(t, h.toolIn, 1)
	require.Equal(t, "resp_original", h.records[len(h.records)-1].ReplayOf)
}
