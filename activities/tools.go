package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/budhq/bud"
	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/connection"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/prompt"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/secrets"
)

// ToolExecutor reaches the connections of a project: it lists what a
// connection offers and calls it. Connections is the one that reads them
// from the database; tests may put in their own.
type ToolExecutor interface {
	// Tools lists what the connection offers now, with the connection's
	// name.
	Tools(ctx context.Context, project, conn uuid.UUID) (name string, tools []connection.Tool, err error)
	// Call calls one tool of the connection.
	Call(ctx context.Context, project, conn uuid.UUID, tool string, arguments json.RawMessage) (connection.Result, error)
}

// Connections is the ToolExecutor of stored connections: each use reads the
// connection, opens its credentials and opens a client (for MCP, a session)
// that lives for that one step.
type Connections struct {
	Pool       dbsqlc.DBTX
	Box        *secrets.Box
	HTTPClient *http.Client
}

func (c *Connections) open(ctx context.Context, project, id uuid.UUID) (connection.Connection, connection.Client, error) {
	row, err := dbsqlc.New(c.Pool).GetConnection(ctx, dbsqlc.GetConnectionParams{ProjectID: project, ID: id})
	switch {
	case db.IsNoRows(err):
		return connection.Connection{}, nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("no connection %s in project %s", id, project), run.ConnectionNotFound, nil,
			run.Failure{Message: fmt.Sprintf("the prompt's connection %s does not exist in this project", id)})
	case err != nil:
		return connection.Connection{}, nil, fmt.Errorf("load connection %s: %w", id, err)
	}
	conn, err := connection.FromRow(c.Box, row)
	if err != nil {
		// The stored row does not open with this worker's key: a
		// configuration fault no retry mends.
		return conn, nil, temporal.NewNonRetryableApplicationError(err.Error(), run.ProviderKey, nil, run.Failure{Message: "internal error"})
	}
	client, err := connection.Open(ctx, conn, connection.Options{HTTPClient: c.HTTPClient})
	if err != nil {
		return conn, nil, toolFailure(conn.Name, err)
	}
	return conn, client, nil
}

// Tools implements ToolExecutor.
func (c *Connections) Tools(ctx context.Context, project, id uuid.UUID) (string, []connection.Tool, error) {
	conn, client, err := c.open(ctx, project, id)
	if err != nil {
		return conn.Name, nil, err
	}
	defer client.Close()
	tools, err := client.Tools(ctx)
	if err != nil {
		return conn.Name, nil, toolFailure(conn.Name, err)
	}
	return conn.Name, tools, nil
}

// Call implements ToolExecutor.
func (c *Connections) Call(ctx context.Context, project, id uuid.UUID, tool string, args json.RawMessage) (connection.Result, error) {
	conn, client, err := c.open(ctx, project, id)
	if err != nil {
		return connection.Result{}, err
	}
	defer client.Close()
	res, err := client.Call(ctx, tool, args)
	if err != nil {
		return connection.Result{}, toolFailure(conn.Name, err)
	}
	return res, nil
}

// toolFailure types a connection's error for the retry policy: transport
// failures, 429 and 5xx are retried, the rest is not. The message is the
// connection's own, which never holds a credential.
func toolFailure(name string, err error) error {
	var ce *connection.Error
	if !errors.As(err, &ce) {
		// Not the connection's own message: a URL in it may carry a token.
		msg := bud.RedactURLs(err.Error())
		return temporal.NewApplicationError(fmt.Sprintf("connection %q: %s", name, msg), run.ToolUnavailable,
			run.Failure{Message: fmt.Sprintf("connection %q failed: %s", name, msg)})
	}
	f := run.Failure{Message: fmt.Sprintf("connection %q: %s", name, ce.Message), Status: ce.Status}
	if ce.Retryable() {
		return temporal.NewApplicationError(f.Message, run.ToolUnavailable, f)
	}
	return temporal.NewNonRetryableApplicationError(f.Message, run.ToolRejected, nil, f)
}

// ResolveToolsInput names the connection tools of a prompt and the names
// its function tools already take.
type ResolveToolsInput struct {
	ProjectID uuid.UUID     `json:"project_id"`
	Tools     []prompt.Tool `json:"tools"`
	// Taken are names the offered tools must not use (the function tools').
	Taken []string `json:"taken,omitempty"`
	// RecordedFrom, when set, is the run whose recorded listings
	// (ToolListing) stand in for the connections' own: a replay with
	// recorded tools lists nothing from the live servers.
	RecordedFrom string `json:"recorded_from,omitempty"`
}

// ToolRoute says where a tool offered to the model leads.
type ToolRoute struct {
	// Name is the name the model sees and calls.
	Name         string    `json:"name"`
	ConnectionID uuid.UUID `json:"connection_id"`
	// ServerLabel is the connection's name, as OpenAI's mcp items call it.
	ServerLabel string `json:"server_label"`
	// Tool is the connection's own name for it.
	Tool            string `json:"tool"`
	RequireApproval bool   `json:"require_approval"`
}

// ResolveToolsResult are the tools to offer and where each leads.
type ResolveToolsResult struct {
	Tools  []chat.Tool `json:"tools"`
	Routes []ToolRoute `json:"routes"`
	// Listings are what each connection listed, kept in the run's row for
	// replays.
	Listings []ToolListing `json:"listings,omitempty"`
}

// maxToolName is OpenAI's limit on a function name.
const maxToolName = 64

var toolNameUnsafe = regexp.MustCompile(`[^a-zA-Z0-9_-]+`)

// ResolveTools lists what each active connection tool of the prompt offers
// now, keeps the allowed tools, and names them for the model: the tool's own
// name when it is free, else the connection's name and the tool's, always
// unique and within 64 characters. A connection that cannot be listed fails
// the step (retried when the failure is transient). With RecordedFrom the
// listings are that run's, and no connection is reached; a connection it
// did not list fails the step (run.ToolNotRecorded).
func (a *Activities) ResolveTools(ctx context.Context, in ResolveToolsInput) (ResolveToolsResult, error) {
	list := func(id uuid.UUID) (string, []connection.Tool, error) { return a.Tools.Tools(ctx, in.ProjectID, id) }
	if in.RecordedFrom != "" {
		listings, err := a.recordedListings(ctx, in.ProjectID, in.RecordedFrom)
		if err != nil {
			return ResolveToolsResult{}, err
		}
		list = recordedLister{runID: in.RecordedFrom, listings: listings}.list
	} else if a.Tools == nil {
		return ResolveToolsResult{}, temporal.NewNonRetryableApplicationError("resolve tools: no tool executor configured", run.ToolRejected, nil,
			run.Failure{Message: "this worker cannot run connection tools"})
	}
	taken := map[string]bool{}
	for _, n := range in.Taken {
		taken[n] = true
	}
	var out ResolveToolsResult
	for _, t := range in.Tools {
		if t.Type != prompt.ToolConnection || !t.Active {
			continue
		}
		id, err := uuid.Parse(t.ConnectionID)
		if err != nil {
			return ResolveToolsResult{}, temporal.NewNonRetryableApplicationError("resolve tools: bad connection id", run.ConnectionNotFound, nil,
				run.Failure{Message: fmt.Sprintf("connection id %q is not a UUID", t.ConnectionID)})
		}
		label, tools, err := list(id)
		if err != nil {
			return ResolveToolsResult{}, err
		}
		out.Listings = append(out.Listings, ToolListing{ConnectionID: id, ServerLabel: label, Tools: tools})
		for _, tool := range tools {
			if len(t.AllowedTools) > 0 && !slices.Contains(t.AllowedTools, tool.Name) {
				continue
			}
			name := uniqueToolName(taken, label, tool.Name)
			taken[name] = true
			params := tool.InputSchema
			if len(params) == 0 {
				params = json.RawMessage(`{"type":"object","properties":{}}`)
			}
			out.Tools = append(out.Tools, chat.Tool{Type: "function", Function: chat.Function{Name: name, Description: tool.Description, Parameters: params}})
			out.Routes = append(out.Routes, ToolRoute{
				Name: name, ConnectionID: id, ServerLabel: label, Tool: tool.Name,
				RequireApproval: needsApproval(t.RequireApproval, tool.Name),
			})
		}
	}
	return out, nil
}

func needsApproval(a prompt.Approval, tool string) bool {
	switch a.Policy {
	case prompt.ApprovalNever:
		return false
	case prompt.ApprovalListed:
		return slices.Contains(a.Tools, tool)
	}
	return true
}

// uniqueToolName names a tool for the model: [a-zA-Z0-9_-], at most 64
// characters, not in taken. It tries the tool's own name, then
// label__tool, then a shortened form with a hash of both.
func uniqueToolName(taken map[string]bool, label, tool string) string {
	clean := func(s string) string { return strings.Trim(toolNameUnsafe.ReplaceAllString(s, "_"), "_") }
	own := clean(tool)
	if own != "" && len(own) <= maxToolName && !taken[own] {
		return own
	}
	both := clean(label) + "__" + own
	if len(both) <= maxToolName && !taken[both] {
		return both
	}
	sum := sha256.Sum256([]byte(label + "\x00" + tool))
	suffix := "_" + hex.EncodeToString(sum[:4])
	base := both
	if len(base) > maxToolName-len(suffix) {
		base = base[:maxToolName-len(suffix)]
	}
	name := base + suffix
	for i := 2; taken[name]; i++ {
		s := fmt.Sprintf("%s%d", suffix, i)
		name = base[:min(len(base), maxToolName-len(s))] + s
	}
	return name
}

// CallToolInput is one call the model made of a connection tool.
type CallToolInput struct {
	ProjectID    uuid.UUID `json:"project_id"`
	ConnectionID uuid.UUID `json:"connection_id"`
	// Tool is the connection's own name of the tool.
	Tool string `json:"tool"`
	// Arguments are as the model wrote them (JSON text).
	Arguments string `json:"arguments"`
}

// CallToolResult is a tool's answer.
type CallToolResult struct {
	Output  string `json:"output"`
	IsError bool   `json:"is_error,omitempty"`
	// LatencyMS is the attempt's time from request to answer.
	LatencyMS int64 `json:"latency_ms"`
	Attempt   int32 `json:"attempt"`
}

// CallTool makes one call of a connection tool. Arguments that are not a
// JSON object are refused without a call (non-retryable).
func (a *Activities) CallTool(ctx context.Context, in CallToolInput) (CallToolResult, error) {
	if a.Tools == nil {
		return CallToolResult{}, temporal.NewNonRetryableApplicationError("call tool: no tool executor configured", run.ToolRejected, nil,
			run.Failure{Message: "this worker cannot run connection tools"})
	}
	args := json.RawMessage(strings.TrimSpace(in.Arguments))
	if len(args) == 0 {
		args = json.RawMessage(`{}`)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(args, &obj); err != nil {
		return CallToolResult{}, temporal.NewNonRetryableApplicationError("call tool: arguments are not a JSON object", run.ToolRejected, nil,
			run.Failure{Message: "the arguments are not a JSON object: " + err.Error()})
	}
	start := time.Now()
	res, err := a.Tools.Call(ctx, in.ProjectID, in.ConnectionID, in.Tool, args)
	if err != nil {
		return CallToolResult{}, err
	}
	return CallToolResult{Output: res.Text, IsError: res.IsError, LatencyMS: time.Since(start).Milliseconds(), Attempt: activity.GetInfo(ctx).Attempt}, nil
}
