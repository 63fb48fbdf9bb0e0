package workflows

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/budhq/bud/activities"
)

// PromptRunWorkflow is the registered name of PromptRun.
const PromptRunWorkflow = "PromptRun"

// Run sources.
const (
	SourceAPI        = "api"        // POST /v1/responses
	SourcePlayground = "playground" // BudApp's playground and compare
)

// Run statuses, as OpenAI's Response reports them.
const (
	StatusCompleted  = activities.StatusCompleted
	StatusFailed     = "failed"
	StatusIncomplete = activities.StatusIncomplete
)

// PromptRunInput is everything one run needs. The pinned version's document
// travels in the input, so the run's history alone says exactly what ran
// and a replay needs nothing else.
type PromptRunInput struct {
	// ResponseID is the workflow id and the OpenAI response id ("resp_…").
	ResponseID string    `json:"response_id"`
	ProjectID  uuid.UUID `json:"project_id"`
	// PromptID and PromptVersion name the saved version; both are zero for
	// an unsaved playground document.
	PromptID      uuid.UUID `json:"prompt_id"`
	PromptVersion int32     `json:"prompt_version"`
	// Deployment is the prompt deployment's name (the caller's prompt.id);
	// empty in the playground.
	Deployment string `json:"deployment,omitempty"`
	// Document is the prompt document (prompt.Document as JSON).
	Document json.RawMessage `json:"document"`
	// Text is the text input of a text prompt.
	Text string `json:"text,omitempty"`
	// Variables is the structured input.
	Variables map[string]any `json:"variables,omitempty"`
	// InputItems are OpenAI Responses input items (messages, function_call
	// outputs) appended after the rendered messages, as a JSON list.
	InputItems json.RawMessage `json:"input_items,omitempty"`
	// Instructions, when set, is a system message put before the rendered
	// messages.
	Instructions string            `json:"instructions,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	Source       string            `json:"source"`
	// StreamSubject, when set, is the NATS subject the run publishes its
	// deltas to as the model produces them, with the verdict on each
	// structured reply (see package runstream). The gateway sets it for
	// stream: true only; a run without it makes the same steps as before
	// streaming existed.
	StreamSubject string `json:"stream_subject,omitempty"`
	// TurnSubject, when set, is the NATS subject on which the run announces
	// the end of its first turn, once recorded (runstream.TypeTurnEnded,
	// read by AnnouncedTurn): RecordRun sends the turn, or the first model
	// call, when its reply ended the run, sends the turn before it and the
	// reply (activities.Announcement). A caller that subscribed before the
	// start has its answer without an update, and the workflow tasks an
	// update waits for. The announcement is best effort; UpdateAwaitTurn
	// always works.
	TurnSubject string `json:"turn_subject,omitempty"`
}

// Updates and queries of a PromptRun. A run has turns: the first starts
// with the run; a turn ends when the run finishes, or when it pauses for
// the caller's function outputs or for approvals, and the next turn starts
// when it is resumed. Each turn is one OpenAI response (TurnID).
const (
	// UpdateAwaitTurn (an int, the turn from 1) returns that turn's
	// PromptRunOutput once it has ended. The gateway asks it when a run
	// has not announced its first turn (TurnSubject) in time, or with the
	// start (update-with-start, BUD_RUN_WAIT=update).
	UpdateAwaitTurn = "await_turn"
	// UpdateContinue (ContinueInput) resumes a paused run with the
	// caller's input items and returns the next turn's output once it ends.
	// The validator refuses, without a trace in the history, a continue of
	// a turn that is not the paused one or that leaves a call unanswered.
	UpdateContinue = "continue"
	// UpdateApprove (ApprovalDecision) decides one pending approval
	// request; when none is left and no function output is awaited, the
	// run goes on by itself.
	UpdateApprove = "approve"
	// QueryTurn (an int) returns the turn's output as it stands; a turn
	// not yet started is an error.
	QueryTurn = "turn"
)

// PauseTimeout is how long a paused run waits for function outputs or
// approvals before it ends as it stands.
const PauseTimeout = 7 * 24 * time.Hour

// TurnID is the response id of turn n (from 1) of the run whose workflow
// id is runID: the run's id itself for the first, runID_n after.
func TurnID(runID string, n int) string {
	if n <= 1 {
		return runID
	}
	return runID + "_" + strconv.Itoa(n)
}

// ParseTurnID splits a response id into its run's id and turn number.
func ParseTurnID(id string) (runID string, n int, ok bool) {
	if !strings.HasPrefix(id, "resp_") {
		return "", 0, false
	}
	rest := id[len("resp_"):]
	base, num, found := strings.Cut(rest, "_")
	if base == "" {
		return "", 0, false
	}
	if !found {
		return id, 1, true
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 2 || strconv.Itoa(n) != num {
		return "", 0, false
	}
	return "resp_" + base, n, true
}

// ContinueInput resumes a paused run.
type ContinueInput struct {
	// PreviousResponseID is the paused turn's response id.
	PreviousResponseID string `json:"previous_response_id"`
	// InputItems are OpenAI Responses input items as a JSON list:
	// function_call_output for every function call of the paused turn,
	// mcp_approval_response for approval requests not decided otherwise,
	// and messages, appended after them.
	InputItems json.RawMessage `json:"input_items"`
	// StreamSubject, when set, is where the next turn streams.
	StreamSubject string `json:"stream_subject,omitempty"`
}

// ApprovalDecision decides one approval request.
type ApprovalDecision struct {
	// ID is the approval request's id (mcpr_…) or the call's id.
	ID      string `json:"id"`
	Approve bool   `json:"approve"`
	Reason  string `json:"reason,omitempty"`
	// Source says who decided: "api" (an mcp_approval_response item) or
	// "app" (BudApp's approvals API).
	Source string `json:"source,omitempty"`
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

// ApprovalRequest is a call waiting for someone to approve it.
type ApprovalRequest struct {
	ID          string `json:"id"` // mcpr_<call id>
	CallID      string `json:"call_id"`
	Name        string `json:"name"`
	ServerLabel string `json:"server_label"`
	Arguments   string `json:"arguments"`
}

// Usage counts tokens over every model call of a run.
type Usage struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
	TotalTokens  int64 `json:"total_tokens"`
}

// FunctionCall is a call of a caller-defined function tool, returned to the
// caller to execute.
type FunctionCall struct {
	CallID    string `json:"call_id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// RunError says why a run failed. Code is one of the Err* types below.
type RunError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Param names the input at fault for invalid input
	// ("prompt.variables.age").
	Param string `json:"param,omitempty"`
}

// PromptRunOutput is one turn of a run: the whole run when it did not
// pause.
type PromptRunOutput struct {
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
	Waiting bool      `json:"waiting,omitempty"`
	Usage   Usage     `json:"usage"`
	Error   *RunError `json:"error,omitempty"`
	// ModelCalls is how many model calls the run made (repairs included).
	ModelCalls int       `json:"model_calls"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// Non-retryable failure types (temporal.NewNonRetryableApplicationError's
// errType); the gateway maps each to an HTTP status.
const (
	ErrInvalidInput     = "InvalidInput"     // 400: input breaks the prompt's input schema
	ErrInvalidPrompt    = "InvalidPrompt"    // 500: a stored document no longer compiles
	ErrRender           = "RenderFailed"     // 400: a template failed on this input
	ErrUpstreamRejected = "UpstreamRejected" // the model deployment answered 4xx (status passed on)
	ErrModelNotFound    = "ModelNotFound"    // the document's model deployment is gone
	ErrInvalidOutput    = "InvalidOutput"    // output failed validation after the allowed repairs
	ErrStepLimit        = "StepLimit"        // the tool/repair loop hit its hard cap
	ErrTools            = "ToolsUnavailable" // the prompt's connections could not be listed
	ErrPauseTimeout     = "PauseTimeout"     // nobody answered a paused run within PauseTimeout
)
