// Package bud holds the domain types of Bud — projects, deployments, API keys —
// and the one error type every service speaks. It depends on nothing but the
// standard library and uuid, so every other package can import it.
package bud

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Error codes. Each maps to exactly one HTTP status in the services.
const (
	EINVALID       = "invalid"           // the request is malformed or breaks a rule
	EUNAUTHORIZED  = "unauthorized"      // credentials missing or wrong
	ENOTFOUND      = "not_found"         // absent, or not the caller's
	ECONFLICT      = "conflict"          // clashes with existing state (a unique name)
	EUNPROCESSABLE = "unprocessable"     // well-formed but refused on its meaning (a prompt that fails validation)
	EUNAVAILABLE   = "unavailable"       // a dependency (the state store) is down; retry later
	ETOOLARGE      = "payload_too_large" // the body is over the limit
	EINTERNAL      = "internal"          // our fault; never shown in detail
)

// Error is an error meant for the caller: a code, a public message and, for
// invalid input, a problem per field (JSON path → problem). A cause, if any,
// is for logs only and never reaches the caller.
type Error struct {
	Code    string
	Message string
	Fields  map[string]string
	cause   error
}

// Error implements error.
func (e *Error) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.cause)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Unwrap returns the private cause.
func (e *Error) Unwrap() error { return e.cause }

// Errorf returns an Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Internal wraps an unexpected failure. Its text stays private.
func Internal(op string, err error) error {
	return &Error{Code: EINTERNAL, Message: "internal error", cause: fmt.Errorf("%s: %w", op, err)}
}

// ErrorCode returns the code of err: that of an *Error in its chain, else EINTERNAL.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the public message of err; internal errors get a
// generic text so that nothing of their cause leaks.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Code != EINTERNAL {
		return e.Message
	}
	return "internal error"
}

// ErrorFields returns the per-field problems of err, if any.
func ErrorFields(err error) map[string]string {
	var e *Error
	if errors.As(err, &e) && e.Code != EINTERNAL {
		return e.Fields
	}
	return nil
}

// Problems gathers field problems so a caller sees every one at once.
// The zero value is ready to use.
type Problems map[string]string

// Add records a problem for field unless one is already recorded.
func (p *Problems) Add(field, format string, args ...any) {
	if *p == nil {
		*p = Problems{}
	}
	if _, ok := (*p)[field]; !ok {
		(*p)[field] = fmt.Sprintf(format, args...)
	}
}

// Err returns nil when there are no problems, else an EINVALID *Error
// whose message names every field.
func (p Problems) Err() error {
	if len(p) == 0 {
		return nil
	}
	return &Error{Code: EINVALID, Message: "invalid request: " + p.String(), Fields: map[string]string(p)}
}

// String lists the problems as "field: message", sorted by field and
// separated by "; ".
func (p Problems) String() string {
	names := make([]string, 0, len(p))
	for f := range p {
		names = append(names, f)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, f := range names {
		parts = append(parts, f+": "+p[f])
	}
	return strings.Join(parts, "; ")
}
