package workflows

import (
	"context"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// StartError is a run that could not be started.
type StartError struct{ Err error }

func (e *StartError) Error() string { return fmt.Sprintf("start prompt run: %v", e.Err) }
func (e *StartError) Unwrap() error { return e.Err }

// Start starts a run of in with update-with-start: one request both starts
// the workflow and waits on its first turn (UpdateAwaitTurn 1). It returns
// once the server has reached stage — Accepted: the run's first workflow
// task has taken the wait; Completed: the first turn has ended too — and
// wait then gives the first turn's output, as soon as that turn ends, even
// when the run goes on to wait for function outputs or approvals. A run
// that could not be started is a *StartError.
func Start(ctx context.Context, c client.Client, in PromptRunInput, stage client.WorkflowUpdateStage) (wait func() (PromptRunOutput, error), err error) {
	opts := StartOptions(in)
	opts.WorkflowIDConflictPolicy = enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL
	opts.EnableEagerStart = false // not offered with update-with-start
	start := c.NewWithStartWorkflowOperation(opts, PromptRunWorkflow, in)
	h, err := c.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: start,
		UpdateOptions: client.UpdateWorkflowOptions{
			UpdateName:   UpdateAwaitTurn,
			Args:         []any{1},
			WaitForStage: stage,
		},
	})
	if err != nil {
		if _, serr := start.Get(ctx); serr != nil {
			return nil, &StartError{serr}
		}
		return nil, err
	}
	return func() (out PromptRunOutput, err error) {
		err = h.Get(ctx, &out)
		return out, err
	}, nil
}
