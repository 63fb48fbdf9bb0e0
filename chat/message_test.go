package chat_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/chat"
)

func TestMessageContentNullOnlyForToolCalls(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal([]chat.Message{
		{Role: "assistant", Content: ""},
		{Role: "assistant", ToolCalls: []chat.ToolCall{{ID: "c", Type: "function", Function: chat.ToolCallFunction{Name: "f", Arguments: "{}"}}}},
		{Role: "assistant", Content: "Checking.", ToolCalls: []chat.ToolCall{{ID: "c", Type: "function", Function: chat.ToolCallFunction{Name: "f", Arguments: "{}"}}}},
	})
	require.NoError(t, err)
	require.JSONEq(t, `[
	  {"role": "assistant", "content": ""},
	  {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
	  {"role": "assistant", "content": "Checking.", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
	]`, string(b))
	var back []chat.Message
	require.NoError(t, json.Unmarshal(b, &back))
	require.Empty(t, back[1].Content)
}
