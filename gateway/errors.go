package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/budhq/bud/run"
)

// Error types: the class of an OpenAI error.
const (
	typeInvalidRequest = "invalid_request_error"
	typeServer         = "server_error"
	typeUpstream       = "upstream_error"
)

// Error codes: every code the gateway answers with.
const (
	codeInvalidAPIKey        = "invalid_api_key"
	codeRequestTooLarge      = "request_too_large"
	codeServerBusy           = "server_busy"
	codeInvalidBody          = "invalid_body"
	codeInvalidJSON          = "invalid_json"
	codeMissingParameter     = "missing_required_parameter"
	codeInvalidType          = "invalid_type"
	codeInvalidValue         = "invalid_value"
	codeInternal             = "internal_error"
	codeUnknownURL           = "unknown_url"
	codeMethodNotAllowed     = "method_not_allowed"
	codeModelNotFound        = "model_not_found"
	codePromptNotFound       = "prompt_not_found"
	codeVersionNotFound      = "version_not_found"
	codeResponseNotFound     = "response_not_found"
	codeInvalidPromptInput   = "invalid_prompt_input"
	codeNotContinuable       = "previous_response_not_continuable"
	codeUnavailable          = "unavailable"
	codeStreamingUnavailable = "streaming_unavailable"
	codeRunNotStarted        = "run_not_started"
	codeUpstreamTimeout      = "upstream_timeout"
	codeUpstreamUnreachable  = "upstream_unreachable"
	codeUpstreamRefused      = "upstream_refused_by_policy"
	codeUpstreamRejected     = "upstream_rejected"
	codeUpstreamUnavailable  = "upstream_unavailable"
)

// apiError is an error in OpenAI's envelope with its HTTP status. Type is
// the error's class (typeInvalidRequest, typeServer, typeUpstream), Code
// one of the codes above; an empty Param or Code is sent as null.
type apiError struct {
	Status  int
	Type    string
	Param   string
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Message }

// openAIErrorBody is OpenAI's error object; param and code are null when unset.
type openAIErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) body() []byte {
	b := openAIErrorBody{Message: e.Message, Type: e.Type}
	if e.Param != "" {
		b.Param = &e.Param
	}
	if e.Code != "" {
		b.Code = &e.Code
	}
	out, _ := json.Marshal(struct {
		Error openAIErrorBody `json:"error"`
	}{b})
	return append(out, '\n')
}

// writeAPIError answers with e.
func writeAPIError(w http.ResponseWriter, e *apiError) {
	body := e.body()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.Status)
	_, _ = w.Write(body)
}

// errInvalid is a 400 about the request's param.
func errInvalid(param, code, msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: param, Code: code, Message: msg}
}

func errNoKey() *apiError {
	return &apiError{Status: http.StatusUnauthorized, Type: typeInvalidRequest, Code: codeInvalidAPIKey,
		Message: "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' (or an 'api-key' header)."}
}

func errBadKey() *apiError {
	return &apiError{Status: http.StatusUnauthorized, Type: typeInvalidRequest, Code: codeInvalidAPIKey,
		Message: "Incorrect API key provided."}
}

func errRevokedKey() *apiError {
	return &apiError{Status: http.StatusUnauthorized, Type: typeInvalidRequest, Code: codeInvalidAPIKey,
		Message: "This API key has been revoked."}
}

func errExpiredKey() *apiError {
	return &apiError{Status: http.StatusUnauthorized, Type: typeInvalidRequest, Code: codeInvalidAPIKey,
		Message: "This API key has expired."}
}

func errTooLarge() *apiError {
	return &apiError{Status: http.StatusRequestEntityTooLarge, Type: typeInvalidRequest, Code: codeRequestTooLarge,
		Message: "The request body is too large."}
}

// errBodiesBusy answers a request whose body would take the gateway past
// MaxBodyBytesInFlight: at once, so that a flood of slow bodies cannot
// stall the requests behind it.
func errBodiesBusy() *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Type: typeServer, Code: codeServerBusy,
		Message: "The server is receiving too many requests at once; try again shortly."}
}

// errInternal answers a failure of the gateway's own; its cause is logged,
// never sent.
func errInternal() *apiError {
	return &apiError{Status: http.StatusInternalServerError, Type: typeServer, Code: codeInternal,
		Message: "The server had an error while processing your request."}
}

func errModelNotFound(model string) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Param: "model", Code: codeModelNotFound,
		Message: "The model '" + echoed(model) + "' does not exist or you do not have access to it."}
}

func errPromptNotFound(prompt string) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Param: "prompt.id", Code: codePromptNotFound,
		Message: "The prompt '" + echoed(prompt) + "' does not exist or you do not have access to it."}
}

// maxEchoed bounds how much of a caller's value an error repeats: a name
// can be megabytes long, and the answer must not be.
const maxEchoed = 256

// echoed is s as an error message repeats it, cut to maxEchoed bytes.
func echoed(s string) string {
	if len(s) <= maxEchoed {
		return s
	}
	return strings.ToValidUTF8(s[:maxEchoed], "") + "…"
}

// errResponseNotFound answers a response id that names no run of the
// caller's project, param being the request field that sent it.
func errResponseNotFound(param, id string) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Param: param, Code: codeResponseNotFound,
		Message: "No response found with id '" + id + "'."}
}

func errRunsUnconfigured() *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Type: typeServer, Code: codeUnavailable,
		Message: "Prompt runs are not configured on this gateway."}
}

func errStreamingUnconfigured() *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Type: typeServer, Code: codeStreamingUnavailable,
		Message: "Streaming is not configured on this gateway (it needs NATS: BUD_NATS_URL); send stream: false."}
}

func errStreamUnavailable() *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Type: typeServer, Code: codeStreamingUnavailable,
		Message: "Streaming is not available on this gateway right now (it has no connection to NATS); send stream: false, or try again."}
}

func errRunNotStarted() *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Type: typeServer, Code: codeRunNotStarted,
		Message: "The prompt run could not be started; try again."}
}

// runError is the HTTP error that answers a turn that failed with e, with
// the status package run gives its failure type: the caller's fault (bad
// input, a missing model) or the upstream's. It is nil for a failure that
// is the run's own outcome, answered with the Response and status failed.
func runError(e *run.Error) *apiError {
	status := run.HTTPStatus(e.Code)
	if status == 0 {
		return nil
	}
	typ := typeInvalidRequest
	if status >= http.StatusInternalServerError {
		typ = typeUpstream
	}
	return &apiError{Status: status, Type: typ, Param: e.Param, Code: runErrorCode(e.Code), Message: e.Message}
}

// runErrorCode is the error code that answers a run's failure type.
func runErrorCode(failure string) string {
	switch failure {
	case run.InvalidInput, run.RenderFailed:
		return codeInvalidPromptInput
	case run.ModelNotFound:
		return codeModelNotFound
	case run.UpstreamRejected:
		return codeUpstreamRejected
	case run.UpstreamUnavailable:
		return codeUpstreamUnavailable
	}
	// A refused update (run.InvalidContinue, run.NoApprovalRequest) is
	// never a turn's failure; continueError answers those.
	return codeInvalidValue
}
