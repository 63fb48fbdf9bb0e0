package connection_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/connection"
)

// secret is a credential value that must never show in an error or result.
const secret = "s3cr3t-token-value-0123456789"

type echoIn struct {
	Message string `json:"message" jsonschema:"what to echo"`
}

// newMCPServer is an MCP server with tools that answer in every way a
// client must read: text, isError, an image, structured content only, and
// a tool that echoes back the request's Authorization header (a far end
// that leaks a credential).
func newMCPServer(pageSize int) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "test", Version: "1"}, &mcp.ServerOptions{PageSize: pageSize})
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "Echoes the message"}, func(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "echo: " + in.Message}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "fail", Description: "Always fails"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return nil, nil, errors.New("the widget is broken")
	})
	mcp.AddTool(s, &mcp.Tool{Name: "picture", Description: "A picture and a caption"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{
			&mcp.TextContent{Text: "a red dot"},
			&mcp.ImageContent{MIMEType: "image/png", Data: make([]byte, 1234)},
		}}, nil, nil
	})
	s.AddTool(&mcp.Tool{Name: "structured", Description: "Structured content only", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{}, StructuredContent: map[string]any{"temperature": 21}}, nil
		})
	s.AddTool(&mcp.Tool{Name: "whoami", Description: "Echoes the Authorization header", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			var auth string
			if req.Extra != nil {
				auth = req.Extra.Header.Get("Authorization")
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "you sent " + auth}}}, nil
		})
	return s
}

// requireAuth refuses requests without the Authorization header want.
func requireAuth(want string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != want {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// serveMCP serves s over transport, optionally behind an Authorization
// check, and returns the endpoint.
func serveMCP(t *testing.T, s *mcp.Server, transport, auth string) string {
	t.Helper()
	var h http.Handler
	if transport == connection.TransportSSE {
		h = mcp.NewSSEHandler(func(*http.Request) *mcp.Server { return s }, nil)
	} else {
		h = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	}
	if auth != "" {
		h = requireAuth(auth, h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/mcp"
}

func mcpConnection(url, transport string, headers map[string]string) connection.Connection {
	return connection.Connection{
		Name:        "tools",
		Kind:        connection.KindMCP,
		Config:      connection.Config{URL: url, Transport: transport},
		Credentials: connection.Credentials{Headers: headers},
	}
}

func open(t *testing.T, c connection.Connection) connection.Client {
	t.Helper()
	client, err := connection.Open(t.Context(), c, connection.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// requireReason asserts err is an *Error with reason, and that no error
// text holds the secret.
func requireReason(t *testing.T, err error, reason string) *connection.Error {
	t.Helper()
	require.Error(t, err)
	var e *connection.Error
	require.ErrorAs(t, err, &e, "error %v is not a *connection.Error", err)
	require.Equal(t, reason, e.Reason, "error: %v", err)
	t.Logf("%s (HTTP %d): %v", e.Reason, e.Status, err)
	require.NotContains(t, err.Error(), secret)
	require.NotContains(t, err.Error(), "r3t-token")
	return e
}

func toolNames(tools []connection.Tool) []string {
	names := make([]string, len(tools))
	for i, t := range tools {
		names[i] = t.Name
	}
	return names
}

func TestMCP(t *testing.T) {
	t.Parallel()
	for _, transport := range []string{connection.TransportStreamableHTTP, connection.TransportSSE} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			headers := map[string]string{"Authorization": "Bearer " + secret}
			url := serveMCP(t, newMCPServer(2), transport, "Bearer "+secret)
			client := open(t, mcpConnection(url, transport, headers))
			ctx := t.Context()

			// Page size 2: five tools take three pages.
			tools, err := client.Tools(ctx)
			require.NoError(t, err)
			require.ElementsMatch(t, []string{"echo", "fail", "picture", "structured", "whoami"}, toolNames(tools))
			for _, tool := range tools {
				var schema map[string]any
				require.NoError(t, json.Unmarshal(tool.InputSchema, &schema), tool.Name)
				require.Equal(t, "object", schema["type"], tool.Name)
				if tool.Name == "echo" {
					require.Equal(t, "Echoes the message", tool.Description)
					require.Contains(t, schema["properties"], "message")
				}
			}

			res, err := client.Call(ctx, "echo", json.RawMessage(`{"message":"hi"}`))
			require.NoError(t, err)
			require.Equal(t, connection.Result{Text: "echo: hi"}, res)

			res, err = client.Call(ctx, "fail", nil)
			require.NoError(t, err)
			require.True(t, res.IsError)
			require.Contains(t, res.Text, "the widget is broken")

			res, err = client.Call(ctx, "picture", json.RawMessage(`{}`))
			require.NoError(t, err)
			require.Equal(t, "a red dot\n[image image/png, 1234 bytes]", res.Text)

			res, err = client.Call(ctx, "structured", json.RawMessage(`{}`))
			require.NoError(t, err)
			require.JSONEq(t, `{"temperature":21}`, res.Text)

			// A far end that echoes the credential back: redacted.
			res, err = client.Call(ctx, "whoami", json.RawMessage(`{}`))
			require.NoError(t, err)
			require.NotContains(t, res.Text, secret)
			if transport == connection.TransportStreamableHTTP { // the SSE handler passes no headers to tools
				require.Equal(t, "you sent [redacted]", res.Text)
			}

			_, err = client.Call(ctx, "nope", json.RawMessage(`{}`))
			requireReason(t, err, connection.ReasonRejected)

			_, err = client.Call(ctx, "echo", json.RawMessage(`["hi"]`))
			requireReason(t, err, connection.ReasonRejected)
		})
	}
}

func TestMCPUnknownToolBeforeListing(t *testing.T) {
	t.Parallel()
	client := open(t, mcpConnection(serveMCP(t, newMCPServer(0), "", ""), "", nil))
	_, err := client.Call(t.Context(), "nope", json.RawMessage(`{}`))
	requireReason(t, err, connection.ReasonRejected)
	// Arguments that break the tool's schema: the server refuses them.
	res, err := client.Call(t.Context(), "echo", json.RawMessage(`{"message": 7}`))
	require.NoError(t, err, "the server's refusal is a result the model reads")
	require.True(t, res.IsError, "result %+v", res)
}

func TestMCPUnauthorized(t *testing.T) {
	t.Parallel()
	for _, transport := range []string{connection.TransportStreamableHTTP, connection.TransportSSE} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			url := serveMCP(t, newMCPServer(0), transport, "Bearer right-token-value")
			for name, headers := range map[string]map[string]string{
				"missing": nil,
				"wrong":   {"Authorization": "Bearer " + secret},
			} {
				_, err := connection.Open(t.Context(), mcpConnection(url, transport, headers), connection.Options{})
				e := requireReason(t, err, connection.ReasonUnauthorized)
				require.Equal(t, http.StatusUnauthorized, e.Status, name)
				require.False(t, e.Retryable())
				require.Contains(t, e.Message, url, name)
			}
		})
	}
}

func TestMCPUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := fmt.Sprintf("http://%s/mcp", l.Addr())
	require.NoError(t, l.Close()) // a closed port: connection refused

	for _, transport := range []string{connection.TransportStreamableHTTP, connection.TransportSSE} {
		_, err := connection.Open(t.Context(), mcpConnection(url, transport, map[string]string{"X-Api-Key": secret}), connection.Options{})
		e := requireReason(t, err, connection.ReasonUnreachable)
		require.True(t, e.Retryable())
		require.Equal(t, "MCP server at "+url+" could not be reached: connection refused", e.Message, transport)
	}
}

func TestMCPUnavailable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down for maintenance, your key was "+r.Header.Get("X-Api-Key"), http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	_, err := connection.Open(t.Context(), mcpConnection(srv.URL+"/mcp", "", map[string]string{"X-Api-Key": secret}), connection.Options{})
	e := requireReason(t, err, connection.ReasonUnavailable)
	require.Equal(t, http.StatusServiceUnavailable, e.Status)
	require.True(t, e.Retryable())
}

func TestMCPNotFound(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	_, err := connection.Open(t.Context(), mcpConnection(srv.URL+"/wrong", "", nil), connection.Options{})
	e := requireReason(t, err, connection.ReasonRejected)
	require.Equal(t, http.StatusNotFound, e.Status)
}

func TestMCPHeadersStayWithTheServer(t *testing.T) {
	t.Parallel()
	// The credential headers go to the MCP server's origin and nowhere
	// else: an SSE server naming a message endpoint elsewhere is refused
	// before any request goes there.
	leaked := make(chan string, 10)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Get("X-Api-Key"); v != "" {
			leaked <- v
		}
		http.Error(w, "no", http.StatusUnauthorized)
	}))
	t.Cleanup(other.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "event: endpoint\ndata: %s/messages\n\n", other.URL)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err := connection.Open(ctx, mcpConnection(srv.URL+"/sse", connection.TransportSSE, map[string]string{"X-Api-Key": secret}), connection.Options{})
	requireReason(t, err, connection.ReasonRejected)
	require.Empty(t, leaked)
}

func TestMCPRedactsEveryPartOfAHeader(t *testing.T) {
	t.Parallel()
	// A server that quotes the token in its error: the error says
	// [redacted] instead.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID json.RawMessage `json:"id"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		if req.ID == nil {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32600,"message":"token %s is not allowed here"}}`, req.ID, token)
	}))
	t.Cleanup(srv.Close)
	_, err := connection.Open(t.Context(), mcpConnection(srv.URL, "", map[string]string{"Authorization": "Bearer " + secret}), connection.Options{})
	e := requireReason(t, err, connection.ReasonRejected)
	require.Contains(t, e.Message, "token [redacted] is not allowed here")
}

func TestMCPCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := connection.Open(ctx, mcpConnection(serveMCP(t, newMCPServer(0), "", ""), "", nil), connection.Options{})
	requireReason(t, err, connection.ReasonUnreachable)
	require.ErrorIs(t, err, context.Canceled)
}
