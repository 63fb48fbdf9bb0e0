package workflows

// Recording: the run's row in the runs table, written as the run stands.

import (
	"encoding/json"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/run"
)

// record writes the run's row as it stands: status is the run's, which
// while paused is run.StatusWaiting. A run its model call recorded is not
// written again.
func (r *promptRun) record(ctx workflow.Context, status string) error {
	if r.recorded {
		return nil
	}
	rec, err := r.runRecord(ctx, status)
	if err != nil {
		return err
	}
	if r.in.TurnSubject != "" && len(r.turns) == 1 && r.runErr == nil {
		// The first turn has just ended (a pause timeout records a turn
		// that ended before): RecordRun announces it once the row is
		// written, so the caller's answer never runs ahead of the runs
		// table.
		rec.TurnSubject, rec.EventKey = r.in.TurnSubject, r.in.EventKey
		if rec.Turn, err = json.Marshal(r.turns[0]); err != nil {
			return fmt.Errorf("prompt run: encode turn: %w", err)
		}
	}

	// A local activity: one insert does not need its own round trip through
	// the server, and a sequential run is ~5 ms faster for it. It is retried
	// by the workflow task like any local activity, so a crash re-runs it on
	// the next worker; the insert is an upsert on the run id.
	var a *activities.Activities
	ctx = workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: recordRunTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
			MaximumAttempts:    10,
		},
	})
	if err := workflow.ExecuteLocalActivity(ctx, a.RecordRun, rec).Get(ctx, nil); err != nil {
		return fmt.Errorf("prompt run: record run: %w", err)
	}
	return nil
}

// runRecord is the run's row as it stands, with status.
func (r *promptRun) runRecord(ctx workflow.Context, status string) (activities.RunRecord, error) {
	now := workflow.Now(ctx)
	rec := activities.RunRecord{
		ID:            r.in.ResponseID,
		ProjectID:     r.in.ProjectID,
		PromptID:      r.in.PromptID,
		PromptVersion: r.in.PromptVersion,
		Deployment:    r.in.Deployment,
		Model:         r.cur.Model,
		Source:        r.in.Source,
		Status:        status,
		Input: activities.RunInput{
			Text:         r.in.Text,
			Variables:    r.in.Variables,
			InputItems:   r.in.InputItems,
			Instructions: r.in.Instructions,
		},
		ModelCalls:   r.calls,
		InputTokens:  r.usage.InputTokens,
		OutputTokens: r.usage.OutputTokens,
		LatencyMS:    now.Sub(r.startedAt).Milliseconds(),
		Metadata:     r.in.Metadata,
		CreatedAt:    r.startedAt,
		FinishedAt:   now,
		DocumentKey:  r.in.DocumentKey,
		ReplayOf:     r.in.ReplayOf,
	}
	if r.prepared {
		rec.RenderedMessages = r.prep.Messages
		if r.in.Text == "" {
			rec.Input.Variables = r.prep.Variables
		}
	}
	var err error
	if len(r.listings) > 0 {
		if rec.ToolListings, err = json.Marshal(r.listings); err != nil {
			return rec, fmt.Errorf("prompt run: encode tool listings: %w", err)
		}
	}
	if len(r.toolCalls) > 0 {
		if rec.ToolCalls, err = json.Marshal(r.toolCalls); err != nil {
			return rec, fmt.Errorf("prompt run: encode tool calls: %w", err)
		}
	}
	if r.cur.Status != run.StatusFailed || r.cur.Text != "" {
		out := activities.RunOutput{Text: r.cur.Text, Parsed: r.cur.Parsed}
		if len(r.cur.FunctionCalls) > 0 {
			out.FunctionCalls = r.cur.FunctionCalls
		}
		if len(r.cur.ApprovalRequests) > 0 {
			out.ApprovalRequests = r.cur.ApprovalRequests
		}
		if r.cur.Turn > 1 {
			out.Turns = r.cur.Turn
		}
		if rec.Output, err = json.Marshal(out); err != nil {
			return rec, fmt.Errorf("prompt run: encode output: %w", err)
		}
	}
	runErr := r.cur.Error
	if r.runErr != nil {
		runErr = r.runErr
	}
	if runErr != nil {
		if rec.Error, err = json.Marshal(runErr); err != nil {
			return rec, fmt.Errorf("prompt run: encode error: %w", err)
		}
	}
	return rec, nil
}
