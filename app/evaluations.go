package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/budhq/bud"
	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/workflows"
)

// Bounds of an evaluation.
const (
	maxEvalCandidates  = 8
	defaultParallelism = 8
	maxParallelism     = 64
	// maxInputProblems bounds the rows named when rows do not fit a
	// candidate's input.
	maxInputProblems = 20
	// maxDisagreements bounds the rows a scorecard lists where the
	// candidates disagree; disagreements.total counts them all.
	maxDisagreements = 100
	rowCheckPage     = 500
)

// How an evaluation's runs call tools.
const (
	toolsLive     = "live"
	toolsRecorded = "recorded"
)

// evaluationRequest is the body of POST /api/datasets/{id}/evaluations.
type evaluationRequest struct {
	Candidates  []compareCandidate `json:"candidates"`
	Tools       string             `json:"tools"`
	Parallelism *int               `json:"parallelism"`
}

// evaluationCandidate is a candidate as an evaluation keeps it.
type evaluationCandidate struct {
	PromptID *uuid.UUID      `json:"prompt_id,omitempty"`
	Version  *int32          `json:"version,omitempty"`
	Document json.RawMessage `json:"document,omitempty"`
}

// Evaluation is an evaluation as the API shows it.
type Evaluation struct {
	ID          uuid.UUID             `json:"id"`
	ProjectID   uuid.UUID             `json:"project_id"`
	DatasetID   uuid.UUID             `json:"dataset_id"`
	Status      string                `json:"status"`
	Candidates  []evaluationCandidate `json:"candidates"`
	Tools       string                `json:"tools"`
	Parallelism int32                 `json:"parallelism"`
	RowCount    int32                 `json:"row_count"`
	// Progress is how many rows each candidate has had scored.
	Progress   []candidateProgress `json:"progress"`
	Scorecard  *scorecard          `json:"scorecard,omitempty"`
	CreatedAt  time.Time           `json:"created_at"`
	FinishedAt *time.Time          `json:"finished_at"`
}

type candidateProgress struct {
	Candidate int   `json:"candidate"`
	Done      int64 `json:"done"`
	Total     int32 `json:"total"`
}

type scorecard struct {
	Candidates    []candidateScore `json:"candidates"`
	Disagreements disagreements    `json:"disagreements"`
}

type rate struct {
	Runs     int64   `json:"runs"`
	Passed   int64   `json:"passed"`
	PassRate float64 `json:"pass_rate"`
}

func rateOf(runs, passed int64) rate {
	r := rate{Runs: runs, Passed: passed}
	if runs > 0 {
		r.PassRate = float64(passed) / float64(runs)
	}
	return r
}

type checkScore struct {
	Name string `json:"name"`
	rate
}

type candidateScore struct {
	Candidate int `json:"candidate"`
	// Overall: the run completed, its output is valid, every check passed.
	Overall   rate  `json:"overall"`
	Completed int64 `json:"completed"`
	// OutputValidation is over runs whose structured output was checked;
	// null for a text output.
	OutputValidation *rate        `json:"output_validation"`
	Checks           []checkScore `json:"checks"`
	Tokens           RunUsage     `json:"tokens"`
	LatencyMS        latency      `json:"latency_ms"`
	ModelCalls       int64        `json:"model_calls"`
}

// latency is a candidate's run latency percentiles in milliseconds,
// rounded to 0.1 ms: interpolated percentiles carry float noise
// (68.04999999999995) that says nothing the tenth does not.
type latency struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
}

// latencyOf rounds the percentiles p50 and p95 to 0.1 ms.
func latencyOf(p50, p95 float64) latency {
	return latency{P50: math.Round(p50*10) / 10, P95: math.Round(p95*10) / 10}
}

type disagreements struct {
	Total int64             `json:"total"`
	Rows  []disagreementRow `json:"rows"`
}

type disagreementRow struct {
	Row     int32             `json:"row"`
	Results []candidateResult `json:"results"`
}

type candidateResult struct {
	Candidate int32           `json:"candidate"`
	RunID     string          `json:"run_id"`
	RunStatus string          `json:"run_status"`
	Passed    bool            `json:"passed"`
	Output    json.RawMessage `json:"output"`
	Checks    json.RawMessage `json:"checks"`
}

func errEvaluationsUnconfigured() error {
	return bud.Errorf(bud.EUNAVAILABLE, "evaluations are not configured")
}

// createEvaluation checks the candidates and the dataset's rows against
// them, records the evaluation and starts its workflow.
func (s *server) createEvaluation(w http.ResponseWriter, r *http.Request) {
	if s.runs == nil {
		s.writeError(w, r, errEvaluationsUnconfigured())
		return
	}
	d := datasetFrom(r)
	var in evaluationRequest
	if !s.decode(w, r, &in) {
		return
	}
	ctx := r.Context()
	var p bud.Problems
	switch in.Tools {
	case "", toolsLive:
		in.Tools = toolsLive
	case toolsRecorded:
	default:
		p.Add("tools", "must be %q (the runs call their tools) or %q (each row's runs are answered from the record of the run the row was made from)", toolsLive, toolsRecorded)
	}
	par := defaultParallelism
	if in.Parallelism != nil {
		par = *in.Parallelism
		if par < 1 || par > maxParallelism {
			p.Add("parallelism", "must be between 1 and %d", maxParallelism)
		}
	}
	if n := len(in.Candidates); n < 1 || n > maxEvalCandidates {
		p.Add("candidates", "must hold 1 to %d candidates", maxEvalCandidates)
	}
	if err := p.Err(); err != nil {
		s.writeError(w, r, err)
		return
	}
	targets := make([]*runTarget, len(in.Candidates))
	var refused []error
	for i, c := range in.Candidates {
		t, err := s.resolveTarget(ctx, d.ProjectID, c.Document, c.PromptID, c.Version, "candidates["+strconv.Itoa(i)+"].")
		if err != nil {
			if code := bud.ErrorCode(err); code == bud.EINTERNAL || code == bud.EUNAVAILABLE {
				s.writeError(w, r, err)
				return
			}
			refused = append(refused, err)
			continue
		}
		targets[i] = t
	}
	if len(refused) > 0 {
		s.writeError(w, r, mergeRefusals(refused))
		return
	}
	if err := s.checkRowsFit(r, d, targets, in.Tools == toolsRecorded); err != nil {
		s.writeError(w, r, err)
		return
	}

	stored := make([]evaluationCandidate, len(targets))
	wcands := make([]workflows.EvaluationCandidate, len(targets))
	for i, t := range targets {
		// As a playground run's, so that every run can be run again.
		if err := s.keepDocument(ctx, t); err != nil {
			s.writeError(w, r, err)
			return
		}
		if t.promptID != uuid.Nil {
			id, v := t.promptID, t.version
			stored[i] = evaluationCandidate{PromptID: &id, Version: &v}
		} else {
			stored[i] = evaluationCandidate{Document: t.raw}
		}
		wcands[i] = workflows.EvaluationCandidate{PromptID: t.promptID, Version: t.version, Document: t.raw, DocumentKey: t.documentKey, Structured: t.doc.Output.Structured()}
	}
	candJSON, err := json.Marshal(stored)
	if err != nil {
		s.writeError(w, r, bud.Internal("encode candidates", err))
		return
	}
	ev, err := s.q.CreateEvaluation(ctx, dbsqlc.CreateEvaluationParams{
		ProjectID: d.ProjectID, DatasetID: d.ID, Candidates: candJSON, Tools: in.Tools,
		Parallelism: int32(par), RowCount: d.RowCount,
	})
	if err != nil {
		if isForeignKeyViolation(err) {
			s.writeError(w, r, notFound("dataset"))
			return
		}
		s.writeError(w, r, bud.Internal("create evaluation", err))
		return
	}
	input := workflows.EvaluationInput{
		EvaluationID: ev.ID, ProjectID: d.ProjectID, DatasetID: d.ID, Rows: int(d.RowCount),
		Candidates: wcands, Parallelism: par,
	}
	if in.Tools == toolsRecorded {
		input.Tools = run.ReplayToolsRecorded
	}
	if err := s.runs.StartEvaluation(ctx, ev.ID, input); err != nil {
		s.log.ErrorContext(ctx, "start evaluation", "request_id", requestIDFrom(ctx), "evaluation_id", ev.ID, "err", err)
		_, _ = s.q.FinishEvaluation(ctx, dbsqlc.FinishEvaluationParams{ID: ev.ID, Status: workflows.EvaluationFailed})
		s.writeError(w, r, bud.Errorf(bud.EUNAVAILABLE, "the evaluation could not be started; try again"))
		return
	}
	out, err := s.evaluationOf(r, ev)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

// checkRowsFit checks every row's input against every candidate's input,
// so that rows that cannot run are refused before any run starts; the
// first maxInputProblems are named rows[position].…. With recorded tools
// every row must have been made from a run, whose record answers its
// runs' tool calls: the first that was not is named under tools.
func (s *server) checkRowsFit(r *http.Request, d dbsqlc.Dataset, targets []*runTarget, recorded bool) error {
	var p bud.Problems
	problems := 0
	sourceless := false
	for from := int32(0); from < d.RowCount && problems < maxInputProblems; from += rowCheckPage {
		rows, err := s.q.ListDatasetRows(r.Context(), dbsqlc.ListDatasetRowsParams{DatasetID: d.ID, FirstPosition: from, MaxRows: rowCheckPage})
		if err != nil {
			return bud.Internal("read dataset rows", err)
		}
		for _, stored := range rows {
			if stored.Position >= d.RowCount {
				break
			}
			row, err := activities.EvaluationRowOf(stored)
			if err != nil {
				return bud.Internal("decode dataset row", err)
			}
			if recorded && row.RunID == "" && !sourceless {
				sourceless = true
				p.Add("tools", "rows[%d] was not made from a run, so it has no recorded tool results: evaluate with tools %q, or a dataset made from runs", row.Position, toolsLive)
			}
			var text string
			if row.Text != nil {
				text = *row.Text
			}
			for i, t := range targets {
				err := checkInput(t, text, row.Variables, fmt.Sprintf("rows[%d].", row.Position))
				if err == nil {
					continue
				}
				if bud.ErrorCode(err) == bud.EINTERNAL {
					return err
				}
				for k, v := range bud.ErrorFields(err) {
					p.Add(k, "candidates[%d]: %s", i, v)
				}
				if len(bud.ErrorFields(err)) == 0 {
					p.Add(fmt.Sprintf("rows[%d]", row.Position), "candidates[%d]: %s", i, bud.ErrorMessage(err))
				}
				problems++
			}
		}
	}
	return p.Err()
}

type evaluationKey struct{}

// loadEvaluation puts the evaluation named by {evaluation_id} in the
// context, or answers 404.
func (s *server) loadEvaluation(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(r, "evaluation_id")
		if !ok {
			s.writeError(w, r, notFound("evaluation"))
			return
		}
		ev, err := s.q.GetEvaluation(r.Context(), id)
		if err != nil {
			s.writeError(w, r, lookupError(err, "evaluation", "get evaluation"))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), evaluationKey{}, ev)))
	})
}

func evaluationFrom(r *http.Request) dbsqlc.Evaluation {
	return r.Context().Value(evaluationKey{}).(dbsqlc.Evaluation)
}

// getEvaluation answers an evaluation: its progress while it runs, from
// the scores written so far, and its scorecard once it has ended.
func (s *server) getEvaluation(w http.ResponseWriter, r *http.Request) {
	ev := evaluationFrom(r)
	out, err := s.evaluationOf(r, ev)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// listEvaluations answers a dataset's evaluations, newest first, without
// their scorecards.
func (s *server) listEvaluations(w http.ResponseWriter, r *http.Request) {
	d := datasetFrom(r)
	limit, offset, err := pageParams(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rows, err := s.q.ListEvaluations(r.Context(), dbsqlc.ListEvaluationsParams{DatasetID: d.ID, MaxRows: limit, SkipRows: offset})
	if err != nil {
		s.writeError(w, r, bud.Internal("list evaluations", err))
		return
	}
	total, err := s.q.CountEvaluations(r.Context(), d.ID)
	if err != nil {
		s.writeError(w, r, bud.Internal("count evaluations", err))
		return
	}
	out := page[Evaluation]{Data: make([]Evaluation, 0, len(rows)), Total: total, Limit: limit, Offset: offset}
	for _, ev := range rows {
		e, err := evaluationHead(ev)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out.Data = append(out.Data, e)
	}
	writeJSON(w, http.StatusOK, out)
}

func evaluationHead(ev dbsqlc.Evaluation) (Evaluation, error) {
	out := Evaluation{
		ID: ev.ID, ProjectID: ev.ProjectID, DatasetID: ev.DatasetID, Status: ev.Status, Tools: ev.Tools,
		Parallelism: ev.Parallelism, RowCount: ev.RowCount, CreatedAt: ev.CreatedAt, FinishedAt: ev.FinishedAt,
	}
	if err := json.Unmarshal(ev.Candidates, &out.Candidates); err != nil {
		return out, bud.Internal("decode candidates", err)
	}
	return out, nil
}

// evaluationOf is the evaluation with its progress, and its scorecard once
// it has ended.
func (s *server) evaluationOf(r *http.Request, ev dbsqlc.Evaluation) (Evaluation, error) {
	ctx := r.Context()
	out, err := evaluationHead(ev)
	if err != nil {
		return out, err
	}
	done, err := s.q.EvaluationProgress(ctx, ev.ID)
	if err != nil {
		return out, bud.Internal("evaluation progress", err)
	}
	out.Progress = make([]candidateProgress, len(out.Candidates))
	for i := range out.Progress {
		out.Progress[i] = candidateProgress{Candidate: i, Total: ev.RowCount}
	}
	for _, d := range done {
		if int(d.Candidate) < len(out.Progress) {
			out.Progress[d.Candidate].Done = d.Done
		}
	}
	if ev.Status == workflows.EvaluationRunning {
		return out, nil
	}
	card, err := s.scorecardOf(r, ev, len(out.Candidates))
	if err != nil {
		return out, err
	}
	out.Scorecard = card
	return out, nil
}

func (s *server) scorecardOf(r *http.Request, ev dbsqlc.Evaluation, n int) (*scorecard, error) {
	ctx := r.Context()
	scores, err := s.q.EvaluationScores(ctx, ev.ID)
	if err != nil {
		return nil, bud.Internal("evaluation scores", err)
	}
	checks, err := s.q.EvaluationCheckScores(ctx, ev.ID)
	if err != nil {
		return nil, bud.Internal("evaluation check scores", err)
	}
	card := &scorecard{Candidates: make([]candidateScore, n)}
	for i := range card.Candidates {
		card.Candidates[i] = candidateScore{Candidate: i, Checks: []checkScore{}}
	}
	for _, sc := range scores {
		if int(sc.Candidate) >= n {
			continue
		}
		c := &card.Candidates[sc.Candidate]
		c.Overall = rateOf(sc.Runs, sc.Passed)
		c.Completed = sc.Completed
		if sc.Validated > 0 {
			v := rateOf(sc.Validated, sc.Valid)
			c.OutputValidation = &v
		}
		c.Tokens = RunUsage{InputTokens: sc.InputTokens, OutputTokens: sc.OutputTokens, TotalTokens: sc.InputTokens + sc.OutputTokens}
		c.LatencyMS = latencyOf(sc.LatencyP50, sc.LatencyP95)
		c.ModelCalls = sc.ModelCalls
	}
	for _, ch := range checks {
		if int(ch.Candidate) >= n {
			continue
		}
		c := &card.Candidates[ch.Candidate]
		c.Checks = append(c.Checks, checkScore{Name: ch.Name, rate: rateOf(ch.Runs, ch.Passed)})
	}
	if card.Disagreements.Total, err = s.q.CountEvaluationDisagreements(ctx, ev.ID); err != nil {
		return nil, bud.Internal("count disagreements", err)
	}
	positions, err := s.q.EvaluationDisagreements(ctx, dbsqlc.EvaluationDisagreementsParams{EvaluationID: ev.ID, MaxRows: maxDisagreements})
	if err != nil {
		return nil, bud.Internal("disagreements", err)
	}
	card.Disagreements.Rows = []disagreementRow{}
	if len(positions) > 0 {
		results, err := s.q.ListEvaluationResultsForRows(ctx, dbsqlc.ListEvaluationResultsForRowsParams{EvaluationID: ev.ID, Positions: positions})
		if err != nil {
			return nil, bud.Internal("disagreeing results", err)
		}
		for _, res := range results {
			k := len(card.Disagreements.Rows) - 1
			if k < 0 || card.Disagreements.Rows[k].Row != res.RowPosition {
				card.Disagreements.Rows = append(card.Disagreements.Rows, disagreementRow{Row: res.RowPosition})
				k++
			}
			card.Disagreements.Rows[k].Results = append(card.Disagreements.Rows[k].Results, candidateResult{
				Candidate: res.Candidate, RunID: res.RunID, RunStatus: res.RunStatus, Passed: res.Passed,
				Output: nullable(res.Output), Checks: res.Checks,
			})
		}
	}
	return card, nil
}

// cancelEvaluation asks a running evaluation to stop: its runs in flight
// are canceled, and it records itself canceled. 409 once it has ended.
func (s *server) cancelEvaluation(w http.ResponseWriter, r *http.Request) {
	if s.runs == nil {
		s.writeError(w, r, errEvaluationsUnconfigured())
		return
	}
	ev := evaluationFrom(r)
	if ev.Status != workflows.EvaluationRunning {
		s.writeError(w, r, bud.Errorf(bud.ECONFLICT, "the evaluation has ended (%s)", ev.Status))
		return
	}
	err := s.runs.CancelEvaluation(r.Context(), ev.ID)
	switch {
	case errors.Is(err, runs.ErrNotFound):
		s.writeError(w, r, bud.Errorf(bud.ECONFLICT, "the evaluation has ended"))
		return
	case err != nil:
		s.writeError(w, r, bud.Internal("cancel evaluation", err))
		return
	}
	out, err := s.evaluationOf(r, ev)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, out)
}
