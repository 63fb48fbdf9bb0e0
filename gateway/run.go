package gateway

import (
	"context"
	"errors"

	"go.temporal.io/sdk/client"

	"github.com/budhq/bud/workflows"
)

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
