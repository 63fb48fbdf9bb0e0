package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/app"
	"github.com/budhq/bud/connection/mcpeverything"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/evaluation"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/statestore/statestoretest"
	"github.com/budhq/bud/upstreamtest"
	"github.com/budhq/bud/workflows"
)

// datasetBody is a dataset as a client reads it.
type datasetBody struct {
	app.Dataset
	Rows struct {
		Data  []app.DatasetRow `json:"data"`
		Total int64            `json:"total"`
	} `json:"rows"`
}

func TestDatasetChecksRefusedByPath(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "datasets")
	path := fmt.Sprintf("/api/projects/%s/datasets", p.ID)

	rows := []any{}
	for range 3 {
		rows = append(rows, map[string]any{"text": "fine"})
	}
	rows = append(rows, map[string]any{"text": "bad", "checks": []any{
		map[string]any{"type": "contains", "value": "ok"},
		map[string]any{"type": "cel", "expression": "output.age >"},
		map[string]any{"type": "matches", "pattern": "("},
	}})
	rows = append(rows, map[string]any{"text": "x", "variables": map[string]any{"a": 1}})
	e := errorOf(t, b.do(t, "POST", path, map[string]any{"name": "bad", "rows": rows}), http.StatusBadRequest)
	require.Contains(t, e.Error.Fields, "rows[3].checks[1].expression")
	require.Contains(t, e.Error.Fields, "rows[3].checks[2].pattern")
	require.Contains(t, e.Error.Fields, "rows[4].variables")
	require.NotContains(t, e.Error.Fields, "rows[3].checks[0].value")

	// Nothing was made.
	list := decodeAs[struct{ Total int64 }](t, b.do(t, "GET", path, nil), http.StatusOK)
	require.Zero(t, list.Total)

	// A JSON Lines upload names its rows the same way.
	e = errorOf(t, b.do(t, "POST", path+"?name=up", "{\"text\":\"a\"}\n{\"text\":\"b\",\"checks\":[{\"type\":\"json_path\",\"path\":\"x\",\"value\":1}]}\n",
		withHeader("Content-Type", "application/x-ndjson")), http.StatusBadRequest)
	require.Contains(t, e.Error.Fields, "rows[1].checks[0].path")
	// A line that is not JSON is named by its row, blank lines not counted.
	e = errorOf(t, b.do(t, "POST", path+"?name=up", "{\"text\":\"a\"}\n\n{\"text\": \"b\",\n",
		withHeader("Content-Type", "application/x-ndjson")), http.StatusBadRequest)
	require.Contains(t, e.Error.Fields, "rows[1]")
	require.Contains(t, e.Error.Fields["rows[1]"], "invalid JSON")

	// A good upload, then rows added, read a page at a time.
	d := decodeAs[app.Dataset](t, b.do(t, "POST", path+"?name=up&description=uploaded",
		"{\"text\":\"a\",\"expected_output\":\"A\"}\n\n{\"variables\":{\"n\":1},\"checks\":[{\"type\":\"cel\",\"expression\":\"output.n == 1\",\"name\":\"n is one\"}]}\n",
		withHeader("Content-Type", "application/x-ndjson")), http.StatusCreated)
	require.Equal(t, int32(2), d.RowCount)
	require.Equal(t, "uploaded", d.Description)
	d = decodeAs[app.Dataset](t, b.do(t, "POST", "/api/datasets/"+d.ID.String()+"/rows", map[string]any{"rows": []any{map[string]any{"text": "c"}}}), http.StatusOK)
	require.Equal(t, int32(3), d.RowCount)
	got := decodeAs[datasetBody](t, b.do(t, "GET", "/api/datasets/"+d.ID.String()+"?limit=2&offset=1", nil), http.StatusOK)
	require.True(t, d.UpdatedAt.Equal(got.UpdatedAt), "adding rows answers the dataset as stored: updated %s, read back %s", d.UpdatedAt, got.UpdatedAt)
	require.Equal(t, int64(3), got.Rows.Total)
	require.Len(t, got.Rows.Data, 2)
	require.Equal(t, int32(1), got.Rows.Data[0].Position)
	require.JSONEq(t, `{"n":1}`, string(got.Rows.Data[0].Variables))
	require.Equal(t, "c", *got.Rows.Data[1].Text)

	list = decodeAs[struct{ Total int64 }](t, b.do(t, "GET", path, nil), http.StatusOK)
	require.Equal(t, int64(1), list.Total)
	require.Equal(t, http.StatusNoContent, b.do(t, "DELETE", "/api/datasets/"+d.ID.String(), nil).status)
	require.Equal(t, http.StatusNotFound, b.do(t, "GET", "/api/datasets/"+d.ID.String(), nil).status)
	// Every route under a dataset or an evaluation answers 404 for one
	// that is absent, or not even an id.
	require.Equal(t, http.StatusNotFound, b.do(t, "POST", "/api/datasets/"+d.ID.String()+"/rows", map[string]any{"rows": []any{map[string]any{"text": "c"}}}).status)
	require.Equal(t, http.StatusNotFound, b.do(t, "GET", "/api/datasets/"+d.ID.String()+"/evaluations", nil).status)
	require.Equal(t, http.StatusNotFound, b.do(t, "DELETE", "/api/datasets/nope", nil).status)
	require.Equal(t, http.StatusNotFound, b.do(t, "GET", "/api/evaluations/"+uuid.NewString(), nil).status)
	require.Equal(t, http.StatusNotFound, b.do(t, "POST", "/api/evaluations/nope/cancel", nil).status)
}

func TestDatasetFromRuns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "from-runs")
	promptID, other := uuid.New(), uuid.New()
	q := dbsqlc.New(b.pool)
	base := time.Now().Add(-time.Hour).UTC()
	record := func(id string, prompt uuid.UUID, status string, in activities.RunInput, out activities.RunOutput, at time.Time) {
		input, _ := json.Marshal(in)
		output, _ := json.Marshal(out)
		v := int32(1)
		_, err := q.CreateRun(context.Background(), dbsqlc.CreateRunParams{
			ID: id, ProjectID: p.ID, PromptID: &prompt, PromptVersion: &v, Source: run.SourceAPI, Status: status,
			Input: input, Output: output, ModelCalls: []byte("[]"), ToolCalls: []byte("[]"), Metadata: []byte("{}"),
			CreatedAt: at, FinishedAt: at, Replace: true,
		})
		require.NoError(t, err)
	}
	record("resp_a", promptID, run.StatusCompleted, activities.RunInput{Text: "hello"}, activities.RunOutput{Text: "HELLO"}, base)
	record("resp_b", promptID, run.StatusCompleted, activities.RunInput{Variables: map[string]any{"name": "Ada"}}, activities.RunOutput{Text: `{"x":1}`, Parsed: json.RawMessage(`{"x":1}`)}, base.Add(time.Minute))
	record("resp_c", promptID, run.StatusFailed, activities.RunInput{Text: "bad"}, activities.RunOutput{}, base.Add(2*time.Minute))
	record("resp_d", other, run.StatusCompleted, activities.RunInput{Text: "other"}, activities.RunOutput{Text: "OTHER"}, base.Add(3*time.Minute))
	record("resp_e", promptID, run.StatusCompleted, activities.RunInput{Text: "late"}, activities.RunOutput{Text: "LATE"}, base.Add(10*time.Minute))

	path := fmt.Sprintf("/api/projects/%s/datasets", p.ID)
	d := decodeAs[app.Dataset](t, b.do(t, "POST", path, map[string]any{"name": "past", "from_runs": map[string]any{
		"prompt_id": promptID, "since": base.Format(time.RFC3339), "until": base.Add(5 * time.Minute).Format(time.RFC3339), "limit": 10,
	}}), http.StatusCreated)
	require.Equal(t, int32(2), d.RowCount)
	got := decodeAs[datasetBody](t, b.do(t, "GET", "/api/datasets/"+d.ID.String(), nil), http.StatusOK)
	require.Equal(t, "hello", *got.Rows.Data[0].Text)
	require.JSONEq(t, `"HELLO"`, string(got.Rows.Data[0].ExpectedOutput))
	require.Equal(t, "resp_a", *got.Rows.Data[0].RunID)
	require.JSONEq(t, `{"name":"Ada"}`, string(got.Rows.Data[1].Variables))
	require.JSONEq(t, `{"x":1}`, string(got.Rows.Data[1].ExpectedOutput))

	e := errorOf(t, b.do(t, "POST", path, map[string]any{"name": "bad", "from_runs": map[string]any{"prompt_id": "nope", "status": "waiting"}}), http.StatusBadRequest)
	require.Contains(t, e.Error.Fields, "from_runs.prompt_id")
	require.Contains(t, e.Error.Fields, "from_runs.status")
}

// evalSetup is runSetup with evaluations configured.
func evalSetup(t *testing.T) *runBundle {
	b := runSetup(t)
	token := "admin-" + randomHex(16)
	rc, err := runs.New(runEnv.Client, "")
	require.NoError(t, err)
	h, err := app.New(app.Config{
		Pool: runEnv.Pool, Box: runEnv.Box, AdminToken: token, Documents: statestoretest.Store(t),
		Runs: rc, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	b.handler, b.token = h, token
	return b
}

// evaluationBody is an evaluation as a client reads it.
type evaluationBody struct {
	ID       uuid.UUID `json:"id"`
	Status   string    `json:"status"`
	Progress []struct {
		Candidate int   `json:"candidate"`
		Done      int64 `json:"done"`
		Total     int32 `json:"total"`
	} `json:"progress"`
	Scorecard *struct {
		Candidates []struct {
			Overall          struct{ Runs, Passed int64 }  `json:"overall"`
			OutputValidation *struct{ Runs, Passed int64 } `json:"output_validation"`
			Checks           []struct {
				Name   string `json:"name"`
				Runs   int64  `json:"runs"`
				Passed int64  `json:"passed"`
			} `json:"checks"`
			ModelCalls int64 `json:"model_calls"`
			Tokens     struct {
				TotalTokens int64 `json:"total_tokens"`
			} `json:"tokens"`
			LatencyMS struct{ P50, P95 float64 } `json:"latency_ms"`
		} `json:"candidates"`
		Disagreements struct {
			Total int64 `json:"total"`
			Rows  []struct {
				Row     int `json:"row"`
				Results []struct {
					Candidate int    `json:"candidate"`
					RunID     string `json:"run_id"`
					Passed    bool   `json:"passed"`
				} `json:"results"`
			} `json:"rows"`
		} `json:"disagreements"`
	} `json:"scorecard"`
}

func (b *runBundle) waitEvaluation(t *testing.T, id uuid.UUID, done func(evaluationBody) bool) evaluationBody {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ev := decodeAs[evaluationBody](t, b.do(t, "GET", "/api/evaluations/"+id.String(), nil), http.StatusOK)
		if done(ev) {
			return ev
		}
		require.True(t, time.Now().Before(deadline), "evaluation %s: %+v", id, ev)
		// Polling an API is the only way to see the evaluation's rows move.
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEvaluationScorecard runs a dataset against two candidates, one of
// which calls a function tool (its runs end at the pause instead of
// waiting), and checks the scorecard against what each run must score.
func TestEvaluationScorecard(t *testing.T) {
	t.Parallel()
	b := evalSetup(t)
	b.deploy(t, "llm", "model-llm")
	b.up.SetDefault(upstreamtest.Echo())
	const n = 6
	rows := []any{}
	for i := range n {
		rows = append(rows, map[string]any{
			"text":            fmt.Sprintf("row%d", i),
			"expected_output": fmt.Sprintf("Say hello to row%d.", i),
			"checks": []any{
				map[string]any{"type": "matches", "pattern": "^Say hello", "name": "greets"},
				map[string]any{"type": "cel", "expression": fmt.Sprintf("text.endsWith('row%d.')", i), "name": "names the row"},
			},
		})
	}
	d := decodeAs[app.Dataset](t, b.do(t, "POST", fmt.Sprintf("/api/projects/%s/datasets", b.project.ID), map[string]any{"name": "eval", "rows": rows}), http.StatusCreated)

	other := textDoc("llm", "Be brief.")
	other["messages"] = []any{map[string]any{"role": "user", "content": "Greet {{ input }}."}}

	evPath := "/api/datasets/" + d.ID.String() + "/evaluations"
	e := errorOf(t, b.do(t, "POST", evPath, map[string]any{"candidates": []any{map[string]any{"document": other}}, "tools": "recorded"}), http.StatusBadRequest)
	require.Contains(t, e.Error.Fields, "tools")

	ev := decodeAs[evaluationBody](t, b.do(t, "POST", evPath, map[string]any{
		"candidates":  []any{map[string]any{"document": textDoc("llm", "Be kind.")}, map[string]any{"document": other}},
		"tools":       "live",
		"parallelism": 4,
	}), http.StatusCreated)
	require.Equal(t, "running", ev.Status)

	ev = b.waitEvaluation(t, ev.ID, func(e evaluationBody) bool { return e.Status != "running" })
	require.Equal(t, "completed", ev.Status)
	require.Len(t, ev.Progress, 2)
	for _, p := range ev.Progress {
		require.Equal(t, int64(n), p.Done)
	}
	card := ev.Scorecard
	require.NotNil(t, card)
	a, c := card.Candidates[0], card.Candidates[1]
	require.Equal(t, struct{ Runs, Passed int64 }{n, n}, a.Overall)
	require.Equal(t, struct{ Runs, Passed int64 }{n, 0}, c.Overall)
	require.Nil(t, a.OutputValidation, "a text output is not validated")
	require.Equal(t, int64(n), a.ModelCalls)
	require.Positive(t, a.Tokens.TotalTokens)
	require.GreaterOrEqual(t, a.LatencyMS.P95, a.LatencyMS.P50)
	names := func(cs []struct {
		Name   string `json:"name"`
		Runs   int64  `json:"runs"`
		Passed int64  `json:"passed"`
	}) map[string]int64 {
		m := map[string]int64{}
		for _, ch := range cs {
			require.Equal(t, int64(n), ch.Runs)
			m[ch.Name] = ch.Passed
		}
		return m
	}
	require.Equal(t, map[string]int64{"expected_output": n, "greets": n, "names the row": n}, names(a.Checks))
	require.Equal(t, map[string]int64{"expected_output": 0, "greets": 0, "names the row": n}, names(c.Checks))
	require.Equal(t, int64(n), card.Disagreements.Total)
	require.Len(t, card.Disagreements.Rows, n)
	require.Len(t, card.Disagreements.Rows[0].Results, 2)
	require.Equal(t, evaluation.RunID(ev.ID, 0, 1), card.Disagreements.Rows[0].Results[1].RunID)

	// Each run is in the run history as an evaluation's run.
	rec := decodeAs[app.Run](t, b.do(t, "GET", "/api/runs/"+evaluation.RunID(ev.ID, 2, 0), nil), http.StatusOK)
	require.Equal(t, evaluation.RunSource, rec.Source)
	require.Contains(t, string(rec.Output), "Say hello to row2.")
	// and keeps its unsaved document, as any run does, to be run again.
	other1 := decodeAs[app.Run](t, b.do(t, "GET", "/api/runs/"+evaluation.RunID(ev.ID, 2, 1), nil), http.StatusOK)
	require.NotNil(t, rec.DocumentKey)
	require.NotNil(t, other1.DocumentKey)
	require.NotEqual(t, *rec.DocumentKey, *other1.DocumentKey, "each candidate's own document")
	require.Equal(t, 2*n, len(b.up.Requests()), "one model call per row and candidate")

	// Once ended, it cannot be canceled, and its dataset can go.
	require.Equal(t, http.StatusConflict, b.do(t, "POST", "/api/evaluations/"+ev.ID.String()+"/cancel", nil).status)
	require.Equal(t, http.StatusNoContent, b.do(t, "DELETE", "/api/datasets/"+d.ID.String(), nil).status)
}

// TestEvaluationEndsRunsAtPause: a candidate that calls a function tool
// gets its runs ended at the pause, incomplete, not left waiting.
func TestEvaluationEndsRunsAtPause(t *testing.T) {
	t.Parallel()
	b := evalSetup(t)
	b.deploy(t, "llm", "model-llm")
	b.up.SetDefault(upstreamtest.ToolCalls(upstreamtest.Call("lookup", `{"q":"x"}`)))
	doc := textDoc("llm", "Use tools.")
	doc["tools"] = []any{map[string]any{"type": "function", "name": "lookup", "parameters": map[string]any{"type": "object"}}}
	d := decodeAs[app.Dataset](t, b.do(t, "POST", fmt.Sprintf("/api/projects/%s/datasets", b.project.ID), map[string]any{"name": "pause", "rows": []any{map[string]any{"text": "a"}, map[string]any{"text": "b"}}}), http.StatusCreated)
	ev := decodeAs[evaluationBody](t, b.do(t, "POST", "/api/datasets/"+d.ID.String()+"/evaluations", map[string]any{"candidates": []any{map[string]any{"document": doc}}}), http.StatusCreated)
	ev = b.waitEvaluation(t, ev.ID, func(e evaluationBody) bool { return e.Status != "running" })
	require.Equal(t, "completed", ev.Status)
	require.Equal(t, int64(2), ev.Scorecard.Candidates[0].Overall.Runs)
	require.Zero(t, ev.Scorecard.Candidates[0].Overall.Passed)
	rec := decodeAs[app.Run](t, b.do(t, "GET", "/api/runs/"+evaluation.RunID(ev.ID, 0, 0), nil), http.StatusOK)
	require.Equal(t, run.StatusIncomplete, rec.Status)
	require.Contains(t, string(rec.Error), run.EndedAtPause)
	require.Contains(t, string(rec.Output), "lookup")
}

// TestEvaluationCancel: canceling stops the runs and records the
// evaluation canceled, with the rows scored so far.
func TestEvaluationCancel(t *testing.T) {
	t.Parallel()
	b := evalSetup(t)
	b.deploy(t, "llm", "model-llm")
	b.up.SetDefault(upstreamtest.Echo().WithDelay(time.Hour))
	rows := []any{}
	for i := range 20 {
		rows = append(rows, map[string]any{"text": fmt.Sprintf("r%d", i)})
	}
	d := decodeAs[app.Dataset](t, b.do(t, "POST", fmt.Sprintf("/api/projects/%s/datasets", b.project.ID), map[string]any{"name": "cancel", "rows": rows}), http.StatusCreated)
	ev := decodeAs[evaluationBody](t, b.do(t, "POST", "/api/datasets/"+d.ID.String()+"/evaluations", map[string]any{
		"candidates": []any{map[string]any{"document": textDoc("llm", "Slow.")}}, "parallelism": 2,
	}), http.StatusCreated)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := b.up.WaitRequests(ctx, 2)
	require.NoError(t, err, "two runs reached the model")
	// A dataset under evaluation cannot be deleted.
	require.Equal(t, http.StatusConflict, b.do(t, "DELETE", "/api/datasets/"+d.ID.String(), nil).status)
	require.Equal(t, http.StatusAccepted, b.do(t, "POST", "/api/evaluations/"+ev.ID.String()+"/cancel", nil).status)
	ev = b.waitEvaluation(t, ev.ID, func(e evaluationBody) bool { return e.Status != "running" })
	require.Equal(t, "canceled", ev.Status)
	require.NotNil(t, ev.Scorecard)
	require.Len(t, b.up.Requests(), 2, "no run started after the cancel")
	_, err = b.up.WaitCancelled(ctx, 2)
	require.NoError(t, err, "the runs in flight were canceled at the model")
	require.True(t, strings.HasPrefix(evaluation.RunID(ev.ID, 0, 0), "resp_"))
}

// TestEvaluationContinuesAsNew: an evaluation past its history limit lets
// its runs in flight finish and continues as new from the next row, and
// every row is run and scored once.
func TestEvaluationContinuesAsNew(t *testing.T) {
	t.Parallel()
	b := evalSetup(t)
	b.deploy(t, "llm", "model-llm")
	b.up.SetDefault(upstreamtest.Echo())
	const n = 12
	rows := []any{}
	for i := range n {
		rows = append(rows, map[string]any{"text": fmt.Sprintf("r%d", i)})
	}
	d := decodeAs[app.Dataset](t, b.do(t, "POST", fmt.Sprintf("/api/projects/%s/datasets", b.project.ID), map[string]any{"name": "long", "rows": rows}), http.StatusCreated)
	doc, err := json.Marshal(textDoc("llm", "Go on."))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	q := dbsqlc.New(runEnv.Pool)
	ev, err := q.CreateEvaluation(ctx, dbsqlc.CreateEvaluationParams{ProjectID: b.project.ID, DatasetID: d.ID, Candidates: []byte(`[{"document":` + string(doc) + `}]`), Tools: "live", Parallelism: 2, RowCount: n})
	require.NoError(t, err)
	we, err := runEnv.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: evaluation.WorkflowID(ev.ID), TaskQueue: run.TaskQueue}, evaluation.WorkflowName, workflows.EvaluationInput{
		EvaluationID: ev.ID, ProjectID: b.project.ID, DatasetID: d.ID, Rows: n, Parallelism: 2,
		Candidates: []workflows.EvaluationCandidate{{Document: doc}}, HistoryLimit: 30,
	})
	require.NoError(t, err)
	firstRun := we.GetRunID()
	var out workflows.EvaluationOutput
	require.NoError(t, we.Get(ctx, &out), "Get follows the chain of runs")
	require.Equal(t, workflows.EvaluationCompleted, out.Status)
	desc, err := runEnv.Client.DescribeWorkflowExecution(ctx, evaluation.WorkflowID(ev.ID), "")
	require.NoError(t, err)
	require.NotEqual(t, firstRun, desc.GetWorkflowExecutionInfo().GetExecution().GetRunId(), "it continued as new")

	got := decodeAs[evaluationBody](t, b.do(t, "GET", "/api/evaluations/"+ev.ID.String(), nil), http.StatusOK)
	require.Equal(t, "completed", got.Status)
	require.Equal(t, int64(n), got.Progress[0].Done)
	require.Equal(t, int64(n), got.Scorecard.Candidates[0].Overall.Runs)
	require.Len(t, b.up.Requests(), n, "each row ran once")
}

// TestEvaluationRefusesRowsThatDoNotFit: a row whose input a candidate's
// input refuses is named before anything runs.
func TestEvaluationRefusesRowsThatDoNotFit(t *testing.T) {
	t.Parallel()
	b := evalSetup(t)
	b.deploy(t, "llm", "model-llm")
	doc := textDoc("llm", "Greet.")
	doc["messages"] = []any{map[string]any{"role": "user", "content": "Greet {{ name }}."}}
	doc["input"] = map[string]any{"type": "structured", "variables": []any{map[string]any{"name": "name", "type": "string", "required": true}}}
	d := decodeAs[app.Dataset](t, b.do(t, "POST", fmt.Sprintf("/api/projects/%s/datasets", b.project.ID), map[string]any{"name": "fit", "rows": []any{
		map[string]any{"variables": map[string]any{"name": "Ada"}},
		map[string]any{"variables": map[string]any{"name": 7}},
	}}), http.StatusCreated)
	e := errorOf(t, b.do(t, "POST", "/api/datasets/"+d.ID.String()+"/evaluations", map[string]any{"candidates": []any{map[string]any{"document": doc}}}), http.StatusBadRequest)
	require.Contains(t, e.Error.Fields, "rows[1].variables.name")
	require.NotContains(t, e.Error.Fields, "rows[0].variables.name")
	require.Empty(t, b.up.Requests(), "nothing ran")
}

// An evaluation with recorded tools of a dataset made from a run that
// called a real MCP server: every candidate's run is answered from that
// run's record, so the server hears nothing and the outputs carry the
// recorded result. A row made from no run is refused, named.
func TestEvaluationRecordedTools(t *testing.T) {
	t.Parallel()
	b := evalSetup(t)
	b.deploy(t, "llm", "model-llm")
	mcp := newCountingProxy(t, mcpeverything.Start(t))
	conn := b.createConnection(t, b.project.ID, map[string]any{"name": "everything", "kind": "mcp", "config": map[string]any{"url": mcp.URL}})
	b.deploy(t, "llm2", "model-two")
	doc := func(dep, system string) map[string]any {
		return map[string]any{
			"deployment": dep, "system_prompt": system,
			"messages":             []any{map[string]any{"role": "user", "content": "{{ input }}"}},
			"tools":                []any{map[string]any{"type": "connection", "connection_id": conn.ID.String(), "require_approval": "never", "allowed_tools": []any{"echo"}}},
			"allow_multiple_calls": true,
		}
	}
	pr := decodeAs[promptOut](t, b.do(t, "POST", "/api/projects/"+b.project.ID.String()+"/prompts",
		map[string]any{"name": "echoer", "document": doc("llm", "Echo.")}), http.StatusCreated)
	b.up.Script(upstreamtest.ToolCalls(upstreamtest.ToolCall{ID: "call_echo", Name: "echo", Arguments: `{"message":"hello"}`}), upstreamtest.EchoToolResults())
	first := decodeAs[playgroundResponse](t, b.post(t, "/api/playground/run", map[string]any{
		"project_id": b.project.ID, "prompt_id": pr.ID, "input": "echo hello",
	}), http.StatusOK)
	orig := b.waitRun(t, first.ID, run.StatusCompleted)
	require.Len(t, orig.ToolCalls, 1)
	require.Equal(t, "Echo: hello", orig.ToolCalls[0].Output)

	d := decodeAs[app.Dataset](t, b.do(t, "POST", fmt.Sprintf("/api/projects/%s/datasets", b.project.ID), map[string]any{
		"name": "from a tool run", "from_runs": map[string]any{"prompt_id": pr.ID},
	}), http.StatusCreated)
	require.Equal(t, int32(1), d.RowCount)

	// Each candidate's run calls echo as the original did (arguments
	// spaced otherwise), then says what it got.
	served := mcp.count()
	call := upstreamtest.ToolCalls(upstreamtest.ToolCall{ID: "e_echo", Name: "echo", Arguments: `{ "message": "hello" }`})
	b.up.ScriptModel("model-llm", call, upstreamtest.EchoToolResults())
	b.up.ScriptModel("model-two", call, upstreamtest.EchoToolResults())
	ev := decodeAs[evaluationBody](t, b.do(t, "POST", "/api/datasets/"+d.ID.String()+"/evaluations", map[string]any{
		"tools":      "recorded",
		"candidates": []any{map[string]any{"prompt_id": pr.ID}, map[string]any{"document": doc("llm2", "Echo, briefly.")}},
	}), http.StatusCreated)
	ev = b.waitEvaluation(t, ev.ID, func(e evaluationBody) bool { return e.Status != "running" })
	require.Equal(t, "completed", ev.Status)
	require.Equal(t, served, mcp.count(), "the MCP server heard nothing of the evaluation, not even a listing")
	for c := range 2 {
		rec := b.waitRun(t, evaluation.RunID(ev.ID, 0, c), run.StatusCompleted)
		require.Len(t, rec.ToolCalls, 1, "candidate %d", c)
		require.Equal(t, "Echo: hello", rec.ToolCalls[0].Output, "candidate %d", c)
		require.NotNil(t, rec.ReplayOf)
		require.Equal(t, first.ID, *rec.ReplayOf)
		out := decodeAs[app.Run](t, b.do(t, "GET", "/api/runs/"+rec.ID, nil), http.StatusOK)
		require.Contains(t, string(out.Output), "Echo: hello", "candidate %d", c)
	}

	// A row given as it is has no run to answer from.
	decodeAs[map[string]any](t, b.do(t, "POST", "/api/datasets/"+d.ID.String()+"/rows", map[string]any{"rows": []any{map[string]any{"text": "given"}}}), http.StatusOK)
	e := errorOf(t, b.do(t, "POST", "/api/datasets/"+d.ID.String()+"/evaluations", map[string]any{
		"tools": "recorded", "candidates": []any{map[string]any{"prompt_id": pr.ID}},
	}), http.StatusBadRequest)
	require.Contains(t, e.Error.Fields["tools"], "rows[1]")
	e = errorOf(t, b.do(t, "POST", "/api/datasets/"+d.ID.String()+"/evaluations", map[string]any{
		"tools": "canned", "candidates": []any{map[string]any{"prompt_id": pr.ID}},
	}), http.StatusBadRequest)
	require.Contains(t, e.Error.Fields, "tools")
}
