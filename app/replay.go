package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/budhq/bud"
	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/prompt"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/statestore"
)

// replayRequest is the body of POST /api/runs/{run_id}/replay: what to run
// the recorded run's input against instead of what it ran (each field
// optional), and how its tools answer.
type replayRequest struct {
	// ProjectID, when set, is the project the run must belong to: a run of
	// another project is as absent as one of none.
	ProjectID string `json:"project_id"`
	// PromptID and Version name a saved prompt at a version (Version alone:
	// another version of the run's prompt); Document is an unsaved one.
	PromptID string          `json:"prompt_id"`
	Version  *int32          `json:"version"`
	Document json.RawMessage `json:"document"`
	// Deployment replaces the document's model deployment.
	Deployment *string `json:"deployment"`
	// ModelParams are merged over the document's: a key set to null is
	// removed.
	ModelParams json.RawMessage `json:"model_params"`
	// Tools is run.ReplayToolsRecorded (the default) or run.ReplayToolsLive.
	Tools string `json:"tools"`
}

// replayResponse is a replay's answer: a playground run's, with the run it
// replays.
type replayResponse struct {
	playgroundRunResponse
	ReplayOf string `json:"replay_of"`
}

// replayRun starts a new run with a recorded run's input — its text or
// variables, input items and instructions — against the document it ran or
// another, and answers like a playground run once the new run's first turn
// ends. The new run is linked to the original (replay_of in its record, the
// BudReplayOf search attribute in Temporal). With tools "recorded" (the
// default) every connection tool call is answered with the original's
// recorded result and no tool is listed or called; "live" calls them.
// Refused: a run still running or waiting (409), a run whose document is
// gone when no other is given (422), a document or input that does not fit
// (field paths deployment, model_params.*, document.*, tools,
// input.variables.*).
func (s *server) replayRun(w http.ResponseWriter, r *http.Request) {
	if s.runs == nil {
		s.writeError(w, r, errRunsUnconfigured())
		return
	}
	var in replayRequest
	if !s.decode(w, r, &in) {
		return
	}
	if err := in.check(); err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	row, err := s.replayedRun(ctx, chi.URLParam(r, "run_id"), in.ProjectID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	t, err := s.replayTarget(ctx, row, in)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var rec activities.RunInput
	if err := json.Unmarshal(row.Input, &rec); err != nil {
		s.writeError(w, r, bud.Internal("decode recorded run input", err))
		return
	}
	if err := checkReplayInput(t, rec); err != nil {
		s.writeError(w, r, err)
		return
	}
	if in.Tools == run.ReplayToolsRecorded {
		if err := checkRecordedListings(t, row); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if err := s.keepDocument(ctx, t); err != nil {
		s.writeError(w, r, err)
		return
	}
	ri := playgroundInput(row.ProjectID, t, rec.Text, rec.Variables, rec.Instructions)
	ri.InputItems = rec.InputItems
	ri.Source = run.SourceReplay
	ri.ReplayOf, ri.ReplayTools = row.ID, in.Tools
	res, err := s.runPlayground(ctx, t, ri)
	switch {
	case ctx.Err() != nil:
		return // the caller has gone; the run goes on and is recorded
	case err != nil:
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, replayResponse{playgroundRunResponse: res, ReplayOf: row.ID})
}

// check refuses what is malformed or contradictory before anything is read,
// and sets the default tools.
func (in *replayRequest) check() error {
	var p bud.Problems
	if in.ProjectID != "" {
		if _, err := uuid.Parse(in.ProjectID); err != nil {
			p.Add("project_id", "must be a UUID")
		}
	}
	checkTargetFields(&p, !isAbsent(in.Document), in.PromptID, in.Version, "")
	if in.Deployment != nil && strings.TrimSpace(*in.Deployment) == "" {
		p.Add("deployment", "must name a model deployment of the project")
	}
	if !isAbsent(in.ModelParams) {
		var params map[string]json.RawMessage
		if err := json.Unmarshal(in.ModelParams, &params); err != nil {
			p.Add("model_params", "must be an object")
		}
	}
	switch in.Tools {
	case "":
		in.Tools = run.ReplayToolsRecorded
	case run.ReplayToolsRecorded, run.ReplayToolsLive:
	default:
		p.Add("tools", "must be %q (answer tool calls with the run's recorded results) or %q (call the tools)", run.ReplayToolsRecorded, run.ReplayToolsLive)
	}
	return p.Err()
}

// replayedRun reads the run to replay: a run that is absent, or not of
// project (when given), is a 404; one still running or waiting for
// function outputs or approvals is a 409.
func (s *server) replayedRun(ctx context.Context, id, project string) (dbsqlc.Run, error) {
	row, err := s.q.GetRunByID(ctx, id)
	switch {
	case db.IsNoRows(err):
		running, err := s.runningRun(ctx, id)
		if err != nil {
			return row, err
		}
		if running != nil && (project == "" || s.runOfProject(ctx, id, project)) {
			return row, bud.Errorf(bud.ECONFLICT, "the run is still running; replay it once it has ended")
		}
		return row, notFound("run")
	case err != nil:
		return row, bud.Internal("get run", err)
	case project != "" && row.ProjectID != uuid.MustParse(project): // checked
		return row, notFound("run")
	case row.Status == run.StatusWaiting:
		return row, bud.Errorf(bud.ECONFLICT, "the run is waiting for function outputs or approvals; replay it once it has ended")
	}
	return row, nil
}

// runOfProject reports whether the running run id is one of project's.
func (s *server) runOfProject(ctx context.Context, id, project string) bool {
	pid, err := uuid.Parse(project)
	if err != nil {
		return false
	}
	_, err = s.runs.Find(ctx, pid, id)
	return err == nil
}

// replayTarget is the prompt a replay runs: the request's document or
// saved prompt, else the run's own document, with the request's
// deployment and model parameters over it. A document with either is an
// unsaved one, kept by content like any.
func (s *server) replayTarget(ctx context.Context, row dbsqlc.Run, in replayRequest) (*runTarget, error) {
	var (
		raw       []byte
		promptID  uuid.UUID
		version   int32
		fromStore = true
		err       error
	)
	switch {
	case !isAbsent(in.Document):
		raw, fromStore = in.Document, false
	case in.PromptID != "" || in.Version != nil:
		promptID, version, raw, err = s.replayVersion(ctx, row, in)
	default:
		promptID, version, raw, err = s.recordedDocument(ctx, row)
	}
	if err != nil {
		return nil, err
	}
	overridden := in.Deployment != nil || !isAbsent(in.ModelParams)
	if overridden {
		if raw, err = overrideDocument(raw, in.Deployment, in.ModelParams); err != nil {
			return nil, err
		}
		promptID, version = uuid.Nil, 0
	}
	// Even a saved version is checked as a save would check it: its
	// deployment or connections may be gone since, which the caller can
	// then replace.
	t, err := s.unsavedTarget(ctx, row.ProjectID, raw, "")
	if err != nil {
		return nil, replayFields(err, fromStore, in)
	}
	if promptID != uuid.Nil {
		// A saved version runs as it was saved, byte for byte.
		t.promptID, t.version, t.raw = promptID, version, raw
	}
	return t, nil
}

// replayVersion reads the saved prompt a replay names: prompt_id (the
// run's own prompt when only version is given) at version (its default
// when not given). A prompt of another project is as absent as one of
// none.
func (s *server) replayVersion(ctx context.Context, row dbsqlc.Run, in replayRequest) (uuid.UUID, int32, []byte, error) {
	field := "prompt_id"
	var id uuid.UUID
	if in.PromptID != "" {
		id = uuid.MustParse(in.PromptID) // checked
	} else {
		if row.PromptID == nil {
			return id, 0, nil, fieldError("version", "the run ran an unsaved document, which has no versions; name a prompt with prompt_id too")
		}
		id, field = *row.PromptID, "version"
	}
	n, raw, err := s.savedVersion(ctx, row.ProjectID, id, in.Version, field, "version")
	return id, n, raw, err
}

// recordedDocument reads the document the run ran: kept by content, or its
// saved version. One that is gone is a 422 naming document, which the
// caller may then give.
func (s *server) recordedDocument(ctx context.Context, row dbsqlc.Run) (uuid.UUID, int32, []byte, error) {
	gone := func(why string) error {
		return &bud.Error{Code: bud.EUNPROCESSABLE, Message: "the run's document is gone (" + why + "); give the document to run its input against",
			Fields: map[string]string{"document": "is required: the run's own document is gone"}}
	}
	if row.DocumentKey != nil {
		raw, err := s.runDocs.get(ctx, *row.DocumentKey)
		if errors.Is(err, statestore.ErrNotFound) {
			return uuid.Nil, 0, nil, gone("the state store no longer holds it")
		}
		return uuid.Nil, 0, raw, err
	}
	if row.PromptID == nil || row.PromptVersion == nil {
		return uuid.Nil, 0, nil, gone("the run was recorded without it")
	}
	_, raw, err := s.document(ctx, *row.PromptID, *row.PromptVersion)
	if bud.ErrorCode(err) == bud.ENOTFOUND {
		return uuid.Nil, 0, nil, gone("its prompt version was deleted")
	}
	return *row.PromptID, *row.PromptVersion, raw, err
}

// overrideDocument puts deployment and params into the document raw:
// params merge over its model_params, a null removing the key.
func overrideDocument(raw []byte, deployment *string, params json.RawMessage) ([]byte, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fieldError("document", "must be a JSON object")
	}
	if deployment != nil {
		b, err := json.Marshal(*deployment)
		if err != nil {
			return nil, bud.Internal("encode deployment", err)
		}
		doc["deployment"] = b
	}
	if !isAbsent(params) {
		merged := map[string]json.RawMessage{}
		if base, ok := doc["model_params"]; ok && !isAbsent(base) {
			if err := json.Unmarshal(base, &merged); err != nil {
				return nil, fieldError("document.model_params", "must be an object")
			}
		}
		var over map[string]json.RawMessage
		_ = json.Unmarshal(params, &over) // checked by check
		for k, v := range over {
			if isAbsent(v) {
				delete(merged, k)
				continue
			}
			merged[k] = v
		}
		delete(doc, "model_params")
		if len(merged) > 0 {
			b, err := json.Marshal(merged)
			if err != nil {
				return nil, bud.Internal("encode model params", err)
			}
			doc["model_params"] = b
		}
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, bud.Internal("encode document", err)
	}
	return out, nil
}

// replayFields names a document's problems where the caller can act on
// them: a field the request replaced by its own path (deployment,
// model_params.temperature), the rest of a stored document without the
// "document." it was checked under, and a document from the request as
// it is.
func replayFields(err error, fromStore bool, in replayRequest) error {
	var e *bud.Error
	if !errors.As(err, &e) || len(e.Fields) == 0 {
		return err
	}
	var over map[string]json.RawMessage
	if !isAbsent(in.ModelParams) {
		_ = json.Unmarshal(in.ModelParams, &over)
	}
	p := bud.Problems{}
	for f, msg := range e.Fields {
		rest, _ := strings.CutPrefix(f, "document.")
		param, _, _ := strings.Cut(strings.TrimPrefix(rest, "model_params."), ".")
		_, paramGiven := over[param]
		switch {
		case fromStore,
			in.Deployment != nil && (rest == "deployment" || strings.HasPrefix(rest, "deployment.")),
			strings.HasPrefix(rest, "model_params.") && paramGiven:
			f = rest
		}
		p.Add(f, "%s", msg)
	}
	return &bud.Error{Code: e.Code, Message: "invalid replay: " + p.String(), Fields: p}
}

// checkReplayInput checks the recorded input against the replay's
// document as a run will, so that an input the document does not take is
// a 422 naming it: input.text, input.variables.<name>.
func checkReplayInput(t *runTarget, rec activities.RunInput) error {
	err := checkInput(t, rec.Text, rec.Variables, "")
	var e *bud.Error
	if err == nil || !errors.As(err, &e) || e.Code == bud.EINTERNAL {
		return err
	}
	p := bud.Problems{}
	for f, msg := range e.Fields {
		switch {
		case f == "input":
			f = "input.text"
		case f == "variables" || strings.HasPrefix(f, "variables."):
			f = "input." + f
		}
		p.Add(f, "%s", msg)
	}
	if len(p) == 0 {
		return &bud.Error{Code: bud.EUNPROCESSABLE, Message: "the run's input does not fit the document: " + e.Message}
	}
	return &bud.Error{Code: bud.EUNPROCESSABLE, Message: "the run's input does not fit the document: " + p.String(), Fields: p}
}

// checkRecordedListings refuses a replay with recorded tools whose
// document offers a connection the original run did not list: there is
// nothing recorded to offer from it.
func checkRecordedListings(t *runTarget, row dbsqlc.Run) error {
	var listings []activities.ToolListing
	if len(row.ToolListings) > 0 {
		if err := json.Unmarshal(row.ToolListings, &listings); err != nil {
			return bud.Internal("decode recorded tool listings", err)
		}
	}
	listed := map[string]bool{}
	for _, l := range listings {
		listed[l.ConnectionID.String()] = true
	}
	for _, tool := range t.doc.Tools {
		if tool.Type != prompt.ToolConnection || !tool.Active || listed[tool.ConnectionID] {
			continue
		}
		return &bud.Error{Code: bud.EUNPROCESSABLE,
			Message: "replay with recorded tools: the run did not list connection " + tool.ConnectionID + ", so its tools have no recorded results; replay with tools \"live\"",
			Fields:  map[string]string{"tools": "connection " + tool.ConnectionID + " was not listed by the run; use \"live\""}}
	}
	return nil
}
