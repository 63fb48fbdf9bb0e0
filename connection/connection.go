// Package connection is what a prompt's connection tools reach: a remote MCP
// server, Slack, Notion, or an HTTP API described by JSON Schema. It holds a
// connection's settings and secrets, checks them, and opens a Client that
// lists the tools the connection offers right now and calls them.
// SealCredentials and FromRow are the one way credentials are sealed for,
// and opened from, the connections table. This package never logs,
// returns or puts into an error a credential's value.
package connection

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/google/uuid"
)

// Kinds of connection.
const (
	KindMCP    = "mcp"    // a remote MCP server
	KindSlack  = "slack"  // Slack's Web API with a bot token
	KindNotion = "notion" // Notion's API with an integration token
	KindHTTP   = "http"   // an HTTP API: a base URL, headers, operations
)

// MCP transports.
const (
	TransportStreamableHTTP = "streamable_http"
	TransportSSE            = "sse"
)

// Connection is one stored connection of a project, credentials opened.
type Connection struct {
	ID          uuid.UUID
	ProjectID   uuid.UUID
	Name        string
	Kind        string
	Config      Config
	Credentials Credentials
}

// Config is a connection's settings that are not secret: stored in clear,
// returned by the API.
type Config struct {
	// URL is an MCP server's endpoint (kind mcp).
	URL string `json:"url,omitempty"`
	// Transport is an MCP server's transport: streamable_http (the
	// default) or sse.
	Transport string `json:"transport,omitempty"`
	// BaseURL is an http connection's base URL; for slack and notion it
	// replaces the public API's base URL (https://slack.com/api,
	// https://api.notion.com), so a proxy or a stand-in can serve them.
	BaseURL string `json:"base_url,omitempty"`
	// Operations are an http connection's tools.
	Operations []Operation `json:"operations,omitempty"`
}

// Operation is one tool of an http connection: a request to BaseURL+Path.
// The model's arguments fill {name} placeholders of Path; for GET and
// DELETE the rest become query parameters, for other methods the JSON body.
type Operation struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Method      string `json:"method"`
	Path        string `json:"path"`
	// Parameters is the JSON Schema (an object schema) of the arguments.
	Parameters json.RawMessage `json:"parameters,omitempty"`
}

// Credentials are a connection's secrets: sealed at rest, never returned by
// the API, never logged, never in a workflow's history.
type Credentials struct {
	// Headers are sent with every request (kinds mcp and http), e.g.
	// Authorization.
	Headers map[string]string `json:"headers,omitempty"`
	// Token is a Slack bot token (xoxb-…) or a Notion integration token.
	Token string `json:"token,omitempty"`
}

// Tool is one tool a connection offers.
type Tool struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// InputSchema is the JSON Schema of the tool's arguments (an object).
	InputSchema json.RawMessage `json:"input_schema"`
}

// Result is what one call of a tool returned.
type Result struct {
	// Text is the result as the model reads it.
	Text string `json:"text"`
	// IsError reports that the tool ran and reported a failure (an MCP
	// result with isError, Slack's ok:false); the text says what went
	// wrong, and the model is told so. It is not an error of the call.
	IsError bool `json:"is_error,omitempty"`
}

// Client talks to one connection. It is not safe for concurrent use unless
// the implementation says so.
type Client interface {
	// Tools lists what the connection offers now (MCP: tools/list).
	Tools(ctx context.Context) ([]Tool, error)
	// Call calls the tool name with arguments (a JSON object).
	Call(ctx context.Context, name string, arguments json.RawMessage) (Result, error)
	// Close ends the client's session, if any.
	Close() error
}

// Options are what Open needs beyond the connection.
type Options struct {
	// HTTPClient makes the requests; nil means a default client with
	// sensible timeouts.
	HTTPClient *http.Client
}
