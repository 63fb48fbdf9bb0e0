package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/budhq/bud/deployment"
	"github.com/budhq/bud/replycache"
	"github.com/budhq/bud/run"
	budusage "github.com/budhq/bud/usage"
)

// served is one request to a deployment as usage counts it: each route
// that reaches a deployment fills it in as it goes and records it once,
// at its end (recordUsage).
type served struct {
	c            caller
	deploymentID uuid.UUID
	deployment   string
	promptID     uuid.UUID
	version      int32
	// status is the HTTP status answered; 0 when the client went away
	// before any answer.
	status  int
	in, out int64
	// failed is a turn that failed, which a stream answers with 200.
	failed   bool
	cacheHit bool
	// rateLimited is a request admission refused (g.admit); an upstream's
	// own 429, relayed, is an error of the deployment's.
	rateLimited bool
}

// serving starts the usage of c's request to d; d may be nil (a run whose
// deployment is gone), named then by name.
func serving(c caller, d *deployment.Deployment, name string) served {
	s := served{c: c, deployment: name}
	if d != nil {
		s.deploymentID, s.deployment = d.ID, d.Name
	}
	return s
}

// turn notes what a run's turn used, and whether it failed.
func (s *served) turn(out run.Turn) {
	s.in, s.out = out.Usage.InputTokens, out.Usage.OutputTokens
	s.failed = out.Status == run.StatusFailed
}

// recordUsage records a request to a deployment in usage: the one place
// every route counts its requests, so that usage cannot drift between
// routes. A request admission refused is a rate-limited one, any other
// status from 400 an error (499: the client went away; an upstream's
// 429), and a cache hit counts as one with no tokens, since no model spent
// any.
func (g *Gateway) recordUsage(s *served) {
	if g.cfg.Usage == nil {
		return
	}
	status := s.status
	if status == 0 {
		status = 499
	}
	g.cfg.Usage.Record(budusage.Event{
		ProjectID: s.c.projectID, DeploymentID: s.deploymentID, Deployment: s.deployment, APIKeyID: s.c.keyID,
		PromptID: s.promptID, PromptVersion: s.version,
		InputTokens: s.in, OutputTokens: s.out,
		Error:       s.failed || status >= 400 && !s.rateLimited,
		RateLimited: s.rateLimited,
		CacheHit:    s.cacheHit,
		Latency:     time.Since(s.c.arrived),
	})
}

// statusWriter keeps the status a handler answers, for usage.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController flush the writer underneath.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// generation names a deployment as it stands, for the response cache.
func generation(d *deployment.Deployment) replycache.Generation {
	return replycache.Generation{ID: d.ID, UpdatedAt: d.UpdatedAt}
}

// chatCache is the cacheable form of a request of kind (a chat
// completion, replycache.KindChat…) to d, nil when the gateway has no
// cache or d's settings do not cache it.
func (g *Gateway) chatCache(kind string, d *deployment.Deployment, body []byte) *replycache.ChatRequest {
	if g.cfg.Cache == nil || !d.Settings.Cache.Enabled {
		return nil
	}
	return g.cfg.Cache.Model(kind, d.Settings.Cache, generation(d), body, d.Defaults)
}

// promptCache is the cacheable first turn of the run in of prompt
// deployment d at version v, nil when the gateway has no cache or the run
// is not cacheable. Its key covers the model deployment the prompt runs
// on as it stands, whose defaults count in whether the run samples.
func (g *Gateway) promptCache(ctx context.Context, d *deployment.Deployment, v *version, in run.Input) *replycache.PromptRequest {
	if g.cfg.Cache == nil || !d.Settings.Cache.Enabled || v.doc == nil {
		return nil
	}
	gens := []replycache.Generation{generation(d)}
	md, err := g.deployments.Model(ctx, d.ProjectID, v.doc.Deployment)
	if err != nil {
		// The run will fail on its model deployment, or find it changed:
		// not an answer to keep.
		return nil
	}
	gens = append(gens, generation(md))
	return g.cfg.Cache.Prompt(d.Settings.Cache, in, v.doc.ModelParams, md.Defaults, gens...)
}

// startEventStream answers with the headers of a server-sent event
// stream.
func startEventStream(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
}

// answerCached answers a prompt request from a cached first turn, as the
// gateway answers a turn it has just awaited: its Response, or for a
// stream the events of a turn that starts and ends at once. in's metadata
// names the run reused (cached_from); no run starts.
func answerCached(w http.ResponseWriter, in run.Input, v *version, t run.Turn, stream bool) {
	in.Metadata = replycache.CachedFrom(in.Metadata, t.ResponseID)
	replycache.MarkHit(w)
	if !stream {
		writeTurn(w, in, v, t, t.StartedAt)
		return
	}
	startEventStream(w)
	s := newResponseStream(w, http.NewResponseController(w).Flush, in, v, run.Turn{ResponseID: t.ResponseID, Turn: t.Turn}, t.StartedAt)
	s.start()
	s.finish(t)
}
