package run

import (
	"errors"
	"net/http"

	"go.temporal.io/sdk/temporal"
)

// Failure types: the errType of the temporal.ApplicationError an activity
// or an update fails with, and the Code of the Error a failed turn reports.
// Each name is its value.
const (
	// InvalidInput: the run's input breaks the prompt's input schema.
	// Non-retryable; Failure.Param names the input at fault.
	InvalidInput = "InvalidInput"
	// InvalidPrompt: the pinned document does not parse or compile.
	// Non-retryable; the turn fails with it.
	InvalidPrompt = "InvalidPrompt"
	// RenderFailed: a template failed on this input. Non-retryable.
	RenderFailed = "RenderFailed"
	// RunRefused: the run's project does not exist, or its prompt version
	// or prompt deployment is not that project's. The worker refuses it
	// before any credential is used. Non-retryable; the turn fails with it.
	RunRefused = "RunRefused"
	// UpstreamRejected: the model deployment answered 4xx (other than 408
	// and 429), or the egress policy refused its address. Non-retryable;
	// Failure carries the status and the upstream's message.
	UpstreamRejected = "UpstreamRejected"
	// UpstreamUnavailable: the model deployment could not be reached, timed
	// out, answered 408, 429 or 5xx, or sent an unreadable reply. Retryable;
	// the retry policy decides how often.
	UpstreamUnavailable = "UpstreamUnavailable"
	// RateLimited: the model deployment stayed at its rate limit or its
	// concurrency bound for as long as a model call waits for it.
	// Retryable, after the delay the limit asks for.
	RateLimited = "RateLimited"
	// ModelNotFound: the document's model deployment is missing from the
	// project or is not a model deployment. Non-retryable.
	ModelNotFound = "ModelNotFound"
	// ProviderKey: the deployment's provider key cannot be opened with the
	// worker's secret key, a configuration fault no retry mends.
	ProviderKey = "ProviderKey"
	// InvalidOutput: the structured output failed validation after the
	// repairs the document allows.
	InvalidOutput = "InvalidOutput"
	// StepLimit: the run reached its hard cap of model calls.
	StepLimit = "StepLimit"
	// ToolsUnavailable: the tools of the prompt's connections could not be
	// listed.
	ToolsUnavailable = "ToolsUnavailable"
	// PauseTimeout: nobody answered a paused run in time.
	PauseTimeout = "PauseTimeout"
	// EndedAtPause: a run started with Input.EndAtPause asked for
	// function outputs or approvals, and ended there.
	EndedAtPause = "EndedAtPause"
	// ToolUnavailable: a connection could not be reached, timed out or
	// answered 429 or 5xx. Retryable.
	ToolUnavailable = "ToolUnavailable"
	// ToolRejected: a connection refused the call or its credentials.
	// Non-retryable.
	ToolRejected = "ToolRejected"
	// ToolNotRecorded: a replay with recorded tools made a call the
	// replayed run did not make, so it was not made. Non-retryable; the
	// model reads why.
	ToolNotRecorded = "ToolNotRecorded"
	// ConnectionNotFound: a prompt's connection is gone from its project.
	// Non-retryable.
	ConnectionNotFound = "ConnectionNotFound"
	// InvalidContinue: a continue, approval or wait the run refuses in its
	// present state; the message says why and the details may name the
	// request field at fault.
	InvalidContinue = "InvalidContinue"
	// NoApprovalRequest: a decision names no approval request of the run.
	NoApprovalRequest = "NoApprovalRequest"
	// ServerError: the run's workflow itself failed (the worker's
	// infrastructure, not the caller or the model); its history says why.
	ServerError = "server_error"
)

// Failure is the detail of a typed activity failure: what the run reports
// to its caller. Message is public: it never holds an internal error's text.
type Failure struct {
	Message string `json:"message"`
	// Param names the input at fault ("prompt.variables.age").
	Param string `json:"param,omitempty"`
	// Status is the model deployment's HTTP status, 0 when it sent none.
	Status int `json:"status,omitempty"`
}

// FailureOf is the Failure an application error carries, with a generic
// message when it carries none.
func FailureOf(appErr *temporal.ApplicationError) Failure {
	var f Failure
	if appErr.HasDetails() {
		_ = appErr.Details(&f)
	}
	if f.Message == "" {
		f.Message = "the run failed"
	}
	return f
}

// Error says why a turn failed.
type Error struct {
	// Code is one of the failure types above.
	Code    string `json:"code"`
	Message string `json:"message"`
	// Param names the input at fault for invalid input
	// ("prompt.variables.age").
	Param string `json:"param,omitempty"`
	// UpstreamStatus is the model deployment's last HTTP status for
	// UpstreamRejected and UpstreamUnavailable; 0 when it sent none.
	UpstreamStatus int `json:"upstream_status,omitempty"`
}

// HTTPStatus is the HTTP status with which the gateway and BudApp answer a
// failure of type code: the caller's fault (400, 404), the upstream's
// (502), or a request the run refuses in its state (409). It is 0 for a
// failure that is the run's own outcome, answered 200 with status failed.
func HTTPStatus(code string) int {
	switch code {
	case InvalidInput, RenderFailed:
		return http.StatusBadRequest
	case ModelNotFound, NoApprovalRequest:
		return http.StatusNotFound
	case InvalidContinue:
		return http.StatusConflict
	case UpstreamRejected, UpstreamUnavailable:
		return http.StatusBadGateway
	case RateLimited:
		return http.StatusTooManyRequests
	}
	return 0
}

// Refused reports whether err is an update the run refused
// (InvalidContinue), with the refusal's message and the request field at
// fault ("" when it is the request as a whole).
func Refused(err error) (msg, param string, ok bool) {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != InvalidContinue {
		return "", "", false
	}
	if appErr.HasDetails() {
		_ = appErr.Details(&param)
	}
	return appErr.Message(), param, true
}
