package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"go.temporal.io/sdk/temporal"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
)

// RunUsage counts a run's tokens over all its model calls.
type RunUsage struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
	TotalTokens  int64 `json:"total_tokens"`
}

// RunSummary is a recorded run as the run history lists it.
type RunSummary struct {
	// ID is the response id ("resp_…"), also the run's Temporal workflow id.
	ID        string    `json:"id"`
	ProjectID uuid.UUID `json:"project_id"`
	// PromptID and PromptVersion are null for an unsaved playground
	// document.
	PromptID      *uuid.UUID `json:"prompt_id"`
	PromptVersion *int32     `json:"prompt_version"`
	// Deployment is the prompt deployment the caller named; "" in the
	// playground.
	Deployment string `json:"deployment"`
	// Model is the model deployment that served the run.
	Model string `json:"model"`
	// Source is "api" (the gateway), "playground" or "replay".
	Source string `json:"source"`
	// Status is completed, failed, incomplete, or waiting: paused for the
	// caller's function outputs or for approvals.
	Status string   `json:"status"`
	Usage  RunUsage `json:"usage"`
	// LatencyMS is the run's wall time, start to finish.
	LatencyMS int64 `json:"latency_ms"`
	// Error is {"code", "message", "param"} of a failed run, else null.
	Error      json.RawMessage `json:"error"`
	CreatedAt  time.Time       `json:"created_at"`
	FinishedAt time.Time       `json:"finished_at"`
}

// Run is a recorded run in full: what went in, what was sent to the model,
// each model call and what came out.
type Run struct {
	RunSummary
	// Input is what the caller gave: text, variables (defaults applied when
	// they validated), input items, instructions.
	Input json.RawMessage `json:"input"`
	// RenderedMessages are the messages of the first model call; null when
	// the run failed before rendering.
	RenderedMessages json.RawMessage `json:"rendered_messages"`
	// ModelCalls lists each call: call number, attempt, latency_ms, usage,
	// finish_reason, the upstream's model, error.
	ModelCalls json.RawMessage `json:"model_calls"`
	// ToolCalls lists each connection tool call: id, name, server_label,
	// connection_id, arguments, output or error, approval, turn,
	// started_at, latency_ms, attempts.
	ToolCalls json.RawMessage `json:"tool_calls"`
	// Output is the final text, the parsed structured output and the
	// function calls; null when there is none.
	Output   json.RawMessage `json:"output"`
	Metadata json.RawMessage `json:"metadata"`
	// ReplayOf is the run this run replays; null for a run that is no
	// replay.
	ReplayOf *string `json:"replay_of"`
	// DocumentKey is the state store key of the exact document that ran,
	// kept by content; null when the run ran its saved version as it is.
	DocumentKey *string `json:"document_key"`
	// ToolListings are the tools each connection offered the run
	// (connection_id, server_label, tools); null when it listed none.
	ToolListings json.RawMessage `json:"tool_listings"`
}

// runInProgress is the answer for a run that is still running: it has no
// record until it ends.
type runInProgress struct {
	ID        string    `json:"id"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
}

func runSummaryFromRow(row dbsqlc.Run) RunSummary {
	return RunSummary{
		ID: row.ID, ProjectID: row.ProjectID, PromptID: row.PromptID, PromptVersion: row.PromptVersion,
		Deployment: row.Deployment, Model: row.Model, Source: row.Source, Status: row.Status,
		Usage:     RunUsage{InputTokens: row.InputTokens, OutputTokens: row.OutputTokens, TotalTokens: row.InputTokens + row.OutputTokens},
		LatencyMS: row.LatencyMs, Error: row.Error, CreatedAt: row.CreatedAt, FinishedAt: row.FinishedAt,
	}
}

func runFromRow(row dbsqlc.Run) Run {
	return Run{
		RunSummary: runSummaryFromRow(row), Input: row.Input, RenderedMessages: row.RenderedMessages,
		ModelCalls: row.ModelCalls, ToolCalls: row.ToolCalls, Output: row.Output, Metadata: row.Metadata,
		ReplayOf: row.ReplayOf, DocumentKey: row.DocumentKey, ToolListings: row.ToolListings,
	}
}

// runFilters reads the run history's filters: ?project_id=, ?prompt_id=,
// ?version= (with prompt_id), ?status=, and ?since= (inclusive) and ?until=
// (exclusive) as RFC 3339 times.
func runFilters(r *http.Request) (dbsqlc.CountRunsParams, error) {
	var f dbsqlc.CountRunsParams
	var p bud.Problems
	q := r.URL.Query()
	parseID := func(name string) *uuid.UUID {
		raw := q.Get(name)
		if raw == "" {
			return nil
		}
		id, err := uuid.Parse(raw)
		if err != nil {
			p.Add(name, "must be a UUID")
			return nil
		}
		return &id
	}
	parseTime := func(name string) *time.Time {
		raw := q.Get(name)
		if raw == "" {
			return nil
		}
		t, err := time.Parse(time.RFC3339, raw)
		if err != nil {
			p.Add(name, "must be an RFC 3339 time, such as 2026-01-02T15:04:05Z")
			return nil
		}
		return &t
	}
	f.ProjectID = parseID("project_id")
	f.PromptID = parseID("prompt_id")
	if raw := q.Get("version"); raw != "" {
		n, err := versionParam(raw, "version")
		switch {
		case err != nil:
			p.Add("version", "must be a positive integer")
		case q.Get("prompt_id") == "":
			p.Add("version", "needs prompt_id: a version number belongs to one prompt")
		default:
			f.PromptVersion = &n
		}
	}
	if raw := q.Get("status"); raw != "" {
		switch raw {
		case run.StatusCompleted, run.StatusFailed, run.StatusIncomplete, run.StatusWaiting, run.StatusCancelled:
			f.Status = &raw
		default:
			p.Add("status", "must be one of completed, failed, incomplete, waiting, cancelled")
		}
	}
	f.CreatedAfter = parseTime("since")
	f.CreatedBefore = parseTime("until")
	if f.CreatedAfter != nil && f.CreatedBefore != nil && !f.CreatedBefore.After(*f.CreatedAfter) {
		p.Add("until", "must be after since")
	}
	return f, p.Err()
}

// listRuns answers the run history, newest first, filtered and paginated.
func (s *server) listRuns(w http.ResponseWriter, r *http.Request) {
	f, err := runFilters(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	limit, offset, err := pageParams(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rows, err := s.q.ListRuns(r.Context(), dbsqlc.ListRunsParams{
		ProjectID: f.ProjectID, PromptID: f.PromptID, PromptVersion: f.PromptVersion, Status: f.Status,
		CreatedAfter: f.CreatedAfter, CreatedBefore: f.CreatedBefore, MaxRows: limit, SkipRows: offset,
	})
	if err != nil {
		s.writeError(w, r, bud.Internal("list runs", err))
		return
	}
	total, err := s.q.CountRuns(r.Context(), f)
	if err != nil {
		s.writeError(w, r, bud.Internal("count runs", err))
		return
	}
	out := page[RunSummary]{Data: make([]RunSummary, 0, len(rows)), Total: total, Limit: limit, Offset: offset}
	for _, row := range rows {
		out.Data = append(out.Data, runSummaryFromRow(row))
	}
	writeJSON(w, http.StatusOK, out)
}

// getRun answers one run: its record, or, for a run still running (it is
// recorded when it ends), its id and status in_progress.
func (s *server) getRun(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "run_id")
	row, err := s.q.GetRunByID(r.Context(), id)
	if err == nil {
		writeJSON(w, http.StatusOK, runFromRow(row))
		return
	}
	if !db.IsNoRows(err) {
		s.writeError(w, r, bud.Internal("get run", err))
		return
	}
	running, err := s.runningRun(r.Context(), id)
	switch {
	case err != nil:
		s.writeError(w, r, err)
	case running == nil:
		s.writeError(w, r, notFound("run"))
	default:
		writeJSON(w, http.StatusOK, running)
	}
}

// runningRun asks Temporal whether the run id is a PromptRun still
// running; nil means it is not (or there is no Temporal to ask).
func (s *server) runningRun(ctx context.Context, id string) (*runInProgress, error) {
	if s.runs == nil {
		return nil, nil
	}
	started, running, err := s.runs.Running(ctx, id)
	if err != nil {
		s.log.WarnContext(ctx, "describe run", "request_id", requestIDFrom(ctx), "run_id", id, "err", err)
		return nil, bud.Errorf(bud.EUNAVAILABLE, "the run has no record yet, and Temporal, which knows whether it is running, is unavailable; try again")
	}
	if !running {
		return nil, nil
	}
	return &runInProgress{ID: id, Status: run.StatusInProgress, CreatedAt: started}, nil
}

// approvalInput is the body of POST /api/runs/{run_id}/approvals/{call_id}.
type approvalInput struct {
	Approve *bool  `json:"approve"`
	Reason  string `json:"reason"`
}

// maxApprovalReason bounds the reason given to the model.
const maxApprovalReason = 2000

// approve decides a tool call that waits for approval: the run goes on
// with the call made, or with the model told it was rejected and why.
// call_id is the model's call id or the approval request's id (mcpr_…).
// A run or request that does not exist is a 404; one already decided, or
// a run no longer waiting, a 409.
func (s *server) approve(w http.ResponseWriter, r *http.Request) {
	runID, callID := chi.URLParam(r, "run_id"), chi.URLParam(r, "call_id")
	var in approvalInput
	if !s.decode(w, r, &in) {
		return
	}
	var p bud.Problems
	if in.Approve == nil {
		p.Add("approve", "is required: true to make the call, false to reject it")
	}
	if len(in.Reason) > maxApprovalReason {
		p.Add("reason", "must be at most %d bytes", maxApprovalReason)
	}
	if err := p.Err(); err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.runs == nil {
		s.writeError(w, r, notFound("run"))
		return
	}
	err := s.runs.Approve(r.Context(), runID, run.ApprovalDecision{ID: callID, Approve: *in.Approve, Reason: in.Reason, Source: run.DecidedByApp})
	var appErr *temporal.ApplicationError
	switch {
	case err == nil:
	case errors.Is(err, runs.ErrNotFound):
		s.writeError(w, r, s.endedRunError(r.Context(), runID))
		return
	case errors.As(err, &appErr) && run.HTTPStatus(appErr.Type()) == http.StatusNotFound:
		s.writeError(w, r, bud.Errorf(bud.ENOTFOUND, "%s", appErr.Message()))
		return
	case errors.As(err, &appErr) && run.HTTPStatus(appErr.Type()) == http.StatusConflict:
		s.writeError(w, r, bud.Errorf(bud.ECONFLICT, "%s", appErr.Message()))
		return
	default:
		s.writeError(w, r, bud.Internal("approve tool call", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"run_id": runID, "call_id": callID, "approved": *in.Approve})
}

// endedRunError tells a run that has ended (409) from one that never
// existed (404).
func (s *server) endedRunError(ctx context.Context, runID string) error {
	if _, err := s.q.GetRunByID(ctx, runID); err == nil {
		return bud.Errorf(bud.ECONFLICT, "the run has ended; it waits for no approval")
	}
	return notFound("run")
}

// cancelRun cancels a run still running (any run, whatever started it):
// its workflow is cancelled, with its model call in flight, and it ends
// recorded as cancelled. The answer is the run as GET /api/runs/{run_id}
// gives it once it has closed (or after 10 s, as it stands then); a run
// that has ended already is answered unchanged.
func (s *server) cancelRun(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "run_id")
	if s.runs == nil {
		s.getRun(w, r)
		return
	}
	switch err := s.runs.Cancel(r.Context(), id); {
	case errors.Is(err, runs.ErrNotFound):
	case err != nil:
		s.writeError(w, r, bud.Internal("cancel run", err))
		return
	default:
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		s.runs.Closed(ctx, id)
		cancel()
	}
	s.getRun(w, r)
}
