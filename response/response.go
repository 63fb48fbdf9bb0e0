// Package response renders a prompt run as OpenAI's Response object: the
// one shape that the gateway's /v1/responses and BudApp's playground both
// answer with.
package response

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/budhq/bud/run"
)

// NewID makes a run's id, which is also its workflow id and its OpenAI
// response id.
func NewID() string {
	var b [24]byte
	_, _ = rand.Read(b[:]) // never fails, see crypto/rand.Read
	return "resp_" + hex.EncodeToString(b[:])
}

// Options are what the Response needs beyond the run's input and output.
type Options struct {
	// OutputSchema is the prompt's structured output schema; nil for text.
	OutputSchema json.RawMessage
	// Model names the model deployment when the output has none (a run that
	// failed before its model call).
	Model string
	// PromptID and PromptVersion fill the Response's "prompt": the
	// gateway names the deployment the caller sent, the playground the
	// saved prompt (nil for an unsaved document).
	PromptID, PromptVersion any
	// Now stands in for the creation time of a run that has not started.
	Now time.Time
}

// Build renders one turn of the run (out; the first when out has no
// ResponseID, as the output of a run from before turns); out.Status may
// also be "in_progress". The output items come in this order: the
// connection tool calls the turn made (mcp_call), the assistant's message,
// the caller's function calls, the tool calls waiting for approval
// (mcp_approval_request). A turn that paused for function outputs or
// approvals is completed, as OpenAI's is. Item ids are derived from the
// turn's response id and the model's call ids, so a stream and a later
// GET name every item alike.
func Build(in run.Input, out run.Turn, o Options) map[string]any {
	created := out.StartedAt
	if created.IsZero() {
		created = o.Now
	}
	id := out.ResponseID
	if id == "" {
		id = in.ResponseID
	}
	output := []any{}
	for _, tc := range out.ToolCalls {
		output = append(output, MCPCallItem(tc))
	}
	if out.Text != "" || (out.Status == run.StatusCompleted && len(out.FunctionCalls) == 0 && len(out.ApprovalRequests) == 0) {
		output = append(output, map[string]any{
			"type": "message", "id": MessageID(id), "status": "completed", "role": "assistant",
			"content": []any{map[string]any{"type": "output_text", "text": out.Text, "annotations": []any{}}},
		})
	}
	for _, fc := range out.FunctionCalls {
		output = append(output, map[string]any{"type": "function_call", "id": FunctionCallID(fc.CallID), "call_id": fc.CallID, "name": fc.Name, "arguments": fc.Arguments, "status": "completed"})
	}
	for _, a := range out.ApprovalRequests {
		output = append(output, ApprovalRequestItem(a))
	}
	format := map[string]any{"type": "text"}
	if len(o.OutputSchema) > 0 {
		format = map[string]any{"type": "json_schema", "name": "output", "schema": o.OutputSchema, "strict": true}
	}
	var runErr, incomplete, instructions any
	if out.Error != nil {
		runErr = map[string]any{"code": out.Error.Code, "message": out.Error.Message}
	}
	if out.Status == run.StatusIncomplete {
		incomplete = map[string]any{"reason": "max_output_tokens"}
	}
	if in.Instructions != "" {
		instructions = in.Instructions
	}
	metadata := in.Metadata
	if metadata == nil {
		metadata = map[string]string{}
	}
	vars := in.Variables
	if vars == nil {
		vars = map[string]any{}
	}
	model := out.Model
	if model == "" {
		model = o.Model
	}
	return map[string]any{
		"id":                   id,
		"previous_response_id": nullable(out.PreviousResponseID),
		"object":               "response",
		"created_at":           created.Unix(),
		"model":                model,
		"status":               out.Status,
		"output":               output,
		"output_text":          out.Text,
		"usage":                map[string]any{"input_tokens": out.Usage.InputTokens, "output_tokens": out.Usage.OutputTokens, "total_tokens": out.Usage.TotalTokens, "input_tokens_details": map[string]any{"cached_tokens": 0}, "output_tokens_details": map[string]any{"reasoning_tokens": 0}},
		"prompt":               map[string]any{"id": o.PromptID, "version": o.PromptVersion, "variables": vars},
		"text":                 map[string]any{"format": format},
		"error":                runErr,
		"incomplete_details":   incomplete,
		"metadata":             metadata,
		"instructions":         instructions,
		"parallel_tool_calls":  true,
		"tool_choice":          "auto",
		"tools":                []any{},
	}
}

// MessageID is the id of the assistant message of the turn whose response
// id is responseID.
func MessageID(responseID string) string {
	return "msg_" + strings.TrimPrefix(responseID, "resp_")
}

// FunctionCallID is the item id of the function call the model made with
// call id callID.
func FunctionCallID(callID string) string { return "fc_" + callID }

// MCPCallID is the item id of the connection tool call the model made with
// call id callID.
func MCPCallID(callID string) string { return "mcp_" + callID }

// MCPCallItem renders a finished connection tool call as OpenAI's mcp_call
// item: status failed when it has an error (a rejected approval included),
// completed otherwise.
func MCPCallItem(tc run.ToolCall) map[string]any {
	status := run.StatusCompleted
	if tc.Error != "" {
		status = run.StatusFailed
	}
	return map[string]any{
		"type": "mcp_call", "id": MCPCallID(tc.ID), "server_label": tc.ServerLabel, "name": tc.Name, "arguments": tc.Arguments,
		"output": nullable(tc.Output), "error": nullable(tc.Error), "approval_request_id": nullable(tc.ApprovalRequestID),
		"status": status,
	}
}

// ApprovalRequestItem renders a tool call waiting for approval as OpenAI's
// mcp_approval_request item.
func ApprovalRequestItem(a run.ApprovalRequest) map[string]any {
	return map[string]any{"type": "mcp_approval_request", "id": a.ID, "server_label": a.ServerLabel, "name": a.Name, "arguments": a.Arguments}
}

// nullable is s, or JSON null when s is empty.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
