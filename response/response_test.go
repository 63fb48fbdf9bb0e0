package response_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/response"
	"github.com/budhq/bud/run"
)

func TestNewID(t *testing.T) {
	a, b := response.NewID(), response.NewID()
	require.True(t, strings.HasPrefix(a, "resp_"))
	require.Len(t, a, len("resp_")+48)
	require.NotEqual(t, a, b)
	run, n, ok := run.ParseTurnID(a)
	require.True(t, ok)
	require.Equal(t, a, run)
	require.Equal(t, 1, n)
}

// A turn's Response: its own id and the previous one, connection tool calls
// before the message, then function calls, then approval requests, with
// the ids a stream of the same turn uses.
func TestBuildOrdersATurnsItems(t *testing.T) {
	in := run.Input{ResponseID: "resp_ab", Metadata: map[string]string{"k": "v"}}
	approved := true
	out := run.Turn{
		ResponseID: "resp_ab_2", Turn: 2, PreviousResponseID: "resp_ab", Status: run.StatusCompleted, Model: "m",
		Text:             "Here you are.",
		ToolCalls:        []run.ToolCall{{ID: "c1", Name: "echo", ServerLabel: "everything", Arguments: `{"message":"hi"}`, Output: "Echo: hi", ApprovalRequestID: "mcpr_c1", Approved: &approved}, {ID: "c2", Name: "get-sum", ServerLabel: "everything", Arguments: `{}`, Error: "bad arguments"}},
		FunctionCalls:    []run.FunctionCall{{CallID: "c3", Name: "get_weather", Arguments: `{"city":"Oslo"}`}},
		ApprovalRequests: []run.ApprovalRequest{{ID: "mcpr_c4", CallID: "c4", Name: "echo", ServerLabel: "everything", Arguments: `{}`}},
		Waiting:          true,
		StartedAt:        time.Unix(1700000000, 0),
	}
	raw, err := json.Marshal(response.Build(in, out, response.Options{PromptID: "greeter", PromptVersion: "2"}))
	require.NoError(t, err)
	var r struct {
		ID                 string  `json:"id"`
		PreviousResponseID *string `json:"previous_response_id"`
		Status             string  `json:"status"`
		CreatedAt          int64   `json:"created_at"`
		Output             []struct {
			Type              string  `json:"type"`
			ID                string  `json:"id"`
			Status            string  `json:"status"`
			Output            *string `json:"output"`
			Error             *string `json:"error"`
			ApprovalRequestID *string `json:"approval_request_id"`
			CallID            string  `json:"call_id"`
		} `json:"output"`
	}
	require.NoError(t, json.Unmarshal(raw, &r), "%s", raw)
	require.Equal(t, "resp_ab_2", r.ID)
	require.Equal(t, "resp_ab", *r.PreviousResponseID)
	require.Equal(t, "completed", r.Status, "a paused turn is a completed response, as OpenAI's")
	require.Equal(t, int64(1700000000), r.CreatedAt)
	var kinds, ids []string
	for _, it := range r.Output {
		kinds = append(kinds, it.Type)
		ids = append(ids, it.ID)
	}
	require.Equal(t, []string{"mcp_call", "mcp_call", "message", "function_call", "mcp_approval_request"}, kinds)
	require.Equal(t, []string{response.MCPCallID("c1"), response.MCPCallID("c2"), response.MessageID("resp_ab_2"), response.FunctionCallID("c3"), "mcpr_c4"}, ids)
	require.Equal(t, "Echo: hi", *r.Output[0].Output)
	require.Equal(t, "mcpr_c1", *r.Output[0].ApprovalRequestID)
	require.Equal(t, "completed", r.Output[0].Status)
	require.Nil(t, r.Output[1].Output)
	require.Equal(t, "bad arguments", *r.Output[1].Error)
	require.Equal(t, "failed", r.Output[1].Status)
	require.Equal(t, "c3", r.Output[3].CallID)
}

// The first turn has no previous response, and a run without text that
// only calls functions has no empty message.
func TestBuildFirstTurnOfFunctionCalls(t *testing.T) {
	in := run.Input{ResponseID: "resp_cd"}
	out := run.Turn{Status: run.StatusCompleted, FunctionCalls: []run.FunctionCall{{CallID: "c1", Name: "f", Arguments: "{}"}}}
	b := response.Build(in, out, response.Options{Now: time.Unix(5, 0)})
	require.Equal(t, "resp_cd", b["id"])
	require.Nil(t, b["previous_response_id"])
	items := b["output"].([]any)
	require.Len(t, items, 1)
	require.Equal(t, "function_call", items[0].(map[string]any)["type"])
	require.Equal(t, int64(5), b["created_at"])
}
