package run

import (
	"encoding/json"
	"time"
)

// Statuses of a turn and of a run, as OpenAI's Response reports them, and
// Waiting, the recorded status of a run paused after a turn.
const (
	StatusCompleted  = "completed"
	StatusFailed     = "failed"
	StatusIncomplete = "incomplete"
	// StatusInProgress is a turn that has not ended.
	StatusInProgress = "in_progress"
	// StatusWaiting is the recorded status of a run paused for function
	// outputs or approvals; its turns so far are completed responses.
	StatusWaiting = "waiting"
	// StatusCancelled is a run cancelled while it ran (a background
	// response's cancel), and the turn it was in.
	StatusCancelled = "cancelled"
	// StatusQueued is a background response that has just started: its
	// run has not yet been taken by a worker, as far as its caller knows.
	StatusQueued = "queued"
)

// Turn is one turn of a run, one OpenAI response: the whole run when it did
// not pause.
type Turn struct {
	// ResponseID is the turn's response id (TurnID); Turn its number.
	ResponseID string `json:"response_id,omitempty"`
	Turn       int    `json:"turn,omitempty"`
	// PreviousResponseID is the turn this one resumed.
	PreviousResponseID string `json:"previous_response_id,omitempty"`
	Status             string `json:"status"`
	// Model is the model deployment that served the run.
	Model string `json:"model"`
	// Text is the final assistant message; for a structured output, its
	// JSON text.
	Text string `json:"text"`
	// Parsed is the validated structured output, if the output is
	// structured.
	Parsed json.RawMessage `json:"parsed,omitempty"`
	// FunctionCalls are the caller's function tools the model asked for.
	FunctionCalls []FunctionCall `json:"function_calls,omitempty"`
	// ToolCalls are the connection tool calls made in the turn.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	// ApprovalRequests are the calls waiting for approval at the turn's end.
	ApprovalRequests []ApprovalRequest `json:"approval_requests,omitempty"`
	// Waiting says the run paused after this turn: for FunctionCalls'
	// outputs and ApprovalRequests' decisions.
	Waiting bool   `json:"waiting,omitempty"`
	Usage   Usage  `json:"usage"`
	Error   *Error `json:"error,omitempty"`
	// ModelCalls is how many model calls the turn made (repairs included).
	ModelCalls int       `json:"model_calls"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// Usage counts tokens over model calls.
type Usage struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
	TotalTokens  int64 `json:"total_tokens"`
}

// Add adds one model call's tokens.
func (u *Usage) Add(input, output, total int64) {
	u.InputTokens += input
	u.OutputTokens += output
	u.TotalTokens += total
}

// FunctionCall is a call of a caller-defined function tool, returned to the
// caller to execute.
type FunctionCall struct {
	CallID    string `json:"call_id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// ApprovalRequest is a connection tool call waiting for someone to approve
// it.
type ApprovalRequest struct {
	ID          string `json:"id"` // mcpr_<call id>
	CallID      string `json:"call_id"`
	Name        string `json:"name"`
	ServerLabel string `json:"server_label"`
	Arguments   string `json:"arguments"`
}

// ToolCall is one call the model made of a connection tool, as OpenAI's
// mcp_call item shows it.
type ToolCall struct {
	// ID is the model's call id.
	ID          string `json:"id"`
	Name        string `json:"name"` // the connection's own name of the tool
	ServerLabel string `json:"server_label"`
	// ConnectionID is the connection's id; empty for a call of a tool the
	// model was not offered.
	ConnectionID string `json:"connection_id,omitempty"`
	Arguments    string `json:"arguments"`
	Output       string `json:"output,omitempty"`
	// Error is why the call failed (the tool's own failure or one of
	// reaching it), as the model was told.
	Error string `json:"error,omitempty"`
	// ApprovalRequestID is set when the call needed approval.
	ApprovalRequestID string `json:"approval_request_id,omitempty"`
	Approved          *bool  `json:"approved,omitempty"`
	Reason            string `json:"reason,omitempty"`
	// Turn is the turn the call was made in, from 1.
	Turn      int       `json:"turn"`
	StartedAt time.Time `json:"started_at,omitempty"`
	LatencyMS int64     `json:"latency_ms"`
	Attempts  int32     `json:"attempts,omitempty"`
}
