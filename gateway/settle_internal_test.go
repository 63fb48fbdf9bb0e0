package gateway

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
)

// settlingClient answers the turn query with the turn in progress for its
// first settleAfter queries and ended after, for a running run.
type settlingClient struct {
	client.Client
	settleAfter int32
	queries     atomic.Int32
	ended       run.Turn
}

func (c *settlingClient) QueryWorkflow(_ context.Context, _, _, _ string, _ ...any) (converter.EncodedValue, error) {
	out := c.ended
	if c.queries.Add(1) <= c.settleAfter {
		out.Status, out.Text = run.StatusInProgress, ""
	}
	return turnValue{out}, nil
}

func (c *settlingClient) DescribeWorkflowExecution(context.Context, string, string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	return &workflowservice.DescribeWorkflowExecutionResponse{
		WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{Status: enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING}}, nil
}

type turnValue struct{ out run.Turn }

func (v turnValue) HasValue() bool { return true }
func (v turnValue) Get(ptr any) error {
	b, err := json.Marshal(v.out)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, ptr)
}

// TestReadRightAfterTheAnswerAgreesWithIt: a first turn that its model call
// ended (the run's row says so) before the workflow had the reply is read
// as ended, once the workflow reports it; a turn that has not ended is
// read as it stands, at once.
func TestReadRightAfterTheAnswerAgreesWithIt(t *testing.T) {
	pool, _ := dbtest.NewSchema(t)
	q := dbsqlc.New(pool)
	project, err := q.CreateProject(t.Context(), dbsqlc.CreateProjectParams{Name: "settle"})
	require.NoError(t, err)
	record := func(id, status string) {
		_, err := q.CreateRun(t.Context(), dbsqlc.CreateRunParams{
			ID: id, ProjectID: project.ID, Deployment: "greeter", Model: "qwen", Source: "api", Status: status,
			Input: []byte(`{}`), ModelCalls: []byte(`[]`), ToolCalls: []byte(`[]`), Metadata: []byte(`{}`),
			CreatedAt: time.Now(), FinishedAt: time.Now(),
		})
		require.NoError(t, err)
	}
	record("resp_ended", run.StatusCompleted)
	record("resp_paused", run.StatusWaiting)
	ended := run.Turn{ResponseID: "resp_ended", Turn: 1, Status: run.StatusCompleted, Text: "Hi"}
	running := run.Turn{ResponseID: "resp_ended", Turn: 1, Status: run.StatusInProgress}

	c := &settlingClient{settleAfter: 3, ended: ended}
	f := &firstTurn{runs: runsOver(t, c), q: q}
	out, err := f.settled(t.Context(), project.ID, "resp_ended", running)
	require.NoError(t, err)
	require.Equal(t, ended, out)
	require.EqualValues(t, 4, c.queries.Load(), "asked again until the workflow reported the end")

	for _, id := range []string{"resp_paused", "resp_none"} {
		c := &settlingClient{settleAfter: 3, ended: ended}
		f := &firstTurn{runs: runsOver(t, c), q: q}
		out, err := f.settled(t.Context(), project.ID, id, running)
		require.NoError(t, err)
		require.Equal(t, running, out, id)
		require.Zero(t, c.queries.Load(), "%s: no row says the turn ended", id)
	}
}

func runsOver(t *testing.T, c client.Client) *runs.Client {
	t.Helper()
	rc, err := runs.New(c, "")
	require.NoError(t, err)
	return rc
}
