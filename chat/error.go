package chat

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrorKind says how a call failed.
type ErrorKind int

// Kinds of failed call.
const (
	// InvalidURL: the endpoint's URL cannot make a request; no retry
	// mends it.
	InvalidURL ErrorKind = iota + 1
	// Unreachable: no answer came: the connection failed or timed out.
	Unreachable
	// ErrorStatus: the upstream answered with a status of 300 or more;
	// Message is its own error message, or the status text.
	ErrorStatus
	// BadReply: the reply or its stream broke off, is not a chat
	// completion, or reported a failure mid-stream.
	BadReply
	// Refused: the egress policy refused the address the endpoint's host
	// resolved to (or a redirect's); no retry mends it.
	Refused
)

// Error is a call that got no reply to use.
type Error struct {
	Kind ErrorKind
	// Status is the upstream's HTTP status; 0 when it sent none.
	Status int
	// Message is public, what a caller may be told: the upstream's own
	// error message or a description that names no address and holds no
	// internal error's text.
	Message string
	// RetryAfter is the delay the upstream asked for (Retry-After) with an
	// ErrorStatus, at most a minute; 0 when it asked for none.
	RetryAfter time.Duration
	// cause is what happened, for logs.
	cause string
}

// Error says what happened, for logs: it may name the endpoint's address.
func (e *Error) Error() string { return e.cause }

// Retryable reports whether the same call may pass later: one that got no
// answer or an unusable one, or a status of 408, 429 or 5xx (or a redirect
// the client did not follow, which says nothing about the request).
func (e *Error) Retryable() bool {
	switch e.Kind {
	case Unreachable, BadReply:
		return true
	case ErrorStatus:
		return retryableStatus(e.Status)
	}
	return false
}

// statusError is the error of an upstream's answer with status >= 300,
// whose body is raw.
func statusError(resp *http.Response, raw []byte) *Error {
	e := &Error{Kind: ErrorStatus, Status: resp.StatusCode, Message: upstreamMessage(resp.StatusCode, raw)}
	e.cause = fmt.Sprintf("answered %d: %s", e.Status, e.Message)
	if retryableStatus(resp.StatusCode) {
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"))
	}
	return e
}

func retryableStatus(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500 || status < 400
}

// maxRetryAfter caps the delay an upstream can ask for, so a bad header
// cannot park a run.
const maxRetryAfter = time.Minute

// retryAfter reads a Retry-After header (seconds or an HTTP date); 0 means
// none, and the caller's backoff applies.
func retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = time.Until(t)
	}
	if d <= 0 {
		return 0
	}
	return min(d, maxRetryAfter)
}

// maxUpstreamMessage bounds the upstream's message carried into an Error.
const maxUpstreamMessage = 1000

// upstreamMessage is the message of an OpenAI error envelope, or the
// status text when the body is not one. A body that is not an envelope
// (an HTML error page, say) is never passed on.
func upstreamMessage(status int, body []byte) string {
	var env struct {
		Error json.RawMessage `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &env) == nil && len(env.Error) > 0 {
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(env.Error, &e) == nil {
			msg = e.Message
		} else {
			_ = json.Unmarshal(env.Error, &msg) // some servers send {"error": "text"}
		}
	}
	msg = strings.TrimSpace(msg)
	if msg == "" {
		msg = http.StatusText(status)
	}
	if len(msg) > maxUpstreamMessage {
		msg = strings.ToValidUTF8(msg[:maxUpstreamMessage], "") + "…"
	}
	return msg
}
