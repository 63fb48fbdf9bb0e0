package workflows

// Evaluations: every row of a dataset run against every candidate prompt,
// each run a child PromptRun, each finished run scored from its record.

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/evaluation"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
)

// Bounds of an evaluation's workflow.
const (
	// EvaluationPageRows is how many rows one read brings: the rows live
	// in the database, and only a page at a time in the history.
	EvaluationPageRows = 100
	// EvaluationHistoryLimit is the history length past which the
	// evaluation lets its runs in flight finish and continues as new.
	EvaluationHistoryLimit = 10_000
	// refillShare: a full evaluation starts runs again once 1/refillShare
	// of its parallelism has finished.
	refillShare = 8
	// maxScoreBatch bounds the finished runs scored in one step.
	maxScoreBatch = 100
	// awaitRecordTimeout bounds the wait for the record of a run the
	// evaluation found already started.
	awaitRecordTimeout = time.Hour
)

// EvaluationCandidate is one prompt an evaluation runs the rows against.
type EvaluationCandidate struct {
	// PromptID and Version name the saved version; zero for a document.
	PromptID uuid.UUID `json:"prompt_id"`
	Version  int32     `json:"version"`
	// Document is the pinned document every run of the candidate carries.
	Document json.RawMessage `json:"document"`
	// DocumentKey is where Document is kept by content (run.Input's), for
	// a candidate that is no saved version; empty for one that is.
	DocumentKey string `json:"document_key,omitempty"`
	// Structured says its output is structured, so its runs' outputs are
	// validated.
	Structured bool `json:"structured,omitempty"`
}

// EvaluationInput is what an evaluation runs.
type EvaluationInput struct {
	EvaluationID uuid.UUID `json:"evaluation_id"`
	ProjectID    uuid.UUID `json:"project_id"`
	DatasetID    uuid.UUID `json:"dataset_id"`
	// Rows is how many rows the dataset had at the start: rows 0 to Rows-1
	// run.
	Rows        int                   `json:"rows"`
	Candidates  []EvaluationCandidate `json:"candidates"`
	Parallelism int                   `json:"parallelism"`
	// Tools is how the runs' connection tools answer: empty (or
	// run.ReplayToolsLive) calls them; run.ReplayToolsRecorded answers each
	// row's calls from the record of the run the row was made from, as a
	// replay of that run does, so every row must have one.
	Tools string `json:"tools,omitempty"`
	// Next is the first row not yet started, when the evaluation continues
	// as new.
	Next int `json:"next,omitempty"`
	// HistoryLimit, when set, replaces EvaluationHistoryLimit (tests make
	// an evaluation continue as new with a few rows).
	HistoryLimit int `json:"history_limit,omitempty"`
}

// EvaluationOutput is how an evaluation ended; the scorecard is in the
// database, written run by run.
type EvaluationOutput struct {
	Status string `json:"status"`
}

// Statuses of an evaluation.
const (
	EvaluationRunning   = "running"
	EvaluationCompleted = "completed"
	EvaluationCanceled  = "canceled"
	EvaluationFailed    = "failed"
)

// Evaluation runs every row from in.Next on against every candidate, at
// most in.Parallelism runs at once. Each run is a child PromptRun whose id
// is fixed by (evaluation, row, candidate), so a row never runs twice to
// completion: starting a run that exists finds it, and its record is
// scored once it has one. Past EvaluationHistoryLimit events it waits for
// the runs in flight and continues as new from the next row. It records
// how it ended: completed, canceled (when canceled), or failed.
func Evaluation(ctx workflow.Context, in EvaluationInput) (EvaluationOutput, error) {
	e := &evaluationRun{in: in}
	err := e.run(ctx)
	status := EvaluationCompleted
	switch {
	case err == nil:
	case workflow.IsContinueAsNewError(err):
		return EvaluationOutput{}, err
	case temporal.IsCanceledError(err) || errors.Is(ctx.Err(), workflow.ErrCanceled):
		status = EvaluationCanceled
	default:
		status = EvaluationFailed
	}
	// Recorded even when canceled: the record outlives the workflow.
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	var a *activities.Activities
	dctx = localOptions(dctx)
	if ferr := workflow.ExecuteLocalActivity(dctx, a.FinishEvaluation, activities.FinishEvaluationInput{EvaluationID: in.EvaluationID, Status: status}).Get(dctx, nil); ferr != nil {
		return EvaluationOutput{}, fmt.Errorf("evaluation: finish: %w", ferr)
	}
	return EvaluationOutput{Status: status}, err
}

// evaluationRun is one run of the evaluation workflow as it advances.
type evaluationRun struct {
	in       EvaluationInput
	inflight int
	err      error // the first failure of a run's step
	// scores are finished runs waiting to be scored; scoring is true
	// while a batch of them is.
	scores  []activities.ScoreRunInput
	scoring bool
}

// scorer scores finished runs in batches until stop says so and none is
// left: a run frees its place for the next as soon as it finishes, and
// the runs that finish while a batch is scored make the next batch. It
// scores on a context that outlives the evaluation's cancellation, so that
// a run that finished is scored even then.
func (e *evaluationRun) scorer(ctx workflow.Context, stop *bool) {
	var a *activities.Activities
	ctx = workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: localStepTimeout,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second, MaximumAttempts: 10},
	})
	for {
		_ = workflow.Await(ctx, func() bool { return len(e.scores) > 0 || *stop })
		if len(e.scores) == 0 {
			return
		}
		n := min(len(e.scores), maxScoreBatch)
		batch := e.scores[:n:n]
		e.scores = e.scores[n:]
		e.scoring = true
		err := workflow.ExecuteLocalActivity(ctx, a.ScoreEvaluationRuns, batch).Get(ctx, nil)
		e.scoring = false
		if err != nil && e.err == nil {
			e.err = fmt.Errorf("evaluation: score runs from %s: %w", batch[0].RunID, err)
		}
	}
}

func (e *evaluationRun) run(ctx workflow.Context) error {
	var a *activities.Activities
	par := max(e.in.Parallelism, 1)
	refill := max(par/refillShare, 1)
	limit := EvaluationHistoryLimit
	if e.in.HistoryLimit > 0 {
		limit = e.in.HistoryLimit
	}
	next := e.in.Next
	// The scorer works on until the runs in flight are scored, even when
	// the evaluation is canceled.
	sctx, cancelScorer := workflow.NewDisconnectedContext(ctx)
	defer cancelScorer()
	stopScorer := false
	workflow.Go(sctx, func(gctx workflow.Context) { e.scorer(gctx, &stopScorer) })
	for next < e.in.Rows && e.err == nil {
		if workflow.GetInfo(ctx).GetCurrentHistoryLength() > limit {
			break
		}
		var page []activities.EvaluationRow
		rctx := localOptions(ctx)
		if err := workflow.ExecuteLocalActivity(rctx, a.ReadEvaluationRows, activities.EvaluationRowsInput{
			DatasetID: e.in.DatasetID, From: next, Limit: min(EvaluationPageRows, e.in.Rows-next),
		}).Get(rctx, &page); err != nil {
			e.err = fmt.Errorf("evaluation: read rows from %d: %w", next, err)
			break
		}
		if len(page) == 0 {
			// Rows are only ever appended, so a row the evaluation started
			// with is gone only with its dataset (its project deleted).
			e.err = fmt.Errorf("evaluation: the dataset has no row %d: it was deleted", next)
			break
		}
		for _, row := range page {
			if row.Position >= e.in.Rows {
				next = e.in.Rows
				break
			}
			for c := range e.in.Candidates {
				if e.inflight >= par {
					// Refill a batch of slots at once: the runs started in one
					// workflow task announce their start together, so the
					// evaluation wakes once for the batch instead of once
					// per run.
					if err := workflow.Await(ctx, func() bool { return e.inflight <= par-refill || e.err != nil }); err != nil {
						e.err = err
					}
				}
				if e.err != nil {
					break
				}
				e.inflight++
				workflow.Go(ctx, func(gctx workflow.Context) {
					defer func() { e.inflight-- }()
					if err := e.runOne(gctx, row, c); err != nil && e.err == nil {
						e.err = err
					}
				})
			}
			if e.err != nil {
				break
			}
			next = row.Position + 1
			if workflow.GetInfo(ctx).GetCurrentHistoryLength() > limit {
				break
			}
		}
	}
	// The runs in flight finish (or are canceled with the evaluation) first.
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	if err := workflow.Await(dctx, func() bool { return e.inflight == 0 }); err != nil && e.err == nil {
		e.err = err
	}
	stopScorer = true
	if err := workflow.Await(dctx, func() bool { return len(e.scores) == 0 && !e.scoring }); err != nil && e.err == nil {
		e.err = err
	}
	if e.err == nil && ctx.Err() != nil {
		e.err = ctx.Err()
	}
	if e.err != nil {
		return e.err
	}
	// Rows are left only when the history grew past its limit.
	if next < e.in.Rows {
		in := e.in
		in.Next = next
		return workflow.NewContinueAsNewError(ctx, evaluation.WorkflowName, in)
	}
	return nil
}

// runOne runs row against candidate c as a child PromptRun and scores it.
func (e *evaluationRun) runOne(ctx workflow.Context, row activities.EvaluationRow, c int) error {
	cand := e.in.Candidates[c]
	id := evaluation.RunID(e.in.EvaluationID, row.Position, c)
	in := run.Input{
		ResponseID: id, ProjectID: e.in.ProjectID, PromptID: cand.PromptID, PromptVersion: cand.Version,
		Document: cand.Document, DocumentKey: cand.DocumentKey, Variables: row.Variables, Source: evaluation.RunSource, EndAtPause: true, Batch: true,
		Metadata: map[string]string{"evaluation_id": e.in.EvaluationID.String(), "row": strconv.Itoa(row.Position), "candidate": strconv.Itoa(c)},
	}
	if row.Text != nil {
		in.Text = *row.Text
	}
	if e.in.Tools == run.ReplayToolsRecorded {
		if row.RunID == "" {
			return fmt.Errorf("evaluation: row %d was not made from a run, so it has no recorded tool results", row.Position)
		}
		in.ReplayOf, in.ReplayTools = row.RunID, run.ReplayToolsRecorded
	}
	// No Priority: a run inherits the evaluation's (runs.EvaluationPriority),
	// so that the evaluation's runs share one fairness key.
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            id,
		TaskQueue:             run.TaskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL,
		TypedSearchAttributes: runs.RunSearchAttributes(in),
		StaticSummary:         runs.Summary(in),
	})
	var out run.Turn
	err := workflow.ExecuteChildWorkflow(cctx, run.WorkflowName, in).Get(cctx, &out)
	score := activities.ScoreRunInput{
		EvaluationID: e.in.EvaluationID, DatasetID: e.in.DatasetID, Row: row.Position, Candidate: c,
		RunID: id, Structured: cand.Structured,
	}
	var a *activities.Activities
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return ctx.Err()
	case temporal.IsWorkflowExecutionAlreadyStartedError(err):
		// Started before (by an earlier run of this evaluation): its
		// record is scored once the run has one.
		actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			ScheduleToCloseTimeout: awaitRecordTimeout,
			StartToCloseTimeout:    localStepTimeout,
			RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second},
		})
		if err := workflow.ExecuteActivity(actx, a.ScoreEvaluationRun, score).Get(actx, nil); err != nil {
			return fmt.Errorf("evaluation: score run %s: %w", id, err)
		}
		return nil
	default:
		// The run's workflow failed: it has no record, and scores failed.
		score.WorkflowFailed = true
	}
	e.scores = append(e.scores, score)
	return nil
}
