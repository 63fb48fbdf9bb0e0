package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/budhq/bud/app"
	"github.com/budhq/bud/connection/mcpeverything"
	"github.com/budhq/bud/connection/slacktest"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/statestore/statestoretest"
	"github.com/budhq/bud/upstreamtest"
)

// replayResponse is the part of a replay's answer the tests read.
type replayResponse struct {
	playgroundResponse
	ReplayOf string `json:"replay_of"`
}

// runDetail is the part of BudApp's run detail the tests read.
type runDetail struct {
	ID          string  `json:"id"`
	Status      string  `json:"status"`
	Source      string  `json:"source"`
	ReplayOf    *string `json:"replay_of"`
	DocumentKey *string `json:"document_key"`
	ToolCalls   []struct {
		ID        string `json:"id"`
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
		Output    string `json:"output"`
		Error     string `json:"error"`
	} `json:"tool_calls"`
	ToolListings []struct {
		ConnectionID string `json:"connection_id"`
		Tools        []struct {
			Name string `json:"name"`
		} `json:"tools"`
	} `json:"tool_listings"`
	ModelCalls []struct {
		Model         string `json:"model"`
		UpstreamModel string `json:"upstream_model"`
	} `json:"model_calls"`
}

// waitRun reads the run's detail until it has status; a run is recorded
// when its turn ends, a moment after its caller is answered.
func (b *runBundle) waitRun(t *testing.T, id, status string) runDetail {
	t.Helper()
	var d runDetail
	require.Eventually(t, func() bool {
		r := b.do(t, "GET", "/api/runs/"+id, nil)
		d = runDetail{}
		return r.status == http.StatusOK && json.Unmarshal(r.body, &d) == nil && d.Status == status
	}, 30*time.Second, 20*time.Millisecond, "run %s never became %s", id, status)
	return d
}

// countingProxy passes requests to a server and counts them.
type countingProxy struct {
	URL string
	n   atomic.Int64
}

func newCountingProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	u, err := url.Parse(target)
	require.NoError(t, err)
	p := &countingProxy{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	rp.FlushInterval = -1 // MCP answers with event streams
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.n.Add(1)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL + u.Path
	return p
}

func (p *countingProxy) count() int64 { return p.n.Load() }

// A run that called a real MCP server and Slack (after approval) replayed
// with recorded tools: the replay's calls are answered with the recorded
// results, whatever the arguments' key order and spacing; a call the run
// did not make is refused to the model, not made; neither server hears of
// the replay; the replay is linked to its run in the run detail and in
// Temporal's visibility. With live tools the replay calls them.
func TestReplayRecordedTools(t *testing.T) {
	t.Parallel()
	b := runSetup(t)
	b.deploy(t, "llm", "model-llm")
	mcp := newCountingProxy(t, mcpeverything.Start(t))
	slack := slacktest.New(t, "xoxb-replay-token")
	mcpConn := b.createConnection(t, b.project.ID, map[string]any{"name": "everything", "kind": "mcp", "config": map[string]any{"url": mcp.URL}})
	slackConn := b.createConnection(t, b.project.ID, map[string]any{"name": "slack", "kind": "slack",
		"config": map[string]any{"base_url": slack.URL}, "credentials": map[string]any{"token": "xoxb-replay-token"}})
	doc := map[string]any{
		"deployment": "llm",
		"messages":   []any{map[string]any{"role": "user", "content": "{{ input }}"}},
		"tools": []any{
			map[string]any{"type": "connection", "connection_id": mcpConn.ID.String(), "require_approval": "never", "allowed_tools": []any{"echo", "get-sum"}},
			map[string]any{"type": "connection", "connection_id": slackConn.ID.String(), "require_approval": "always"},
		},
		"allow_multiple_calls": true,
	}
	post := `{"channel":"` + slacktest.GeneralID + `","text":"replays ship"}`
	b.up.Script(
		upstreamtest.ToolCalls(
			upstreamtest.ToolCall{ID: "call_echo", Name: "echo", Arguments: `{"message":"hello"}`},
			upstreamtest.ToolCall{ID: "call_post", Name: "post_message", Arguments: post},
		),
		upstreamtest.EchoToolResults(),
	)
	first := decodeAs[playgroundResponse](t, b.post(t, "/api/playground/run", map[string]any{
		"project_id": b.project.ID, "document": doc, "input": "echo hello and announce it",
	}), http.StatusOK)
	b.waitRun(t, first.ID, run.StatusWaiting)

	// A run waiting for an approval is not replayed until it ends.
	r := b.post(t, "/api/runs/"+first.ID+"/replay", map[string]any{})
	require.Equal(t, http.StatusConflict, r.status, "%s", r.body)

	decodeAs[map[string]any](t, b.post(t, "/api/runs/"+first.ID+"/approvals/call_post", map[string]any{"approve": true}), http.StatusOK)
	orig := b.waitRun(t, first.ID, run.StatusCompleted)
	require.Len(t, orig.ToolCalls, 2)
	require.Equal(t, "Echo: hello", orig.ToolCalls[0].Output)
	posted := orig.ToolCalls[1].Output
	require.Contains(t, posted, slacktest.GeneralID)
	history := slack.History(slacktest.GeneralID)
	require.Equal(t, "replays ship", history[len(history)-1].Text)
	require.Len(t, orig.ToolListings, 2, "what each connection offered is kept")
	require.Nil(t, orig.ReplayOf)
	require.Equal(t, "model-llm", orig.ModelCalls[0].UpstreamModel)

	mcpBefore, slackBefore, upBefore := mcp.count(), len(slack.Requests()), len(b.up.Requests())
	b.up.Script(
		upstreamtest.ToolCalls(
			upstreamtest.ToolCall{ID: "r_post", Name: "post_message", Arguments: `{"text": "replays ship", "channel": "` + slacktest.GeneralID + `"}`},
			upstreamtest.ToolCall{ID: "r_echo", Name: "echo", Arguments: `{ "message" : "hello" }`},
			upstreamtest.ToolCall{ID: "r_echo_again", Name: "echo", Arguments: `{"message":"hello"}`},
			upstreamtest.ToolCall{ID: "r_other", Name: "echo", Arguments: `{"message":"never sent"}`},
		),
		upstreamtest.EchoToolResults(),
	)
	replay := decodeAs[replayResponse](t, b.post(t, "/api/runs/"+first.ID+"/replay", map[string]any{}), http.StatusOK)
	require.Equal(t, first.ID, replay.ReplayOf)
	require.NotEqual(t, first.ID, replay.RunID)
	require.Equal(t, run.StatusCompleted, replay.Status, "%+v", replay.Error)
	require.Contains(t, replay.OutputText, "Echo: hello")
	require.Contains(t, replay.OutputText, posted)
	require.Contains(t, replay.OutputText, `replay with recorded tools: the original run made only 1 call(s) of "echo" with these arguments, so this one was not made`)
	require.Contains(t, replay.OutputText, `replay with recorded tools: the original run made no call of "echo" with these arguments, so this call was not made`)
	require.Equal(t, mcpBefore, mcp.count(), "the MCP server heard nothing of the replay, not even a listing")
	require.Len(t, slack.Requests(), slackBefore, "Slack heard nothing of the replay")
	require.Len(t, b.up.Requests(), upBefore+2, "the model was called as scripted, without an approval pause")

	rec := b.waitRun(t, replay.RunID, run.StatusCompleted)
	require.NotNil(t, rec.ReplayOf)
	require.Equal(t, first.ID, *rec.ReplayOf)
	require.Equal(t, run.SourceReplay, rec.Source)
	require.Len(t, rec.ToolCalls, 4)
	require.Equal(t, posted, rec.ToolCalls[0].Output)
	require.Equal(t, "Echo: hello", rec.ToolCalls[1].Output)
	require.NotEmpty(t, rec.ToolCalls[2].Error)
	require.NotEmpty(t, rec.ToolCalls[3].Error)

	// Temporal's visibility finds the replay by the run it replays.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.Eventually(t, func() bool {
		res, err := runEnv.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: runEnv.Server.Namespace(), Query: `BudReplayOf = "` + first.ID + `"`,
		})
		if err != nil || len(res.GetExecutions()) != 1 {
			return false
		}
		return res.GetExecutions()[0].GetExecution().GetWorkflowId() == replay.RunID
	}, 30*time.Second, 50*time.Millisecond)

	// Live tools are called.
	b.up.Script(
		upstreamtest.ToolCalls(upstreamtest.ToolCall{ID: "l_echo", Name: "echo", Arguments: `{"message":"live"}`}),
		upstreamtest.EchoToolResults(),
	)
	live := decodeAs[replayResponse](t, b.post(t, "/api/runs/"+first.ID+"/replay", map[string]any{"tools": "live"}), http.StatusOK)
	require.Equal(t, run.StatusCompleted, live.Status, "%+v", live.Error)
	require.Contains(t, live.OutputText, "Echo: live")
	require.Greater(t, mcp.count(), mcpBefore, "the live replay called the MCP server")
}

// An unsaved playground document's run is replayed from its record after
// Temporal has deleted its history, and the model gets the same messages.
func TestReplayAfterHistoryDeleted(t *testing.T) {
	t.Parallel()
	b := runSetup(t)
	b.deploy(t, "llm", "model-llm")
	b.up.Script(upstreamtest.Echo())
	first := decodeAs[playgroundResponse](t, b.post(t, "/api/playground/run", map[string]any{
		"project_id": b.project.ID, "document": textDoc("llm", "You are terse."), "input": "Ada", "instructions": "Answer in English.",
	}), http.StatusOK)
	orig := b.waitRun(t, first.ID, run.StatusCompleted)
	require.NotNil(t, orig.DocumentKey)
	require.True(t, strings.HasPrefix(*orig.DocumentKey, "document:sha256:"), *orig.DocumentKey)
	sent := chatMessages(t, b.up.Requests()[0])

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := runEnv.Client.WorkflowService().DeleteWorkflowExecution(ctx, &workflowservice.DeleteWorkflowExecutionRequest{
		Namespace: runEnv.Server.Namespace(), WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: first.ID},
	})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := runEnv.Client.DescribeWorkflowExecution(ctx, first.ID, "")
		var nf *serviceerror.NotFound
		return errors.As(err, &nf)
	}, 50*time.Second, 100*time.Millisecond, "the run's history was never deleted")

	b.up.Script(upstreamtest.Echo())
	replay := decodeAs[replayResponse](t, b.post(t, "/api/runs/"+first.ID+"/replay", map[string]any{}), http.StatusOK)
	require.Equal(t, run.StatusCompleted, replay.Status, "%+v", replay.Error)
	require.Equal(t, first.OutputText, replay.OutputText)
	reqs := b.up.Requests()
	require.Len(t, reqs, 2)
	require.Equal(t, sent, chatMessages(t, reqs[1]), "the replay sent the model the same messages")
	rec := b.waitRun(t, replay.RunID, run.StatusCompleted)
	require.Equal(t, *orig.DocumentKey, *rec.DocumentKey, "the same document is kept once, under one key")
}

// A replay against another document: the deployment and model parameters
// replaced or merged, problems named by their field, a deleted version
// refused unless a document is given.
func TestReplayOverridesAndRefusals(t *testing.T) {
	t.Parallel()
	b := runSetup(t)
	b.deploy(t, "llm", "model-llm")
	b.deploy(t, "other", "model-other")
	doc := textDoc("llm", "You are terse.")
	doc["model_params"] = map[string]any{"temperature": 0.7, "seed": 7}
	p := decodeAs[promptOut](t, b.do(t, "POST", "/api/projects/"+b.project.ID.String()+"/prompts",
		map[string]any{"name": "greeter", "document": doc}), http.StatusCreated)
	b.up.Script(upstreamtest.Echo())
	first := decodeAs[playgroundResponse](t, b.post(t, "/api/playground/run", map[string]any{
		"project_id": b.project.ID, "prompt_id": p.ID, "input": "Ada",
	}), http.StatusOK)
	orig := b.waitRun(t, first.ID, run.StatusCompleted)
	require.Nil(t, orig.DocumentKey, "a saved version run as it is keeps its version reference")

	b.up.Script(upstreamtest.Echo())
	replay := decodeAs[replayResponse](t, b.post(t, "/api/runs/"+first.ID+"/replay", map[string]any{
		"deployment": "other", "model_params": map[string]any{"temperature": 0.2, "seed": nil},
	}), http.StatusOK)
	require.Equal(t, run.StatusCompleted, replay.Status, "%+v", replay.Error)
	reqs := b.up.Requests()
	var body map[string]any
	require.NoError(t, json.Unmarshal(reqs[len(reqs)-1].Body, &body))
	require.Equal(t, "model-other", body["model"])
	require.Equal(t, 0.2, body["temperature"])
	require.NotContains(t, body, "seed", "a null parameter is removed")
	rec := b.waitRun(t, replay.RunID, run.StatusCompleted)
	require.NotNil(t, rec.DocumentKey, "a changed document is kept by content")

	fields := func(r response, status int) []string {
		t.Helper()
		var e struct {
			Error struct {
				Fields map[string]string `json:"fields"`
			} `json:"error"`
		}
		require.Equal(t, status, r.status, "%s", r.body)
		require.NoError(t, json.Unmarshal(r.body, &e))
		return fieldNames(e.Error.Fields)
	}
	path := "/api/runs/" + first.ID + "/replay"
	require.Equal(t, []string{"tools"}, fields(b.post(t, path, map[string]any{"tools": "sometimes"}), http.StatusBadRequest))
	require.Equal(t, []string{"deployment"}, fields(b.post(t, path, map[string]any{"deployment": "nope"}), http.StatusUnprocessableEntity))
	require.Equal(t, []string{"model_params.temperature"}, fields(b.post(t, path, map[string]any{"model_params": map[string]any{"temperature": 5}}), http.StatusUnprocessableEntity))
	structured := textDoc("llm", "")
	structured["messages"] = []any{map[string]any{"role": "user", "content": "Hi {{ name }}"}}
	structured["input"] = map[string]any{"type": "structured", "variables": []any{map[string]any{"name": "name", "type": "string", "required": true}}}
	require.Equal(t, []string{"input.text", "input.variables.name"}, fields(b.post(t, path, map[string]any{"document": structured}), http.StatusUnprocessableEntity))
	require.Equal(t, http.StatusNotFound, b.post(t, "/api/runs/resp_nope/replay", map[string]any{}).status)
	other := b.createProject(t, "other-"+randomHex(4))
	require.Equal(t, http.StatusNotFound, b.post(t, path, map[string]any{"project_id": other.ID}).status, "a run of another project is not found")

	// The version is deleted: its document is gone, unless given.
	require.Equal(t, http.StatusNoContent, b.do(t, "DELETE", "/api/prompts/"+p.ID.String(), nil).status)
	require.Equal(t, []string{"document"}, fields(b.post(t, path, map[string]any{}), http.StatusUnprocessableEntity))
	b.up.Script(upstreamtest.Echo())
	given := decodeAs[replayResponse](t, b.post(t, path, map[string]any{"document": textDoc("llm", "Be brief.")}), http.StatusOK)
	require.Equal(t, "Say hello to Ada.", given.OutputText)
}

// countingDocuments counts the state store calls that pass through it.
type countingDocuments struct {
	app.Documents
	puts, gets atomic.Int64
}

func (c *countingDocuments) Put(ctx context.Context, key string, doc []byte) error {
	c.puts.Add(1)
	return c.Documents.Put(ctx, key, doc)
}

func (c *countingDocuments) Get(ctx context.Context, key string) ([]byte, error) {
	c.gets.Add(1)
	return c.Documents.Get(ctx, key)
}

// directAPI is BudApp on runEnv with docs as its state store, without the
// *testing.T helpers, so that benchmarks can use it too.
type directAPI struct {
	tb      testing.TB
	h       http.Handler
	token   string
	up      *upstreamtest.Server
	project string
}

func newDirectAPI(tb testing.TB, docs app.Documents) *directAPI {
	runEnv.once.Do(func() { runEnv.err = startRunEnv() })
	require.NoError(tb, runEnv.err)
	rc, err := runs.New(runEnv.Client, "")
	require.NoError(tb, err)
	a := &directAPI{tb: tb, token: "admin-" + randomHex(16), up: upstreamtest.Start(tb)}
	a.h, err = app.New(app.Config{Pool: runEnv.Pool, Box: runEnv.Box, AdminToken: a.token, Documents: docs, Runs: rc,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(tb, err)
	a.up.SetDefault(upstreamtest.Echo())
	var project struct{ ID string }
	require.NoError(tb, json.Unmarshal(a.do("POST", "/api/projects", map[string]any{"name": "direct-" + randomHex(6)}, http.StatusCreated), &project))
	a.project = project.ID
	a.do("POST", "/api/projects/"+a.project+"/deployments", modelBody("llm", map[string]any{
		"upstream": map[string]any{"base_url": a.up.URL(), "model": "model-llm"},
	}), http.StatusCreated)
	return a
}

func (a *directAPI) do(method, path string, body any, want int) []byte {
	var rd *bytes.Reader
	if body != nil {
		data, err := json.Marshal(body)
		require.NoError(a.tb, err)
		rd = bytes.NewReader(data)
	} else {
		rd = bytes.NewReader(nil)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+a.token)
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, req)
	require.Equal(a.tb, want, rec.Code, "%s %s: %s", method, path, rec.Body)
	return rec.Body.Bytes()
}

// waitCompleted waits until the run is recorded as completed.
func (a *directAPI) waitCompleted(id string) {
	require.Eventually(a.tb, func() bool {
		req := httptest.NewRequest("GET", "/api/runs/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+a.token)
		rec := httptest.NewRecorder()
		a.h.ServeHTTP(rec, req)
		return rec.Code == http.StatusOK && strings.Contains(rec.Body.String(), `"status":"completed"`)
	}, 30*time.Second, 10*time.Millisecond)
}

// An unsaved document is stored once however often it runs: runs after the
// first, and replays, cost no state store call.
func TestRunDocumentKeptOnce(t *testing.T) {
	t.Parallel()
	docs := &countingDocuments{Documents: statestoretest.Store(t)}
	a := newDirectAPI(t, docs)
	body := map[string]any{"project_id": a.project, "document": textDoc("llm", "Kept once "+randomHex(4)), "input": "Ada"}
	var first playgroundResponse
	require.NoError(t, json.Unmarshal(a.do("POST", "/api/playground/run", body, http.StatusOK), &first))
	require.Equal(t, int64(1), docs.puts.Load())
	a.do("POST", "/api/playground/run", body, http.StatusOK)
	a.waitCompleted(first.ID)
	a.do("POST", "/api/runs/"+first.ID+"/replay", map[string]any{}, http.StatusOK)
	require.Equal(t, int64(1), docs.puts.Load(), "the same document is not stored again")
	require.Zero(t, docs.gets.Load(), "nor read back")
}

// BenchmarkPlaygroundVersusReplay alternates a playground run of an unsaved
// document and a replay of its first run, and reports each one's mean
// latency: a replay reads the run's row and its document (cached by
// content) on top of what a playground run does.
func BenchmarkPlaygroundVersusReplay(b *testing.B) {
	a := newDirectAPI(b, statestoretest.Store(b))
	body := map[string]any{"project_id": a.project, "document": textDoc("llm", "You are terse."), "input": "Ada"}
	var first playgroundResponse
	require.NoError(b, json.Unmarshal(a.do("POST", "/api/playground/run", body, http.StatusOK), &first))
	a.waitCompleted(first.ID)

	var play, replay time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		a.do("POST", "/api/playground/run", body, http.StatusOK)
		play += time.Since(start)
		start = time.Now()
		a.do("POST", "/api/runs/"+first.ID+"/replay", map[string]any{}, http.StatusOK)
		replay += time.Since(start)
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) / 1000 }
	b.ReportMetric(ms(play), "playground-ms/op")
	b.ReportMetric(ms(replay), "replay-ms/op")
	b.Logf("n=%d: playground run %.2f ms, replay %.2f ms", b.N, ms(play), ms(replay))
}
