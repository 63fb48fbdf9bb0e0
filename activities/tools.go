package activities

import (
	"context"

	"github.com/google/uuid"

	"github.com/budhq/bud/prompt"
)

// ToolExecutor runs the connection tools of a prompt (MCP servers, Slack,
// Notion, HTTP) for a run. Tool execution fills it in; until then runs
// offer the model only the caller's function tools, whose calls are
// returned to the caller.
type ToolExecutor interface {
	// Tools lists what a connection tool of the document offers the model,
	// limited to its allowed tools, in OpenAI's tools format.
	Tools(ctx context.Context, project uuid.UUID, tool prompt.Tool) ([]ChatTool, error)
	// Call runs one call the model made of a tool that Tools listed and
	// returns the output to hand back to the model.
	Call(ctx context.Context, project uuid.UUID, tool prompt.Tool, call ToolCall) (string, error)
}
