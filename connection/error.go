package connection

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/budhq/bud"
)

// Reasons of an Error: what went wrong, and so whether to try again.
const (
	ReasonUnreachable  = "unreachable"  // transport failure, DNS, refused, timeout: retryable
	ReasonUnavailable  = "unavailable"  // 429, 5xx, a server that broke off: retryable
	ReasonUnauthorized = "unauthorized" // 401/403, Slack invalid_auth/not_authed, Notion unauthorized: not retryable
	ReasonRejected     = "rejected"     // any other 4xx, an unknown tool, arguments that are not a JSON object or break the tool's schema: not retryable
)

// Error is every failure of Open, Tools and Call: a reason, the HTTP status
// when the far end answered with one, and a message a person can act on.
// The message never holds a credential's value: it has been through the
// connection's redaction.
type Error struct {
	Reason string
	// Status is the HTTP status the far end answered, 0 when there was none.
	Status  int
	Message string

	// ctxErr is context.Canceled or context.DeadlineExceeded when the
	// caller's context ended the operation, so errors.Is finds it. Nothing
	// else is kept: a cause's text could hold a secret.
	ctxErr error
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Retryable reports whether trying again later may succeed: the connection
// was unreachable or unavailable.
func (e *Error) Retryable() bool {
	return e.Reason == ReasonUnreachable || e.Reason == ReasonUnavailable
}

// Unwrap returns the context's error when the caller's context ended the
// operation, else nil.
func (e *Error) Unwrap() error { return e.ctxErr }

// redactor replaces a connection's secret values in text with "[redacted]".
type redactor struct {
	// secrets, longest first, so that a secret containing another is
	// replaced whole.
	secrets []string
}

// redacted is what a secret is replaced with.
const redacted = "[redacted]"

// minSecretLen is the length under which a value is not redacted: a value
// of one or two characters is no secret worth the mangled messages
// (replacing every "1" of a text).
const minSecretLen = 3

func newRedactor(cr Credentials) redactor {
	seen := map[string]bool{}
	add := func(s string) {
		s = strings.TrimSpace(s)
		if len(s) < minSecretLen || seen[s] {
			return
		}
		seen[s] = true
		if q := url.QueryEscape(s); q != s && !seen[q] {
			seen[q] = true
		}
	}
	add(cr.Token)
	for _, v := range cr.Headers {
		add(v)
		// "Bearer abc…", "Basic abc…": the credential is the part after
		// the scheme, and a far end may quote only that.
		if _, rest, ok := strings.Cut(strings.TrimSpace(v), " "); ok {
			add(rest)
		}
	}
	r := redactor{secrets: make([]string, 0, len(seen))}
	for s := range seen {
		r.secrets = append(r.secrets, s)
	}
	sort.Slice(r.secrets, func(i, j int) bool {
		if len(r.secrets[i]) != len(r.secrets[j]) {
			return len(r.secrets[i]) > len(r.secrets[j])
		}
		return r.secrets[i] < r.secrets[j]
	})
	return r
}

// redact returns s with every secret replaced.
func (r redactor) redact(s string) string {
	for _, secret := range r.secrets {
		s = strings.ReplaceAll(s, secret, redacted)
	}
	return s
}

// errorf returns an *Error whose message is redacted: the connection's
// secrets, and the userinfo, query and fragment of every URL in it.
func (r redactor) errorf(reason string, status int, format string, args ...any) *Error {
	return &Error{Reason: reason, Status: status, Message: bud.RedactURLs(r.redact(fmt.Sprintf(format, args...)))}
}

// result returns a Result whose text is redacted: a far end may echo a
// header back.
func (r redactor) result(text string, isError bool) Result {
	return Result{Text: r.redact(text), IsError: isError}
}

// contextError returns an *Error for an operation the caller's context
// ended, or nil when ctx is still live.
func (r redactor) contextError(ctx context.Context, what string) *Error {
	err := ctx.Err()
	if err == nil {
		return nil
	}
	e := r.errorf(ReasonUnreachable, 0, "%s: %s", what, contextText(err))
	e.ctxErr = err
	return e
}

func contextText(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	return "cancelled"
}
