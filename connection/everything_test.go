package connection_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/connection"
	"github.com/budhq/bud/connection/mcpeverything"
)

// TestMCPEverything runs the client against the MCP project's reference
// server (npm @modelcontextprotocol/server-everything 2026.8.31), a server
// nobody here wrote, over streamable HTTP.
func TestMCPEverything(t *testing.T) {
	t.Parallel()
	url := mcpeverything.Start(t)
	client := open(t, mcpConnection(url, "", nil))
	ctx := t.Context()

	tools, err := client.Tools(ctx)
	require.NoError(t, err)
	names := toolNames(tools)
	t.Logf("tools: %v", names)
	require.Contains(t, names, "echo")
	require.Contains(t, names, "get-sum")
	require.Contains(t, names, "get-tiny-image")
	for _, tool := range tools {
		var schema map[string]any
		require.NoError(t, json.Unmarshal(tool.InputSchema, &schema), tool.Name)
		require.Equal(t, "object", schema["type"], tool.Name)
	}

	res, err := client.Call(ctx, "echo", json.RawMessage(`{"message":"hello from bud"}`))
	require.NoError(t, err)
	require.Equal(t, connection.Result{Text: "Echo: hello from bud"}, res)

	res, err = client.Call(ctx, "get-sum", json.RawMessage(`{"a":2,"b":40}`))
	require.NoError(t, err)
	require.Equal(t, connection.Result{Text: "The sum of 2 and 40 is 42."}, res)

	res, err = client.Call(ctx, "get-tiny-image", nil)
	require.NoError(t, err)
	require.False(t, res.IsError)
	require.Contains(t, res.Text, "Here's the image you requested:\n[image image/png, ")

	// Arguments its schema refuses: the server says so, and the model
	// reads it.
	res, err = client.Call(ctx, "get-sum", json.RawMessage(`{"a":"two","b":40}`))
	require.NoError(t, err)
	require.True(t, res.IsError, "result %+v", res)
	require.Contains(t, res.Text, "Invalid arguments for tool get-sum")

	_, err = client.Call(ctx, "no-such-tool", json.RawMessage(`{}`))
	requireReason(t, err, connection.ReasonRejected)
}
