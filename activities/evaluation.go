package activities

// Evaluations: reading a dataset's rows a page at a time, scoring each
// finished run against its row's checks, and recording how the evaluation
// ended.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/evaluation"
	"github.com/budhq/bud/run"
)

// EvaluationRowsInput asks for up to Limit rows of a dataset from position
// From on.
type EvaluationRowsInput struct {
	DatasetID uuid.UUID `json:"dataset_id"`
	From      int       `json:"from"`
	Limit     int       `json:"limit"`
}

// EvaluationRow is a dataset row's input, as a run of it needs it.
type EvaluationRow struct {
	Position  int            `json:"position"`
	Text      *string        `json:"text,omitempty"`
	Variables map[string]any `json:"variables,omitempty"`
	// RunID is the past run the row was made from; empty for a row given
	// as it is.
	RunID string `json:"run_id,omitempty"`
}

// ReadEvaluationRows returns the rows of a page, in order.
func (a *Activities) ReadEvaluationRows(ctx context.Context, in EvaluationRowsInput) ([]EvaluationRow, error) {
	if a.Pool == nil {
		return nil, errors.New("read evaluation rows: no database configured")
	}
	rows, err := dbsqlc.New(a.Pool).ListDatasetRows(ctx, dbsqlc.ListDatasetRowsParams{
		DatasetID: in.DatasetID, FirstPosition: int32(in.From), MaxRows: int32(in.Limit),
	})
	if err != nil {
		return nil, fmt.Errorf("read evaluation rows: %w", err)
	}
	out := make([]EvaluationRow, 0, len(rows))
	for _, r := range rows {
		row, err := EvaluationRowOf(r)
		if err != nil {
			return nil, fmt.Errorf("read evaluation rows: %w", err)
		}
		out = append(out, row)
	}
	return out, nil
}

// EvaluationRowOf is a stored dataset row's input, as a run of it needs it.
func EvaluationRowOf(r dbsqlc.DatasetRow) (EvaluationRow, error) {
	row := EvaluationRow{Position: int(r.Position), Text: r.Text}
	if r.RunID != nil {
		row.RunID = *r.RunID
	}
	if r.Variables != nil {
		if err := json.Unmarshal(r.Variables, &row.Variables); err != nil {
			return row, fmt.Errorf("row %d: decode variables: %w", r.Position, err)
		}
	}
	return row, nil
}

// ScoreRunInput names one finished run of an evaluation.
type ScoreRunInput struct {
	EvaluationID uuid.UUID `json:"evaluation_id"`
	DatasetID    uuid.UUID `json:"dataset_id"`
	Row          int       `json:"row"`
	Candidate    int       `json:"candidate"`
	RunID        string    `json:"run_id"`
	// Structured says the candidate's output is structured.
	Structured bool `json:"structured,omitempty"`
	// WorkflowFailed says the run's workflow failed, so it left no record.
	WorkflowFailed bool `json:"workflow_failed,omitempty"`
}

// ErrRunNotRecorded is the retryable failure of scoring a run that has no
// finished record yet: a run the evaluation found already started.
var ErrRunNotRecorded = errors.New("the run has no finished record yet")

// ScoreEvaluationRun scores a run from its record in the runs table
// against its row's checks and writes the verdict, replacing any earlier
// one of the same run: scoring again scores the same.
func (a *Activities) ScoreEvaluationRun(ctx context.Context, in ScoreRunInput) error {
	if a.Pool == nil {
		return errors.New("score run: no database configured")
	}
	q := dbsqlc.New(a.Pool)
	row, err := q.GetDatasetRow(ctx, dbsqlc.GetDatasetRowParams{DatasetID: in.DatasetID, Position: int32(in.Row)})
	if err != nil {
		return fmt.Errorf("score run %s: read row %d: %w", in.RunID, in.Row, err)
	}
	var checks []evaluation.Check
	if err := json.Unmarshal(row.Checks, &checks); err != nil {
		return fmt.Errorf("score run %s: decode checks: %w", in.RunID, err)
	}
	cs, err := a.checks.Compile(checks, row.ExpectedOutput, "")
	if err != nil {
		return fmt.Errorf("score run %s: compile checks: %w", in.RunID, err)
	}

	p := dbsqlc.SaveEvaluationResultParams{
		EvaluationID: in.EvaluationID, RowPosition: int32(in.Row), Candidate: int32(in.Candidate), RunID: in.RunID,
	}
	var r evaluation.Run
	if in.WorkflowFailed {
		r = evaluation.Run{Status: run.StatusFailed, ErrorCode: run.ServerError, Structured: in.Structured}
		p.Error, _ = json.Marshal(run.Error{Code: run.ServerError, Message: "the run's workflow failed; its history says why"})
	} else {
		rec, err := q.GetRunByID(ctx, in.RunID)
		if db.IsNoRows(err) || err == nil && rec.Status == run.StatusWaiting {
			return ErrRunNotRecorded
		}
		if err != nil {
			return fmt.Errorf("score run %s: read run: %w", in.RunID, err)
		}
		if r, err = scoredRun(rec, in.Structured); err != nil {
			return fmt.Errorf("score run %s: %w", in.RunID, err)
		}
		p.Error = nullJSON(rec.Error)
		p.InputTokens, p.OutputTokens, p.LatencyMs = rec.InputTokens, rec.OutputTokens, rec.LatencyMs
		var calls []json.RawMessage
		if err := json.Unmarshal(rec.ModelCalls, &calls); err != nil {
			return fmt.Errorf("score run %s: decode model calls: %w", in.RunID, err)
		}
		p.ModelCalls = int32(len(calls))
	}
	v := evaluation.Judge(cs, r)
	p.RunStatus, p.Validation, p.Passed, p.Output = r.Status, v.Validation, v.Passed, v.Compared
	if p.Checks, err = json.Marshal(v.Checks); err != nil {
		return fmt.Errorf("score run %s: encode checks: %w", in.RunID, err)
	}
	if err := q.SaveEvaluationResult(ctx, p); err != nil {
		return fmt.Errorf("score run %s: save: %w", in.RunID, err)
	}
	return nil
}

// ScoreEvaluationRuns scores finished runs one after another, each as
// ScoreEvaluationRun does: an evaluation scores the runs that finished
// while it waited in one step, one marker in its history for the batch.
// Scoring again scores the same, so a retried batch is harmless.
func (a *Activities) ScoreEvaluationRuns(ctx context.Context, in []ScoreRunInput) error {
	for _, s := range in {
		if err := a.ScoreEvaluationRun(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// scoredRun is a run's record as scoring reads it.
func scoredRun(rec dbsqlc.Run, structured bool) (evaluation.Run, error) {
	r := evaluation.Run{Status: rec.Status, Structured: structured}
	if len(rec.Error) > 0 {
		var e run.Error
		if err := json.Unmarshal(rec.Error, &e); err != nil {
			return r, fmt.Errorf("decode error: %w", err)
		}
		r.ErrorCode = e.Code
	}
	if len(rec.Output) > 0 {
		var out RunOutput
		if err := json.Unmarshal(rec.Output, &out); err != nil {
			return r, fmt.Errorf("decode output: %w", err)
		}
		r.Output = &evaluation.Output{Text: out.Text, Parsed: out.Parsed}
	}
	return r, nil
}

// FinishEvaluationInput says how an evaluation ended.
type FinishEvaluationInput struct {
	EvaluationID uuid.UUID `json:"evaluation_id"`
	// Status is completed, canceled or failed.
	Status string `json:"status"`
}

// FinishEvaluation records how the evaluation ended; one that has ended
// already keeps its status.
func (a *Activities) FinishEvaluation(ctx context.Context, in FinishEvaluationInput) error {
	if a.Pool == nil {
		return errors.New("finish evaluation: no database configured")
	}
	if _, err := dbsqlc.New(a.Pool).FinishEvaluation(ctx, dbsqlc.FinishEvaluationParams{ID: in.EvaluationID, Status: in.Status}); err != nil {
		return fmt.Errorf("finish evaluation %s: %w", in.EvaluationID, err)
	}
	return nil
}
