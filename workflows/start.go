package workflows

import (
	"context"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// StartError is a run that could not be started.
type StartError struct{ Err error }

func (e *StartError) Error() string { return fmt.Sprintf("start prompt run: %v", e.Err) }
func (e *StartError) Unwrap() error { return e.Err }

// StartTimeout bounds how long Start waits for the server to take a run: a
// Temporal that is down, or a namespace it lacks, is a StartError after it,
// not a request that hangs. The wait for the turn itself has no such bound.
const StartTimeout = 10 * time.Second

// Start starts a run of in with update-with-start: one request both starts
// the workflow and waits on its first turn (UpdateAwaitTurn 1). It returns
// once the server has reached stage — Accepted: the run's first workflow
// task has taken the wait; Completed: the first turn has ended too (the
// server answers within its long-poll interval either way, and wait polls
// on) — and wait then gives the first turn's output, as soon as that turn
// ends, even when the run goes on to wait for function outputs or
// approvals. A run that could not be started within StartTimeout is a
// *StartError; a run that started but whose worker did not take the wait
// in that time (none is running yet) is waited for all the same.
func Start(ctx context.Context, c client.Client, in PromptRunInput, stage client.WorkflowUpdateStage) (wait func() (PromptRunOutput, error), err error) {
	opts := StartOptions(in)
	opts.WorkflowIDConflictPolicy = enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL
	opts.EnableEagerStart = false // not offered with update-with-start
	await := client.UpdateWorkflowOptions{
		UpdateName:   UpdateAwaitTurn,
		Args:         []any{1},
		WaitForStage: stage,
	}
	start := c.NewWithStartWorkflowOperation(opts, PromptRunWorkflow, in)
	sctx, cancel := context.WithTimeout(ctx, StartTimeout)
	h, err := c.UpdateWithStartWorkflow(sctx, client.UpdateWithStartWorkflowOptions{StartWorkflowOperation: start, UpdateOptions: await})
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		gctx, cancel := context.WithTimeout(ctx, time.Second)
		run, serr := start.Get(gctx)
		cancel()
		if serr != nil || run == nil {
			return nil, &StartError{err}
		}
		// Started, but not taken in time: wait for it on its own.
		await.WorkflowID = in.ResponseID
		if h, err = c.UpdateWorkflow(ctx, await); err != nil {
			return nil, err
		}
	}
	return func() (out PromptRunOutput, err error) {
		err = h.Get(ctx, &out)
		return out, err
	}, nil
}
