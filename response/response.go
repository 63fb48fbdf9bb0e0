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

	"github.com/budhq/bud/workflows"
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

// Build renders the run; out.Status may also be "in_progress".
func Build(in workflows.PromptRunInput, out workflows.PromptRunOutput, o Options) map[string]any {
	created := out.StartedAt
	if created.IsZero() {
		created = o.Now
	}
	output := []any{}
	if (out.Status == workflows.StatusCompleted || out.Text != "") && (out.Text != "" || len(out.FunctionCalls) == 0) {
		output = append(output, map[string]any{
			"type": "message", "id": "msg_" + strings.TrimPrefix(in.ResponseID, "resp_"), "status": "completed", "role": "assistant",
			"content": []any{map[string]any{"type": "output_text", "text": out.Text, "annotations": []any{}}},
		})
	}
	for _, fc := range out.FunctionCalls {
		output = append(output, map[string]any{"type": "function_call", "id": "fc_" + fc.CallID, "call_id": fc.CallID, "name": fc.Name, "arguments": fc.Arguments, "status": "completed"})
	}
	format := map[string]any{"type": "text"}
	if len(o.OutputSchema) > 0 {
		format = map[string]any{"type": "json_schema", "name": "output", "schema": o.OutputSchema, "strict": true}
	}
	var runErr, incomplete, instructions any
	if out.Error != nil {
		runErr = map[string]any{"code": out.Error.Code, "message": out.Error.Message}
	}
	if out.Status == workflows.StatusIncomplete {
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
		"id":                  in.ResponseID,
		"object":              "response",
		"created_at":          created.Unix(),
		"model":               model,
		"status":              out.Status,
		"output":              output,
		"output_text":         out.Text,
		"usage":               map[string]any{"input_tokens": out.Usage.InputTokens, "output_tokens": out.Usage.OutputTokens, "total_tokens": out.Usage.TotalTokens, "input_tokens_details": map[string]any{"cached_tokens": 0}, "output_tokens_details": map[string]any{"reasoning_tokens": 0}},
		"prompt":              map[string]any{"id": o.PromptID, "version": o.PromptVersion, "variables": vars},
		"text":                map[string]any{"format": format},
		"error":               runErr,
		"incomplete_details":  incomplete,
		"metadata":            metadata,
		"instructions":        instructions,
		"parallel_tool_calls": true,
		"tool_choice":         "auto",
		"tools":               []any{},
	}
}
