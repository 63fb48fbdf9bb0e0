package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/deployment"
	"github.com/budhq/bud/egress"
)

// chatRequest is a chat completion request as the gateway needs it: the
// top-level fields kept as raw JSON so every field, known or not, reaches
// the upstream untouched.
type chatRequest struct {
	fields map[string]json.RawMessage
	model  string
	stream bool
	// size is the body's length, to size the upstream's.
	size int
}

// parse reads what routing needs and checks only that: `model` is a
// non-empty string and `stream` a boolean. The upstream validates the
// rest, as it would for a direct call.
func (req *chatRequest) parse(body []byte) *apiError {
	if err := json.Unmarshal(body, &req.fields); err != nil {
		return errJSON(err)
	}
	req.size = len(body)
	raw, ok := req.fields["model"]
	if !ok || bytes.Equal(raw, []byte("null")) {
		return errInvalid("model", codeMissingParameter, "You must provide a model parameter.")
	}
	if err := json.Unmarshal(raw, &req.model); err != nil {
		return errInvalid("model", codeInvalidType, "Invalid type for 'model': expected a string.")
	}
	if req.model == "" {
		return errInvalid("model", codeMissingParameter, "You must provide a model parameter.")
	}
	if raw, ok := req.fields["stream"]; ok && !bytes.Equal(raw, []byte("null")) {
		if err := json.Unmarshal(raw, &req.stream); err != nil {
			return errInvalid("stream", codeInvalidType, "Invalid type for 'stream': expected a boolean.")
		}
	}
	return nil
}

// appendUpstreamBody appends the request as the upstream gets it: the
// upstream's model name, and the deployment's defaults for the fields the
// caller left out. Every spelling of `model` is dropped, since upstreams
// that decode JSON case-insensitively would take "Model" over the pinned
// name. It is written by hand: every value is already valid JSON, so there
// is nothing to re-encode, only to join.
func (req *chatRequest) appendUpstreamBody(buf []byte, d *deployment.Deployment) []byte {
	buf = append(buf, `{"model":`...)
	buf = append(buf, d.UpstreamModelJSON...)
	for k, v := range req.fields {
		if chat.IsModelKey(k) {
			continue
		}
		buf = appendMember(buf, k, v)
	}
	for k, v := range d.Defaults {
		if _, ok := req.fields[k]; !ok && !chat.IsModelKey(k) {
			buf = appendMember(buf, k, v)
		}
	}
	return append(buf, '}')
}

func appendMember(buf []byte, k string, v json.RawMessage) []byte {
	buf = append(buf, ',')
	buf = appendJSONString(buf, k)
	buf = append(buf, ':')
	return append(buf, v...)
}

// appendJSONString quotes s as a JSON string. Keys come out of
// encoding/json, so they are valid UTF-8; only quotes, backslashes and
// control characters need escaping.
func appendJSONString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			buf = append(buf, '\\', c)
		case c < 0x20:
			buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			buf = append(buf, c)
		}
	}
	return append(buf, '"')
}

// usage is the token count an upstream reports.
type usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
}

// findUsage decodes the last "usage" object of a reply or stream chunk
// without decoding the rest: upstreams put it last, and a full decode of
// every reply would cost more than the rest of the request's handling.
func findUsage(b []byte) (usage, bool) {
	var u usage
	i := bytes.LastIndex(b, []byte(`"usage"`))
	if i < 0 {
		return u, false
	}
	rest := bytes.TrimLeft(b[i+len(`"usage"`):], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return u, false
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	n := objectLen(rest)
	if n == 0 || json.Unmarshal(rest[:n], &u) != nil {
		return u, false
	}
	return u, true
}

// objectLen is the length of the JSON object that b starts with, or 0 when
// b does not start with a whole one. It only matches braces outside
// strings; json.Unmarshal checks the rest.
func objectLen(b []byte) int {
	if len(b) == 0 || b[0] != '{' {
		return 0
	}
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString && c == '\\':
			i++ // skip the escaped character
		case c == '"':
			inString = !inString
		case inString:
		case c == '{':
			depth++
		case c == '}':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return 0
}

// chatCompletions routes a chat completion to the upstream of the caller's
// model deployment and relays the reply, streamed or whole, counting its
// tokens.
func (g *Gateway) chatCompletions(w http.ResponseWriter, r *http.Request) {
	c := callerFrom(r.Context())
	project, depName := c.projectID.String(), ""
	status := 0
	defer func() {
		g.metrics.requests.WithLabelValues(project, depName, endpointChat, strconv.Itoa(status)).Inc()
		g.metrics.latency.WithLabelValues(project, depName, endpointChat).Observe(time.Since(c.arrived).Seconds())
	}()
	fail := func(e *apiError, typ string) {
		status = e.Status
		g.metrics.errors.WithLabelValues(project, depName, typ).Inc()
		writeAPIError(w, e)
	}

	var req chatRequest
	if aerr := g.readJSON(w, r, &req); aerr != nil {
		typ := "invalid_request"
		switch aerr.Status {
		case http.StatusRequestEntityTooLarge:
			typ = "request_too_large"
		case http.StatusServiceUnavailable:
			typ = "server_busy"
		}
		fail(aerr, typ)
		return
	}
	d, err := g.deployments.Model(r.Context(), c.projectID, req.model)
	switch {
	case errors.Is(err, deployment.ErrNotFound):
		fail(errModelNotFound(req.model), "model_not_found")
		return
	case err != nil:
		g.log.Error("load deployment", "err", err, "project", project, "model", req.model)
		fail(errInternal(), "internal")
		return
	}
	depName = d.Name

	// Not pooled: the transport may still be writing it after the reply
	// is in, when an upstream answers before reading the whole request.
	upBody := req.appendUpstreamBody(make([]byte, 0, req.size+len(d.UpstreamModelJSON)+64*len(d.Defaults)+16), d)
	// The caller's context: a client that goes away cancels the upstream
	// request at once.
	ureq, err := http.NewRequestWithContext(r.Context(), http.MethodPost, d.ChatURL, bytes.NewReader(upBody))
	if err != nil {
		g.log.Error("build upstream request", "err", err, "url", d.ChatURL)
		fail(errInternal(), "internal")
		return
	}
	chat.SetHeaders(ureq.Header, req.stream, d.APIKey)
	upStart := time.Now()
	resp, err := g.client.Do(ureq)
	if err != nil {
		if r.Context().Err() != nil {
			status = 499 // the client closed the request
			g.metrics.errors.WithLabelValues(project, depName, "client_closed").Inc()
			return
		}
		if isTimeout(err) {
			fail(&apiError{Status: http.StatusGatewayTimeout, Type: typeUpstream, Code: codeUpstreamTimeout,
				Message: "The upstream of model '" + req.model + "' did not answer in time."}, "upstream_timeout")
			return
		}
		if egress.IsRefused(err) {
			// The error names the address, never the URL with its
			// userinfo or query.
			g.log.Warn("upstream refused by egress policy", "err", errors.Unwrap(err), "project", project, "deployment", depName)
			fail(&apiError{Status: http.StatusBadGateway, Type: typeUpstream, Code: codeUpstreamRefused,
				Message: "The upstream of model '" + req.model + "' resolves to an address the egress policy refuses."}, "upstream_refused")
			return
		}
		g.log.Warn("upstream unreachable", "err", err, "project", project, "deployment", depName)
		fail(&apiError{Status: http.StatusBadGateway, Type: typeUpstream, Code: codeUpstreamUnreachable,
			Message: "The upstream of model '" + req.model + "' could not be reached."}, "upstream_unreachable")
		return
	}
	defer resp.Body.Close()
	g.metrics.upstream.WithLabelValues(project, depName).Observe(time.Since(upStart).Seconds())
	status = resp.StatusCode
	if resp.StatusCode >= 400 {
		g.metrics.errors.WithLabelValues(project, depName, "upstream_"+strconv.Itoa(resp.StatusCode/100)+"xx").Inc()
	}

	if req.stream && resp.StatusCode < 300 && isEventStream(resp.Header.Get("Content-Type")) {
		g.relayStream(w, resp, project, depName)
		return
	}
	g.relayBody(w, resp, project, depName)
}

// relayBody passes a whole response back with its status, counting tokens.
func (g *Gateway) relayBody(w http.ResponseWriter, resp *http.Response, project, dep string) {
	buf := g.buffers.get()
	defer g.buffers.put(buf)
	buf.Grow(presize(resp.ContentLength))
	_, err := buf.ReadFrom(io.LimitReader(resp.Body, maxUpstreamBody))
	b := buf.Bytes()
	if err != nil {
		g.metrics.errors.WithLabelValues(project, dep, "upstream_read").Inc()
		writeAPIError(w, &apiError{Status: http.StatusBadGateway, Type: typeUpstream, Code: codeUpstreamUnreachable,
			Message: "The upstream closed the connection before its reply was complete."})
		return
	}
	if resp.StatusCode < 300 {
		g.countUsage(b, project, dep)
	}
	h := w.Header()
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/json"
	}
	h.Set("Content-Type", ct)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	copyHeader(h, resp.Header, "X-Request-Id", "Openai-Processing-Ms", "Retry-After")
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(b)
}

// relayStream passes server-sent events through one event at a time,
// flushing after each, and counts the usage chunk if the upstream sends one.
func (g *Gateway) relayStream(w http.ResponseWriter, resp *http.Response, project, dep string) {
	h := w.Header()
	h.Set("Content-Type", resp.Header.Get("Content-Type"))
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	copyHeader(h, resp.Header, "X-Request-Id")
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	_ = rc.Flush()

	br := bufio.NewReaderSize(resp.Body, 32<<10)
	dataPrefix := []byte("data:")
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// An event line longer than the buffer: pass the piece on and
			// keep reading the rest of the line.
			if _, werr := w.Write(line); werr != nil {
				return
			}
			continue
		}
		if len(line) > 0 {
			if bytes.HasPrefix(line, dataPrefix) {
				g.countUsage(line, project, dep)
			}
			if _, werr := w.Write(line); werr != nil {
				return // the client went away; returning closes the upstream
			}
			// A blank line ends an event.
			if len(bytes.TrimSpace(line)) == 0 {
				if rc.Flush() != nil {
					return
				}
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				g.metrics.errors.WithLabelValues(project, dep, "upstream_stream").Inc()
			}
			_ = rc.Flush()
			return
		}
	}
}

func (g *Gateway) countUsage(b []byte, project, dep string) {
	u, ok := findUsage(b)
	if !ok {
		return
	}
	if u.PromptTokens > 0 {
		g.metrics.tokens.WithLabelValues(project, dep, "in").Add(float64(u.PromptTokens))
	}
	if u.CompletionTokens > 0 {
		g.metrics.tokens.WithLabelValues(project, dep, "out").Add(float64(u.CompletionTokens))
	}
}

func copyHeader(dst, src http.Header, names ...string) {
	for _, n := range names {
		if v := src.Get(n); v != "" {
			dst.Set(n, v)
		}
	}
}

func isEventStream(ct string) bool {
	return len(ct) >= 17 && ct[:17] == "text/event-stream"
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
