package workflows

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
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

// How Start starts a run and waits on its first turn; see "Speed" in the
// README for what each costs.
const (
	// StartWithUpdate starts the run and waits on its first turn in one
	// request (update-with-start).
	StartWithUpdate = "update"
	// StartThenUpdate starts the run with eager start — a worker sharing
	// the caller's client runs its first workflow task at once, without a
	// poll — and then waits on the first turn with an update.
	StartThenUpdate = "start"
)

// Start starts a run of in, the way mode says ("" is StartThenUpdate, the
// faster of the two as measured), and
// waits on its first turn (UpdateAwaitTurn 1). It returns once the run has
// started (StartThenUpdate) or, with update-with-start, once the server has
// reached stage — Accepted: the run's workflow has taken the wait;
// Completed: the first turn has ended too (the server answers within its
// long-poll interval either way, and wait polls on) — and wait then gives
// the first turn's output, as soon as that turn ends, even when the run
// goes on to wait for function outputs or approvals. A run that could not
// be started within StartTimeout is a *StartError; a run that started but
// whose worker did not take the wait in that time (none is running yet) is
// waited for all the same.
func Start(ctx context.Context, c client.Client, in PromptRunInput, stage client.WorkflowUpdateStage, mode string) (wait func() (PromptRunOutput, error), err error) {
	opts := StartOptions(in)
	await := client.UpdateWorkflowOptions{
		WorkflowID:   in.ResponseID,
		UpdateName:   UpdateAwaitTurn,
		Args:         []any{1},
		WaitForStage: stage,
	}
	var h client.WorkflowUpdateHandle
	sctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	if mode != StartWithUpdate {
		run, err := c.ExecuteWorkflow(sctx, opts, PromptRunWorkflow, in)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, &StartError{err}
		}
		// The run has started, and no first-turn wait is ever refused:
		// wait makes it, to the end of the turn. It may reach the server
		// only once the run has finished (or while its last workflow task
		// runs, and the server then aborts it as NotFound); a run that
		// finished before anyone could continue it has its first turn as
		// its result.
		return func() (out PromptRunOutput, err error) {
			await.WaitForStage = client.WorkflowUpdateStageCompleted
			h, err := c.UpdateWorkflow(ctx, await)
			if err == nil {
				err = h.Get(ctx, &out)
			}
			if _, ok := errors.AsType[*serviceerror.NotFound](err); ok {
				err = run.Get(ctx, &out)
			}
			return out, err
		}, nil
	}
	opts.WorkflowIDConflictPolicy = enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL
	opts.EnableEagerStart = false // not offered with update-with-start
	start := c.NewWithStartWorkflowOperation(opts, PromptRunWorkflow, in)
	withStart := await
	withStart.WorkflowID = ""
	h, err = c.UpdateWithStartWorkflow(sctx, client.UpdateWithStartWorkflowOptions{StartWorkflowOperation: start, UpdateOptions: withStart})
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
		if h, err = c.UpdateWorkflow(ctx, await); err != nil {
			return nil, err
		}
	}
	return func() (out PromptRunOutput, err error) {
		err = h.Get(ctx, &out)
		return out, err
	}, nil
}
