package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/app"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/upstreamtest"
)

func TestRunHistory(t *testing.T) {
	t.Parallel()
	b := runSetup(t)
	b.deploy(t, "llm", "model-llm")
	b.up.SetDefault(upstreamtest.Echo())
	pr := decodeAs[promptOut](t, b.do(t, "POST", "/api/projects/"+b.project.ID.String()+"/prompts",
		map[string]any{"name": "hello", "document": textDoc("llm", "v1")}), http.StatusCreated)
	decodeAs[versionOut](t, b.do(t, "POST", "/api/prompts/"+pr.ID.String()+"/versions",
		map[string]any{"document": textDoc("llm", "v2")}), http.StatusCreated)

	play := func(body map[string]any) string {
		t.Helper()
		body["project_id"] = b.project.ID
		body["input"] = "Ada"
		return decodeAs[playgroundResponse](t, b.post(t, "/api/playground/run", body), http.StatusOK).RunID
	}
	// Oldest first: an unsaved document, versions 1 and 2, and a run the
	// model deployment refuses.
	r1 := play(map[string]any{"document": textDoc("llm", "draft")})
	r2 := play(map[string]any{"prompt_id": pr.ID, "version": 1})
	r3 := play(map[string]any{"prompt_id": pr.ID, "version": 2})
	b.up.Script(upstreamtest.Error(http.StatusBadRequest, "invalid_request_error", "max_tokens is too large"))
	r4 := play(map[string]any{"document": textDoc("llm", "draft")})

	// Another project's run is not in this project's history.
	other := runSetup(t)
	other.deploy(t, "llm", "model-llm")
	other.up.SetDefault(upstreamtest.Echo())
	decodeAs[playgroundResponse](t, other.post(t, "/api/playground/run", map[string]any{"project_id": other.project.ID, "document": textDoc("llm", ""), "input": "Bo"}), http.StatusOK)

	project := "project_id=" + b.project.ID.String()
	list := func(query string) ([]string, int64) {
		t.Helper()
		pg := decodeAs[page[app.RunSummary]](t, b.do(t, "GET", "/api/runs?"+query, nil), http.StatusOK)
		ids := []string{}
		for _, r := range pg.Data {
			ids = append(ids, r.ID)
		}
		return ids, pg.Total
	}
	ids, total := list(project)
	require.Equal(t, []string{r4, r3, r2, r1}, ids, "newest first")
	require.EqualValues(t, 4, total)
	ids, _ = list(project + "&prompt_id=" + pr.ID.String())
	require.Equal(t, []string{r3, r2}, ids)
	ids, _ = list(project + "&prompt_id=" + pr.ID.String() + "&version=1")
	require.Equal(t, []string{r2}, ids)
	ids, _ = list(project + "&status=failed")
	require.Equal(t, []string{r4}, ids)
	ids, total = list(project + "&limit=1&offset=1")
	require.Equal(t, []string{r3}, ids)
	require.EqualValues(t, 4, total)

	// since is inclusive, until exclusive.
	third := decodeAs[app.Run](t, b.do(t, "GET", "/api/runs/"+r3, nil), http.StatusOK)
	at := url.QueryEscape(third.CreatedAt.Format(time.RFC3339Nano))
	ids, _ = list(project + "&since=" + at)
	require.Equal(t, []string{r4, r3}, ids)
	ids, _ = list(project + "&until=" + at)
	require.Equal(t, []string{r2, r1}, ids)
	ids, _ = list(project + "&since=" + url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)))
	require.Empty(t, ids)

	summary := decodeAs[page[app.RunSummary]](t, b.do(t, "GET", "/api/runs?"+project+"&limit=1", nil), http.StatusOK).Data[0]
	require.Equal(t, run.StatusFailed, summary.Status)
	require.Equal(t, run.SourcePlayground, summary.Source)
	require.Contains(t, string(summary.Error), run.UpstreamRejected)

	// The detail: input, rendered messages, each model call, output.
	ok := decodeAs[app.Run](t, b.do(t, "GET", "/api/runs/"+r2, nil), http.StatusOK)
	require.Equal(t, run.StatusCompleted, ok.Status)
	require.Equal(t, pr.ID, *ok.PromptID)
	require.EqualValues(t, 1, *ok.PromptVersion)
	require.Equal(t, "llm", ok.Model)
	require.JSONEq(t, `{"text": "Ada"}`, string(ok.Input))
	require.JSONEq(t, `[{"role": "system", "content": "v1"}, {"role": "user", "content": "Say hello to Ada."}]`, string(ok.RenderedMessages))
	require.JSONEq(t, `{"text": "Say hello to Ada."}`, string(ok.Output))
	require.Equal(t, "null", string(ok.Error))
	var calls []activities.ModelCall
	require.NoError(t, json.Unmarshal(ok.ModelCalls, &calls))
	require.Len(t, calls, 1)
	require.Equal(t, 1, calls[0].Call)
	require.EqualValues(t, 1, calls[0].Attempt)
	require.Equal(t, "stop", calls[0].FinishReason)
	require.Positive(t, calls[0].Usage.TotalTokens)
	require.GreaterOrEqual(t, calls[0].LatencyMS, int64(0))
	require.Equal(t, ok.Usage.InputTokens+ok.Usage.OutputTokens, ok.Usage.TotalTokens)
	require.Equal(t, calls[0].Usage.TotalTokens, ok.Usage.TotalTokens)
	require.False(t, ok.FinishedAt.Before(ok.CreatedAt))

	failed := decodeAs[app.Run](t, b.do(t, "GET", "/api/runs/"+r4, nil), http.StatusOK)
	require.Equal(t, run.StatusFailed, failed.Status)
	var runErr run.Error
	require.NoError(t, json.Unmarshal(failed.Error, &runErr))
	require.Equal(t, run.UpstreamRejected, runErr.Code)
	require.Contains(t, runErr.Message, "max_tokens is too large")
	require.NoError(t, json.Unmarshal(failed.ModelCalls, &calls))
	require.Len(t, calls, 1)
	require.Contains(t, calls[0].Error, "answered 400")
	require.NotEqual(t, "null", string(failed.RenderedMessages), "the messages were rendered before the call failed")

	errorOf(t, b.do(t, "GET", "/api/runs/resp_"+randomHex(24), nil), http.StatusNotFound)
	errorOf(t, b.do(t, "GET", "/api/runs/nope", nil), http.StatusNotFound)

	for query, field := range map[string]string{
		"project_id=p1":     "project_id",
		"prompt_id=greeter": "prompt_id",
		"version=1":         "version",
		"prompt_id=" + pr.ID.String() + "&version=0": "version",
		"status=done":      "status",
		"since=yesterday":  "since",
		"until=2026-01-02": "until",
		"since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z": "until",
		"limit=0": "limit",
	} {
		e := errorOf(t, b.do(t, "GET", "/api/runs?"+query, nil), http.StatusBadRequest)
		require.Equal(t, []string{field}, fieldNames(e.Error.Fields), query)
	}
}

// TestRunInProgress: a run has no record until it ends; until then the
// detail asks Temporal, and a run that ended without a record is absent.
func TestRunInProgress(t *testing.T) {
	t.Parallel()
	b := runSetup(t)
	b.deploy(t, "llm", "model-llm")
	// The reply is held back until the stand-in closes at the test's end.
	b.up.Script(upstreamtest.Text("late").WithDelay(time.Hour))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	doc, err := json.Marshal(textDoc("llm", ""))
	require.NoError(t, err)
	in := run.Input{
		ResponseID: "resp_" + randomHex(24), ProjectID: b.project.ID, Document: doc, Text: "Ada", Source: run.SourcePlayground,
	}
	_, err = runEnv.Client.ExecuteWorkflow(ctx, runs.StartOptions(in), run.WorkflowName, in)
	require.NoError(t, err)
	_, err = b.up.WaitRequests(ctx, 1)
	require.NoError(t, err, "the run is calling the model")

	got := decodeAs[map[string]any](t, b.do(t, "GET", "/api/runs/"+in.ResponseID, nil), http.StatusOK)
	require.Equal(t, in.ResponseID, got["id"])
	require.Equal(t, "in_progress", got["status"])

	require.NoError(t, runEnv.Client.TerminateWorkflow(ctx, in.ResponseID, "", "test over"))
	errorOf(t, b.do(t, "GET", "/api/runs/"+in.ResponseID, nil), http.StatusNotFound)
}
