package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/budhq/bud/connection/mcpeverything"
	"github.com/budhq/bud/connection/notiontest"
	"github.com/budhq/bud/connection/slacktest"
	"github.com/budhq/bud/upstreamtest"
)

// toolsEnv is a bud dev with a project, a model deployment on a stand-in
// the test scripts, and an API key.
type toolsEnv struct {
	env     devEnv
	p       *devProcess
	api     apiClient
	up      *upstreamtest.Server
	project string
	secret  string
}

func startToolsEnv(t *testing.T) *toolsEnv {
	e := &toolsEnv{env: newDevEnv(t)}
	e.p = e.env.start(t)
	t.Cleanup(func() { e.p.stop(t) })
	token, err := os.ReadFile(filepath.Join(e.env.dataDir, "admin-token"))
	require.NoError(t, err)
	e.api = apiClient{t: t, base: "http://" + e.env.app, token: strings.TrimSpace(string(token))}
	e.up = upstreamtest.Start(t)

	var project struct{ ID string }
	e.api.do("POST", "/api/projects", map[string]any{"name": "tools"}, http.StatusCreated, &project)
	e.project = project.ID
	e.api.do("POST", "/api/projects/"+e.project+"/deployments", map[string]any{
		"name": "m", "kind": "model", "upstream": map[string]any{"base_url": e.up.URL(), "model": "stand-in"},
	}, http.StatusCreated, nil)
	var key struct{ Secret string }
	e.api.do("POST", "/api/projects/"+e.project+"/api-keys", map[string]any{"name": "k"}, http.StatusCreated, &key)
	e.secret = key.Secret
	return e
}

// connection creates a connection and returns its id.
func (e *toolsEnv) connection(body map[string]any) string {
	var c struct{ ID string }
	e.api.do("POST", "/api/projects/"+e.project+"/connections", body, http.StatusCreated, &c)
	return c.ID
}

// prompt deploys a prompt named name that offers the connection's tools.
func (e *toolsEnv) prompt(name, connID string, approval any, allowed ...string) {
	tool := map[string]any{"type": "connection", "connection_id": connID, "require_approval": approval}
	if len(allowed) > 0 {
		tool["allowed_tools"] = allowed
	}
	e.api.do("POST", "/api/projects/"+e.project+"/deployments", map[string]any{
		"kind": "prompt",
		"prompt": map[string]any{"name": name, "document": map[string]any{
			"deployment":           "m",
			"messages":             []any{map[string]any{"role": "user", "content": "{{ input }}"}},
			"tools":                []any{tool},
			"allow_multiple_calls": true,
		}},
	}, http.StatusCreated, nil)
}

// respond calls POST /v1/responses and returns the status and raw body.
func (e *toolsEnv) respond(t *testing.T, body map[string]any) (int, []byte) {
	t.Helper()
	return e.gatewayDo(t, "POST", "/v1/responses", body)
}

func (e *toolsEnv) gatewayDo(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, "http://"+e.env.gateway+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e.secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, raw
}

// responseObject is the part of OpenAI's Response the tests read.
type responseObject struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	OutputText string `json:"output_text"`
	Output     []struct {
		Type              string  `json:"type"`
		ID                string  `json:"id"`
		Name              string  `json:"name"`
		ServerLabel       string  `json:"server_label"`
		Arguments         string  `json:"arguments"`
		Output            *string `json:"output"`
		Error             any     `json:"error"`
		ApprovalRequestID *string `json:"approval_request_id"`
	} `json:"output"`
}

// respondOK calls POST /v1/responses and requires a 200.
func (e *toolsEnv) respondOK(t *testing.T, body map[string]any) responseObject {
	t.Helper()
	status, raw := e.respond(t, body)
	return decodeResponse(t, status, raw)
}

func decodeResponse(t *testing.T, status int, raw []byte) responseObject {
	t.Helper()
	require.Equal(t, http.StatusOK, status, "%s", raw)
	var r responseObject
	require.NoError(t, json.Unmarshal(raw, &r), "%s", raw)
	return r
}

// runRecord is the part of BudApp's run detail the tests read.
type runRecord struct {
	Status    string `json:"status"`
	ToolCalls []struct {
		ID        string `json:"id"`
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
		Output    string `json:"output"`
		Error     string `json:"error"`
		Approved  *bool  `json:"approved"`
		Reason    string `json:"reason"`
	} `json:"tool_calls"`
	Output json.RawMessage `json:"output"`
}

// waitRun polls BudApp's run detail until the run has the status.
func (e *toolsEnv) waitRun(t *testing.T, id, status string) runRecord {
	t.Helper()
	var rec runRecord
	require.Eventually(t, func() bool {
		rec = runRecord{}
		e.api.do("GET", "/api/runs/"+id, nil, http.StatusOK, &rec)
		return rec.Status == status
	}, 30*time.Second, 50*time.Millisecond, "run %s never became %s", id, status)
	return rec
}

// A prompt run against a real MCP server nobody here wrote: the tools are
// listed through the connections API, the stand-in model calls echo and
// get-sum, each call is an activity, and the answer holds both results.
// The connection's secret header is in no API answer, log line, workflow
// history or database column.
func TestDevToolsMCPEverything(t *testing.T) {
	e := startToolsEnv(t)
	const secret = "hdr-secret-5f0c1e8a9b"
	connID := e.connection(map[string]any{
		"name": "everything", "kind": "mcp",
		"config":      map[string]any{"url": mcpeverything.Start(t)},
		"credentials": map[string]any{"headers": map[string]any{"X-Api-Key": secret}},
	})

	var tools struct {
		Data []struct{ Name string } `json:"data"`
	}
	e.api.do("GET", "/api/projects/"+e.project+"/connections/"+connID+"/tools", nil, http.StatusOK, &tools)
	var names []string
	for _, tl := range tools.Data {
		names = append(names, tl.Name)
	}
	require.Contains(t, names, "echo")
	require.Contains(t, names, "get-sum")

	e.prompt("calc", connID, "never", "echo", "get-sum")
	e.up.Script(
		upstreamtest.ToolCalls(
			upstreamtest.ToolCall{ID: "call_echo", Name: "echo", Arguments: `{"message":"hello"}`},
			upstreamtest.ToolCall{ID: "call_sum", Name: "get-sum", Arguments: `{"a":2,"b":3}`},
		),
		upstreamtest.EchoToolResults(),
	)
	resp := e.respondOK(t, map[string]any{"prompt": map[string]any{"id": "calc"}, "input": "Echo hello and add 2 and 3."})
	require.Equal(t, "completed", resp.Status)
	require.Contains(t, resp.OutputText, "Echo: hello")
	require.Contains(t, resp.OutputText, "The sum of 2 and 3 is 5.")
	var mcpCalls []string
	for _, it := range resp.Output {
		if it.Type == "mcp_call" {
			mcpCalls = append(mcpCalls, it.Name)
			require.Equal(t, "everything", it.ServerLabel)
			require.NotNil(t, it.Output)
		}
	}
	require.Equal(t, []string{"echo", "get-sum"}, mcpCalls)

	// The model was offered only the allowed tools, under their own names.
	reqs := e.up.Requests()
	require.GreaterOrEqual(t, len(reqs), 2)
	var first struct {
		Tools []struct {
			Function struct{ Name string } `json:"function"`
		} `json:"tools"`
	}
	require.NoError(t, json.Unmarshal(reqs[0].Body, &first))
	var offered []string
	for _, tl := range first.Tools {
		offered = append(offered, tl.Function.Name)
	}
	require.Equal(t, []string{"echo", "get-sum"}, offered)

	// Streamed, the tool call shows as OpenAI's mcp_call events before the
	// answer's text.
	e.up.Script(
		upstreamtest.ToolCalls(upstreamtest.ToolCall{ID: "call_echo2", Name: "echo", Arguments: `{"message":"streamed"}`}),
		upstreamtest.EchoToolResults(),
	)
	status, raw := e.respond(t, map[string]any{"prompt": map[string]any{"id": "calc"}, "input": "Echo streamed.", "stream": true})
	require.Equal(t, http.StatusOK, status, "%s", raw)
	var types []string
	for _, line := range strings.Split(string(raw), "\n") {
		if typ, ok := strings.CutPrefix(line, "event: "); ok {
			types = append(types, typ)
		}
	}
	at := func(typ string) int {
		i := slices.Index(types, typ)
		require.GreaterOrEqual(t, i, 0, "no %s in %v", typ, types)
		return i
	}
	require.Less(t, at("response.created"), at("response.mcp_call.in_progress"))
	require.Less(t, at("response.mcp_call.in_progress"), at("response.mcp_call.completed"))
	require.Less(t, at("response.mcp_call.completed"), at("response.output_text.delta"))
	require.Equal(t, "response.completed", types[len(types)-1])
	require.Contains(t, string(raw), `"output":"Echo: streamed"`)

	rec := e.waitRun(t, resp.ID, "completed")
	require.Len(t, rec.ToolCalls, 2)
	require.Equal(t, `{"a":2,"b":3}`, rec.ToolCalls[1].Arguments)
	require.Equal(t, "The sum of 2 and 3 is 5.", rec.ToolCalls[1].Output)

	// The secret is nowhere it should not be.
	for _, path := range []string{
		"/api/projects/" + e.project + "/connections",
		"/api/projects/" + e.project + "/connections/" + connID,
		"/api/runs/" + resp.ID,
	} {
		var raw json.RawMessage
		e.api.do("GET", path, nil, http.StatusOK, &raw)
		require.NotContains(t, string(raw), secret, path)
	}
	require.NotContains(t, e.p.stdout.String()+e.p.stderr.String(), secret, "logs")

	tc, err := client.Dial(client.Options{HostPort: e.env.temporal})
	require.NoError(t, err)
	defer tc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	it := tc.GetWorkflowHistory(ctx, resp.ID, "", false, 0)
	events := 0
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		require.NotContains(t, string(b), secret, "history event %d", ev.GetEventId())
		require.NotContains(t, string(b), "X-Api-Key", "history event %d", ev.GetEventId())
		events++
	}
	require.Positive(t, events)

	conn, err := pgx.Connect(ctx, e.env.dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var row string
	require.NoError(t, conn.QueryRow(ctx, `SELECT row_to_json(c)::text FROM connections c WHERE id = $1`, connID).Scan(&row))
	require.NotContains(t, row, secret)
	require.NotContains(t, row, "X-Api-Key", "header names are sealed with their values")
}

// A connection tool that needs approval pauses its run until BudApp's
// approvals API decides; an approved call runs, a rejected one is told to
// the model with its reason.
func TestDevToolApproval(t *testing.T) {
	e := startToolsEnv(t)
	connID := e.connection(map[string]any{"name": "everything", "kind": "mcp", "config": map[string]any{"url": mcpeverything.Start(t)}})
	e.prompt("careful", connID, "always", "echo")

	e.up.Script(
		upstreamtest.ToolCalls(upstreamtest.ToolCall{ID: "call_ok", Name: "echo", Arguments: `{"message":"approved"}`}),
		upstreamtest.EchoToolResults(),
		upstreamtest.ToolCalls(upstreamtest.ToolCall{ID: "call_no", Name: "echo", Arguments: `{"message":"rejected"}`}),
		upstreamtest.EchoToolResults(),
		upstreamtest.ToolCalls(upstreamtest.ToolCall{ID: "call_api", Name: "echo", Arguments: `{"message":"by the caller"}`}),
		upstreamtest.EchoToolResults(),
	)
	resp := e.respondOK(t, map[string]any{"prompt": map[string]any{"id": "careful"}, "input": "echo, please"})
	require.Equal(t, "completed", resp.Status)
	var req *string
	for _, it := range resp.Output {
		if it.Type == "mcp_approval_request" {
			req = &it.ID
			require.Equal(t, "echo", it.Name)
			require.Equal(t, `{"message":"approved"}`, it.Arguments)
		}
	}
	require.NotNil(t, req, "the response asks for approval: %+v", resp.Output)
	rec := e.waitRun(t, resp.ID, "waiting")
	require.Empty(t, rec.ToolCalls, "nothing ran before approval")
	require.Len(t, e.up.Requests(), 1)

	e.api.do("POST", "/api/runs/"+resp.ID+"/approvals/nope", map[string]any{"approve": true}, http.StatusNotFound, nil)
	e.api.do("POST", "/api/runs/"+resp.ID+"/approvals/call_ok", map[string]any{}, http.StatusBadRequest, nil)
	e.api.do("POST", "/api/runs/"+resp.ID+"/approvals/"+*req, map[string]any{"approve": true}, http.StatusOK, nil)
	rec = e.waitRun(t, resp.ID, "completed")
	require.Len(t, rec.ToolCalls, 1)
	require.True(t, *rec.ToolCalls[0].Approved)
	require.Equal(t, "Echo: approved", rec.ToolCalls[0].Output)
	e.api.do("POST", "/api/runs/"+resp.ID+"/approvals/call_ok", map[string]any{"approve": true}, http.StatusConflict, nil)

	// The turn after the approval is a response of its own.
	status, raw := e.gatewayDo(t, "GET", "/v1/responses/"+resp.ID+"_2", nil)
	second := decodeResponse(t, status, raw)
	require.Equal(t, "Echo: approved", second.OutputText)

	// A rejection: the model is told, with the reason.
	resp = e.respondOK(t, map[string]any{"prompt": map[string]any{"id": "careful"}, "input": "echo again"})
	e.waitRun(t, resp.ID, "waiting")
	e.api.do("POST", "/api/runs/"+resp.ID+"/approvals/call_no", map[string]any{"approve": false, "reason": "not on Fridays"}, http.StatusOK, nil)
	rec = e.waitRun(t, resp.ID, "completed")
	require.False(t, *rec.ToolCalls[0].Approved)
	reqs := e.up.Requests()
	last := string(reqs[len(reqs)-1].Body)
	require.Contains(t, last, "The user rejected this tool call. Reason: not on Fridays")
	require.Len(t, reqs, 4, "the rejected call never ran, the model was called again")

	// The caller may answer the request itself, as OpenAI's Responses API
	// has it: an mcp_approval_response item continuing the response.
	resp = e.respondOK(t, map[string]any{"prompt": map[string]any{"id": "careful"}, "input": "echo by the caller"})
	require.Equal(t, "mcp_approval_request", resp.Output[len(resp.Output)-1].Type)
	next := e.respondOK(t, map[string]any{
		"previous_response_id": resp.ID,
		"input":                []any{map[string]any{"type": "mcp_approval_response", "approval_request_id": resp.Output[len(resp.Output)-1].ID, "approve": true}},
	})
	require.Equal(t, resp.ID+"_2", next.ID)
	require.Equal(t, "Echo: by the caller", next.OutputText)
	require.Equal(t, "mcp_call", next.Output[0].Type)
	require.Equal(t, resp.Output[len(resp.Output)-1].ID, *next.Output[0].ApprovalRequestID)
}

// Slack and Notion connections against stand-ins that check every request
// as the real APIs document them.
func TestDevToolsSlackAndNotion(t *testing.T) {
	e := startToolsEnv(t)
	slack := slacktest.New(t, "xoxb-test-token")
	notion := notiontest.New(t, "secret_notion_token")
	slackID := e.connection(map[string]any{"name": "slack", "kind": "slack",
		"config": map[string]any{"base_url": slack.URL}, "credentials": map[string]any{"token": "xoxb-test-token"}})
	notionID := e.connection(map[string]any{"name": "notion", "kind": "notion",
		"config": map[string]any{"base_url": notion.URL}, "credentials": map[string]any{"token": "secret_notion_token"}})
	e.prompt("announce", slackID, "never")
	e.prompt("reader", notionID, "never")

	e.up.Script(
		upstreamtest.ToolCalls(upstreamtest.ToolCall{ID: "c1", Name: "post_message", Arguments: `{"channel":"` + slacktest.GeneralID + `","text":"Bud shipped tools"}`}),
		upstreamtest.EchoToolResults(),
	)
	resp := e.respondOK(t, map[string]any{"prompt": map[string]any{"id": "announce"}, "input": "announce it"})
	require.Equal(t, "completed", resp.Status, "%+v", resp)
	history := slack.History(slacktest.GeneralID)
	require.Equal(t, "Bud shipped tools", history[len(history)-1].Text)
	require.Contains(t, resp.OutputText, slacktest.GeneralID)

	e.up.Script(
		upstreamtest.ToolCalls(upstreamtest.ToolCall{ID: "c2", Name: "get_page", Arguments: `{"page_id":"` + notiontest.HandbookID + `"}`}),
		upstreamtest.EchoToolResults(),
	)
	resp = e.respondOK(t, map[string]any{"prompt": map[string]any{"id": "reader"}, "input": "read the handbook"})
	require.Equal(t, "completed", resp.Status, "%+v", resp)
	require.Contains(t, resp.OutputText, "Bud handbook")
	require.Contains(t, resp.OutputText, "Bud runs prompts on Temporal.")
	require.True(t, slices.ContainsFunc(notion.Requests(), func(r notiontest.Request) bool {
		return r.Header.Get("Notion-Version") != "" && strings.HasPrefix(r.Path, "/v1/blocks/")
	}))
}

// A playground run that calls a function tool pauses like any run, and the
// gateway continues it with a project key: a continue needs no prompt.
func TestDevPlaygroundRunContinuedThroughTheGateway(t *testing.T) {
	e := startToolsEnv(t)
	e.up.Script(
		upstreamtest.ToolCalls(upstreamtest.ToolCall{ID: "call_w", Name: "get_weather", Arguments: `{"city":"Oslo"}`}),
		upstreamtest.EchoToolResults(),
	)
	var first responseObject
	e.api.do("POST", "/api/playground/run", map[string]any{
		"project_id": e.project,
		"document": map[string]any{
			"deployment": "m",
			"messages":   []any{map[string]any{"role": "user", "content": "{{ input }}"}},
			"tools":      []any{map[string]any{"type": "function", "name": "get_weather", "parameters": map[string]any{"type": "object"}}},
		},
		"input": "Weather in Oslo?",
	}, http.StatusOK, &first)
	require.Equal(t, "function_call", first.Output[len(first.Output)-1].Type, "%+v", first.Output)
	e.waitRun(t, first.ID, "waiting")

	next := e.respondOK(t, map[string]any{
		"previous_response_id": first.ID,
		"input":                []any{map[string]any{"type": "function_call_output", "call_id": "call_w", "output": "9°C and clear"}},
	})
	require.Equal(t, first.ID+"_2", next.ID)
	require.Equal(t, "9°C and clear", next.OutputText)
	e.waitRun(t, first.ID, "completed")
}
