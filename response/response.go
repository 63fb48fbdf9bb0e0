// Package response is OpenAI's Responses API on the wire: the Response
// object, its output items and the stream events, as typed structs, and
// Build, which renders a prompt run's turn as the one Response that the
// gateway's /v1/responses and BudApp's playground both answer with.
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
	// OutputStrict says the schema goes to the model in OpenAI's strict
	// mode (prompt.OutputFormat.Strict).
	OutputStrict bool
	// Model names the model deployment when the output has none (a run that
	// failed before its model call).
	Model string
	// PromptID and PromptVersion fill the Response's prompt: the gateway
	// names the deployment the caller sent, the playground the saved
	// prompt; nil sends null (an unsaved document).
	PromptID, PromptVersion *string
	// Now stands in for the creation time of a run that has not started.
	Now time.Time
}

// Build renders one turn of the run (out; the first when out has no
// ResponseID); out.Status may also be "in_progress". The output items come
// in this order: the connection tool calls the turn made (mcp_call), the
// assistant's message, the caller's function calls, the tool calls waiting
// for approval (mcp_approval_request). A turn that paused for function
// outputs or approvals is completed, as OpenAI's is. Item ids are derived
// from the turn's response id and the model's call ids, so a stream and a
// later GET name every item alike.
func Build(in run.Input, out run.Turn, o Options) *Response {
	created := out.StartedAt
	if created.IsZero() {
		created = o.Now
	}
	id := out.ResponseID
	if id == "" {
		id = in.ResponseID
	}
	message := out.Text != "" || (out.Status == run.StatusCompleted && len(out.FunctionCalls) == 0 && len(out.ApprovalRequests) == 0)
	n := len(out.ToolCalls) + len(out.FunctionCalls) + len(out.ApprovalRequests)
	if message {
		n++
	}
	output := make([]OutputItem, 0, n)
	for _, tc := range out.ToolCalls {
		output = append(output, MCPCallItem(tc))
	}
	if message {
		output = append(output, MessageItem(MessageID(id), run.StatusCompleted, NewOutputText(out.Text)))
	}
	for _, fc := range out.FunctionCalls {
		output = append(output, FunctionCallItem(fc, run.StatusCompleted))
	}
	for _, a := range out.ApprovalRequests {
		output = append(output, ApprovalRequestItem(a))
	}
	r := &Response{
		ID:                 id,
		PreviousResponseID: nullable(out.PreviousResponseID),
		Object:             Object,
		CreatedAt:          created.Unix(),
		Model:              out.Model,
		Status:             out.Status,
		Output:             output,
		OutputText:         out.Text,
		Usage: Usage{
			InputTokens:  out.Usage.InputTokens,
			OutputTokens: out.Usage.OutputTokens,
			TotalTokens:  out.Usage.TotalTokens,
		},
		Prompt:            Prompt{ID: o.PromptID, Version: o.PromptVersion, Variables: in.Variables},
		Text:              Text{Format: TextFormat{Type: FormatText}},
		Metadata:          in.Metadata,
		Background:        in.Background,
		Instructions:      nullable(in.Instructions),
		ParallelToolCalls: true,
		ToolChoice:        "auto",
		Tools:             []any{},
	}
	if r.Model == "" {
		r.Model = o.Model
	}
	if len(o.OutputSchema) > 0 {
		r.Text.Format = TextFormat{Type: FormatJSONSchema, Name: "output", Schema: o.OutputSchema, Strict: new(o.OutputStrict)}
	}
	if out.Error != nil {
		r.Error = &Error{Code: out.Error.Code, Message: out.Error.Message}
	}
	if out.Status == run.StatusIncomplete {
		r.IncompleteDetails = &IncompleteDetails{Reason: "max_output_tokens"}
	}
	if r.Metadata == nil {
		r.Metadata = map[string]string{}
	}
	if r.Prompt.Variables == nil {
		r.Prompt.Variables = map[string]any{}
	}
	return r
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

// NewOutputText is a message's content part holding text.
func NewOutputText(text string) OutputText {
	return OutputText{Type: TypeOutputText, Text: text, Annotations: []any{}}
}

// MessageItem is the assistant's message id with status and content; no
// content is [], a message a stream has just opened.
func MessageItem(id, status string, content ...OutputText) *Message {
	if content == nil {
		content = []OutputText{}
	}
	return &Message{Type: TypeMessage, ID: id, Status: status, Role: RoleAssistant, Content: content}
}

// FunctionCallItem renders a call of the caller's function as OpenAI's
// function_call item with status.
func FunctionCallItem(fc run.FunctionCall, status string) *FunctionCall {
	return &FunctionCall{Type: TypeFunctionCall, ID: FunctionCallID(fc.CallID), CallID: fc.CallID, Name: fc.Name, Arguments: fc.Arguments, Status: status}
}

// MCPCallItem renders a finished connection tool call as OpenAI's mcp_call
// item: status failed when it has an error (a rejected approval included),
// completed otherwise.
func MCPCallItem(tc run.ToolCall) *MCPCall {
	status := run.StatusCompleted
	if tc.Error != "" {
		status = run.StatusFailed
	}
	return &MCPCall{
		Type: TypeMCPCall, ID: MCPCallID(tc.ID), ServerLabel: tc.ServerLabel, Name: tc.Name, Arguments: tc.Arguments,
		Output: nullable(tc.Output), Error: nullable(tc.Error), ApprovalRequestID: nullable(tc.ApprovalRequestID),
		Status: status,
	}
}

// ApprovalRequestItem renders a tool call waiting for approval as OpenAI's
// mcp_approval_request item.
func ApprovalRequestItem(a run.ApprovalRequest) *MCPApprovalRequest {
	return &MCPApprovalRequest{Type: TypeMCPApprovalRequest, ID: a.ID, ServerLabel: a.ServerLabel, Name: a.Name, Arguments: a.Arguments}
}

// nullable is s, or nil (JSON null) when s is empty.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
