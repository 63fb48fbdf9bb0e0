package connection

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// MaxReplyText is how much of an http operation's reply body, or of an MCP
// tool's output, a Result carries; the rest is cut with a note saying so.
const MaxReplyText = 64 << 10

// httpAPIClient calls the operations of an http connection. Safe for
// concurrent use.
type httpAPIClient struct {
	api   apiCaller
	base  string
	tools []Tool
	ops   map[string]httpOperation
}

type httpOperation struct {
	Operation
	schema *jsonschema.Schema
}

func newHTTPAPI(c Connection, o Options, red redactor) (*httpAPIClient, error) {
	client, t := newHTTPClient(o.HTTPClient, c.Config.BaseURL, headerMap(c.Credentials.Headers))
	h := &httpAPIClient{
		api:  apiCaller{client: client, t: t, red: red, where: "HTTP API at " + c.Config.BaseURL},
		base: c.Config.BaseURL,
		ops:  make(map[string]httpOperation, len(c.Config.Operations)),
	}
	for _, op := range c.Config.Operations {
		schema := op.Parameters
		if len(bytes.TrimSpace(schema)) == 0 {
			schema = json.RawMessage(`{"type":"object"}`)
		}
		sch, err := compileSchema(schema) // Check compiled it already
		if err != nil {
			return nil, red.errorf(ReasonRejected, 0, "the parameters of operation %s are not a valid JSON Schema: %v", op.Name, err)
		}
		tool := Tool{Name: op.Name, Description: op.Description, InputSchema: schema}
		h.tools = append(h.tools, tool)
		h.ops[op.Name] = httpOperation{Operation: op, schema: sch}
	}
	return h, nil
}

// Tools returns the operations as tools; it makes no request.
func (h *httpAPIClient) Tools(context.Context) ([]Tool, error) {
	return append([]Tool(nil), h.tools...), nil
}

// Call checks the arguments against the operation's schema, then sends the
// request: {name} placeholders of the path filled, the other arguments as
// the query (GET, DELETE) or the JSON body. A 4xx other than 401, 403, 408
// and 429 is a Result with IsError ("HTTP 404: …") for the model to read.
func (h *httpAPIClient) Call(ctx context.Context, name string, arguments json.RawMessage) (Result, error) {
	red := h.api.red
	op, ok := h.ops[name]
	if !ok {
		return Result{}, unknownTool(red, KindHTTP, name)
	}
	args, e := checkArguments(red, name, op.schema, arguments)
	if e != nil {
		return Result{}, e
	}
	var values map[string]json.RawMessage
	if err := json.Unmarshal(args, &values); err != nil {
		return Result{}, red.errorf(ReasonRejected, 0, "the arguments of tool %s must be a JSON object", name)
	}
	path, e := fillPath(red, name, op.Path, values)
	if e != nil {
		return Result{}, e
	}
	// Arguments are escaped, but "." and ".." are not escapes: checked
	// again here so a model cannot walk the request out of the base URL.
	if msg := pathSegmentProblem(path); msg != "" {
		return Result{}, red.errorf(ReasonRejected, 0, "the arguments of tool %s make its path %s, which %s", name, path, msg)
	}
	u := joinURL(h.base, path)
	var req *http.Request
	var err error
	if op.Method == http.MethodGet || op.Method == http.MethodDelete {
		q, e := queryOf(red, name, values)
		if e != nil {
			return Result{}, e
		}
		req, err = h.api.newRequest(ctx, op.Method, u, q, nil, "")
	} else {
		req, err = h.api.newRequest(ctx, op.Method, u, nil, values, "application/json")
	}
	if err != nil {
		return Result{}, err
	}
	r, err := h.api.send(req, MaxReplyText)
	if err != nil {
		return Result{}, err
	}
	text := replyText(r)
	switch s := r.status; {
	case s >= 200 && s < 300:
		if text == "" {
			text = fmt.Sprintf("HTTP %d %s (no body)", s, http.StatusText(s))
		}
		return red.result(text, false), nil
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		return Result{}, red.errorf(ReasonUnauthorized, s, "%s refused the credentials: HTTP %d on %s %s", h.api.where, s, op.Method, path)
	case s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500:
		return Result{}, red.errorf(ReasonUnavailable, s, "%s is unavailable: HTTP %d on %s %s%s", h.api.where, s, op.Method, path, retryAfterText(r.header))
	default:
		if text == "" {
			text = http.StatusText(s)
		}
		return red.result(fmt.Sprintf("HTTP %d: %s", s, text), true), nil
	}
}

// Close releases idle connections.
func (h *httpAPIClient) Close() error {
	h.api.t.closeIdle()
	return nil
}

// replyText is a reply's body as text, with a note when it was cut.
func replyText(r reply) string {
	if !r.truncated {
		return string(r.body)
	}
	return withCutNote(string(r.body), "the reply")
}

// cutText is s when it fits in MaxReplyText bytes, else its first
// MaxReplyText bytes with a note naming what was cut.
func cutText(s, what string) string {
	if len(s) <= MaxReplyText {
		return s
	}
	return withCutNote(s[:MaxReplyText], what)
}

// withCutNote is the text of a cut, trimmed back to a rune boundary (a
// split rune would be invalid UTF-8), with a note naming what was cut.
func withCutNote(body, what string) string {
	for i := 0; i < utf8.UTFMax && len(body) > 0 && !utf8.ValidString(body); i++ {
		body = body[:len(body)-1]
	}
	return body + fmt.Sprintf("\n[truncated: %s is longer than %d KiB]", what, MaxReplyText>>10)
}

// fillPath replaces the {name} placeholders of path with the arguments of
// that name, path-escaped, and removes them from values.
func fillPath(red redactor, tool, path string, values map[string]json.RawMessage) (string, *Error) {
	var e *Error
	filled := placeholderPattern.ReplaceAllStringFunc(path, func(m string) string {
		name := m[1 : len(m)-1]
		raw, ok := values[name]
		if !ok {
			if e == nil {
				e = red.errorf(ReasonRejected, 0, "tool %s needs the argument %s for its path", tool, name)
			}
			return m
		}
		delete(values, name)
		s, ok := scalarText(raw)
		if !ok || s == "" {
			if e == nil {
				e = red.errorf(ReasonRejected, 0, "the argument %s of tool %s must be a non-empty string, number or boolean: it goes in the path", name, tool)
			}
			return m
		}
		return url.PathEscape(s)
	})
	return filled, e
}

// queryOf turns arguments into query parameters: scalars as text, arrays
// of scalars as repeated parameters, objects as JSON; null is left out.
func queryOf(red redactor, tool string, values map[string]json.RawMessage) (url.Values, *Error) {
	q := url.Values{}
	for name, raw := range values {
		raw = bytes.TrimSpace(raw)
		switch {
		case string(raw) == "null":
		case len(raw) > 0 && raw[0] == '[':
			var items []json.RawMessage
			if err := json.Unmarshal(raw, &items); err != nil {
				return nil, red.errorf(ReasonRejected, 0, "the argument %s of tool %s is not valid JSON", name, tool)
			}
			for _, item := range items {
				s, ok := scalarText(item)
				if !ok {
					s = string(item)
				}
				q.Add(name, s)
			}
		default:
			s, ok := scalarText(raw)
			if !ok {
				s = string(raw)
			}
			q.Set(name, s)
		}
	}
	return q, nil
}

// scalarText is a JSON string, number or boolean as text.
func scalarText(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false
		}
		return s, true
	case 't', 'f':
		b, err := strconv.ParseBool(string(raw))
		return strconv.FormatBool(b), err == nil
	case '{', '[', 'n':
		return "", false
	default:
		return strings.TrimSpace(string(raw)), true
	}
}
