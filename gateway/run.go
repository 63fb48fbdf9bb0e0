package gateway

import (
	"context"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/budhq/bud/workflows"
)

// How the gateway starts a run and waits for its first turn.
const (
	// WaitUpdate starts the run and waits for its first turn in one
	// request, update-with-start (workflows.UpdateAwaitTurn). The default:
	// the answer comes as soon as the turn ends, even when the run then
	// pauses, and the measured latency is the lower (see the README).
	WaitUpdate = "update"
	// WaitResult starts the run with eager start, then long-polls for the
	// workflow's result. Kept to measure against.
	WaitResult = "result"
)

// startRun starts the run of in and waits for its first turn to end.
func (g *Gateway) startRun(ctx context.Context, in workflows.PromptRunInput) (workflows.PromptRunOutput, error) {
	wait, err := g.beginRun(ctx, in, client.WorkflowUpdateStageCompleted)
	if err != nil {
		return workflows.PromptRunOutput{}, err
	}
	return wait()
}

// beginRun starts the run of in and returns once the server has it (stage
// Accepted: the run's first workflow task has taken the wait; Completed:
// the first turn has ended too); wait then gives the first turn's output.
// A run that could not be started is a *startError.
func (g *Gateway) beginRun(ctx context.Context, in workflows.PromptRunInput, stage client.WorkflowUpdateStage) (wait func() (workflows.PromptRunOutput, error), err error) {
	opts := workflows.StartOptions(in)
	if g.cfg.RunWait == WaitResult {
		run, err := g.cfg.Temporal.ExecuteWorkflow(ctx, opts, workflows.PromptRunWorkflow, in)
		if err != nil {
			return nil, &startError{err}
		}
		return func() (out workflows.PromptRunOutput, err error) {
			err = run.Get(ctx, &out)
			return out, err
		}, nil
	}
	opts.WorkflowIDConflictPolicy = enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL
	opts.EnableEagerStart = false // not offered with update-with-start
	start := g.cfg.Temporal.NewWithStartWorkflowOperation(opts, workflows.PromptRunWorkflow, in)
	h, err := g.cfg.Temporal.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: start,
		UpdateOptions: client.UpdateWorkflowOptions{
			UpdateName:   workflows.UpdateAwaitTurn,
			Args:         []any{1},
			WaitForStage: stage,
		},
	})
	if err != nil {
		if _, serr := start.Get(ctx); serr != nil {
			return nil, &startError{serr}
		}
		return nil, err
	}
	return func() (out workflows.PromptRunOutput, err error) {
		err = h.Get(ctx, &out)
		return out, err
	}, nil
}

// startError is a run that did not start.
type startError struct{ err error }

func (e *startError) Error() string { return fmt.Sprintf("start prompt run: %v", e.err) }
func (e *startError) Unwrap() error { return e.err }
