package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/budhq/bud"
	"github.com/budhq/bud/prompt"
	"github.com/budhq/bud/response"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
)

// Bounds on the candidates of one compare.
const (
	minCandidates = 2
	maxCandidates = 8
)

// Validation outcomes of a compare result.
const (
	validationPassed        = "passed"
	validationFailed        = "failed"
	validationNotApplicable = "not_applicable"
)

// playgroundRunRequest is the body of POST /api/playground/run: a prompt —
// an unsaved document, or a saved prompt at a version — and one input.
// Ids are strings so that a malformed one is a 400 naming its field.
type playgroundRunRequest struct {
	ProjectID string          `json:"project_id"`
	Document  json.RawMessage `json:"document"`
	PromptID  string          `json:"prompt_id"`
	// Version defaults to the prompt's default version.
	Version *int32 `json:"version"`
	// Input is the text of a text prompt; Variables the input of a
	// structured one.
	Input        string         `json:"input"`
	Variables    map[string]any `json:"variables"`
	Instructions string         `json:"instructions"`
	Stream       bool           `json:"stream"`
}

// compareCandidate is one prompt of a compare: an unsaved document or a
// saved prompt at a version.
type compareCandidate struct {
	Document json.RawMessage `json:"document"`
	PromptID string          `json:"prompt_id"`
	Version  *int32          `json:"version"`
}

// playgroundCompareRequest is the body of POST /api/playground/compare:
// candidates run side by side on the same input.
type playgroundCompareRequest struct {
	ProjectID    string             `json:"project_id"`
	Candidates   []compareCandidate `json:"candidates"`
	Input        string             `json:"input"`
	Variables    map[string]any     `json:"variables"`
	Instructions string             `json:"instructions"`
}

// compareResult is one candidate's run, in the candidate's place.
type compareResult struct {
	Index int `json:"index"`
	// RunID names the run in the run history; null when the run could not
	// be started.
	RunID         *string            `json:"run_id"`
	Status        string             `json:"status"`
	Model         string             `json:"model"`
	OutputText    string             `json:"output_text"`
	Parsed        json.RawMessage    `json:"parsed"`
	FunctionCalls []run.FunctionCall `json:"function_calls"`
	Error         *run.Error         `json:"error"`
	Usage         run.Usage          `json:"usage"`
	// LatencyMS is the wall time from starting the run to its result.
	LatencyMS  int64 `json:"latency_ms"`
	ModelCalls int   `json:"model_calls"`
	// Validation says how a structured output fared: passed, failed (the
	// reply stayed invalid), or not_applicable (a text output, or no reply
	// was checked because the run ended before one).
	Validation string `json:"validation"`
}

// compareResponse is the body of a compare's answer.
type compareResponse struct {
	Results []compareResult `json:"results"`
}

// runTarget is a prompt ready to run: the version it is, if saved, and its
// document parsed and compiled.
type runTarget struct {
	// promptID is uuid.Nil and version 0 for an unsaved document.
	promptID uuid.UUID
	version  int32
	doc      *prompt.Document
	// raw is the document the run carries.
	raw      json.RawMessage
	compiled *prompt.Compiled
	// documentKey is where raw is kept by content (runDocuments) when it is
	// no saved version as it is; set by keepDocument.
	documentKey string
}

// keepDocument keeps the document of t, when it is no saved version as it
// is, by its content in the state store, so that its runs can be run again
// after Temporal has deleted their histories.
func (s *server) keepDocument(ctx context.Context, t *runTarget) error {
	if t.promptID != uuid.Nil {
		return nil
	}
	key, err := s.runDocs.keep(ctx, t.raw)
	t.documentKey = key
	return err
}

// errRunsUnconfigured answers the playground when no Temporal client is
// configured.
func errRunsUnconfigured() error {
	return bud.Errorf(bud.EUNAVAILABLE, "prompt runs are not configured")
}

// errNotStarted answers a run Temporal refused or could not be reached for.
func errNotStarted() error {
	return bud.Errorf(bud.EUNAVAILABLE, "the prompt run could not be started; try again")
}

// codeNotStarted is the run error code of a compare candidate whose run
// could not be started, as the gateway names that failure.
const codeNotStarted = "run_not_started"

// playgroundRun runs one prompt on one input and answers when it has
// finished, with OpenAI's Response object as the gateway answers it, plus
// run_id and latency_ms. A run that fails — the model deployment refuses,
// the output stays invalid — is still a 200 with status "failed" and the
// error: it ran and is in the run history. Only what is refused before a
// run starts is an error status.
func (s *server) playgroundRun(w http.ResponseWriter, r *http.Request) {
	if s.runs == nil {
		s.writeError(w, r, errRunsUnconfigured())
		return
	}
	var in playgroundRunRequest
	if !s.decode(w, r, &in) {
		return
	}
	if in.Stream {
		s.writeError(w, r, fieldError("stream", "streaming playground runs come later; leave stream out or set it to false"))
		return
	}
	ctx := r.Context()
	projectID, err := s.requestProject(ctx, in.ProjectID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	t, err := s.resolveTarget(ctx, projectID, in.Document, in.PromptID, in.Version, "")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := checkInput(t, in.Input, in.Variables, ""); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.keepDocument(ctx, t); err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.runPlayground(ctx, t, playgroundInput(projectID, t, in.Input, in.Variables, in.Instructions))
	switch {
	case ctx.Err() != nil:
		return // the caller has gone; the run goes on and is recorded
	case err != nil:
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// runPlayground runs in, a run of t, and returns a playground run's answer
// once its first turn has ended. The error is execute's.
func (s *server) runPlayground(ctx context.Context, t *runTarget, in run.Input) (playgroundRunResponse, error) {
	out, latency, err := s.execute(ctx, in)
	if err != nil {
		return playgroundRunResponse{}, err
	}
	return playgroundRunResponse{
		Response:  responseObject(in, t, out, time.Now()),
		RunID:     in.ResponseID,
		LatencyMS: latency.Milliseconds(),
	}, nil
}

// playgroundCompare runs 2 to 8 candidates on one input at once. Every
// candidate is checked before any run starts, so a bad candidate costs no
// model call; then all runs start together and the answer holds each
// candidate's result in the candidates' order.
func (s *server) playgroundCompare(w http.ResponseWriter, r *http.Request) {
	if s.runs == nil {
		s.writeError(w, r, errRunsUnconfigured())
		return
	}
	var in playgroundCompareRequest
	if !s.decode(w, r, &in) {
		return
	}
	ctx := r.Context()
	projectID, err := s.requestProject(ctx, in.ProjectID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if n := len(in.Candidates); n < minCandidates || n > maxCandidates {
		s.writeError(w, r, fieldError("candidates", fmt.Sprintf("must hold %d to %d candidates", minCandidates, maxCandidates)))
		return
	}
	targets := make([]*runTarget, len(in.Candidates))
	var refused []error
	for i, c := range in.Candidates {
		prefix := "candidates[" + strconv.Itoa(i) + "]."
		t, err := s.resolveTarget(ctx, projectID, c.Document, c.PromptID, c.Version, prefix)
		if err == nil {
			err = checkInput(t, in.Input, in.Variables, prefix)
		}
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
	for _, t := range targets {
		if err := s.keepDocument(ctx, t); err != nil {
			s.writeError(w, r, err)
			return
		}
	}

	results := make([]compareResult, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			run := playgroundInput(projectID, t, in.Input, in.Variables, in.Instructions)
			out, latency, err := s.execute(ctx, run)
			results[i] = compareResultOf(i, run.ResponseID, t, out, latency, err)
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // the caller has gone; the runs go on and are recorded
	}
	writeJSON(w, http.StatusOK, compareResponse{Results: results})
}

// compareResultOf is candidate i's result: its run's output, or err when
// the run could not be started.
func compareResultOf(i int, runID string, t *runTarget, out run.Turn, latency time.Duration, err error) compareResult {
	res := compareResult{Index: i, Model: t.doc.Deployment, FunctionCalls: []run.FunctionCall{}, Validation: validationNotApplicable}
	if err != nil {
		res.Status = run.StatusFailed
		res.Error = &run.Error{Code: codeNotStarted, Message: bud.ErrorMessage(err)}
		return res
	}
	res.RunID = &runID
	res.Status = out.Status
	if out.Model != "" {
		res.Model = out.Model
	}
	res.OutputText = out.Text
	res.Parsed = out.Parsed
	if len(out.FunctionCalls) > 0 {
		res.FunctionCalls = out.FunctionCalls
	}
	res.Error = out.Error
	res.Usage = out.Usage
	res.LatencyMS = latency.Milliseconds()
	res.ModelCalls = out.ModelCalls
	res.Validation = validationOf(t, out)
	return res
}

// validationOf says how a run's output fared against a structured output.
func validationOf(t *runTarget, out run.Turn) string {
	if !t.doc.Output.Structured() {
		return validationNotApplicable
	}
	if len(out.Parsed) > 0 && string(out.Parsed) != "null" {
		return validationPassed
	}
	if out.Error != nil && (out.Error.Code == run.InvalidOutput || out.Error.Code == run.StepLimit) {
		return validationFailed
	}
	return validationNotApplicable
}

// mergeRefusals folds the refusals of candidates into one error holding
// every field problem, with a message that names them by their path in the
// request. Its code is the one a caller must act on first: bad request
// (400), then a prompt that is not there (404), then a document refused on
// its meaning (422).
func mergeRefusals(errs []error) error {
	rank := map[string]int{bud.EINVALID: 3, bud.ENOTFOUND: 2, bud.EUNPROCESSABLE: 1}
	code := bud.EUNPROCESSABLE
	fields := map[string]string{}
	for _, err := range errs {
		c := bud.ErrorCode(err)
		if rank[c] > rank[code] {
			code = c
		}
		for k, v := range bud.ErrorFields(err) {
			fields[k] = v
		}
	}
	if len(fields) == 0 {
		return &bud.Error{Code: code, Message: bud.ErrorMessage(errs[0])}
	}
	names := make([]string, 0, len(fields))
	for f := range fields {
		names = append(names, f)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, f := range names {
		parts = append(parts, f+": "+fields[f])
	}
	return &bud.Error{Code: code, Message: "invalid candidates: " + strings.Join(parts, "; "), Fields: fields}
}

// requestProject reads the project_id of a request body and checks that the
// project exists.
func (s *server) requestProject(ctx context.Context, raw string) (uuid.UUID, error) {
	if raw == "" {
		return uuid.Nil, fieldError("project_id", "is required")
	}
	id, err := uuid.Parse(raw)
	if err != nil {
		return uuid.Nil, fieldError("project_id", "must be a UUID")
	}
	if _, err := s.q.GetProject(ctx, id); err != nil {
		return uuid.Nil, notFoundField(lookupError(err, "project", "get project"), "project_id")
	}
	return id, nil
}

// resolveTarget reads the prompt a request names — an unsaved document,
// checked as a save would check it, or a saved prompt of the project at a
// version — and compiles it. prefix is where the fields are in the request
// ("" or "candidates[1]."): document problems are keyed prefix+"document.…"
// (422), and a prompt of another project is as absent as one of none (404).
func (s *server) resolveTarget(ctx context.Context, projectID uuid.UUID, document json.RawMessage, promptID string, version *int32, prefix string) (*runTarget, error) {
	var p bud.Problems
	hasDoc := !isAbsent(document)
	if !hasDoc && promptID == "" {
		p.Add(prefix+"document", "is required (or name a saved prompt with prompt_id)")
	}
	id := checkTargetFields(&p, hasDoc, promptID, version, prefix)
	if err := p.Err(); err != nil {
		return nil, err
	}

	if hasDoc {
		return s.unsavedTarget(ctx, projectID, document, prefix)
	}
	n, raw, err := s.savedVersion(ctx, projectID, id, version, prefix+"prompt_id", prefix+"version")
	if err != nil {
		return nil, err
	}
	doc, err := prompt.Parse(raw)
	if err != nil {
		return nil, bud.Internal("parse stored prompt document", err)
	}
	compiled, err := prompt.Compile(doc)
	if err != nil {
		return nil, bud.Internal("compile stored prompt document", err)
	}
	return &runTarget{promptID: id, version: n, doc: doc, raw: raw, compiled: compiled}, nil
}

// checkTargetFields adds to p what is malformed in how a request names its
// prompt — both a document and a prompt_id, a version of a document, a
// prompt_id that is no UUID, a version below 1 — keyed below prefix, and
// returns the prompt id parsed (uuid.Nil when absent or malformed).
func checkTargetFields(p *bud.Problems, hasDoc bool, promptID string, version *int32, prefix string) uuid.UUID {
	switch {
	case hasDoc && promptID != "":
		p.Add(prefix+"prompt_id", "give either document or prompt_id, not both")
	case hasDoc && version != nil:
		p.Add(prefix+"version", "only a saved prompt (prompt_id) has versions")
	}
	var id uuid.UUID
	if promptID != "" {
		var err error
		if id, err = uuid.Parse(promptID); err != nil {
			p.Add(prefix+"prompt_id", "must be a UUID")
		}
	}
	if version != nil && *version < 1 {
		p.Add(prefix+"version", "must be a positive integer")
	}
	return id
}

// unsavedTarget is raw, an unsaved document of the project, checked as a
// save would check it and compiled; its problems are keyed
// prefix+"document.…" (422).
func (s *server) unsavedTarget(ctx context.Context, projectID uuid.UUID, raw json.RawMessage, prefix string) (*runTarget, error) {
	doc, canonical, err := s.parseDocument(ctx, projectID, raw, prefix+"document.", nil)
	if err != nil {
		return nil, err
	}
	compiled, err := prompt.Compile(doc)
	if err != nil {
		return nil, compileError(err, prefix+"document.")
	}
	return &runTarget{doc: doc, raw: canonical, compiled: compiled}, nil
}

// savedVersion reads prompt id of the project at version (its default
// when nil): the version's number and document. A prompt that is absent or
// of another project is a 404 naming idField, an absent version one naming
// versionField.
func (s *server) savedVersion(ctx context.Context, projectID, id uuid.UUID, version *int32, idField, versionField string) (int32, []byte, error) {
	row, err := s.q.GetPrompt(ctx, id)
	if err != nil {
		return 0, nil, notFoundField(lookupError(err, "prompt", "get prompt"), idField)
	}
	if row.ProjectID != projectID {
		return 0, nil, notFoundField(notFound("prompt"), idField)
	}
	n := row.DefaultVersion
	if version != nil {
		n = *version
	}
	_, raw, err := s.document(ctx, id, n)
	if err != nil {
		return 0, nil, notFoundField(err, versionField)
	}
	return n, raw, nil
}

// notFoundField names field in a 404, so that a caller sending several
// prompts (a compare) sees which one is missing; other errors pass as they
// are.
func notFoundField(err error, field string) error {
	var e *bud.Error
	if !errors.As(err, &e) || e.Code != bud.ENOTFOUND {
		return err
	}
	return &bud.Error{Code: bud.ENOTFOUND, Message: e.Message, Fields: map[string]string{field: "not found"}}
}

// compileError maps a document that validated but does not compile: its
// problems are the caller's (422, under prefix); anything else is ours.
func compileError(err error, prefix string) error {
	var e *bud.Error
	if errors.As(err, &e) && e.Code != bud.EINTERNAL {
		return prefixed(err, prefix)
	}
	return bud.Internal("compile prompt document", err)
}

// checkInput validates the input as the run will, so that bad input is a
// 400 before anything starts. Fields are keyed as in the request, below
// prefix: "input", "variables", "variables.age".
func checkInput(t *runTarget, text string, vars map[string]any, prefix string) error {
	_, err := t.compiled.ValidateInput(text, vars)
	if err == nil {
		return nil
	}
	var e *bud.Error
	if !errors.As(err, &e) || e.Code == bud.EINTERNAL {
		return bud.Internal("validate input", err)
	}
	if len(e.Fields) == 0 {
		return &bud.Error{Code: e.Code, Message: e.Message}
	}
	var p bud.Problems
	for k, v := range e.Fields {
		// The prompt package names variables as the gateway's request
		// does (prompt.variables.…); here they sit at the top level.
		k = strings.TrimPrefix(k, "prompt.")
		p.Add(prefix+k, "%s", strings.ReplaceAll(v, "prompt.variables", "variables"))
	}
	return p.Err()
}

// playgroundInput is the run of t on the given input.
func playgroundInput(projectID uuid.UUID, t *runTarget, text string, vars map[string]any, instructions string) run.Input {
	return run.Input{
		ResponseID:    response.NewID(),
		ProjectID:     projectID,
		PromptID:      t.promptID,
		PromptVersion: t.version,
		Document:      t.raw,
		DocumentKey:   t.documentKey,
		Text:          text,
		Variables:     vars,
		Instructions:  instructions,
		Source:        run.SourcePlayground,
	}
}

// execute starts the run and waits for its output, returning the wall time
// from start to result. The error is errNotStarted, or ctx's error when the
// caller stopped waiting; a run that fails is an output with status failed.
func (s *server) execute(ctx context.Context, in run.Input) (run.Turn, time.Duration, error) {
	start := time.Now()
	wait, err := s.runs.Start(ctx, in, runs.Completed)
	if err != nil {
		if ctx.Err() != nil {
			return run.Turn{}, 0, ctx.Err()
		}
		s.log.ErrorContext(ctx, "start prompt run", "request_id", requestIDFrom(ctx), "run_id", in.ResponseID, "err", err)
		return run.Turn{}, 0, errNotStarted()
	}
	out, err := wait()
	if err != nil {
		if ctx.Err() != nil {
			return out, 0, ctx.Err()
		}
		// The workflow itself failed: the worker's own infrastructure (its
		// database, say) gave out after every retry. The run has no record;
		// its history in Temporal says why.
		s.log.ErrorContext(ctx, "prompt run failed", "request_id", requestIDFrom(ctx), "run_id", in.ResponseID, "err", err)
		out = run.Turn{Status: run.StatusFailed, Error: runs.ServerFailure(in.ResponseID)}
	}
	return out, time.Since(start), nil
}

// playgroundRunResponse is a playground run's answer: OpenAI's Response
// object plus the run's id and its wall time.
type playgroundRunResponse struct {
	*response.Response
	RunID     string `json:"run_id"`
	LatencyMS int64  `json:"latency_ms"`
}

// responseObject renders a run as the gateway would, naming the saved
// prompt and version that ran (both null for an unsaved document).
func responseObject(in run.Input, t *runTarget, out run.Turn, now time.Time) *response.Response {
	o := response.Options{OutputSchema: t.compiled.OutputSchema(), OutputStrict: t.compiled.OutputFormat().Strict, Model: t.doc.Deployment, Now: now}
	if in.PromptID != uuid.Nil {
		id, n := in.PromptID.String(), strconv.Itoa(int(in.PromptVersion))
		o.PromptID, o.PromptVersion = &id, &n
	}
	return response.Build(in, out, o)
}
