package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/secrets"
	"github.com/budhq/bud/temporalserver"
	"github.com/budhq/bud/upstreamtest"
	"github.com/budhq/bud/workflows"
)

var update = flag.Bool("update", false, "rewrite "+historyFile+" from a real run of PromptRun")

// historyFile is the recorded history of one real PromptRun: a structured
// prompt whose first reply fails validation and is repaired by the second.
const historyFile = "testdata/promptrun_history.json"

// TestPromptRunReplay replays the recorded history against today's
// PromptRun. The worker re-executes the workflow code over the recorded
// events and requires every command it issues — each activity and local
// activity, in order, with its type — to match them. A change that breaks
// determinism (another step, another order, a step made conditional on
// something the history did not decide) fails here; such a change would
// fail every run in flight when workers are upgraded, and needs
// workflow.GetVersion around it. Regenerate the file with -update only for
// a change made compatible that way, never to make this test pass.
func TestPromptRunReplay(t *testing.T) {
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(workflows.PromptRun, workflow.RegisterOptions{Name: run.WorkflowName})
	require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(quietLogger(), historyFile))
}

// TestPromptRunEndToEnd runs PromptRun on an embedded Temporal server with
// a real worker, Postgres and the upstream stand-in, checks the result, the
// run's row and its search attributes, and replays the history it made.
// With -update it saves that history as historyFile.
func TestPromptRunEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	pool, _ := dbtest.NewSchema(t)
	q := dbsqlc.New(pool)
	key, err := secrets.ParseKey(secrets.NewKey())
	require.NoError(t, err)
	box, err := secrets.NewBox(key)
	require.NoError(t, err)
	up := upstreamtest.Start(t)
	up.RequireAPIKey("sk-provider")
	project, err := q.CreateProject(ctx, dbsqlc.CreateProjectParams{Name: "replay"})
	require.NoError(t, err)
	dep, err := q.CreateDeployment(ctx, dbsqlc.CreateDeploymentParams{
		ProjectID: project.ID, Name: "qwen", Kind: "model", BaseURL: up.URL(), UpstreamModel: "Qwen/Qwen3-32B",
		DefaultParams: []byte(`{}`), Settings: []byte(`{}`),
	})
	require.NoError(t, err)
	_, err = q.UpdateDeployment(ctx, dbsqlc.UpdateDeploymentParams{
		ProjectID: project.ID, ID: dep.ID, Name: dep.Name, BaseURL: dep.BaseURL, UpstreamModel: dep.UpstreamModel,
		APIKeySealed: box.Seal([]byte("sk-provider"), dep.ID[:]), DefaultParams: dep.DefaultParams, Settings: dep.Settings,
	})
	require.NoError(t, err)
	up.Script(
		upstreamtest.JSONContent(map[string]any{"summary": "Ada, a mathematician.", "score": 42}),
		upstreamtest.JSONContent(map[string]any{"summary": "Ada, a mathematician.", "score": 9}),
	)

	srv, err := temporalserver.Start(ctx, temporalserver.Options{})
	require.NoError(t, err)
	defer srv.Stop()
	c, err := client.Dial(client.Options{HostPort: srv.HostPort(), Namespace: srv.Namespace(), Identity: "promptrun-test", Logger: quietLogger()})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, runs.RegisterSearchAttributes(ctx, c, srv.Namespace()))
	require.NoError(t, runs.RegisterSearchAttributes(ctx, c, srv.Namespace()), "registering again changes nothing")

	w := workflows.NewWorker(c, activities.New(activities.Config{Identity: "promptrun-test", Pool: pool, Box: box}))
	require.NoError(t, w.Start())
	defer w.Stop()

	in := structuredInput(structuredDoc(true, 2), map[string]any{"name": "Ada", "age": 36})
	in.ResponseID = "resp_" + uuid.NewString()
	in.ProjectID = project.ID
	we := startWhenAttributesAreKnown(ctx, t, c, in)
	var out run.Turn
	require.NoError(t, we.Get(ctx, &out))

	require.Equal(t, run.StatusCompleted, out.Status, "%+v", out.Error)
	require.JSONEq(t, `{"summary": "Ada, a mathematician.", "score": 9}`, string(out.Parsed))
	require.Equal(t, 2, out.ModelCalls)
	require.Len(t, up.Requests(), 2)
	require.Equal(t, "Bearer sk-provider", up.Requests()[1].Header.Get("Authorization"))

	row, err := q.GetRun(ctx, dbsqlc.GetRunParams{ProjectID: project.ID, ID: in.ResponseID})
	require.NoError(t, err)
	require.Equal(t, run.StatusCompleted, row.Status)
	require.Equal(t, out.Usage.InputTokens, row.InputTokens)
	var calls []activities.ModelCall
	require.NoError(t, json.Unmarshal(row.ModelCalls, &calls))
	require.Len(t, calls, 2)

	desc, err := c.DescribeWorkflowExecution(ctx, in.ResponseID, "")
	require.NoError(t, err)
	indexed := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()
	var projectAttr string
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(indexed[runs.SearchAttributeProjectID], &projectAttr))
	require.Equal(t, project.ID.String(), projectAttr)
	var version int64
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(indexed[runs.SearchAttributePromptVersion], &version))
	require.Equal(t, int64(3), version)

	hist := history(ctx, t, c, in.ResponseID)
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(workflows.PromptRun, workflow.RegisterOptions{Name: run.WorkflowName})
	require.NoError(t, r.ReplayWorkflowHistory(quietLogger(), hist))

	if *update {
		anonymizeStickyQueues(hist)
		b, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(hist)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(historyFile, append(b, '\n'), 0o644))
	}

	// A first call whose reply ends the run records and announces it
	// itself (here with no NATS to announce on): the workflow records
	// nothing after it, and its history replays.
	text := textInput("hello")
	text.ResponseID = "resp_" + uuid.NewString()
	text.ProjectID = project.ID
	text.TurnSubject = "bud.run." + text.ResponseID
	we = startWhenAttributesAreKnown(ctx, t, c, text)
	require.NoError(t, we.Get(ctx, &out))
	require.Equal(t, run.StatusCompleted, out.Status, "%+v", out.Error)
	row, err = q.GetRun(ctx, dbsqlc.GetRunParams{ProjectID: project.ID, ID: text.ResponseID})
	require.NoError(t, err)
	require.JSONEq(t, fmt.Sprintf(`{"text": %q}`, out.Text), string(row.Output))
	hist = history(ctx, t, c, text.ResponseID)
	markers := 0
	for _, e := range hist.Events {
		if e.GetEventType() == enumspb.EVENT_TYPE_MARKER_RECORDED {
			markers++
		}
	}
	require.Equal(t, 1, markers, "PrepareRun's marker only: no RecordRun")
	require.NoError(t, r.ReplayWorkflowHistory(quietLogger(), hist))

	// Start's wait, eager start then an update, also answers runs that end
	// in their first workflow task (here: input the prompt refuses), which
	// the update often reaches only after the run has closed.
	for i := range 20 {
		bad := in
		bad.ResponseID = fmt.Sprintf("resp_quick_%d_%s", i, uuid.NewString())
		bad.Variables = map[string]any{"name": "Ada", "age": -1}
		rc, err := runs.New(c, runs.StartThenUpdate)
		require.NoError(t, err)
		wait, err := rc.Start(ctx, bad, runs.Completed)
		require.NoError(t, err)
		out, err := wait()
		require.NoError(t, err, "run %d", i)
		require.Equal(t, run.StatusFailed, out.Status)
		require.Equal(t, run.InvalidInput, out.Error.Code)
	}
}

// startWhenAttributesAreKnown starts the run, trying again while the
// server has yet to learn the search attributes just registered (its
// namespace cache refreshes every few seconds).
func startWhenAttributesAreKnown(ctx context.Context, t *testing.T, c client.Client, in run.Input) client.WorkflowRun {
	t.Helper()
	for {
		we, err := c.ExecuteWorkflow(ctx, runs.StartOptions(in), run.WorkflowName, in)
		var invalid *serviceerror.InvalidArgument
		if !errors.As(err, &invalid) {
			require.NoError(t, err)
			return we
		}
		select {
		case <-ctx.Done():
			t.Fatalf("start: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func history(ctx context.Context, t *testing.T, c client.Client, id string) *historypb.History {
	t.Helper()
	iter := c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for iter.HasNext() {
		e, err := iter.Next()
		require.NoError(t, err)
		h.Events = append(h.Events, e)
	}
	return h
}

// anonymizeStickyQueues renames the worker's sticky task queue, which the
// SDK names after the host, so the saved history says nothing of the
// machine that recorded it. Replay does not read task queue names.
func anonymizeStickyQueues(h *historypb.History) {
	for _, e := range h.Events {
		tq := e.GetWorkflowTaskScheduledEventAttributes().GetTaskQueue()
		if tq.GetKind() == enumspb.TASK_QUEUE_KIND_STICKY {
			tq.Name = "promptrun-test-sticky"
		}
	}
}

func quietLogger() log.Logger { return log.NewStructuredLogger(slog.New(slog.DiscardHandler)) }
