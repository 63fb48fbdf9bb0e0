package workflows

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
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
	StatusCompleted  = "completed"
	StatusFailed     = "failed"
	StatusIncomplete = "incomplete"
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

// PromptRunOutput is a finished run.
type PromptRunOutput struct {
	Status string `json:"status"`
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
	Usage         Usage          `json:"usage"`
	Error         *RunError      `json:"error,omitempty"`
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
)
