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
	id, version := "greeter", "2"
	raw, err := json.Marshal(response.Build(in, out, response.Options{PromptID: &id, PromptVersion: &version}))
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
	require.Equal(t, "resp_cd", b.ID)
	require.Nil(t, b.PreviousResponseID)
	require.Len(t, b.Output, 1)
	require.Equal(t, "function_call", b.Output[0].(*response.FunctionCall).Type)
	require.Equal(t, int64(5), b.CreatedAt)
}

// The Response on the wire: every field OpenAI's clients read, unset ones
// as null, and each item type with its own fields.
func TestBuildWireFormat(t *testing.T) {
	in := run.Input{ResponseID: "resp_ab", Instructions: "Be brief.", Metadata: map[string]string{"k": "v"}, Variables: map[string]any{"city": "Oslo"}}
	out := run.Turn{
		ResponseID: "resp_ab_2", Turn: 2, PreviousResponseID: "resp_ab", Status: run.StatusCompleted, Model: "m", Text: "Here you are.",
		ToolCalls:        []run.ToolCall{{ID: "c1", Name: "echo", ServerLabel: "everything", Arguments: `{}`, Output: "hi"}},
		FunctionCalls:    []run.FunctionCall{{CallID: "c2", Name: "get_weather", Arguments: `{"city":"Oslo"}`}},
		ApprovalRequests: []run.ApprovalRequest{{ID: "mcpr_c3", CallID: "c3", Name: "echo", ServerLabel: "everything", Arguments: `{}`}},
		Usage:            run.Usage{InputTokens: 3, OutputTokens: 4, TotalTokens: 7},
		StartedAt:        time.Unix(1700000000, 0),
	}
	id, version := "greeter", "2"
	raw, err := json.Marshal(response.Build(in, out, response.Options{PromptID: &id, PromptVersion: &version, OutputSchema: json.RawMessage(`{"type":"object"}`), OutputStrict: true}))
	require.NoError(t, err)
	require.JSONEq(t, `{
		"id": "resp_ab_2", "previous_response_id": "resp_ab", "object": "response", "created_at": 1700000000,
		"model": "m", "status": "completed", "output_text": "Here you are.",
		"output": [
			{"type": "mcp_call", "id": "mcp_c1", "server_label": "everything", "name": "echo", "arguments": "{}",
			 "output": "hi", "error": null, "approval_request_id": null, "status": "completed"},
			{"type": "message", "id": "msg_ab_2", "status": "completed", "role": "assistant",
			 "content": [{"type": "output_text", "text": "Here you are.", "annotations": []}]},
			{"type": "function_call", "id": "fc_c2", "call_id": "c2", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}", "status": "completed"},
			{"type": "mcp_approval_request", "id": "mcpr_c3", "server_label": "everything", "name": "echo", "arguments": "{}"}
		],
		"usage": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7,
			"input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
		"prompt": {"id": "greeter", "version": "2", "variables": {"city": "Oslo"}},
		"text": {"format": {"type": "json_schema", "name": "output", "schema": {"type": "object"}, "strict": true}},
		"error": null, "incomplete_details": null, "metadata": {"k": "v"}, "background": false, "instructions": "Be brief.",
		"parallel_tool_calls": true, "tool_choice": "auto", "tools": []
	}`, string(raw))

	raw, err = json.Marshal(response.Build(run.Input{ResponseID: "resp_cd"}, run.Turn{Status: run.StatusFailed,
		Error: &run.Error{Code: run.UpstreamRejected, Message: "refused", UpstreamStatus: 400}}, response.Options{Model: "dep", Now: time.Unix(5, 0)}))
	require.NoError(t, err)
	require.JSONEq(t, `{
		"id": "resp_cd", "previous_response_id": null, "object": "response", "created_at": 5,
		"model": "dep", "status": "failed", "output_text": "", "output": [],
		"usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
			"input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
		"prompt": {"id": null, "version": null, "variables": {}},
		"text": {"format": {"type": "text"}},
		"error": {"code": "UpstreamRejected", "message": "refused"}, "incomplete_details": null,
		"metadata": {}, "background": false, "instructions": null,
		"parallel_tool_calls": true, "tool_choice": "auto", "tools": []
	}`, string(raw), "a failed run before its model call: nulls and empty collections, never absent fields")
}

// BenchmarkBuild measures rendering and encoding one turn's Response.
func BenchmarkBuild(b *testing.B) {
	in := run.Input{ResponseID: "resp_ab", Deployment: "greeter", Metadata: map[string]string{"k": "v"}, Variables: map[string]any{"city": "Oslo"}}
	out := run.Turn{
		ResponseID: "resp_ab", Turn: 1, Status: run.StatusCompleted, Model: "m", Text: "Here you are.",
		ToolCalls:     []run.ToolCall{{ID: "c1", Name: "echo", ServerLabel: "everything", Arguments: `{"message":"hi"}`, Output: "Echo: hi"}},
		FunctionCalls: []run.FunctionCall{{CallID: "c3", Name: "get_weather", Arguments: `{"city":"Oslo"}`}},
		StartedAt:     time.Unix(1700000000, 0),
	}
	id, version := "greeter", "2"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(response.Build(in, out, response.Options{PromptID: &id, PromptVersion: &version, Model: "m"})); err != nil {
			b.Fatal(err)
		}
	}
}
