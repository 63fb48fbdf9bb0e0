package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/budhq/bud/admission"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/deployment"
	"github.com/budhq/bud/replycache"
	"github.com/budhq/bud/response"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
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
	// Background starts the run and answers at once, status queued; the
	// caller polls GET /v1/responses/{id} and may cancel it.
	Background bool `json:"background"`
}

func (req *responsesRequest) parse(body []byte) *apiError {
	if err := json.Unmarshal(body, req); err != nil {
		return errJSON(err)
	}
	return nil
}

// responses runs a deployed prompt as a durable workflow and answers with
// OpenAI's Response object, or continues a paused run
// (previous_response_id).
func (g *Gateway) responses(rw http.ResponseWriter, r *http.Request) {
	c := callerFrom(r.Context())
	// sw keeps the status for usage, recorded once the request names a
	// deployment.
	sw := &statusWriter{ResponseWriter: rw}
	w := http.ResponseWriter(sw)
	var u *served
	defer func() {
		if u != nil {
			u.status = sw.status
			g.recordUsage(u)
		}
	}()
	if g.cfg.Runs == nil || g.cfg.Documents == nil {
		writeAPIError(w, errRunsUnconfigured())
		return
	}
	var req responsesRequest
	if aerr := g.readJSON(w, r, &req); aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	if req.Stream && g.cfg.NATS == nil {
		writeAPIError(w, errStreamingUnconfigured())
		return
	}
	if req.Background && req.Stream {
		writeAPIError(w, errInvalid("stream", codeInvalidValue, "Bud does not stream a background response: send background: true without stream, and poll GET /v1/responses/{id}."))
		return
	}
	if req.Background && req.PreviousResponseID != "" {
		writeAPIError(w, errInvalid("background", codeInvalidValue, "A continue is answered in the foreground: background: true starts a new run, so leave it out with previous_response_id."))
		return
	}
	if req.PreviousResponseID != "" {
		u = g.continueResponse(w, r, c, &req)
		return
	}
	if req.Prompt == nil || req.Prompt.ID == "" {
		writeAPIError(w, errInvalid("prompt.id", codeMissingParameter, "Bud runs deployed prompts: send prompt.id, the name of a prompt deployment of your project."))
		return
	}

	d, err := g.deployments.Prompt(r.Context(), c.projectID, req.Prompt.ID)
	switch {
	case errors.Is(err, deployment.ErrNotFound):
		writeAPIError(w, errPromptNotFound(req.Prompt.ID))
		return
	case err != nil:
		g.log.Error("load deployment", "err", err)
		writeAPIError(w, errInternal())
		return
	}
	us := serving(c, d, "")
	u = &us
	n, aerr := pickVersion(d, req.Prompt.Version)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	v, err := g.loadVersion(r.Context(), d.PromptID, n)
	if err != nil {
		if db.IsNoRows(err) {
			writeAPIError(w, errInvalid("prompt.version", codeVersionNotFound, fmt.Sprintf("Version %d of prompt '%s' does not exist.", n, req.Prompt.ID)))
			return
		}
		g.log.Error("load prompt version", "err", err)
		writeAPIError(w, errInternal())
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

	u.promptID, u.version = d.PromptID, n

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
	// The deployment's share of the workers for its runs (runs.Priority).
	in.DeploymentID, in.MinConcurrency = d.ID, d.Settings.MinConcurrency

	if req.Background {
		in.Background = true
		g.background(w, r, c, d, v, in, u)
		return
	}

	// The response cache is looked up before admission: a hit counts
	// against the rate limits but takes no concurrency slot (admit), and
	// starts no run.
	q := g.promptCache(r.Context(), d, v, in)
	cached, hit := q.Lookup(r.Context())
	ticket, ok := g.admitResponse(w, r, c, d, hit, u)
	if !ok {
		return
	}
	// The turn's end calls Done with its usage; this one covers the paths
	// that end before.
	defer ticket.Done(0)
	if hit {
		ticket.Done(0)
		u.cacheHit = true
		answerCached(w, in, v, cached, req.Stream)
		return
	}
	if q != nil {
		replycache.MarkMiss(w)
	}
	if req.Stream {
		if out, ok := g.streamResponses(w, r, in, v, ticket); ok {
			u.turn(out)
			q.Store(r.Context(), out)
		}
		return
	}
	sub := g.firstTurn.subscribe(&in)
	if sub != nil {
		defer func() { _ = sub.Close() }()
	}
	wait, err := g.cfg.Runs.Start(r.Context(), in, runs.Completed)
	var out run.Turn
	if err == nil {
		out, err = g.firstTurn.await(r.Context(), sub, wait)
	}
	if err != nil {
		if _, ok := errors.AsType[*runs.StartError](err); ok {
			g.log.Error("start prompt run", "err", err)
			writeAPIError(w, errRunNotStarted())
			return
		}
		if r.Context().Err() != nil {
			return
		}
		g.log.Error("prompt run failed", "err", err, "response_id", in.ResponseID)
		out = run.Turn{Status: run.StatusFailed, Error: runs.ServerFailure(in.ResponseID)}
	}
	ticket.Done(turnTokens(out))
	u.turn(out)
	writeTurn(w, in, v, out, time.Now())
	q.Store(r.Context(), out)
}

// turnTokens is what a turn's model calls used, for a token limit.
func turnTokens(out run.Turn) int {
	return int(min(max(out.Usage.InputTokens, 0)+max(out.Usage.OutputTokens, 0), 1<<31))
}

// continueResponse resumes the paused run whose turn req.PreviousResponseID
// names with req.Input (function outputs, approval decisions, messages)
// and answers with the next turn's Response, streamed for stream: true. The
// run keeps its prompt version: prompt may be left out, and when it is
// sent it must name the run's prompt deployment; its variables are not
// read again. It returns the request's usage once it names the run's
// deployment, nil before.
func (g *Gateway) continueResponse(w http.ResponseWriter, r *http.Request, c caller, req *responsesRequest) (u *served) {
	prev := req.PreviousResponseID
	found, err := g.cfg.Runs.Find(r.Context(), c.projectID, prev)
	switch {
	case errors.Is(err, runs.ErrNotResponseID):
		writeAPIError(w, errInvalid("previous_response_id", codeInvalidValue, "previous_response_id must be the id of a response of this API ('resp_…')."))
		return
	case errors.Is(err, runs.ErrNotFound):
		writeAPIError(w, errResponseNotFound("previous_response_id", prev))
		return
	}
	if err != nil {
		g.log.Error("read prompt run", "err", err, "response_id", prev)
		writeAPIError(w, errInternal())
		return
	}
	in, created := found.Input, found.Created
	// A continued run keeps what it was started with: its instructions
	// and metadata are in the workflow's input, which a turn cannot
	// change. Refused rather than dropped, unless sent unchanged.
	if req.Instructions != nil && *req.Instructions != in.Instructions {
		writeAPIError(w, errInvalid("instructions", codeInvalidValue, fmt.Sprintf("Response '%s' continues a run that keeps the instructions it started with: leave instructions out of a continue, or send them unchanged.", prev)))
		return
	}
	if req.Metadata != nil && !maps.Equal(req.Metadata, in.Metadata) {
		writeAPIError(w, errInvalid("metadata", codeInvalidValue, fmt.Sprintf("Response '%s' continues a run that keeps the metadata it started with: leave metadata out of a continue, or send it unchanged.", prev)))
		return
	}
	if req.Prompt != nil {
		if req.Prompt.ID != "" && req.Prompt.ID != in.Deployment {
			writeAPIError(w, errInvalid("prompt.id", codeInvalidValue, fmt.Sprintf("Response '%s' is a run of another prompt: a continued run keeps its prompt, so leave prompt out or send the same prompt.id.", prev)))
			return
		}
		version, aerr := parseVersion(req.Prompt.Version)
		if aerr != nil {
			writeAPIError(w, aerr)
			return
		}
		if version != 0 && version != in.PromptVersion {
			writeAPIError(w, errInvalid("prompt.version", codeInvalidValue, fmt.Sprintf("Response '%s' is a run of version %d: a continued run keeps its version, so leave prompt.version out or send %d.", prev, in.PromptVersion, in.PromptVersion)))
			return
		}
	}
	items, aerr := continueItems(req.Input)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	// A continued run is admitted by its prompt deployment's settings as
	// they are now; one deleted since leaves the key's limit alone.
	d, err := g.deployments.Prompt(r.Context(), c.projectID, in.Deployment)
	switch {
	case errors.Is(err, deployment.ErrNotFound):
		d = nil
	case err != nil:
		g.log.Error("load deployment", "err", err)
		writeAPIError(w, errInternal())
		return
	}
	us := serving(c, d, in.Deployment)
	us.promptID, us.version = in.PromptID, in.PromptVersion
	u = &us
	// A continued turn is never cached: it belongs to its run.
	ticket, ok := g.admitResponse(w, r, c, d, false, u)
	if !ok {
		return
	}
	defer ticket.Done(0)
	ci := run.ContinueInput{PreviousResponseID: prev, InputItems: items}
	v := g.versionOf(in)
	if req.Stream {
		if out, ok := g.streamContinue(w, r, in, v, ci, run.Turn{ResponseID: found.NextResponseID(), Turn: found.Turn + 1, PreviousResponseID: prev}, ticket); ok {
			u.turn(out)
		}
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
		if errors.Is(err, runs.ErrNotFound) {
			// The run has ended: a new run, linked to it, carries on.
			g.continueEnded(w, r, found, items, ticket, u)
			return
		}
		writeAPIError(w, g.continueError(prev, err))
		return
	}
	ticket.Done(turnTokens(out))
	u.turn(out)
	writeTurn(w, in, v, out, created)
	return
}

// continueError maps a continue that failed: the run refused it (the
// response is not the paused turn, or the input leaves a call unanswered),
// or the run has ended (the server no longer has it running), which no
// continue can change. Both are the request's fault, 400 as OpenAI answers
// a previous_response_id it cannot use.
func (g *Gateway) continueError(prev string, err error) *apiError {
	if msg, param, ok := run.Refused(err); ok {
		if param == "" || param == "previous_response_id" {
			return errInvalid("previous_response_id", codeNotContinuable, msg)
		}
		return errInvalid(param, codeInvalidValue, msg)
	}
	if errors.Is(err, runs.ErrNotFound) {
		return errInvalid("previous_response_id", codeNotContinuable,
			fmt.Sprintf("Response '%s' cannot be continued: its run has ended. Only a response that returned function calls or approval requests can be continued, once.", prev))
	}
	g.log.Error("continue prompt run", "err", err, "response_id", prev)
	return errInternal()
}

// writeTurn answers with a turn: an HTTP error when its failure is the
// caller's or the upstream's (runError), else its Response.
func writeTurn(w http.ResponseWriter, in run.Input, v *version, out run.Turn, created time.Time) {
	if out.Status == run.StatusFailed && out.Error != nil {
		if e := runError(out.Error); e != nil {
			writeAPIError(w, e)
			return
		}
	}
	writeJSON(w, http.StatusOK, buildResponse(in, v, out, created))
}

// getResponse returns a turn of a run of the caller's project, ended or
// in progress, by its response id.
func (g *Gateway) getResponse(w http.ResponseWriter, r *http.Request) {
	c := callerFrom(r.Context())
	id := chi.URLParam(r, "id")
	if g.cfg.Runs == nil {
		writeAPIError(w, errResponseNotFound("", id))
		return
	}
	found, err := g.cfg.Runs.Find(r.Context(), c.projectID, id)
	if errors.Is(err, runs.ErrNotFound) {
		writeAPIError(w, errResponseNotFound("", id))
		return
	}
	if err != nil {
		g.log.Error("read prompt run", "err", err, "response_id", id)
		writeAPIError(w, errInternal())
		return
	}
	out, ok, err := g.cfg.Runs.Turn(r.Context(), found.ID, found.Turn)
	if err == nil && ok && found.Turn == 1 && out.Status == run.StatusInProgress {
		out, err = g.firstTurn.settled(r.Context(), c.projectID, found.ID, out)
	}
	if err != nil {
		g.log.Error("read turn of prompt run", "err", err, "response_id", id)
		writeAPIError(w, errInternal())
		return
	}
	if !ok {
		writeAPIError(w, errResponseNotFound("", id))
		return
	}
	in, created := found.Input, found.Created
	writeJSON(w, http.StatusOK, buildResponse(in, g.versionOf(in), out, created))
}

// buildResponse renders a run as OpenAI's Response object, naming the
// deployment the caller sent as the prompt.
func buildResponse(in run.Input, v *version, out run.Turn, now time.Time) *response.Response {
	id, n := in.Deployment, strconv.Itoa(int(in.PromptVersion))
	o := response.Options{PromptID: &id, PromptVersion: &n, Now: now}
	if v.compiled != nil {
		o.OutputSchema = v.compiled.OutputSchema()
		o.OutputStrict = v.compiled.OutputFormat().Strict
	}
	if v.doc != nil {
		o.Model = v.doc.Deployment
	}
	return response.Build(in, out, o)
}

// background starts the run in, admitted as any run's start is, and
// answers at once with its Response, status queued. The run holds no
// concurrency slot once started (its model calls are admitted by the
// worker), is never answered from the cache, and its tokens are the
// worker's to count: the request itself counts in usage without them.
func (g *Gateway) background(w http.ResponseWriter, r *http.Request, c caller, d *deployment.Deployment, v *version, in run.Input, u *served) {
	ticket, ok := g.admitResponse(w, r, c, d, false, u)
	if !ok {
		return
	}
	defer ticket.Done(0)
	// Started on a context of its own: a caller that goes away once the
	// request is sent still gets its run.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), runs.StartTimeout)
	defer cancel()
	if err := g.cfg.Runs.StartBackground(ctx, in); err != nil {
		g.log.Error("start prompt run", "err", err, "response_id", in.ResponseID)
		writeAPIError(w, errRunNotStarted())
		return
	}
	now := time.Now()
	writeJSON(w, http.StatusOK, buildResponse(in, v, run.Turn{ResponseID: in.ResponseID, Turn: 1, Status: run.StatusQueued, StartedAt: now}, now))
}

// cancelResponse cancels a background response's run (POST
// /v1/responses/{id}/cancel): the workflow is cancelled, its model call in
// flight too, and the answer is the response as it ends, status
// cancelled. A response whose run has already ended is returned as it
// is; one not created with background: true cannot be cancelled (400, as
// OpenAI answers).
func (g *Gateway) cancelResponse(w http.ResponseWriter, r *http.Request) {
	c := callerFrom(r.Context())
	id := chi.URLParam(r, "id")
	if g.cfg.Runs == nil {
		writeAPIError(w, errResponseNotFound("", id))
		return
	}
	found, err := g.cfg.Runs.Find(r.Context(), c.projectID, id)
	switch {
	case errors.Is(err, runs.ErrNotFound), errors.Is(err, runs.ErrNotResponseID):
		writeAPIError(w, errResponseNotFound("", id))
		return
	case err != nil:
		g.log.Error("read prompt run", "err", err, "response_id", id)
		writeAPIError(w, errInternal())
		return
	}
	if !found.Input.Background {
		writeAPIError(w, errInvalid("", codeInvalidValue, fmt.Sprintf("Response '%s' was not created with background: true: only a background response can be cancelled.", id)))
		return
	}
	switch err := g.cfg.Runs.Cancel(r.Context(), found.ID); {
	case errors.Is(err, runs.ErrNotFound):
		// Ended already: answered as it is.
	case err != nil:
		g.log.Error("cancel prompt run", "err", err, "response_id", id)
		writeAPIError(w, errInternal())
		return
	default:
		ctx, cancel := context.WithTimeout(r.Context(), cancelWait)
		closed := g.cfg.Runs.Closed(ctx, found.ID)
		cancel()
		if !closed && r.Context().Err() != nil {
			return
		}
	}
	g.getResponse(w, r)
}

// cancelWait bounds how long a cancel waits for its run to close before
// answering the response as it stands then.
const cancelWait = 10 * time.Second

// admitResponse is admit for the /v1/responses routes: it answers a
// refusal itself (nothing when the client went away) and reports whether
// the request may go on.
func (g *Gateway) admitResponse(w http.ResponseWriter, r *http.Request, c caller, d *deployment.Deployment, cached bool, u *served) (*admission.Ticket, bool) {
	ticket, aerr := g.admit(r, w.Header(), c, d, cached, u)
	if aerr != nil {
		if aerr != errClientGone {
			writeAPIError(w, aerr)
		}
		return nil, false
	}
	return ticket, true
}
