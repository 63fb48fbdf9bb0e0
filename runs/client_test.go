package runs_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/budhq/bud/evaluation"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/temporalserver"
)

// standIn is a workflow under the run's name that keeps the run's update and
// query contract without a model: its first turn pauses for one function
// output, its second ends the run with that output as its text. It lets the
// client be tested against a real server on its own.
func standIn(ctx workflow.Context, in run.Input) (run.Turn, error) {
	turns := []run.Turn{}
	cur := run.Turn{ResponseID: run.TurnID(in.ResponseID, 1), Turn: 1, Status: run.StatusInProgress}
	var resumed *run.ContinueInput
	decided := false
	_ = workflow.SetQueryHandler(ctx, run.QueryTurn, func(n int) (run.Turn, error) {
		if n >= 1 && n <= len(turns) {
			return turns[n-1], nil
		}
		if n == cur.Turn {
			return cur, nil
		}
		return run.Turn{}, errors.New("no such turn")
	})
	_ = workflow.SetUpdateHandler(ctx, run.UpdateAwaitTurn, func(ctx workflow.Context, n int) (run.Turn, error) {
		err := workflow.Await(ctx, func() bool { return len(turns) >= n })
		if err != nil {
			return run.Turn{}, err
		}
		return turns[n-1], nil
	})
	_ = workflow.SetUpdateHandlerWithOptions(ctx, run.UpdateContinue, func(ctx workflow.Context, c run.ContinueInput) (run.Turn, error) {
		resumed = &c
		err := workflow.Await(ctx, func() bool { return len(turns) >= 2 })
		if err != nil {
			return run.Turn{}, err
		}
		return turns[1], nil
	}, workflow.UpdateHandlerOptions{Validator: func(c run.ContinueInput) error {
		if resumed != nil || c.PreviousResponseID != in.ResponseID {
			return temporal.NewNonRetryableApplicationError("not the paused turn", run.InvalidContinue, nil, "previous_response_id")
		}
		return nil
	}})
	_ = workflow.SetUpdateHandlerWithOptions(ctx, run.UpdateApprove, func(ctx workflow.Context, d run.ApprovalDecision) error {
		decided = true
		return nil
	}, workflow.UpdateHandlerOptions{Validator: func(d run.ApprovalDecision) error {
		if d.ID != "mcpr_1" {
			return temporal.NewNonRetryableApplicationError("no such request", run.NoApprovalRequest, nil)
		}
		if decided {
			return temporal.NewNonRetryableApplicationError("already decided", run.InvalidContinue, nil)
		}
		return nil
	}})
	cur.Status, cur.Waiting = run.StatusCompleted, true
	cur.FunctionCalls = []run.FunctionCall{{CallID: "call_1", Name: "lookup"}}
	turns = append(turns, cur)
	cur = run.Turn{ResponseID: run.TurnID(in.ResponseID, 2), Turn: 2, PreviousResponseID: in.ResponseID, Status: run.StatusInProgress}
	if err := workflow.Await(ctx, func() bool { return resumed != nil }); err != nil {
		return run.Turn{}, err
	}
	cur.Status, cur.Text = run.StatusCompleted, string(resumed.InputItems)
	turns = append(turns, cur)
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return run.Turn{}, err
	}
	return cur, nil
}

// evaluationStandIn is a workflow under the evaluation's name that ends at
// once when its input says done, and otherwise runs until it is canceled.
// Given a child, it first starts a run of that id as Evaluation starts its
// runs (options without a priority of their own).
func evaluationStandIn(ctx workflow.Context, in map[string]any) error {
	if in["done"] == true {
		return nil
	}
	if id, ok := in["child"].(string); ok {
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: id, TaskQueue: run.TaskQueue})
		child := workflow.ExecuteChildWorkflow(cctx, run.WorkflowName, run.Input{ResponseID: id})
		if err := child.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
			return err
		}
	}
	return workflow.Await(ctx, func() bool { return false })
}

type bundle struct {
	ctx     context.Context
	client  *runs.Client
	tc      client.Client
	project uuid.UUID
}

func setup(t *testing.T, mode string) *bundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	srv, err := temporalserver.Start(ctx, temporalserver.Options{SearchAttributes: runs.SearchAttributes()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })
	tc, err := client.Dial(client.Options{HostPort: srv.HostPort(), Namespace: srv.Namespace(),
		Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	require.NoError(t, err)
	t.Cleanup(tc.Close)
	w := worker.New(tc, run.TaskQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(standIn, workflow.RegisterOptions{Name: run.WorkflowName})
	w.RegisterWorkflowWithOptions(evaluationStandIn, workflow.RegisterOptions{Name: evaluation.WorkflowName})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	rc, err := runs.New(tc, mode)
	require.NoError(t, err)
	return &bundle{ctx: ctx, client: rc, tc: tc, project: uuid.New()}
}

func (b *bundle) input() run.Input {
	return run.Input{ResponseID: "resp_" + uuid.NewString()[:8], ProjectID: b.project, Document: []byte(`{}`), Source: run.SourceAPI}
}

func TestNewRefusesAnUnknownMode(t *testing.T) {
	_, err := runs.New(nil, "later")
	require.ErrorContains(t, err, `"later"`)
}

// TestRunThroughItsTurns starts a run, reads its first turn, finds it by its
// response id, continues it, and reads both turns and its history back; a
// refused continue and another project's lookup fail as the contract says.
func TestRunThroughItsTurns(t *testing.T) {
	for _, mode := range []string{runs.StartThenUpdate, runs.StartWithUpdate} {
		t.Run(mode, func(t *testing.T) {
			b := setup(t, mode)
			in := b.input()
			wait, err := b.client.Start(b.ctx, in, runs.Completed)
			require.NoError(t, err)
			first, err := wait()
			require.NoError(t, err)
			require.True(t, first.Waiting)
			require.Equal(t, in.ResponseID, first.ResponseID)

			found, err := b.client.Find(b.ctx, b.project, in.ResponseID)
			require.NoError(t, err)
			require.Equal(t, in.ResponseID, found.ID)
			require.Equal(t, 1, found.Turn)
			require.Equal(t, in, found.Input)
			require.Equal(t, in.ResponseID+"_2", found.NextResponseID())
			_, err = b.client.Find(b.ctx, uuid.New(), in.ResponseID)
			require.ErrorIs(t, err, runs.ErrNotFound, "another project's run is as absent as none")
			_, err = b.client.Find(b.ctx, b.project, "chatcmpl_1")
			require.ErrorIs(t, err, runs.ErrNotResponseID)
			require.ErrorIs(t, err, runs.ErrNotFound)
			_, err = b.client.Find(b.ctx, b.project, in.ResponseID+"_9")
			require.NoError(t, err, "a later turn's id finds its run; whether it has the turn is Turn's to say")

			started, running, err := b.client.Running(b.ctx, in.ResponseID)
			require.NoError(t, err)
			require.True(t, running)
			require.False(t, started.IsZero())

			_, err = b.client.Continue(b.ctx, in.ResponseID, run.ContinueInput{PreviousResponseID: "resp_other"}, runs.Accepted)
			msg, param, ok := run.Refused(err)
			require.True(t, ok, "%v", err)
			require.Equal(t, "not the paused turn", msg)
			require.Equal(t, "previous_response_id", param)

			wait, err = b.client.Continue(b.ctx, in.ResponseID, run.ContinueInput{PreviousResponseID: in.ResponseID, InputItems: []byte(`[]`)}, runs.Accepted)
			require.NoError(t, err)
			second, err := wait()
			require.NoError(t, err)
			require.Equal(t, "[]", second.Text)

			turn, ok, err := b.client.Turn(b.ctx, in.ResponseID, 2)
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, second.ResponseID, turn.ResponseID)
			_, ok, err = b.client.Turn(b.ctx, in.ResponseID, 3)
			require.NoError(t, err)
			require.False(t, ok, "a turn the run never had")

			hist, err := b.client.History(b.ctx, in.ResponseID)
			require.NoError(t, err)
			require.NotNil(t, hist.Events[0].GetWorkflowExecutionStartedEventAttributes())
			require.NotNil(t, hist.Events[len(hist.Events)-1].GetWorkflowExecutionCompletedEventAttributes())

			_, running, err = b.client.Running(b.ctx, in.ResponseID)
			require.NoError(t, err)
			require.False(t, running)
			_, err = b.client.Continue(b.ctx, in.ResponseID, run.ContinueInput{PreviousResponseID: in.ResponseID}, runs.Accepted)
			require.ErrorIs(t, err, runs.ErrNotFound, "an ended run cannot be continued")
		})
	}
}

// TestApproveAndCancel decides an approval twice and cancels the run.
func TestApproveAndCancel(t *testing.T) {
	b := setup(t, "")
	in := b.input()
	wait, err := b.client.Start(b.ctx, in, runs.Completed)
	require.NoError(t, err)
	_, err = wait()
	require.NoError(t, err)

	var appErr *temporal.ApplicationError
	err = b.client.Approve(b.ctx, in.ResponseID, run.ApprovalDecision{ID: "mcpr_2", Approve: true})
	require.ErrorAs(t, err, &appErr)
	require.Equal(t, 404, run.HTTPStatus(appErr.Type()))
	require.NoError(t, b.client.Approve(b.ctx, in.ResponseID, run.ApprovalDecision{ID: "mcpr_1", Approve: true}))
	err = b.client.Approve(b.ctx, in.ResponseID, run.ApprovalDecision{ID: "mcpr_1", Approve: true})
	require.ErrorAs(t, err, &appErr)
	require.Equal(t, 409, run.HTTPStatus(appErr.Type()))
	require.ErrorIs(t, b.client.Approve(b.ctx, "resp_none", run.ApprovalDecision{ID: "mcpr_1"}), runs.ErrNotFound)

	require.NoError(t, b.client.Cancel(b.ctx, in.ResponseID))
	require.NoError(t, b.client.Cancel(b.ctx, in.ResponseID), "asking twice is harmless")
	require.ErrorIs(t, b.client.Cancel(b.ctx, "resp_none"), runs.ErrNotFound)
	require.ErrorIs(t, b.client.Cancel(b.ctx, "not-a-response"), runs.ErrNotFound)
}

// TestStartAndCancelAnEvaluation: the client that starts runs starts an
// evaluation's workflow under the evaluation's workflow id and cancels it;
// canceling one that has ended is harmless, one that never was ErrNotFound.
func TestStartAndCancelAnEvaluation(t *testing.T) {
	b := setup(t, "")
	id := uuid.New()
	require.NoError(t, b.client.StartEvaluation(b.ctx, id, map[string]any{"rows": 1}))
	desc, err := b.tc.DescribeWorkflowExecution(b.ctx, evaluation.WorkflowID(id), "")
	require.NoError(t, err)
	require.Equal(t, evaluation.WorkflowName, desc.GetWorkflowExecutionInfo().GetType().GetName())
	require.Equal(t, run.TaskQueue, desc.GetWorkflowExecutionInfo().GetTaskQueue())

	require.NoError(t, b.client.CancelEvaluation(b.ctx, id))
	err = b.tc.GetWorkflow(b.ctx, evaluation.WorkflowID(id), "").Get(b.ctx, nil)
	var canceled *temporal.CanceledError
	require.ErrorAs(t, err, &canceled)

	done := uuid.New()
	require.NoError(t, b.client.StartEvaluation(b.ctx, done, map[string]any{"done": true}))
	require.NoError(t, b.tc.GetWorkflow(b.ctx, evaluation.WorkflowID(done), "").Get(b.ctx, nil))
	require.NoError(t, b.client.CancelEvaluation(b.ctx, done), "canceling one that has ended changes nothing")
	require.ErrorIs(t, b.client.CancelEvaluation(b.ctx, uuid.New()), runs.ErrNotFound, "it never was")
}

// TestRunsCarryTheirShare: a deployment's run starts with its deployment's
// fairness key and min_concurrency as weight, a playground run with its
// project's key, an evaluation with its own, which its runs inherit.
func TestRunsCarryTheirShare(t *testing.T) {
	b := setup(t, "")
	in := b.input()
	in.Deployment, in.DeploymentID, in.MinConcurrency = "bot", uuid.New(), 3
	wait, err := b.client.Start(b.ctx, in, runs.Completed)
	require.NoError(t, err)
	_, err = wait()
	require.NoError(t, err)
	desc, err := b.tc.DescribeWorkflowExecution(b.ctx, in.ResponseID, "")
	require.NoError(t, err)
	pri := desc.GetWorkflowExecutionInfo().GetPriority()
	require.Equal(t, "deployment:"+in.DeploymentID.String(), pri.GetFairnessKey())
	require.Equal(t, float32(3), pri.GetFairnessWeight())

	play := b.input()
	wait, err = b.client.Start(b.ctx, play, runs.Completed)
	require.NoError(t, err)
	_, err = wait()
	require.NoError(t, err)
	desc, err = b.tc.DescribeWorkflowExecution(b.ctx, play.ResponseID, "")
	require.NoError(t, err)
	require.Equal(t, "project:"+b.project.String(), desc.GetWorkflowExecutionInfo().GetPriority().GetFairnessKey())

	id, child := uuid.New(), "resp_evalchild"+uuid.NewString()[:8]
	require.NoError(t, b.client.StartEvaluation(b.ctx, id, map[string]any{"child": child}))
	require.Eventually(t, func() bool {
		desc, err := b.tc.DescribeWorkflowExecution(b.ctx, child, "")
		return err == nil && desc.GetWorkflowExecutionInfo().GetPriority().GetFairnessKey() == "evaluation:"+id.String()
	}, 10*time.Second, 50*time.Millisecond, "an evaluation's runs draw on the evaluation's share")
	require.NoError(t, b.client.CancelEvaluation(b.ctx, id))
}

func TestFairnessWeight(t *testing.T) {
	for minConcurrency, want := range map[int]float32{0: 1, 1: 1, 4: 4, 1000: 1000, 5000: runs.MaxFairnessWeight} {
		require.Equal(t, want, runs.FairnessWeight(minConcurrency), "min_concurrency %d", minConcurrency)
	}
}

// TestRunsCarryASummary: a run's workflow carries the line the Temporal
// UI shows for it, saying what ran and how it started.
func TestRunsCarryASummary(t *testing.T) {
	b := setup(t, "")
	in := b.input()
	in.Deployment, in.PromptVersion, in.Source = "greeter", 3, run.SourceAPI
	wait, err := b.client.Start(b.ctx, in, runs.Completed)
	require.NoError(t, err)
	_, err = wait()
	require.NoError(t, err)
	desc, err := b.tc.DescribeWorkflowExecution(b.ctx, in.ResponseID, "")
	require.NoError(t, err)
	var summary string
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(desc.GetExecutionConfig().GetUserMetadata().GetSummary(), &summary))
	require.Equal(t, "prompt greeter v3 · gateway", summary)
}

func TestSummary(t *testing.T) {
	prompt := uuid.MustParse("0b5f6a2e-0000-4000-8000-0000000000e1")
	for _, c := range []struct {
		in   run.Input
		want string
	}{
		{run.Input{Deployment: "greeter", PromptVersion: 3, Source: run.SourceAPI}, "prompt greeter v3 · gateway"},
		{run.Input{Source: run.SourcePlayground}, "unsaved document · playground"},
		{run.Input{PromptID: prompt, PromptVersion: 2, Source: "evaluation"}, "prompt 0b5f…e1 v2 · evaluation"},
		{run.Input{PromptID: prompt, PromptVersion: 2, Source: run.SourcePlayground, ReplayOf: "resp_x"}, "prompt 0b5f…e1 v2 · replay of resp_x"},
		{run.Input{Deployment: "greeter", PromptVersion: 1, Source: run.SourceAPI, Background: true}, "prompt greeter v1 · gateway, background"},
	} {
		require.Equal(t, c.want, runs.Summary(c.in))
	}
}
