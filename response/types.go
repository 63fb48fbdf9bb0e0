package response

import "encoding/json"

// Object is the "object" of every Response.
const Object = "response"

// Output item and content types: the Type of each.
const (
	TypeMessage            = "message"
	TypeOutputText         = "output_text"
	TypeFunctionCall       = "function_call"
	TypeMCPCall            = "mcp_call"
	TypeMCPApprovalRequest = "mcp_approval_request"
)

// RoleAssistant is the role of every message a run outputs.
const RoleAssistant = "assistant"

// Response is OpenAI's Response object. Fields without omitempty are always
// sent, as null when their pointer is nil, so clients that read them find
// them.
type Response struct {
	ID string `json:"id"`
	// PreviousResponseID is the turn this one continues; null for a first
	// turn.
	PreviousResponseID *string `json:"previous_response_id"`
	Object             string  `json:"object"`
	CreatedAt          int64   `json:"created_at"`
	Model              string  `json:"model"`
	Status             string  `json:"status"`
	// Output is never nil: a Response without items has [].
	Output     []OutputItem `json:"output"`
	OutputText string       `json:"output_text"`
	Usage      Usage        `json:"usage"`
	Prompt     Prompt       `json:"prompt"`
	Text       Text         `json:"text"`
	// Error is set when Status is failed.
	Error *Error `json:"error"`
	// IncompleteDetails is set when Status is incomplete.
	IncompleteDetails *IncompleteDetails `json:"incomplete_details"`
	// Metadata is never nil: a run without metadata has {}.
	Metadata map[string]string `json:"metadata"`
	// Background is whether the response was created with background:
	// true.
	Background        bool    `json:"background"`
	Instructions      *string `json:"instructions"`
	ParallelToolCalls bool    `json:"parallel_tool_calls"`
	ToolChoice        string  `json:"tool_choice"`
	// Tools is always empty: a prompt's tools are its document's, not the
	// request's.
	Tools []any `json:"tools"`
}

// OutputItem is one item of a Response's output, or of a stream's
// output_item events: *Message, *FunctionCall, *MCPCall or
// *MCPApprovalRequest, each telling which by its Type.
type OutputItem interface {
	outputItem()
}

// Message is an assistant message item (TypeMessage).
type Message struct {
	Type   string `json:"type"`
	ID     string `json:"id"`
	Status string `json:"status"`
	Role   string `json:"role"`
	// Content is never nil: a message just opened in a stream has [].
	Content []OutputText `json:"content"`
}

// OutputText is a message's text content part (TypeOutputText).
type OutputText struct {
	Type string `json:"type"`
	Text string `json:"text"`
	// Annotations is always empty: runs cite nothing.
	Annotations []any `json:"annotations"`
}

// FunctionCall is a call of the caller's function tool (TypeFunctionCall).
type FunctionCall struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	CallID    string `json:"call_id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
	Status    string `json:"status"`
}

// MCPCall is a call of a connection's tool (TypeMCPCall). Output, Error and
// ApprovalRequestID are null when unset.
type MCPCall struct {
	Type              string  `json:"type"`
	ID                string  `json:"id"`
	ServerLabel       string  `json:"server_label"`
	Name              string  `json:"name"`
	Arguments         string  `json:"arguments"`
	Output            *string `json:"output"`
	Error             *string `json:"error"`
	ApprovalRequestID *string `json:"approval_request_id"`
	Status            string  `json:"status"`
}

// MCPApprovalRequest is a connection tool call waiting for approval
// (TypeMCPApprovalRequest).
type MCPApprovalRequest struct {
	Type        string `json:"type"`
	ID          string `json:"id"`
	ServerLabel string `json:"server_label"`
	Name        string `json:"name"`
	Arguments   string `json:"arguments"`
}

func (*Message) outputItem()            {}
func (*FunctionCall) outputItem()       {}
func (*MCPCall) outputItem()            {}
func (*MCPApprovalRequest) outputItem() {}

// Usage counts a turn's tokens. Bud does not count cached or reasoning
// tokens apart, so their details are always 0.
type Usage struct {
	InputTokens         int64               `json:"input_tokens"`
	OutputTokens        int64               `json:"output_tokens"`
	TotalTokens         int64               `json:"total_tokens"`
	InputTokensDetails  InputTokensDetails  `json:"input_tokens_details"`
	OutputTokensDetails OutputTokensDetails `json:"output_tokens_details"`
}

// InputTokensDetails is Usage's breakdown of input tokens.
type InputTokensDetails struct {
	CachedTokens int64 `json:"cached_tokens"`
}

// OutputTokensDetails is Usage's breakdown of output tokens.
type OutputTokensDetails struct {
	ReasoningTokens int64 `json:"reasoning_tokens"`
}

// Prompt names the prompt that ran and the variables it ran with. ID and
// Version are null for a document that was never saved.
type Prompt struct {
	ID      *string `json:"id"`
	Version *string `json:"version"`
	// Variables is never nil: a run without variables has {}.
	Variables map[string]any `json:"variables"`
}

// Text is the Response's text configuration.
type Text struct {
	Format TextFormat `json:"format"`
}

// Text formats (TextFormat.Type).
const (
	FormatText       = "text"
	FormatJSONSchema = "json_schema"
)

// TextFormat is the output's format: FormatText alone, or FormatJSONSchema
// with the schema's Name, Schema and Strict.
type TextFormat struct {
	Type   string          `json:"type"`
	Name   string          `json:"name,omitempty"`
	Schema json.RawMessage `json:"schema,omitempty"`
	Strict *bool           `json:"strict,omitempty"`
}

// Error says why a Response failed: Code is the run's failure type
// (run.Error.Code).
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// IncompleteDetails says why a Response is incomplete.
type IncompleteDetails struct {
	Reason string `json:"reason"`
}
