package gateway

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/client"

	"github.com/budhq/bud/workflows"
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
	wait, err = workflows.Start(ctx, g.cfg.Temporal, in, stage, g.cfg.RunWait)
	var se *workflows.StartError
	if errors.As(err, &se) {
		return nil, &startError{se.Err}
	}
	return wait, err
}

// startError is a run that did not start.
type startError struct{ err error }

func (e *startError) Error() string { return fmt.Sprintf("start prompt run: %v", e.err) }
func (e *startError) Unwrap() error { return e.err }

// continueRun resumes the paused run runID with c and returns once the
// server has the update (stage Accepted: the run has taken the input;
// Completed: the next turn has ended too); wait then gives the next turn's
// output. A continue the run refuses (workflows.ErrInvalidContinue) is an
// error here, before any wait.
func (g *Gateway) continueRun(ctx context.Context, runID string, c workflows.ContinueInput, stage client.WorkflowUpdateStage) (wait func() (workflows.PromptRunOutput, error), err error) {
	h, err := g.cfg.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   runID,
		UpdateName:   workflows.UpdateContinue,
		Args:         []any{c},
		WaitForStage: stage,
	})
	if err != nil {
		return nil, err
	}
	if err := refusal(h); err != nil {
		return nil, err
	}
	return func() (out workflows.PromptRunOutput, err error) {
		err = h.Get(ctx, &out)
		return out, err
	}, nil
}

// refusal returns the error of an update its validator refused. A refusal
// is the update's outcome by the time the server answers, even at stage
// Accepted, and the handle of an update with an outcome answers Get without
// asking the server; so Get with a context already done returns the
// refusal, or says the outcome is still to come, without waiting for it.
func refusal(h client.WorkflowUpdateHandle) error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := h.Get(ctx, nil)
	var pending *client.WorkflowUpdateServiceTimeoutOrCanceledError
	if err == nil || errors.As(err, &pending) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
