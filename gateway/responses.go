package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/deployment"
	"github.com/budhq/bud/prompt"
	"github.com/budhq/bud/response"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/runstream"
	"github.com/budhq/bud/workflows"
)

// responsesRequest is the part of OpenAI's Responses request a prompt run
// uses. Unknown fields are ignored, as OpenAI's own server ignores fields
// it does not use for a prompt.
type responsesRequest struct {
	Model  string `json:"model"`
	Prompt *struct {
		ID        string          `json:"id"`
		Version   json.RawMessage `json:"version"`
		Variables map[string]any  `json:"variables"`
	} `json:"prompt"`
	Input json.RawMessage `json:"input"`
	// PreviousResponseID continues the paused run whose turn it names.
	PreviousResponseID string            `json:"previous_response_id"`
	Instructions       *string           `json:"instructions"`
	Stream             bool              `json:"stream"`
	Metadata           map[string]string `json:"metadata"`
	Store              *bool             `json:"store"`
}

// version is a cached, compiled prompt version. Versions are immutable, so
// an entry never goes stale.
type version struct {
	raw      json.RawMessage
	doc      *prompt.Document
	compiled *prompt.Compiled
}

// versions caches compiled prompt versions, bounded so a long-lived gateway
// cannot grow without limit.
type versions struct {
	mu sync.Mutex
	m  map[string]*version
}

const maxCachedVersions = 4096

func (v *versions) get(key string) *version {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.m[key]
}

func (v *versions) put(key string, e *version) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil || len(v.m) >= maxCachedVersions {
		v.m = map[string]*version{}
	}
	v.m[key] = e
}

func versionKey(promptID uuid.UUID, n int32) string {
	return promptID.String() + ":" + strconv.Itoa(int(n))
}

// loadVersion returns a compiled prompt version, from the cache or the
// state store.
func (g *Gateway) loadVersion(ctx context.Context, promptID uuid.UUID, n int32) (*version, error) {
	key := versionKey(promptID, n)
	if v := g.versions.get(key); v != nil {
		return v, nil
	}
	row, err := g.q.GetPromptVersion(ctx, dbsqlc.GetPromptVersionParams{PromptID: promptID, Version: n})
	if err != nil {
		return nil, err
	}
	raw, err := g.cfg.Documents.Get(ctx, row.StateKey)
	if err != nil {
		return nil, fmt.Errorf("get prompt document: %w", err)
	}
	doc, err := prompt.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse stored prompt document: %w", err)
	}
	compiled, err := prompt.Compile(doc)
	if err != nil {
		return nil, fmt.Errorf("compile stored prompt document: %w", err)
	}
	v := &version{raw: raw, doc: doc, compiled: compiled}
	g.versions.put(key, v)
	return v, nil
}

// responses runs a deployed prompt as a durable workflow and answers with
// OpenAI's Response object.
func (g *Gateway) responses(w http.ResponseWriter, r *http.Request) {
	c, aerr := g.authenticate(r)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	if g.cfg.Runs == nil || g.cfg.Documents == nil {
		writeAPIError(w, &apiError{Status: http.StatusServiceUnavailable, Type: "server_error", Code: "unavailable", Message: "Prompt runs are not configured on this gateway."})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeAPIError(w, errTooLarge)
			return
		}
		writeAPIError(w, errInvalid("", "invalid_body", "Could not read the request body."))
		return
	}
	var req responsesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeAPIError(w, errInvalid("", "invalid_json", "We could not parse the JSON body of your request."))
		return
	}
	if req.Stream && g.cfg.NATS == nil {
		writeAPIError(w, &apiError{Status: http.StatusServiceUnavailable, Type: "server_error", Code: "streaming_unavailable",
			Message: "Streaming is not configured on this gateway (it needs NATS: BUD_NATS_URL); send stream: false."})
		return
	}
	if req.PreviousResponseID != "" {
		g.continueResponse(w, r, c, &req)
		return
	}
	if req.Prompt == nil || req.Prompt.ID == "" {
		writeAPIError(w, errInvalid("prompt.id", "missing_required_parameter", "Bud runs deployed prompts: send prompt.id, the name of a prompt deployment of your project."))
		return
	}

	d, err := g.deployments.Prompt(r.Context(), c.projectID, req.Prompt.ID)
	switch {
	case errors.Is(err, deployment.ErrNotFound):
		writeAPIError(w, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Param: "prompt.id", Code: "prompt_not_found",
			Message: "The prompt '" + req.Prompt.ID + "' does not exist or you do not have access to it."})
		return
	case err != nil:
		g.log.Error("load deployment", "err", err)
		writeAPIError(w, errInternal)
		return
	}
	n, aerr := pickVersion(d, req.Prompt.Version)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	v, err := g.loadVersion(r.Context(), d.PromptID, n)
	if err != nil {
		if db.IsNoRows(err) {
			writeAPIError(w, errInvalid("prompt.version", "version_not_found", fmt.Sprintf("Version %d of prompt '%s' does not exist.", n, req.Prompt.ID)))
			return
		}
		g.log.Error("load prompt version", "err", err)
		writeAPIError(w, errInternal)
		return
	}

	// Validate the input here too, so a bad call is a 400 without a run;
	// the workflow validates again as the durable record of what ran.
	text, items, aerr := splitInput(req.Input)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	vars := coerceVariables(v.doc, req.Prompt.Variables)
	if _, err := v.compiled.ValidateInput(text, vars); err != nil {
		writeAPIError(w, inputError(err))
		return
	}

	in := run.Input{
		ResponseID:    response.NewID(),
		ProjectID:     c.projectID,
		PromptID:      d.PromptID,
		PromptVersion: n,
		Deployment:    d.Name,
		Document:      v.raw,
		Text:          text,
		Variables:     vars,
		InputItems:    items,
		Metadata:      req.Metadata,
		Source:        run.SourceAPI,
	}
	if req.Instructions != nil {
		in.Instructions = *req.Instructions
	}
	if req.Stream {
		g.streamResponses(w, r, in, v)
		return
	}
	sub := g.subscribeTurn(&in)
	if sub != nil {
		defer func() { _ = sub.Close() }()
	}
	wait, err := g.cfg.Runs.Start(r.Context(), in, runs.Completed)
	var out run.Turn
	if err == nil {
		out, err = awaitFirstTurn(r.Context(), sub, wait)
	}
	if err != nil {
		if _, ok := errors.AsType[*runs.StartError](err); ok {
			g.log.Error("start prompt run", "err", err)
			writeAPIError(w, errRunNotStarted)
			return
		}
		if r.Context().Err() != nil {
			return
		}
		g.log.Error("prompt run failed", "err", err, "response_id", in.ResponseID)
		out = run.Turn{Status: run.StatusFailed, Error: runs.ServerFailure(in.ResponseID)}
	}
	writeTurn(w, in, v, out, time.Now())
}

// continueResponse resumes the paused run whose turn req.PreviousResponseID
// names with req.Input (function outputs, approval decisions, messages)
// and answers with the next turn's Response, streamed for stream: true. The
// run keeps its prompt version: prompt may be left out, and when it is
// sent it must name the run's prompt deployment; its variables are not
// read again.
func (g *Gateway) continueResponse(w http.ResponseWriter, r *http.Request, c caller, req *responsesRequest) {
	prev := req.PreviousResponseID
	found, err := g.cfg.Runs.Find(r.Context(), c.projectID, prev)
	if errors.Is(err, runs.ErrNotFound) {
		if _, _, ok := run.ParseTurnID(prev); !ok {
			writeAPIError(w, errInvalid("previous_response_id", "invalid_value", "previous_response_id must be the id of a response of this API ('resp_…')."))
			return
		}
		writeAPIError(w, errResponseNotFound("previous_response_id", prev))
		return
	}
	if err != nil {
		g.log.Error("read prompt run", "err", err, "response_id", prev)
		writeAPIError(w, errInternal)
		return
	}
	in, created := found.Input, found.Created
	if req.Prompt != nil {
		if req.Prompt.ID != "" && req.Prompt.ID != in.Deployment {
			writeAPIError(w, errInvalid("prompt.id", "invalid_value", fmt.Sprintf("Response '%s' is a run of another prompt: a continued run keeps its prompt, so leave prompt out or send the same prompt.id.", prev)))
			return
		}
		version, aerr := parseVersion(req.Prompt.Version)
		if aerr != nil {
			writeAPIError(w, aerr)
			return
		}
		if version != 0 && version != in.PromptVersion {
			writeAPIError(w, errInvalid("prompt.version", "invalid_value", fmt.Sprintf("Response '%s' is a run of version %d: a continued run keeps its version, so leave prompt.version out or send %d.", prev, in.PromptVersion, in.PromptVersion)))
			return
		}
	}
	items, aerr := continueItems(req.Input)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	ci := run.ContinueInput{PreviousResponseID: prev, InputItems: items}
	v := g.versionOf(in)
	if req.Stream {
		g.streamContinue(w, r, in, v, ci, run.Turn{ResponseID: found.NextResponseID(), Turn: found.Turn + 1, PreviousResponseID: prev})
		return
	}
	wait, err := g.cfg.Runs.Continue(r.Context(), found.ID, ci, runs.Completed)
	var out run.Turn
	if err == nil {
		out, err = wait()
	}
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		writeAPIError(w, g.continueError(prev, err))
		return
	}
	writeTurn(w, in, v, out, created)
}

// writeTurn answers with a turn: an HTTP error when its failure is the
// caller's or the upstream's (runErrorStatus), else its Response.
func writeTurn(w http.ResponseWriter, in run.Input, v *version, out run.Turn, created time.Time) {
	if out.Status == run.StatusFailed && out.Error != nil {
		if e := runErrorStatus(out.Error); e != nil {
			writeAPIError(w, e)
			return
		}
	}
	writeJSON(w, http.StatusOK, buildResponse(in, v, out, created))
}

// continueItems reads a continue's input as a list of input items; a
// string is one user message.
func continueItems(raw json.RawMessage) (json.RawMessage, *apiError) {
	text, items, aerr := splitInput(raw)
	switch {
	case aerr != nil:
		return nil, aerr
	case items != nil:
		return items, nil
	case text == "":
		return json.RawMessage("[]"), nil
	}
	b, _ := json.Marshal([]any{map[string]any{"type": "message", "role": "user", "content": text}}) // a string always encodes
	return b, nil
}

// continueError maps a continue that failed: the run refused it (the
// response is not the paused turn, or the input leaves a call unanswered),
// or the run has ended (the server no longer has it running), which no
// continue can change.
func (g *Gateway) continueError(prev string, err error) *apiError {
	if msg, param, ok := run.Refused(err); ok {
		if param == "" || param == "previous_response_id" {
			return errInvalid("previous_response_id", "previous_response_not_continuable", msg)
		}
		return errInvalid(param, "invalid_value", msg)
	}
	if errors.Is(err, runs.ErrNotFound) {
		return errInvalid("previous_response_id", "previous_response_not_continuable",
			fmt.Sprintf("Response '%s' cannot be continued: its run has ended. Only a response that returned function calls or approval requests can be continued, once.", prev))
	}
	g.log.Error("continue prompt run", "err", err, "response_id", prev)
	return errInternal
}

// pickVersion chooses the version to run: the caller's, else the
// deployment's pinned one, else the prompt's default, all without a
// database read (the deployment's cache entry holds the default).
func pickVersion(d *deployment.Deployment, raw json.RawMessage) (int32, *apiError) {
	if n, aerr := parseVersion(raw); n != 0 || aerr != nil {
		return n, aerr
	}
	if d.PromptVersion != nil {
		return *d.PromptVersion, nil
	}
	return d.DefaultVersion, nil
}

// parseVersion reads prompt.version: a number, or a string such as "3" or
// "v3"; 0 when it is absent.
func parseVersion(raw json.RawMessage) (int32, *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var n int64
	var s string
	switch {
	case json.Unmarshal(raw, &n) == nil:
	case json.Unmarshal(raw, &s) == nil:
		var err error
		if n, err = strconv.ParseInt(strings.TrimPrefix(s, "v"), 10, 32); err != nil {
			return 0, errInvalid("prompt.version", "invalid_value", "prompt.version must be a version number.")
		}
	default:
		return 0, errInvalid("prompt.version", "invalid_type", "prompt.version must be a version number.")
	}
	if n < 1 || n > 1<<31-1 {
		return 0, errInvalid("prompt.version", "invalid_value", "prompt.version must be a positive version number.")
	}
	return int32(n), nil
}

// splitInput reads `input`: a string is the text input; a list holds input
// items appended after the rendered messages.
func splitInput(raw json.RawMessage) (string, json.RawMessage, *apiError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil, nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", nil, errInvalid("input", "invalid_type", "input must be a string or a list of input items.")
		}
		return s, nil, nil
	case '[':
		var items []map[string]any
		if err := json.Unmarshal(raw, &items); err != nil {
			return "", nil, errInvalid("input", "invalid_type", "input must be a string or a list of input items.")
		}
		return "", raw, nil
	}
	return "", nil, errInvalid("input", "invalid_type", "input must be a string or a list of input items.")
}

// coerceVariables accepts variables as OpenAI's SDKs send them — strings, or
// {type: input_text, text} objects — and turns a string into the typed value
// the prompt declares (a number, a boolean, a list or an object written as
// JSON), so typed prompts can be called from any OpenAI client.
func coerceVariables(doc *prompt.Document, vars map[string]any) map[string]any {
	if len(vars) == 0 {
		return vars
	}
	types := map[string]string{}
	for _, v := range doc.Input.Variables {
		types[v.Name] = v.Type
	}
	out := make(map[string]any, len(vars))
	for k, v := range vars {
		if m, ok := v.(map[string]any); ok && m["type"] == "input_text" {
			if t, ok := m["text"].(string); ok {
				v = t
			}
		}
		if s, ok := v.(string); ok {
			switch types[k] {
			case prompt.TypeInteger, prompt.TypeNumber, prompt.TypeBoolean, prompt.TypeArray, prompt.TypeObject:
				var parsed any
				if json.Unmarshal([]byte(s), &parsed) == nil {
					v = parsed
				}
			}
		}
		out[k] = v
	}
	return out
}

// inputError maps invalid input to a 400 naming the first variable at fault
// and every problem in the message.
func inputError(err error) *apiError {
	fields := bud.ErrorFields(err)
	param := ""
	for f := range fields {
		if param == "" || f < param {
			param = f
		}
	}
	return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: param, Code: "invalid_prompt_input", Message: bud.ErrorMessage(err)}
}

// runErrorStatus maps a failed run to an HTTP error when the failure is the
// caller's (bad input) or the upstream's refusal; other failures are
// reported in the Response object with status "failed".
func runErrorStatus(e *run.Error) *apiError {
	switch e.Code {
	case run.InvalidInput, run.RenderFailed:
		return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: e.Param, Code: "invalid_prompt_input", Message: e.Message}
	case run.ModelNotFound:
		return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "model_not_found", Message: e.Message}
	case run.UpstreamRejected:
		return &apiError{Status: http.StatusBadGateway, Type: "upstream_error", Code: "upstream_rejected", Message: e.Message}
	case run.UpstreamUnavailable:
		return &apiError{Status: http.StatusBadGateway, Type: "upstream_error", Code: "upstream_unavailable", Message: e.Message}
	}
	return nil
}

// getResponse returns a turn of a run of the caller's project, ended or
// in progress, by its response id.
func (g *Gateway) getResponse(w http.ResponseWriter, r *http.Request) {
	c, aerr := g.authenticate(r)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	id := chi.URLParam(r, "id")
	notFound := errResponseNotFound("", id)
	if g.cfg.Runs == nil {
		writeAPIError(w, notFound)
		return
	}
	found, err := g.cfg.Runs.Find(r.Context(), c.projectID, id)
	if errors.Is(err, runs.ErrNotFound) {
		writeAPIError(w, notFound)
		return
	}
	if err != nil {
		g.log.Error("read prompt run", "err", err, "response_id", id)
		writeAPIError(w, errInternal)
		return
	}
	out, ok, err := g.cfg.Runs.Turn(r.Context(), found.ID, found.Turn)
	if err == nil && ok && found.Turn == 1 && out.Status == run.StatusInProgress {
		out, err = g.settledFirstTurn(r.Context(), c.projectID, found.ID, out)
	}
	if err != nil {
		g.log.Error("read turn of prompt run", "err", err, "response_id", id)
		writeAPIError(w, errInternal)
		return
	}
	if !ok {
		writeAPIError(w, notFound)
		return
	}
	in, created := found.Input, found.Created
	writeJSON(w, http.StatusOK, buildResponse(in, g.versionOf(in), out, created))
}

func errResponseNotFound(param, id string) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Param: param, Code: "response_not_found", Message: "No response found with id '" + id + "'."}
}

// settleWait bounds how long a read of a first turn that its model call has
// already ended waits for the workflow to learn so.
const settleWait = time.Second

// settledFirstTurn is the first turn of run runID, which the workflow
// reports as out, in progress. When the run's row says the turn has ended
// — the first model call ended it and answered the caller before the
// workflow had its reply (activities.Announcement) — the workflow reports
// so within moments: it is asked again until it does, for up to
// settleWait, so that a read right after the answer agrees with it.
func (g *Gateway) settledFirstTurn(ctx context.Context, project uuid.UUID, runID string, out run.Turn) (run.Turn, error) {
	row, err := g.q.GetRun(ctx, dbsqlc.GetRunParams{ProjectID: project, ID: runID})
	switch {
	case db.IsNoRows(err):
		return out, nil
	case err != nil:
		return out, fmt.Errorf("read run: %w", err)
	case row.Status == run.StatusWaiting:
		return out, nil
	}
	deadline := time.Now().Add(settleWait)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		later, found, err := g.cfg.Runs.Turn(ctx, runID, 1)
		switch {
		case err != nil:
			return out, err
		case found && later.Status != run.StatusInProgress:
			return later, nil
		}
	}
	return out, nil
}

// versionOf is the version the run ran, compiled from the document in the
// run's input; a saved version is taken from, or put in, the cache that
// /v1/responses fills (versions never change, so they are the same).
func (g *Gateway) versionOf(in run.Input) *version {
	key := versionKey(in.PromptID, in.PromptVersion)
	if in.PromptID != uuid.Nil {
		if v := g.versions.get(key); v != nil {
			return v
		}
	}
	v := &version{raw: in.Document}
	doc, err := prompt.Parse(in.Document)
	if err != nil {
		return v
	}
	v.doc = doc
	if v.compiled, err = prompt.Compile(doc); err == nil && in.PromptID != uuid.Nil {
		g.versions.put(key, v)
	}
	return v
}

// buildResponse renders a run as OpenAI's Response object, naming the
// deployment the caller sent as the prompt.
func buildResponse(in run.Input, v *version, out run.Turn, now time.Time) map[string]any {
	o := response.Options{PromptID: in.Deployment, PromptVersion: strconv.Itoa(int(in.PromptVersion)), Now: now}
	if v.compiled != nil {
		o.OutputSchema = v.compiled.OutputSchema()
	}
	if v.doc != nil {
		o.Model = v.doc.Deployment
	}
	return response.Build(in, out, o)
}

// announceWait is how long the gateway waits for a run to announce the end
// of its first turn before it asks with an update, which always answers:
// the announcement travels over NATS, at most once.
var announceWait = 2 * time.Second

// subscribeTurn subscribes to the announcement of the first turn's end of
// the run in (see run.Input.TurnSubject) and sets the run's subject.
// Without NATS, or when the run starts with its update (which answers as
// soon as the turn ends), it returns nil and the gateway waits with the
// update alone.
func (g *Gateway) subscribeTurn(in *run.Input) *runstream.Subscription {
	if g.cfg.NATS == nil || g.cfg.Runs.WaitsByUpdate() {
		return nil
	}
	sub, err := runstream.Subscribe(g.cfg.NATS, in.ResponseID)
	if err != nil {
		g.log.Warn("subscribe to run announcements", "err", err, "response_id", in.ResponseID)
		return nil
	}
	in.TurnSubject = runstream.Subject(in.ResponseID)
	return sub
}

// awaitFirstTurn returns the first turn's output as the run announces it
// on sub, or as wait (an update) gives it: wait is asked when no
// announcement came within announceWait, and whichever answers first wins.
func awaitFirstTurn(ctx context.Context, sub *runstream.Subscription, wait func() (run.Turn, error)) (run.Turn, error) {
	if sub == nil {
		return wait()
	}
	asked, stop := askAfter(announceWait, wait)
	defer stop()
	for {
		select {
		case ev := <-sub.Events():
			if out, ok := workflows.AnnouncedTurn(ev); ok {
				return out, nil
			}
		case res := <-asked:
			return res.out, res.err
		case <-ctx.Done():
			return run.Turn{}, ctx.Err()
		}
	}
}

// turnResult is a turn's output as an update gives it.
type turnResult struct {
	out run.Turn
	err error
}

// askAfter calls wait in the background after delay (at once for 0) and
// delivers its answer; stop cancels a call not yet made.
func askAfter(delay time.Duration, wait func() (run.Turn, error)) (answer <-chan turnResult, stop func()) {
	ch := make(chan turnResult, 1)
	t := time.AfterFunc(delay, func() {
		var res turnResult
		res.out, res.err = wait()
		ch <- res
	})
	return ch, func() { t.Stop() }
}
