package connection_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
	"github.com/budhq/bud/connection"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	mcpOK := connection.Connection{Name: "tools", Kind: connection.KindMCP, Config: connection.Config{URL: "https://mcp.example.com/mcp"}}
	slackOK := connection.Connection{Name: "slack", Kind: connection.KindSlack, Credentials: connection.Credentials{Token: "xoxb-1"}}
	notionOK := connection.Connection{Name: "notion", Kind: connection.KindNotion, Credentials: connection.Credentials{Token: "secret_1"}}
	op := connection.Operation{
		Name: "get_user", Method: "GET", Path: "/users/{id}",
		Parameters: json.RawMessage(`{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}`),
	}
	httpOK := connection.Connection{Name: "api", Kind: connection.KindHTTP, Config: connection.Config{
		BaseURL: "https://api.example.com/v1", Operations: []connection.Operation{op},
	}}
	with := func(c connection.Connection, change func(*connection.Connection)) connection.Connection {
		c.Config.Operations = append([]connection.Operation(nil), c.Config.Operations...)
		change(&c)
		return c
	}
	withOp := func(change func(*connection.Operation)) connection.Connection {
		return with(httpOK, func(c *connection.Connection) { change(&c.Config.Operations[0]) })
	}

	for _, tc := range []struct {
		name string
		c    connection.Connection
		want map[string]string // field → a word of its message; nil for valid
	}{
		{"mcp", mcpOK, nil},
		{"mcp sse", with(mcpOK, func(c *connection.Connection) { c.Config.Transport = "sse" }), nil},
		{"mcp with headers", with(mcpOK, func(c *connection.Connection) {
			c.Credentials.Headers = map[string]string{"Authorization": "Bearer x", "X-Api-Key": "k"}
		}), nil},
		{"slack", slackOK, nil},
		{"slack with base url", with(slackOK, func(c *connection.Connection) { c.Config.BaseURL = "http://127.0.0.1:8080/api" }), nil},
		{"notion", notionOK, nil},
		{"http", httpOK, nil},
		{"http path with a trailing slash", withOp(func(o *connection.Operation) { o.Path = "/users/{id}/" }), nil},
		{"http path with dots inside a segment", withOp(func(o *connection.Operation) { o.Path = "/users/{id}/v1..2" }), nil},
		{"http without parameters", with(httpOK, func(c *connection.Connection) {
			c.Config.Operations = []connection.Operation{{Name: "ping", Method: "POST", Path: "/ping"}}
		}), nil},

		{"nothing", connection.Connection{}, map[string]string{"name": "required", "kind": "required"}},
		{"bad name and kind", connection.Connection{Name: "no spaces!", Kind: "ftp"}, map[string]string{"name": "letter", "kind": "one of"}},
		{"mcp without url", with(mcpOK, func(c *connection.Connection) { c.Config.URL = "" }), map[string]string{"config.url": "required"}},
		{"mcp relative url", with(mcpOK, func(c *connection.Connection) { c.Config.URL = "/mcp" }), map[string]string{"config.url": "absolute"}},
		{"mcp ftp url", with(mcpOK, func(c *connection.Connection) { c.Config.URL = "ftp://example.com/mcp" }), map[string]string{"config.url": "http"}},
		{"mcp url with a password", with(mcpOK, func(c *connection.Connection) { c.Config.URL = "https://u:p@example.com/mcp" }), map[string]string{"config.url": "credentials"}},
		{"mcp transport", with(mcpOK, func(c *connection.Connection) { c.Config.Transport = "websocket" }), map[string]string{"config.transport": "streamable_http"}},
		{"mcp with what is not its", with(mcpOK, func(c *connection.Connection) {
			c.Config.BaseURL = "https://x.example.com"
			c.Config.Operations = []connection.Operation{op}
			c.Credentials.Token = "t"
		}), map[string]string{"config.base_url": "does not apply", "config.operations": "does not apply", "credentials.token": "does not apply"}},
		{"headers", with(mcpOK, func(c *connection.Connection) {
			c.Credentials.Headers = map[string]string{"Bad Name": "v", "X-Split": "a\r\nInjected: 1", "X-Empty": "", "Content-Length": "3"}
		}), map[string]string{
			"credentials.headers.Bad Name":       "header name",
			"credentials.headers.X-Split":        "line breaks",
			"credentials.headers.X-Empty":        "empty",
			"credentials.headers.Content-Length": "set by the client",
		}},
		{"header twice, in two cases, and over-long", with(mcpOK, func(c *connection.Connection) {
			c.Credentials.Headers = map[string]string{"X-Key": "a", "x-key": "b", "X-Long": strings.Repeat("v", 4097)}
		}), map[string]string{
			"credentials.headers.x-key":  "duplicates credentials.headers.X-Key",
			"credentials.headers.X-Long": "at most 4096",
		}},
		{"slack token over-long", with(slackOK, func(c *connection.Connection) { c.Credentials.Token = strings.Repeat("t", 4097) }), map[string]string{"credentials.token": "at most 4096"}},
		{"mcp url over-long", with(mcpOK, func(c *connection.Connection) { c.Config.URL = "https://x.example.com/" + strings.Repeat("p", 2048) }), map[string]string{"config.url": "at most 2048"}},
		{"slack without token", with(slackOK, func(c *connection.Connection) { c.Credentials.Token = "" }), map[string]string{"credentials.token": "required"}},
		{"notion token with a space", with(notionOK, func(c *connection.Connection) { c.Credentials.Token = "secret 1" }), map[string]string{"credentials.token": "spaces"}},
		{"slack with what is not its", with(slackOK, func(c *connection.Connection) {
			c.Config.URL = "https://x.example.com"
			c.Config.Transport = "sse"
			c.Config.Operations = []connection.Operation{op}
			c.Credentials.Headers = map[string]string{"X-A": "b"}
		}), map[string]string{"config.url": "does not apply", "config.transport": "does not apply", "config.operations": "does not apply", "credentials.headers": "does not apply"}},
		{"notion base url", with(notionOK, func(c *connection.Connection) { c.Config.BaseURL = "api.notion.com" }), map[string]string{"config.base_url": "absolute"}},
		{"http without base url or operations", connection.Connection{Name: "api", Kind: connection.KindHTTP}, map[string]string{"config.base_url": "required", "config.operations": "at least one"}},
		{"http base url with a query", with(httpOK, func(c *connection.Connection) { c.Config.BaseURL = "https://api.example.com/?k=1" }), map[string]string{"config.base_url": "query"}},
		{"http with what is not its", with(httpOK, func(c *connection.Connection) {
			c.Config.URL = "https://x.example.com"
			c.Credentials.Token = "t"
		}), map[string]string{"config.url": "does not apply", "credentials.token": "does not apply"}},
		{"operation without anything", with(httpOK, func(c *connection.Connection) {
			c.Config.Operations = []connection.Operation{{}}
		}), map[string]string{"config.operations[0].name": "required", "config.operations[0].method": "required", "config.operations[0].path": "required"}},
		{"operation name", withOp(func(o *connection.Operation) { o.Name = "get user" }), map[string]string{"config.operations[0].name": "64"}},
		{"operation name too long", withOp(func(o *connection.Operation) { o.Name = strings.Repeat("a", 65) }), map[string]string{"config.operations[0].name": "64"}},
		{"duplicate operation names", with(httpOK, func(c *connection.Connection) {
			c.Config.Operations = append(c.Config.Operations, op)
		}), map[string]string{"config.operations[1].name": "duplicates config.operations[0].name"}},
		{"operation method", withOp(func(o *connection.Operation) { o.Method = "get" }), map[string]string{"config.operations[0].method": "GET"}},
		{"operation path", withOp(func(o *connection.Operation) { o.Path = "users/{id}" }), map[string]string{"config.operations[0].path": `"/"`}},
		{"operation path with a query", withOp(func(o *connection.Operation) { o.Path = "/users?x=1" }), map[string]string{"config.operations[0].path": "query"}},
		{"operation path unbalanced", withOp(func(o *connection.Operation) { o.Path = "/users/{id" }), map[string]string{"config.operations[0].path": "unbalanced"}},
		{"operation path with ..", withOp(func(o *connection.Operation) { o.Path = "/users/../admin/{id}" }), map[string]string{"config.operations[0].path": `".."`}},
		{"operation path with escaped ..", withOp(func(o *connection.Operation) { o.Path = "/users/%2e%2E/{id}" }), map[string]string{"config.operations[0].path": `".."`}},
		{"operation path with .", withOp(func(o *connection.Operation) { o.Path = "/./users/{id}" }), map[string]string{"config.operations[0].path": `"."`}},
		{"operation path with an empty segment", withOp(func(o *connection.Operation) { o.Path = "//users/{id}" }), map[string]string{"config.operations[0].path": "empty segment"}},
		{"operation placeholder not a parameter", withOp(func(o *connection.Operation) { o.Path = "/users/{user_id}" }), map[string]string{"config.operations[0].path": "{user_id}"}},
		{"parameters not an object", withOp(func(o *connection.Operation) { o.Parameters = json.RawMessage(`[1]`) }), map[string]string{"config.operations[0].parameters": "JSON object"}},
		{"parameters not an object schema", withOp(func(o *connection.Operation) { o.Parameters = json.RawMessage(`{"type":"string"}`) }), map[string]string{"config.operations[0].parameters": `"type": "object"`}},
		{"parameters that do not compile", withOp(func(o *connection.Operation) {
			o.Parameters = json.RawMessage(`{"type":"object","properties":{"id":{"type":"strin"}}}`)
		}), map[string]string{"config.operations[0].parameters": "not a valid JSON Schema"}},
		{"parameters with a remote ref", withOp(func(o *connection.Operation) {
			o.Parameters = json.RawMessage(`{"type":"object","properties":{"id":{"$ref":"https://example.com/s.json"}}}`)
		}), map[string]string{"config.operations[0].parameters": "only references inside the schema"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Check()
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Equal(t, bud.EINVALID, bud.ErrorCode(err))
			fields := bud.ErrorFields(err)
			require.Len(t, fields, len(tc.want), "fields: %v", fields)
			for field, word := range tc.want {
				require.Contains(t, fields, field, "fields: %v", fields)
				require.Contains(t, fields[field], word, "field %s", field)
			}
		})
	}
}

func TestCheckNeverQuotesACredential(t *testing.T) {
	t.Parallel()
	c := connection.Connection{Name: "x", Kind: connection.KindNotion, Credentials: connection.Credentials{Token: "secret " + secret}}
	err := c.Check()
	require.Error(t, err)
	require.NotContains(t, err.Error(), secret)
	c = connection.Connection{Name: "x", Kind: connection.KindMCP, Config: connection.Config{URL: "https://e.example.com"},
		Credentials: connection.Credentials{Headers: map[string]string{"X-Key": secret + "\n"}}}
	require.NotContains(t, c.Check().Error(), secret)
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	c := connection.Connection{Kind: connection.KindMCP}
	c.Normalize()
	require.Equal(t, connection.TransportStreamableHTTP, c.Config.Transport)
	c = connection.Connection{Kind: connection.KindMCP, Config: connection.Config{Transport: connection.TransportSSE}}
	c.Normalize()
	require.Equal(t, connection.TransportSSE, c.Config.Transport)
	c = connection.Connection{Kind: connection.KindSlack}
	c.Normalize()
	require.Empty(t, c.Config.Transport)
}

func TestOpenRefusesAnInvalidConnection(t *testing.T) {
	t.Parallel()
	// The name aside: Open takes a connection for what it is.
	_, err := connection.Open(t.Context(), connection.Connection{Kind: connection.KindSlack}, connection.Options{})
	e := requireReason(t, err, connection.ReasonRejected)
	require.Contains(t, e.Message, "credentials.token: is required")
	require.NotContains(t, e.Message, "name")

	client, err := connection.Open(t.Context(), connection.Connection{Kind: connection.KindSlack, Credentials: connection.Credentials{Token: "xoxb-1"}}, connection.Options{})
	require.NoError(t, err)
	require.NoError(t, client.Close())
}

func TestError(t *testing.T) {
	t.Parallel()
	for reason, retryable := range map[string]bool{
		connection.ReasonUnreachable:  true,
		connection.ReasonUnavailable:  true,
		connection.ReasonUnauthorized: false,
		connection.ReasonRejected:     false,
	} {
		e := &connection.Error{Reason: reason, Message: "m"}
		require.Equal(t, retryable, e.Retryable(), reason)
		require.Equal(t, "m", e.Error())
		var target *connection.Error
		require.True(t, errors.As(error(e), &target))
	}
}
