package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// apiError is an error in OpenAI's envelope with its HTTP status. The type
// names the error class for metrics as well.
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

func writeAPIError(w http.ResponseWriter, e *apiError) {
	body := e.body()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.Status)
	_, _ = w.Write(body)
}

func errInvalid(param, code, msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: param, Code: code, Message: msg}
}

var (
	errNoKey = &apiError{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: "invalid_api_key",
		Message: "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' (or an 'api-key' header)."}
	errBadKey = &apiError{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: "invalid_api_key",
		Message: "Incorrect API key provided."}
	errRevokedKey = &apiError{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: "invalid_api_key",
		Message: "This API key has been revoked."}
	errExpiredKey = &apiError{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: "invalid_api_key",
		Message: "This API key has expired."}
	errTooLarge = &apiError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Code: "request_too_large",
		Message: "The request body is too large."}
	errInternal = &apiError{Status: http.StatusInternalServerError, Type: "server_error", Code: "internal_error",
		Message: "The server had an error while processing your request."}
)

func errModelNotFound(model string) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Param: "model", Code: "model_not_found",
		Message: "The model '" + model + "' does not exist or you do not have access to it."}
}
