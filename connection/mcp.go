package connection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// maxToolPages bounds tools/list pagination: a server whose cursors never
// end must not keep a client listing forever.
const maxToolPages = 100

// mcpClient is a session with a remote MCP server. Not safe for concurrent
// use: the reason of a failure is read from the last response's status.
type mcpClient struct {
	url     string
	session *mcp.ClientSession
	t       *credentialTransport
	red     redactor
	// known holds the tool names of the last Tools, so a call of an
	// unknown tool is refused the same way whatever the server does.
	known map[string]bool
	// cancelStream ends the context of the SSE transport's event stream.
	cancelStream context.CancelFunc
}

func openMCP(ctx context.Context, c Connection, o Options, red redactor) (*mcpClient, error) {
	hc := o.HTTPClient
	if hc == nil && c.Config.Transport == TransportSSE {
		// The event stream lasts the session: a whole-request timeout
		// would cut it. Bound the wait for headers instead.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = DefaultTimeout
		hc = &http.Client{Transport: t}
	}
	client, t := newHTTPClient(hc, c.Config.URL, headerMap(c.Credentials.Headers))
	t.postsStayHome = c.Config.Transport == TransportSSE
	m := &mcpClient{url: c.Config.URL, t: t, red: red}

	var transport mcp.Transport
	if c.Config.Transport == TransportSSE {
		transport = &mcp.SSEClientTransport{Endpoint: c.Config.URL, HTTPClient: client}
	} else {
		transport = &mcp.StreamableClientTransport{
			Endpoint:   c.Config.URL,
			HTTPClient: client,
			// Temporal's retry policy decides on retries, not the SDK.
			MaxRetries: -1,
			// Tools and calls need no messages the server starts.
			DisableStandaloneSSE: true,
		}
	}
	// The SSE stream lives as long as the session, not as long as ctx:
	// ctx bounds only the connecting.
	streamCtx, cancelStream := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancelStream)
	conn, err := transport.Connect(streamCtx)
	stop()
	if err != nil {
		cancelStream()
		t.closeIdle()
		return nil, m.fail(ctx, "connecting", err)
	}
	// A server that never answers the handshake must not hold Open
	// forever when ctx has no deadline.
	hsCtx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	info := &mcp.Implementation{Name: "bud", Version: "1"} // how bud introduces itself
	session, err := mcp.NewClient(info, nil).Connect(hsCtx, connectedTransport{conn}, nil)
	if err != nil {
		_ = conn.Close()
		cancelStream()
		t.closeIdle()
		return nil, m.fail(hsCtx, "initializing the session", err)
	}
	m.session, m.cancelStream = session, cancelStream
	return m, nil
}

// connectedTransport hands the SDK a connection already made, so that
// connecting and the handshake can have contexts of their own.
type connectedTransport struct{ conn mcp.Connection }

func (t connectedTransport) Connect(context.Context) (mcp.Connection, error) { return t.conn, nil }

// Tools lists the server's tools, following pagination cursors.
func (m *mcpClient) Tools(ctx context.Context) ([]Tool, error) {
	var tools []Tool
	known := map[string]bool{}
	params := &mcp.ListToolsParams{}
	seen := map[string]bool{}
	for page := 0; ; page++ {
		res, err := m.session.ListTools(ctx, params)
		if err != nil {
			return nil, m.fail(ctx, "listing tools", err)
		}
		for _, t := range res.Tools {
			tools = append(tools, Tool{
				Name:        t.Name,
				Description: m.red.redact(t.Description),
				InputSchema: objectSchemaOf(t.InputSchema),
			})
			known[t.Name] = true
		}
		if res.NextCursor == "" {
			m.known = known
			return tools, nil
		}
		if seen[res.NextCursor] || page+1 >= maxToolPages {
			return nil, m.red.errorf(ReasonUnavailable, 0, "MCP server at %s keeps paginating tools/list (over %d pages or a repeated cursor)", m.url, maxToolPages)
		}
		seen[res.NextCursor] = true
		params = &mcp.ListToolsParams{Cursor: res.NextCursor}
	}
}

// Call calls a tool. A result with isError is a Result with IsError, not
// an error.
func (m *mcpClient) Call(ctx context.Context, name string, arguments json.RawMessage) (Result, error) {
	if m.known != nil && !m.known[name] {
		return Result{}, unknownTool(m.red, KindMCP, name)
	}
	args, _, e := argumentsObject(m.red, name, arguments)
	if e != nil {
		return Result{}, e
	}
	res, err := m.session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		return Result{}, m.fail(ctx, "calling tool "+name, err)
	}
	// Redacted before it is cut, so a cut cannot split a secret and leave
	// its first part unredacted.
	return Result{Text: cutText(m.red.redact(contentText(res)), "the tool's output"), IsError: res.IsError}, nil
}

// Close ends the session.
func (m *mcpClient) Close() error {
	defer m.t.closeIdle()
	defer m.cancelStream()
	if err := m.session.Close(); err != nil && !errors.Is(err, mcp.ErrConnectionClosed) && !errors.Is(err, mcp.ErrSessionMissing) {
		return m.fail(context.Background(), "closing the session", err)
	}
	return nil
}

// fail turns an SDK error into an *Error. The SDK reports an HTTP failure
// as text; the status of the last response tells its reason.
func (m *mcpClient) fail(ctx context.Context, doing string, err error) *Error {
	where := "MCP server at " + m.url
	if e := m.red.contextError(ctx, where+" did not answer while "+doing); e != nil {
		return e
	}
	if o := m.t.refusedOrigin(); o != "" {
		return m.red.errorf(ReasonRejected, 0, "%s named a message endpoint at another origin (%s) while %s: refused", where, o, doing)
	}
	status := m.t.lastStatus()
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return m.red.errorf(ReasonUnauthorized, status, "%s refused the credentials (HTTP %d %s) while %s", where, status, http.StatusText(status), doing)
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500:
		return m.red.errorf(ReasonUnavailable, status, "%s is unavailable (HTTP %d %s) while %s", where, status, http.StatusText(status), doing)
	}
	if isTransportError(err) {
		return m.red.errorf(ReasonUnreachable, 0, "%s could not be reached: %s", where, transportText(err))
	}
	if werr := wireError(err); werr != nil {
		if werr.Code == jsonrpc.CodeInternalError {
			return m.red.errorf(ReasonUnavailable, 0, "%s failed while %s: %s", where, doing, werr.Message)
		}
		return m.red.errorf(ReasonRejected, 0, "%s refused the request while %s: %s (JSON-RPC error %d)", where, doing, werr.Message, werr.Code)
	}
	switch {
	case status == http.StatusNotFound:
		if errors.Is(err, mcp.ErrSessionMissing) {
			return m.red.errorf(ReasonUnavailable, status, "%s ended the session while %s", where, doing)
		}
		return m.red.errorf(ReasonRejected, status, "%s answered HTTP 404 Not Found while %s: is the URL right?", where, doing)
	case status >= 400:
		return m.red.errorf(ReasonRejected, status, "%s answered HTTP %d %s while %s", where, status, http.StatusText(status), doing)
	}
	return m.red.errorf(ReasonUnavailable, 0, "%s broke off while %s: %s", where, doing, err)
}

// codeRejectedByTransport is the code of the SDK's own error for a message
// its transport did not deliver; the cause is elsewhere in the chain.
const codeRejectedByTransport = -32005

// wireError finds the JSON-RPC error the server answered in err's tree.
func wireError(err error) *jsonrpc.Error {
	var werr *jsonrpc.Error
	if errors.As(err, &werr) && werr.Code != codeRejectedByTransport {
		return werr
	}
	var children []error
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		if c := u.Unwrap(); c != nil {
			children = append(children, c)
		}
	case interface{ Unwrap() []error }:
		children = u.Unwrap()
	}
	for _, c := range children {
		if w := wireError(c); w != nil {
			return w
		}
	}
	return nil
}

// objectSchemaOf returns a tool's input schema as JSON: an object schema,
// {"type":"object"} when the server gave none.
func objectSchemaOf(schema any) json.RawMessage {
	def := json.RawMessage(`{"type":"object"}`)
	if schema == nil {
		return def
	}
	raw, err := json.Marshal(schema)
	if err != nil {
		return def
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil || obj == nil {
		return def
	}
	if _, ok := obj["type"]; !ok {
		obj["type"] = json.RawMessage(`"object"`)
		if raw, err = json.Marshal(obj); err != nil {
			return def
		}
	}
	return raw
}

// contentText turns a tool result into the text a model reads: text items
// joined by "\n", other kinds summarised, the structured content as JSON
// when there is no text.
func contentText(res *mcp.CallToolResult) string {
	var parts []string
	hasText := false
	for _, c := range res.Content {
		switch c := c.(type) {
		case *mcp.TextContent:
			hasText = true
			parts = append(parts, c.Text)
		case *mcp.ImageContent:
			parts = append(parts, fmt.Sprintf("[image %s, %d bytes]", c.MIMEType, len(c.Data)))
		case *mcp.AudioContent:
			parts = append(parts, fmt.Sprintf("[audio %s, %d bytes]", c.MIMEType, len(c.Data)))
		case *mcp.ResourceLink:
			parts = append(parts, fmt.Sprintf("[resource link %s%s]", c.URI, labelOf(c.Name, c.MIMEType)))
		case *mcp.EmbeddedResource:
			parts = append(parts, embeddedText(c.Resource))
		default:
			raw, _ := json.Marshal(c)
			parts = append(parts, string(raw))
		}
	}
	if !hasText && res.StructuredContent != nil {
		if raw, err := json.Marshal(res.StructuredContent); err == nil {
			parts = append(parts, string(raw))
		}
	}
	return strings.Join(parts, "\n")
}

func embeddedText(r *mcp.ResourceContents) string {
	switch {
	case r == nil:
		return "[resource]"
	case r.Text != "":
		return fmt.Sprintf("[resource %s%s]\n%s", r.URI, labelOf("", r.MIMEType), r.Text)
	default:
		return fmt.Sprintf("[resource %s%s, %d bytes]", r.URI, labelOf("", r.MIMEType), len(r.Blob))
	}
}

// labelOf is " name (mime)" with whichever parts are there.
func labelOf(name, mime string) string {
	s := ""
	if name != "" {
		s += " " + name
	}
	if mime != "" {
		s += " (" + mime + ")"
	}
	return s
}
