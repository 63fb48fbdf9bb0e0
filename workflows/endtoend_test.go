package workflows_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/connection"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/evaluation"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/runstream"
	"github.com/budhq/bud/runstream/runstreamtest"
	"github.com/budhq/bud/secrets"
	"github.com/budhq/bud/temporalserver"
	"github.com/budhq/bud/upstreamtest"
	"github.com/budhq/bud/workflows"
)

// rig is what the end-to-end runs share: Postgres, the embedded Temporal
// server and a worker with the real activities, NATS, the upstream
// stand-in and an HTTP connection, "weather", to cityAPI. Each run has a
// model deployment of its own, whose upstream model scripts its replies,
// so the runs can go in parallel.
type rig struct {
	ctx     context.Context
	q       *dbsqlc.Queries
	box     *secrets.Box
	project uuid.UUID
	// describer is the saved prompt structuredInput's runs claim: version
	// 3, served by the prompt deployment "describer" of project.
	describer uuid.UUID
	up        *upstreamtest.Server
	c         client.Client
	nc        *nats.Conn
	// weather is the HTTP connection's id; cityCalls counts the calls it
	// served by city.
	weather   uuid.UUID
	mu        sync.Mutex
	cityCalls map[string]int
}

// cityAPIKey is the weather connection's credential: sealed in its row,
// sent to cityAPI, never in a history.
const cityAPIKey = "city-api-key-5c1e"

// cityWeather is what cityAPI answers for city.
func cityWeather(city string) string {
	temp := map[string]int{"Paris": 21, "Rome": 26, "Oslo": 9, "Lima": 18}[city]
	return fmt.Sprintf(`{"city":%q,"temp_c":%d}`, city, temp)
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)

	pool, _ := dbtest.NewSchema(t)
	r := &rig{ctx: ctx, q: dbsqlc.New(pool), up: upstreamtest.Start(t), cityCalls: map[string]int{}}
	r.up.RequireAPIKey("sk-provider")
	// As OpenAI: a strict schema that breaks strict mode is a 400.
	r.up.RequireStrictSchemas(true)
	key, err := secrets.ParseKey(secrets.NewKey())
	require.NoError(t, err)
	r.box, err = secrets.NewBox(key)
	require.NoError(t, err)
	project, err := r.q.CreateProject(ctx, dbsqlc.CreateProjectParams{Name: "replay"})
	require.NoError(t, err)
	r.project = project.ID
	r.describer = r.savedPrompt(t)
	r.weather = r.weatherConnection(t)
	r.nc = runstreamtest.Connect(t, runstreamtest.Start(t))

	srv, err := temporalserver.Start(ctx, temporalserver.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })
	r.c, err = client.Dial(client.Options{HostPort: srv.HostPort(), Namespace: srv.Namespace(), Identity: "promptrun-test", Logger: quietLogger()})
	require.NoError(t, err)
	t.Cleanup(r.c.Close)
	require.NoError(t, runs.RegisterSearchAttributes(ctx, r.c, srv.Namespace()))
	require.NoError(t, runs.RegisterSearchAttributes(ctx, r.c, srv.Namespace()), "registering again changes nothing")

	w := workflows.NewWorker(r.c, activities.New(activities.Config{
		Identity: "promptrun-test", Pool: pool, Box: r.box, NATS: r.nc,
		Tools: &activities.Connections{Pool: pool, Box: r.box},
	}), worker.Options{})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	return r
}

// weatherConnection serves cityAPI, a stand-in weather API, and stores the
// HTTP connection to it, with its one operation, city_weather.
func (r *rig) weatherConnection(t *testing.T) uuid.UUID {
	t.Helper()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("Authorization") != "Bearer "+cityAPIKey {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		city := strings.TrimPrefix(req.URL.Path, "/cities/")
		r.mu.Lock()
		r.cityCalls[city]++
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, cityWeather(city))
	}))
	t.Cleanup(api.Close)
	id := uuid.New()
	config, err := json.Marshal(connection.Config{BaseURL: api.URL, Operations: []connection.Operation{{
		Name: "city_weather", Description: "The weather in a city now", Method: http.MethodGet, Path: "/cities/{city}",
		Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`),
	}}})
	require.NoError(t, err)
	sealed, err := connection.SealCredentials(r.box, id, connection.Credentials{Headers: map[string]string{"Authorization": "Bearer " + cityAPIKey}})
	require.NoError(t, err)
	_, err = r.q.CreateConnection(r.ctx, dbsqlc.CreateConnectionParams{
		ID: id, ProjectID: r.project, Name: "weather", Kind: connection.KindHTTP, Config: config, CredentialsSealed: sealed,
	})
	require.NoError(t, err)
	return id
}

// deployment adds the model deployment name, served by the stand-in's
// upstream model of the same name, and returns that model for scripting.
func (r *rig) deployment(t *testing.T, name string) (upstreamModel string) {
	t.Helper()
	upstreamModel = "replay/" + name
	dep, err := r.q.CreateDeployment(r.ctx, dbsqlc.CreateDeploymentParams{
		ProjectID: r.project, Name: name, Kind: "model", BaseURL: r.up.URL(), UpstreamModel: upstreamModel,
		DefaultParams: []byte(`{}`), Settings: []byte(`{}`),
	})
	require.NoError(t, err)
	_, err = r.q.UpdateDeployment(r.ctx, dbsqlc.UpdateDeploymentParams{
		ProjectID: r.project, ID: dep.ID, Name: dep.Name, BaseURL: dep.BaseURL, UpstreamModel: dep.UpstreamModel,
		APIKeySealed: r.box.Seal([]byte("sk-provider"), dep.ID[:]), DefaultParams: dep.DefaultParams, Settings: dep.Settings,
	})
	require.NoError(t, err)
	return upstreamModel
}

// requests are the stand-in's requests for model.
func (r *rig) requests(model string) []upstreamtest.Recorded {
	var out []upstreamtest.Recorded
	for _, rec := range r.up.Requests() {
		if rec.Model == model {
			out = append(out, rec)
		}
	}
	return out
}

// callsOf is how many calls of city cityAPI served.
func (r *rig) callsOf(city string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cityCalls[city]
}

// savedPrompt saves the prompt structured runs claim in the rig's project,
// since the worker refuses a run whose prompt or deployment is not its
// project's.
func (r *rig) savedPrompt(t *testing.T) uuid.UUID {
	t.Helper()
	p, err := r.q.CreatePrompt(r.ctx, dbsqlc.CreatePromptParams{ProjectID: r.project, Name: "describer", Tags: []string{}})
	require.NoError(t, err)
	for v := int32(1); v <= 3; v++ {
		_, err = r.q.CreatePromptVersion(r.ctx, dbsqlc.CreatePromptVersionParams{PromptID: p.ID, Version: v, StateKey: fmt.Sprintf("describer/%d", v)})
		require.NoError(t, err)
	}
	_, err = r.q.CreatePromptDeployment(r.ctx, dbsqlc.CreatePromptDeploymentParams{ProjectID: r.project, Name: "describer", PromptID: &p.ID, Settings: []byte(`{}`)})
	require.NoError(t, err)
	return p.ID
}

// structuredRun is structuredInput as a run of the rig's saved prompt.
func (r *rig) structuredRun(doc json.RawMessage, vars map[string]any) run.Input {
	in := structuredInput(doc, vars)
	in.ProjectID = r.project
	in.PromptID = r.describer
	return in
}

// textRun is a playground run of a text prompt on deployment that asks
// text, with fields added to its document.
func (r *rig) textRun(id, deployment, text string, fields map[string]any) run.Input {
	doc := map[string]any{
		"deployment": deployment,
		"messages":   []any{map[string]any{"role": "user", "content": "{{ input }}"}},
	}
	maps.Copy(doc, fields)
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return run.Input{ResponseID: id, ProjectID: r.project, Document: b, Text: text, Source: run.SourcePlayground}
}

// weatherTool is the document's tool entry for the weather connection.
func (r *rig) weatherTool(approval string) map[string]any {
	return map[string]any{"type": "connection", "connection_id": r.weather.String(), "require_approval": approval}
}

// awaitTurn waits for turn n of run id as the gateway does, with the
// UpdateAwaitTurn update.
func (r *rig) awaitTurn(t *testing.T, id string, n int) run.Turn {
	t.Helper()
	return r.update(t, id, run.UpdateAwaitTurn, n)
}

// update sends an update of run id and returns its PromptRunOutput.
func (r *rig) update(t *testing.T, id, name string, arg any) run.Turn {
	t.Helper()
	h, err := r.c.UpdateWorkflow(r.ctx, client.UpdateWorkflowOptions{
		WorkflowID: id, UpdateName: name, Args: []any{arg}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	require.NoError(t, err)
	var out run.Turn
	require.NoError(t, h.Get(r.ctx, &out))
	return out
}

// lastToolMessages are the tool messages the stand-in's request req hands
// back, by call id.
func lastToolMessages(t *testing.T, req upstreamtest.Recorded) map[string]string {
	t.Helper()
	var body struct {
		Messages []chat.Message `json:"messages"`
	}
	require.NoError(t, json.Unmarshal(req.Body, &body))
	out := map[string]string{}
	for _, m := range body.Messages {
		if m.Role == "tool" {
			out[m.ToolCallID] = m.Content
		}
	}
	return out
}

// structuredRepair: a structured prompt whose first reply fails
// validation is repaired by the second; the run's row and search
// attributes are checked too.
func (r *rig) structuredRepair(t *testing.T) string {
	model := r.deployment(t, "qwen")
	r.up.ScriptModel(model,
		upstreamtest.JSONContent(map[string]any{"summary": "Ada, a mathematician.", "score": 42}),
		upstreamtest.JSONContent(map[string]any{"summary": "Ada, a mathematician.", "score": 9}),
	)
	in := r.structuredRun(structuredDoc(true, 2), map[string]any{"name": "Ada", "age": 36})
	in.ResponseID = "resp_replay_repair"

	we := startWhenAttributesAreKnown(r.ctx, t, r.c, in)
	var out run.Turn
	require.NoError(t, we.Get(r.ctx, &out))

	require.Equal(t, run.StatusCompleted, out.Status, "%+v", out.Error)
	require.JSONEq(t, `{"summary": "Ada, a mathematician.", "score": 9}`, string(out.Parsed))
	require.Equal(t, 2, out.ModelCalls)
	reqs := r.requests(model)
	require.Len(t, reqs, 2)
	require.Equal(t, "Bearer sk-provider", reqs[1].Header.Get("Authorization"))

	row, err := r.q.GetRun(r.ctx, dbsqlc.GetRunParams{ProjectID: r.project, ID: in.ResponseID})
	require.NoError(t, err)
	require.Equal(t, run.StatusCompleted, row.Status)
	require.Equal(t, out.Usage.InputTokens, row.InputTokens)
	var calls []activities.ModelCall
	require.NoError(t, json.Unmarshal(row.ModelCalls, &calls))
	require.Len(t, calls, 2)

	desc, err := r.c.DescribeWorkflowExecution(r.ctx, in.ResponseID, "")
	require.NoError(t, err)
	indexed := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()
	var projectAttr string
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(indexed[runs.SearchAttributeProjectID], &projectAttr))
	require.Equal(t, r.project.String(), projectAttr)
	var version int64
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(indexed[runs.SearchAttributePromptVersion], &version))
	require.Equal(t, int64(3), version)
	return in.ResponseID
}

// announced: a first call whose reply ends the run records and announces
// it itself: the workflow records nothing after it.
func (r *rig) announced(t *testing.T) string {
	model := r.deployment(t, "announced")
	r.up.ScriptModel(model, upstreamtest.Text("Hello there."))
	in := r.textRun("resp_replay_announced", "announced", "hello", nil)
	in.TurnSubject, in.EventKey = runstream.Subject(in.ResponseID), runstream.NewEventKey()
	sub, err := runstream.Subscribe(r.nc, in.ResponseID, in.EventKey)
	require.NoError(t, err)
	defer func() { _ = sub.Close() }()

	we := startWhenAttributesAreKnown(r.ctx, t, r.c, in)
	var out run.Turn
	require.NoError(t, we.Get(r.ctx, &out))

	require.Equal(t, run.StatusCompleted, out.Status, "%+v", out.Error)
	require.Equal(t, "Hello there.", out.Text)
	row, err := r.q.GetRun(r.ctx, dbsqlc.GetRunParams{ProjectID: r.project, ID: in.ResponseID})
	require.NoError(t, err)
	require.JSONEq(t, fmt.Sprintf(`{"text": %q}`, out.Text), string(row.Output))
	select {
	case ev := <-sub.Events():
		require.Equal(t, runstream.TypeTurnEnded, ev.Type)
		require.NotEmpty(t, ev.Reply, "the model call announced the turn")
		turn, ok := workflows.AnnouncedTurn(ev)
		require.True(t, ok)
		turn.FinishedAt = out.FinishedAt
		require.Equal(t, out, turn)
	case <-r.ctx.Done():
		t.Fatal("the turn was not announced")
	}
	markers := 0
	for _, e := range history(r.ctx, t, r.c, in.ResponseID).Events {
		if e.GetEventType() == enumspb.EVENT_TYPE_MARKER_RECORDED {
			markers++
		}
	}
	require.Equal(t, 1, markers, "PrepareRun's marker only: no RecordRun")
	return in.ResponseID
}

// toolCall: the model calls the weather connection's tool, CallTool runs
// it, and the second call reads its result.
func (r *rig) toolCall(t *testing.T) string {
	model := r.deployment(t, "tools")
	r.up.ScriptModel(model,
		upstreamtest.ToolCalls(upstreamtest.ToolCall{ID: "call_paris", Name: "city_weather", Arguments: `{"city":"Paris"}`}),
		upstreamtest.EchoToolResults(),
	)
	in := r.textRun("resp_replay_tool_call", "tools", "Weather in Paris?", map[string]any{
		"tools": []any{r.weatherTool("never")}, "allow_multiple_calls": true,
	})

	we := startWhenAttributesAreKnown(r.ctx, t, r.c, in)
	var out run.Turn
	require.NoError(t, we.Get(r.ctx, &out))

	require.Equal(t, run.StatusCompleted, out.Status, "%+v", out.Error)
	require.Equal(t, 2, out.ModelCalls)
	require.Equal(t, cityWeather("Paris"), out.Text, "the second call read the tool's result")
	require.Len(t, out.ToolCalls, 1)
	tc := out.ToolCalls[0]
	require.Equal(t, "call_paris", tc.ID)
	require.Equal(t, "weather", tc.ServerLabel)
	require.Equal(t, "city_weather", tc.Name)
	require.Equal(t, cityWeather("Paris"), tc.Output)
	require.Equal(t, map[string]string{"call_paris": cityWeather("Paris")}, lastToolMessages(t, r.requests(model)[1]))
	return in.ResponseID
}

// batch: a run as an evaluation starts it. Its model calls are local
// activities (no activity task), the tool call between them an activity.
func (r *rig) batch(t *testing.T) string {
	model := r.deployment(t, "batch")
	r.up.ScriptModel(model,
		upstreamtest.ToolCalls(upstreamtest.ToolCall{ID: "call_lima", Name: "city_weather", Arguments: `{"city":"Lima"}`}),
		upstreamtest.EchoToolResults(),
	)
	in := r.textRun("resp_replay_batch", "batch", "Weather in Lima?", map[string]any{
		"tools": []any{r.weatherTool("never")}, "allow_multiple_calls": true,
	})
	in.Batch, in.EndAtPause = true, true

	we := startWhenAttributesAreKnown(r.ctx, t, r.c, in)
	var out run.Turn
	require.NoError(t, we.Get(r.ctx, &out))

	require.Equal(t, run.StatusCompleted, out.Status, "%+v", out.Error)
	require.Equal(t, 2, out.ModelCalls)
	require.Equal(t, cityWeather("Lima"), out.Text, "the second call read the tool's result")
	row, err := r.q.GetRun(r.ctx, dbsqlc.GetRunParams{ProjectID: r.project, ID: in.ResponseID})
	require.NoError(t, err)
	require.Equal(t, run.StatusCompleted, row.Status)
	var activities []string
	markers := 0
	for _, e := range history(r.ctx, t, r.c, in.ResponseID).Events {
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			name := e.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
			activities = append(activities, name)
			if name == "CallTool" {
				// What the Temporal UI shows for the step.
				var summary string
				require.NoError(t, converter.GetDefaultDataConverter().FromPayload(e.GetUserMetadata().GetSummary(), &summary))
				require.True(t, strings.HasPrefix(summary, "tool "), "%q", summary)
			}
		case enumspb.EVENT_TYPE_MARKER_RECORDED:
			markers++
		}
	}
	require.Equal(t, []string{"ResolveTools", "CallTool"}, activities, "the model calls are local activities")
	require.Equal(t, 4, markers, "PrepareRun, two model calls, RecordRun")
	return in.ResponseID
}

// evaluation: three rows of a text dataset against one candidate, two
// runs at a time; every run is scored.
func (r *rig) evaluation(t *testing.T) string {
	model := r.deployment(t, "evaluated")
	r.up.ScriptModel(model, upstreamtest.Text("One."), upstreamtest.Text("Two."), upstreamtest.Text("Three."))
	ds, err := r.q.CreateDataset(r.ctx, dbsqlc.CreateDatasetParams{ProjectID: r.project, Name: "replayed"})
	require.NoError(t, err)
	var rows []dbsqlc.InsertDatasetRowsParams
	for i, text := range []string{"one", "two", "three"} {
		rows = append(rows, dbsqlc.InsertDatasetRowsParams{DatasetID: ds.ID, Position: int32(i), Text: &text, Checks: []byte(`[]`)})
	}
	_, err = r.q.InsertDatasetRows(r.ctx, rows)
	require.NoError(t, err)
	_, err = r.q.SetDatasetRowCount(r.ctx, dbsqlc.SetDatasetRowCountParams{ID: ds.ID, RowCount: int32(len(rows))})
	require.NoError(t, err)
	ev, err := r.q.CreateEvaluation(r.ctx, dbsqlc.CreateEvaluationParams{
		ProjectID: r.project, DatasetID: ds.ID, Candidates: []byte(`[]`), Tools: run.ReplayToolsLive, Parallelism: 2, RowCount: int32(len(rows)),
	})
	require.NoError(t, err)
	doc := r.textRun("", "evaluated", "", nil).Document
	in := workflows.EvaluationInput{
		EvaluationID: ev.ID, ProjectID: r.project, DatasetID: ds.ID, Rows: len(rows),
		Candidates: []workflows.EvaluationCandidate{{Document: doc}}, Parallelism: 2,
	}
	id := "evaluation_replay_" + ev.ID.String()
	we, err := r.c.ExecuteWorkflow(r.ctx, client.StartWorkflowOptions{ID: id, TaskQueue: run.TaskQueue}, evaluation.WorkflowName, in)
	require.NoError(t, err)
	var out workflows.EvaluationOutput
	require.NoError(t, we.Get(r.ctx, &out))
	require.Equal(t, workflows.EvaluationCompleted, out.Status)

	progress, err := r.q.EvaluationProgress(r.ctx, ev.ID)
	require.NoError(t, err)
	scored := 0
	for _, p := range progress {
		scored += int(p.Done)
	}
	require.Equal(t, len(rows), scored, "every run is scored: %+v", progress)
	return id
}

// approval: two calls of a tool that needs approval pause the run; one is
// approved with UpdateApprove, the other rejected by a continue's
// mcp_approval_response, and only the approved one runs.
func (r *rig) approval(t *testing.T) string {
	model := r.deployment(t, "approval")
	r.up.ScriptModel(model,
		upstreamtest.ToolCalls(
			upstreamtest.ToolCall{ID: "call_rome", Name: "city_weather", Arguments: `{"city":"Rome"}`},
			upstreamtest.ToolCall{ID: "call_oslo", Name: "city_weather", Arguments: `{"city":"Oslo"}`},
		),
		upstreamtest.EchoToolResults(),
	)
	in := r.textRun("resp_replay_approval", "approval", "Weather in Rome and Oslo?", map[string]any{
		"tools": []any{r.weatherTool("always")}, "allow_multiple_calls": true,
	})

	we := startWhenAttributesAreKnown(r.ctx, t, r.c, in)
	first := r.awaitTurn(t, in.ResponseID, 1)
	require.Equal(t, run.StatusCompleted, first.Status, "%+v", first.Error)
	require.True(t, first.Waiting)
	require.Equal(t, []run.ApprovalRequest{
		{ID: "mcpr_call_rome", CallID: "call_rome", Name: "city_weather", ServerLabel: "weather", Arguments: `{"city":"Rome"}`},
		{ID: "mcpr_call_oslo", CallID: "call_oslo", Name: "city_weather", ServerLabel: "weather", Arguments: `{"city":"Oslo"}`},
	}, first.ApprovalRequests)
	require.Zero(t, r.callsOf("Rome")+r.callsOf("Oslo"), "nothing runs before it is approved")

	h, err := r.c.UpdateWorkflow(r.ctx, client.UpdateWorkflowOptions{
		WorkflowID: in.ResponseID, UpdateName: run.UpdateApprove, WaitForStage: client.WorkflowUpdateStageCompleted,
		Args: []any{run.ApprovalDecision{ID: "mcpr_call_rome", Approve: true, Source: "app"}},
	})
	require.NoError(t, err)
	require.NoError(t, h.Get(r.ctx, nil))
	second := r.update(t, in.ResponseID, run.UpdateContinue, run.ContinueInput{
		PreviousResponseID: first.ResponseID,
		InputItems:         json.RawMessage(`[{"type":"mcp_approval_response","approval_request_id":"mcpr_call_oslo","approve":false,"reason":"not Oslo"}]`),
	})
	var out run.Turn
	require.NoError(t, we.Get(r.ctx, &out))

	require.Equal(t, second, out)
	require.Equal(t, run.StatusCompleted, out.Status, "%+v", out.Error)
	require.Equal(t, 2, out.Turn)
	require.Equal(t, first.ResponseID, out.PreviousResponseID)
	require.Len(t, out.ToolCalls, 2)
	require.True(t, *out.ToolCalls[0].Approved)
	require.Equal(t, cityWeather("Rome"), out.ToolCalls[0].Output)
	require.False(t, *out.ToolCalls[1].Approved)
	require.Equal(t, 1, r.callsOf("Rome"))
	require.Zero(t, r.callsOf("Oslo"), "only the approved call runs")
	require.Equal(t, map[string]string{
		"call_rome": cityWeather("Rome"),
		"call_oslo": "The user rejected this tool call. Reason: not Oslo",
	}, lastToolMessages(t, r.requests(model)[1]))
	return in.ResponseID
}

// functionContinue: the model calls the caller's function tool, the run
// pauses with the call, and a continue brings its output.
func (r *rig) functionContinue(t *testing.T) string {
	model := r.deployment(t, "functions")
	r.up.ScriptModel(model,
		upstreamtest.ToolCalls(upstreamtest.ToolCall{ID: "call_paris", Name: "get_weather", Arguments: `{"city":"Paris"}`}),
		upstreamtest.EchoToolResults(),
	)
	in := r.textRun("resp_replay_function_continue", "functions", "Weather in Paris?", map[string]any{
		"tools": []any{map[string]any{"type": "function", "name": "get_weather", "description": "Weather for a city",
			"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []any{"city"}}}},
		"allow_multiple_calls": true,
	})

	we := startWhenAttributesAreKnown(r.ctx, t, r.c, in)
	first := r.awaitTurn(t, in.ResponseID, 1)
	require.Equal(t, run.StatusCompleted, first.Status, "%+v", first.Error)
	require.True(t, first.Waiting)
	require.Equal(t, []run.FunctionCall{{CallID: "call_paris", Name: "get_weather", Arguments: `{"city":"Paris"}`}}, first.FunctionCalls)

	second := r.update(t, in.ResponseID, run.UpdateContinue, run.ContinueInput{
		PreviousResponseID: first.ResponseID,
		InputItems:         json.RawMessage(`[{"type":"function_call_output","call_id":"call_paris","output":"21°C"}]`),
	})
	var out run.Turn
	require.NoError(t, we.Get(r.ctx, &out))

	require.Equal(t, second, out)
	require.Equal(t, run.StatusCompleted, out.Status, "%+v", out.Error)
	require.Equal(t, run.TurnID(in.ResponseID, 2), out.ResponseID)
	require.Equal(t, first.ResponseID, out.PreviousResponseID)
	require.False(t, out.Waiting)
	require.Equal(t, "21°C", out.Text)
	require.Equal(t, map[string]string{"call_paris": "21°C"}, lastToolMessages(t, r.requests(model)[1]))
	return in.ResponseID
}

// streamed: a run as the gateway streams it (StreamSubject and
// TurnSubject) of a structured prompt with a connection tool: the tool
// call, a reply that fails validation and its repair, each published, then
// the turn announced once recorded.
func (r *rig) streamed(t *testing.T) string {
	model := r.deployment(t, "streamed")
	const repaired = `{"city": "Paris", "temp_c": 21}`
	r.up.ScriptModel(model,
		upstreamtest.ToolCalls(upstreamtest.ToolCall{ID: "call_paris", Name: "city_weather", Arguments: `{"city":"Paris"}`}),
		upstreamtest.Text(`{"city": "Paris"}`),
		upstreamtest.Text(repaired),
	)
	in := r.textRun("resp_replay_streamed", "streamed", "Weather in Paris?", map[string]any{
		"tools":                []any{r.weatherTool("never")},
		"allow_multiple_calls": true,
		"llm_retry_limit":      1,
		"output": map[string]any{"type": "structured", "variables": []any{
			map[string]any{"name": "city", "type": "string", "required": true},
			map[string]any{"name": "temp_c", "type": "integer", "required": true},
		}},
	})
	in.StreamSubject = runstream.Subject(in.ResponseID)
	in.TurnSubject, in.EventKey = in.StreamSubject, runstream.NewEventKey()
	sub, err := runstream.Subscribe(r.nc, in.ResponseID, in.EventKey)
	require.NoError(t, err)
	defer func() { _ = sub.Close() }()

	we := startWhenAttributesAreKnown(r.ctx, t, r.c, in)
	var steps []string
	deltas := map[int]string{}
	var announced run.Turn
	for announced.ResponseID == "" {
		select {
		case ev := <-sub.Events():
			if turn, ok := workflows.AnnouncedTurn(ev); ok {
				announced = turn
			}
			switch ev.Type {
			case runstream.TypeDelta:
				deltas[ev.Call] += ev.Text
			case runstream.TypeToolCall, runstream.TypeToolResult:
				steps = append(steps, fmt.Sprintf("%s %d %s", ev.Type, ev.Call, ev.Tool.CallID))
			default:
				steps = append(steps, fmt.Sprintf("%s %d", ev.Type, ev.Call))
			}
		case <-r.ctx.Done():
			t.Fatalf("the turn was not announced; events: %v", steps)
		}
	}
	var out run.Turn
	require.NoError(t, we.Get(r.ctx, &out))

	require.Equal(t, run.StatusCompleted, out.Status, "%+v", out.Error)
	require.Equal(t, 3, out.ModelCalls)
	require.JSONEq(t, repaired, string(out.Parsed))
	require.Len(t, out.ToolCalls, 1)
	require.Equal(t, out, announced, "the announced turn is the run's answer")
	require.Equal(t, []string{
		"call_done 1", "tool_call 1 call_paris", "tool_result 1 call_paris",
		"call_done 2", "output_rejected 2",
		"call_done 3", "output_accepted 3",
		"turn_ended 0",
	}, steps)
	require.Equal(t, map[int]string{2: `{"city": "Paris"}`, 3: repaired}, deltas, "each call's text streamed as it came")
	for _, req := range r.requests(model) {
		require.True(t, req.Stream)
	}
	return in.ResponseID
}

// strictOutputs: against an upstream that refuses, as OpenAI does, a
// strict schema breaking strict mode, a structured output with optional
// variables runs: the schema goes strict, the model's nulls read as absent
// and the defaults fill them, and the call's record says the schema went
// strict. An output beyond strict mode's limits goes non-strict, and its
// record says why.
func (r *rig) strictOutputs(t *testing.T) {
	model := r.deployment(t, "strict")
	doc := json.RawMessage(`{"deployment": "strict", "messages": [{"role": "user", "content": "{{ input }}"}],
		"output": {"type": "structured", "variables": [
			{"name": "summary", "type": "string", "required": true, "validation": {"basic": {"max_length": 40}}},
			{"name": "lang", "type": "enum", "options": ["en", "fr"], "default": "en"},
			{"name": "meta", "type": "object", "variables": [{"name": "source", "type": "string", "default": "model"}]}]}}`)
	r.up.ScriptModel(model, upstreamtest.JSONContent(map[string]any{"summary": "Short.", "lang": nil, "meta": map[string]any{"source": nil}}))
	in := run.Input{ResponseID: "resp_strict_" + uuid.NewString(), ProjectID: r.project, Document: doc, Text: "hi", Source: run.SourcePlayground}
	we, err := r.c.ExecuteWorkflow(r.ctx, client.StartWorkflowOptions{ID: in.ResponseID, TaskQueue: run.TaskQueue}, run.WorkflowName, in)
	require.NoError(t, err)
	var out run.Turn
	require.NoError(t, we.Get(r.ctx, &out))
	require.Equal(t, run.StatusCompleted, out.Status, "%+v", out.Error)
	require.JSONEq(t, `{"summary": "Short.", "lang": "en", "meta": {"source": "model"}}`, string(out.Parsed))
	reqs := r.requests(model)
	require.Len(t, reqs, 1)
	require.Equal(t, true, reqs[0].JSON["response_format"].(map[string]any)["json_schema"].(map[string]any)["strict"])
	calls := r.recordedCalls(t, in.ResponseID)
	require.Len(t, calls, 1)
	require.Equal(t, new(true), calls[0].Strict)
	require.Empty(t, calls[0].StrictReason)

	opts := make([]string, 500)
	for i := range opts {
		opts[i] = fmt.Sprintf(`"o%d"`, i)
	}
	var vars []string
	for _, name := range []string{"a", "b", "c"} {
		vars = append(vars, `{"name": "`+name+`", "type": "enum", "required": true, "options": [`+strings.Join(opts, ",")+`]}`)
	}
	doc = json.RawMessage(`{"deployment": "strict", "messages": [{"role": "user", "content": "{{ input }}"}],
		"output": {"type": "structured", "variables": [` + strings.Join(vars, ",") + `]}}`)
	r.up.ScriptModel(model, upstreamtest.JSONContent(map[string]any{"a": "o1", "b": "o2", "c": "o3"}))
	in.ResponseID, in.Document = "resp_strict_"+uuid.NewString(), doc
	we, err = r.c.ExecuteWorkflow(r.ctx, client.StartWorkflowOptions{ID: in.ResponseID, TaskQueue: run.TaskQueue}, run.WorkflowName, in)
	require.NoError(t, err)
	require.NoError(t, we.Get(r.ctx, &out))
	require.Equal(t, run.StatusCompleted, out.Status, "%+v", out.Error)
	calls = r.recordedCalls(t, in.ResponseID)
	require.Len(t, calls, 1)
	require.Equal(t, new(false), calls[0].Strict)
	require.Equal(t, "the output schema is beyond OpenAI's strict mode: In context=(), the schema has 1500 enum values; at most 1000 are allowed.", calls[0].StrictReason)
}

// recordedCalls are the model calls of run id's row.
func (r *rig) recordedCalls(t *testing.T, id string) []activities.ModelCall {
	t.Helper()
	row, err := r.q.GetRun(r.ctx, dbsqlc.GetRunParams{ProjectID: r.project, ID: id})
	require.NoError(t, err)
	var calls []activities.ModelCall
	require.NoError(t, json.Unmarshal(row.ModelCalls, &calls))
	return calls
}

// customOutputRule: an output whose custom rule (a stored CEL translation)
// refuses the first reply is repaired like a schema failure, the rule's
// text in the repair message; the run's record shows both calls, the
// first with the rule it broke.
func (r *rig) customOutputRule(t *testing.T) {
	model := r.deployment(t, "rules")
	const rule = "the total is the sum of the line amounts"
	doc := json.RawMessage(`{"deployment": "rules", "messages": [{"role": "user", "content": "{{ input }}"}],
		"allow_multiple_calls": true, "llm_retry_limit": 2,
		"output": {"type": "structured", "variables": [
			{"name": "lines", "type": "array", "required": true, "items": {"type": "number"}},
			{"name": "total", "type": "number", "required": true, "validation": {"custom": [{"rule": "` + rule + `",
				"translation": {"rule": "` + rule + `", "expression": "value == output.lines.map(x, double(x)).fold_sum()",
				"examples": {"passing": [], "failing": []}, "deployment": "rules", "translated_at": "2026-01-01T00:00:00Z"}}]}}]}}`)
	// fold_sum is no CEL function: the document does not compile.
	in := run.Input{ResponseID: "resp_rule_" + uuid.NewString(), ProjectID: r.project, Document: doc, Text: "bill", Source: run.SourcePlayground}
	we, err := r.c.ExecuteWorkflow(r.ctx, client.StartWorkflowOptions{ID: in.ResponseID, TaskQueue: run.TaskQueue}, run.WorkflowName, in)
	require.NoError(t, err)
	var out run.Turn
	require.NoError(t, we.Get(r.ctx, &out))
	require.Equal(t, run.StatusFailed, out.Status)
	require.Equal(t, run.InvalidPrompt, out.Error.Code)
	require.Contains(t, out.Error.Message, "translation.expression")

	in.Document = json.RawMessage(strings.Replace(string(doc), "output.lines.map(x, double(x)).fold_sum()", "output.lines[0] + output.lines[1]", 1))
	in.ResponseID = "resp_rule_" + uuid.NewString()
	r.up.ScriptModel(model,
		upstreamtest.JSONContent(map[string]any{"lines": []any{2.5, 4}, "total": 7}),
		upstreamtest.JSONContent(map[string]any{"lines": []any{2.5, 4}, "total": 6.5}),
	)
	we, err = r.c.ExecuteWorkflow(r.ctx, client.StartWorkflowOptions{ID: in.ResponseID, TaskQueue: run.TaskQueue}, run.WorkflowName, in)
	require.NoError(t, err)
	require.NoError(t, we.Get(r.ctx, &out))
	require.Equal(t, run.StatusCompleted, out.Status, "%+v", out.Error)
	require.JSONEq(t, `{"lines": [2.5, 4], "total": 6.5}`, string(out.Parsed))
	reqs := r.requests(model)
	require.Len(t, reqs, 2)
	var body struct {
		Messages []chat.Message `json:"messages"`
	}
	require.NoError(t, json.Unmarshal(reqs[1].Body, &body))
	repair := body.Messages[len(body.Messages)-1].Content
	require.Contains(t, repair, `output.total: must satisfy the rule "`+rule+`"`)

	calls := r.recordedCalls(t, in.ResponseID)
	require.Len(t, calls, 2)
	require.Equal(t, []string{`output.total: must satisfy the rule "` + rule + `"`}, calls[0].Rejected)
	require.Empty(t, calls[1].Rejected)
}

// judgedOutputRule: a rule in judge mode is put to the validation
// deployment with each output; a verdict against it goes to repair with
// the rule's text and the judge's reason.
func (r *rig) judgedOutputRule(t *testing.T) {
	model := r.deployment(t, "writer")
	judge := r.deployment(t, "judge")
	const rule = "the summary is polite"
	doc := json.RawMessage(`{"deployment": "writer", "messages": [{"role": "user", "content": "{{ input }}"}],
		"allow_multiple_calls": true, "llm_retry_limit": 1, "settings": {"validation_deployment": "judge"},
		"output": {"type": "structured", "variables": [
			{"name": "summary", "type": "string", "required": true, "validation": {"custom": [{"rule": "` + rule + `", "mode": "judge"}]}}]}}`)
	r.up.ScriptModel(model,
		upstreamtest.JSONContent(map[string]any{"summary": "Go away."}),
		upstreamtest.JSONContent(map[string]any{"summary": "Thank you for asking."}),
	)
	r.up.ScriptModel(judge,
		upstreamtest.JSONContent(map[string]any{"verdict": false, "reason": "it dismisses the reader"}),
		upstreamtest.JSONContent(map[string]any{"verdict": true, "reason": "it thanks the reader"}),
	)
	in := run.Input{ResponseID: "resp_judge_" + uuid.NewString(), ProjectID: r.project, Document: doc, Text: "hi", Source: run.SourcePlayground}
	we, err := r.c.ExecuteWorkflow(r.ctx, client.StartWorkflowOptions{ID: in.ResponseID, TaskQueue: run.TaskQueue}, run.WorkflowName, in)
	require.NoError(t, err)
	var out run.Turn
	require.NoError(t, we.Get(r.ctx, &out))
	require.Equal(t, run.StatusCompleted, out.Status, "%+v", out.Error)
	require.JSONEq(t, `{"summary": "Thank you for asking."}`, string(out.Parsed))
	require.Len(t, r.requests(judge), 2)
	reqs := r.requests(model)
	require.Len(t, reqs, 2)
	var body struct {
		Messages []chat.Message `json:"messages"`
	}
	require.NoError(t, json.Unmarshal(reqs[1].Body, &body))
	require.Contains(t, body.Messages[len(body.Messages)-1].Content, `output.summary: must satisfy the rule "`+rule+`" (judged: it dismisses the reader)`)
	calls := r.recordedCalls(t, in.ResponseID)
	require.Len(t, calls, 2)
	require.Len(t, calls[0].Rejected, 1)
	hist := history(r.ctx, t, r.c, in.ResponseID)
	require.NoError(t, replayer().ReplayWorkflowHistory(quietLogger(), hist))
}
