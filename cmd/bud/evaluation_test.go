package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/evaluation"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/upstreamtest"
	"github.com/budhq/bud/workflows"
)

// TestEvaluationSurvivesItsWorker runs an evaluation of 100 rows x 2
// candidates on a real `bud worker`, SIGKILLs it once about half the runs
// are scored, starts another, and checks the evaluation ends with the same
// scorecard as an uninterrupted one, every run completed once (one
// completed PromptRun per run id in Temporal's visibility), and the model
// called once per run but for the calls the kill cut short.
func TestEvaluationSurvivesItsWorker(t *testing.T) {
	f := newWorkerFixture(t)
	const rows, candidates, parallelism = 100, 2, 8
	f.up.SetDefault(upstreamtest.Echo().WithDelay(20 * time.Millisecond))

	ds, err := f.q.CreateDataset(f.ctx, dbsqlc.CreateDatasetParams{ProjectID: f.project.ID, Name: "survival"})
	require.NoError(t, err)
	params := make([]dbsqlc.InsertDatasetRowsParams, rows)
	for i := range params {
		text := fmt.Sprintf("row %d", i)
		params[i] = dbsqlc.InsertDatasetRowsParams{DatasetID: ds.ID, Position: int32(i), Text: &text,
			Checks: []byte(`[{"type":"cel","name":"ends in 0","expression":"text.endsWith('0')"},{"type":"contains","value":"row"}]`)}
	}
	_, err = f.q.InsertDatasetRows(f.ctx, params)
	require.NoError(t, err)
	_, err = f.q.SetDatasetRowCount(f.ctx, dbsqlc.SetDatasetRowCountParams{ID: ds.ID, RowCount: rows})
	require.NoError(t, err)

	cands := make([]workflows.EvaluationCandidate, candidates)
	for c := range cands {
		doc, err := json.Marshal(map[string]any{
			"deployment": "m", "system_prompt": fmt.Sprintf("Candidate %d.", c),
			"messages": []any{map[string]any{"role": "user", "content": "{{ input }}"}},
		})
		require.NoError(t, err)
		cands[c] = workflows.EvaluationCandidate{Document: doc}
	}
	start := func() (dbsqlc.Evaluation, client.WorkflowRun) {
		ev, err := f.q.CreateEvaluation(f.ctx, dbsqlc.CreateEvaluationParams{
			ProjectID: f.project.ID, DatasetID: ds.ID, Candidates: []byte("[]"), Tools: "live", Parallelism: parallelism, RowCount: rows,
		})
		require.NoError(t, err)
		we, err := f.c.ExecuteWorkflow(f.ctx, client.StartWorkflowOptions{ID: evaluation.WorkflowID(ev.ID), TaskQueue: run.TaskQueue},
			evaluation.WorkflowName, workflows.EvaluationInput{
				EvaluationID: ev.ID, ProjectID: f.project.ID, DatasetID: ds.ID, Rows: rows, Candidates: cands, Parallelism: parallelism,
			})
		require.NoError(t, err)
		return ev, we
	}
	scored := func(ev dbsqlc.Evaluation) int64 {
		progress, err := f.q.EvaluationProgress(f.ctx, ev.ID)
		require.NoError(t, err)
		var n int64
		for _, p := range progress {
			n += p.Done
		}
		return n
	}

	// Interrupted: the worker dies once half the runs are scored.
	first := f.startWorker()
	killed, we := start()
	require.Eventually(t, func() bool { return scored(killed) >= rows*candidates/2 }, 2*time.Minute, 20*time.Millisecond)
	require.NoError(t, first.Process.Kill())
	_, _ = first.Process.Wait()
	atKill := scored(killed)
	require.Less(t, atKill, int64(rows*candidates), "killed before the end")
	f.startWorker()
	var out workflows.EvaluationOutput
	require.NoError(t, we.Get(f.ctx, &out))
	require.Equal(t, workflows.EvaluationCompleted, out.Status)
	callsOfKilled := f.up.Requests()

	// Uninterrupted, on the worker that took over.
	whole, we := start()
	require.NoError(t, we.Get(f.ctx, &out))
	require.Equal(t, workflows.EvaluationCompleted, out.Status)

	type card struct {
		Scores        []dbsqlc.EvaluationScoresRow
		Checks        []dbsqlc.EvaluationCheckScoresRow
		Disagreements int64
	}
	cardOf := func(ev dbsqlc.Evaluation) card {
		var c card
		c.Scores, err = f.q.EvaluationScores(f.ctx, ev.ID)
		require.NoError(t, err)
		for i := range c.Scores {
			c.Scores[i].LatencyP50, c.Scores[i].LatencyP95 = 0, 0 // wall time differs run to run
		}
		c.Checks, err = f.q.EvaluationCheckScores(f.ctx, ev.ID)
		require.NoError(t, err)
		c.Disagreements, err = f.q.CountEvaluationDisagreements(f.ctx, ev.ID)
		require.NoError(t, err)
		return c
	}
	want := cardOf(whole)
	require.Len(t, want.Scores, candidates)
	require.Equal(t, int64(rows), want.Scores[0].Runs)
	require.Equal(t, int64(rows/10), want.Scores[0].Passed, "the rows ending in 0 pass")
	require.Equal(t, want, cardOf(killed), "the same scorecard as an uninterrupted evaluation")
	for _, ev := range []dbsqlc.Evaluation{killed, whole} {
		got, err := f.q.GetEvaluation(f.ctx, ev.ID)
		require.NoError(t, err)
		require.Equal(t, workflows.EvaluationCompleted, got.Status)
	}

	// Every run of the interrupted evaluation completed exactly once.
	prefix := strings.TrimSuffix(evaluation.RunID(killed.ID, 0, 0), "r0c0")
	require.Eventually(t, func() bool {
		completed := map[string]int{}
		var token []byte
		for {
			resp, err := f.c.ListWorkflow(f.ctx, &workflowservice.ListWorkflowExecutionsRequest{
				Namespace: "default", PageSize: 1000, NextPageToken: token,
				Query: fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Completed' AND BudProjectId = '%s'", run.WorkflowName, f.project.ID),
			})
			require.NoError(t, err)
			for _, e := range resp.GetExecutions() {
				if id := e.GetExecution().GetWorkflowId(); strings.HasPrefix(id, prefix) {
					completed[id]++
				}
			}
			if token = resp.GetNextPageToken(); len(token) == 0 {
				break
			}
		}
		if len(completed) != rows*candidates {
			return false
		}
		for id, n := range completed {
			require.Equal(t, 1, n, id)
		}
		return true
	}, time.Minute, 100*time.Millisecond, "one completed run per row and candidate")

	// The model was called once per run, but for calls in flight when the
	// worker died (retried elsewhere): at most one per run in flight.
	perRun := map[string]int{}
	for _, r := range callsOfKilled {
		msgs := r.JSON["messages"].([]any)
		key := fmt.Sprint(msgs[0].(map[string]any)["content"], " / ", msgs[len(msgs)-1].(map[string]any)["content"])
		perRun[key]++
	}
	require.Len(t, perRun, rows*candidates, "every row and candidate reached the model")
	extra := len(callsOfKilled) - rows*candidates
	require.LessOrEqual(t, extra, parallelism, "only the calls the kill cut short were made again")
	t.Logf("scored at the kill: %d of %d; model calls made again after it: %d", atKill, rows*candidates, extra)
}
