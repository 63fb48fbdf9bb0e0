// Package app is BudApp's management HTTP API: projects, the model
// deployments in them and their API keys, the tool connections their
// prompts use, prompts and the differences between their versions, the
// playground that runs and compares them, and the history of runs, compared
// side by side, with the approvals that paused runs wait for.
//
// Every route under /api needs the admin token as a bearer token;
// /healthz and /readyz are open so that probes need no secret. Metrics are
// not served here: they name every project, so the caller serves Registry
// on a listener of its own (metrics.NewMux). Errors share one envelope,
//
//	{"error": {"code": "invalid", "message": "…", "fields": {"settings.max_concurrency": "must be an integer"}}}
//
// with fields present only when there are per-field problems, and each code
// has exactly one status: invalid 400, unauthorized 401, not_found 404,
// conflict 409, payload_too_large 413, internal 500. All bad input is 400 —
// malformed JSON, a wrong type, an unknown field, a body that is not declared
// as JSON and a value that breaks a rule (a bad name, min above max) alike —
// because clients act on the code and on fields, and a 400/422 split would
// make them handle the same problem twice. An internal error also carries a
// request_id, which is in the X-Request-Id header of every response and in
// the log line that holds the cause.
//
// A resource that does not exist, one that belongs to another project and a
// path id that is not a UUID all get the same 404, so that ids cannot be
// probed across projects.
package app

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/egress"
	"github.com/budhq/bud/metrics"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/secrets"
	"github.com/budhq/bud/usage"
)

// DefaultMaxBodyBytes bounds a request body when Config.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 1 << 20

// readyTimeout bounds all readiness checks together: a probe that hangs
// tells the orchestrator less than one that fails.
const readyTimeout = 3 * time.Second

// Config is what the API needs to serve.
type Config struct {
	// Pool is the BudApp database. Required.
	Pool *pgxpool.Pool
	// Box seals provider API keys and connection credentials at rest, each
	// bound to its row's id. Required.
	Box *secrets.Box
	// AdminToken is the bearer token every /api request must present.
	// Required.
	AdminToken string
	// Logger receives internal errors with their causes; nil means
	// slog.Default().
	Logger *slog.Logger
	// Ready reports whether the process's other dependencies are up; nil
	// means they always are. /readyz also pings Pool itself.
	Ready func(ctx context.Context) error
	// Registry receives the bud_app_* metrics, which the caller serves on
	// a listener of its own; nil means a fresh metrics.NewRegistry(). A
	// registry can hold the metrics of only one handler.
	Registry *prometheus.Registry
	// MaxBodyBytes bounds a request body; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Documents keeps prompt documents (the Dapr state store). Required.
	Documents Documents
	// Runs starts playground runs, decides approvals, finds runs still in
	// progress, and starts and cancels evaluations; nil means the
	// playground endpoints, and starting or canceling an evaluation,
	// answer 503. The run history, datasets and reading evaluations need
	// only the database.
	Runs *runs.Client
	// Egress says which addresses a connection's URL may resolve to when
	// BudApp opens it to list its tools; nil refuses only link-local and
	// metadata addresses.
	Egress *egress.Policy
	// Usage is this process's usage recorder. The usage report writes what
	// it holds before reading, so requests this process served are in the
	// report at once; nil means the report has what recorders have written
	// on their own, every second.
	Usage *usage.Recorder
	// Console serves the web console for GET and HEAD requests of every
	// path that is neither under /api nor a probe; nil means such paths are
	// a 404 like any unknown route.
	Console http.Handler
}

// server holds the dependencies every handler shares.
type server struct {
	pool *pgxpool.Pool
	q    *dbsqlc.Queries
	box  *secrets.Box
	docs Documents
	// runDocs keeps the documents of runs by content, for replays.
	runDocs *runDocuments
	runs    *runs.Client
	usage   *usage.Recorder
	log     *slog.Logger
	ready   func(context.Context) error
	reg     *prometheus.Registry
	// adminToken is the SHA-256 of the token: comparing fixed-length digests
	// keeps even the token's length out of the timing.
	adminToken [sha256.Size]byte
	maxBody    int64
	// connections reaches connections under the egress policy.
	connections *http.Client
	// console serves the web console; nil when there is none.
	console http.Handler
}

// MinAdminTokenLen is the shortest admin token accepted. The token opens
// every project and can reseat every stored secret, so it must be too long
// to guess; `openssl rand -base64 32` makes a 44-character one.
const MinAdminTokenLen = 32

// New returns the API's handler. It fails when Pool, Box or AdminToken is
// missing, AdminToken is shorter than MinAdminTokenLen, or MaxBodyBytes is
// negative.
func New(cfg Config) (http.Handler, error) {
	switch {
	case cfg.Pool == nil:
		return nil, errors.New("app: Config.Pool is required")
	case cfg.Box == nil:
		return nil, errors.New("app: Config.Box is required")
	case cfg.Documents == nil:
		return nil, errors.New("app: Config.Documents is required")
	case cfg.AdminToken == "":
		return nil, errors.New("app: Config.AdminToken is required")
	case len(cfg.AdminToken) < MinAdminTokenLen:
		return nil, fmt.Errorf("app: Config.AdminToken must be at least %d characters", MinAdminTokenLen)
	case cfg.MaxBodyBytes < 0:
		return nil, errors.New("app: Config.MaxBodyBytes must not be negative")
	}
	s := &server{
		pool:        cfg.Pool,
		q:           dbsqlc.New(cfg.Pool),
		box:         cfg.Box,
		docs:        cfg.Documents,
		runDocs:     newRunDocuments(cfg.Documents),
		runs:        cfg.Runs,
		usage:       cfg.Usage,
		log:         cfg.Logger,
		ready:       cfg.Ready,
		reg:         cfg.Registry,
		adminToken:  sha256.Sum256([]byte(cfg.AdminToken)),
		maxBody:     cfg.MaxBodyBytes,
		connections: &http.Client{Timeout: connectionTimeout, Transport: cfg.Egress.Transport()},
		console:     cfg.Console,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.reg == nil {
		s.reg = metrics.NewRegistry()
	}
	if s.maxBody == 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	return s.routes(metrics.NewHTTP(s.reg, "bud_app")), nil
}

func (s *server) routes(m *metrics.HTTP) http.Handler {
	r := chi.NewRouter()
	// Set before any Route so that every sub-router inherits them.
	r.NotFound(s.notFound)
	r.MethodNotAllowed(s.methodNotAllowed)
	// The request id comes first so that every response carries it; the
	// recoverer sits inside the metrics so that a panic counts as a 500.
	r.Use(s.requestID, m.Middleware, s.recoverer)

	r.Get("/healthz", s.healthz)
	r.Get("/readyz", s.readyz)

	r.Route("/api", func(r chi.Router) {
		r.Use(s.requireAdmin)
		r.Get("/prompts/schema", s.promptSchema)
		r.Get("/prompts", s.listPrompts)
		r.Route("/prompts/{prompt_id}", func(r chi.Router) {
			r.Use(s.loadPrompt)
			r.Get("/", s.getPrompt)
			r.Patch("/", s.patchPrompt)
			r.Delete("/", s.deletePrompt)
			r.Get("/versions", s.listVersions)
			r.Post("/versions", s.createVersion)
			r.Get("/versions/{version}", s.getVersion)
			r.Get("/versions/{version}/form", s.versionForm)
			r.Get("/versions/{a}/diff/{b}", s.versionDiff)
		})
		r.Post("/validation/preview", s.previewRule)
		r.Post("/playground/run", s.playgroundRun)
		r.Post("/playground/compare", s.playgroundCompare)
		r.Route("/datasets/{dataset_id}", func(r chi.Router) {
			r.Use(s.loadDataset)
			r.Get("/", s.getDataset)
			r.Delete("/", s.deleteDataset)
			r.Post("/rows", s.addDatasetRows)
			r.Get("/evaluations", s.listEvaluations)
			r.Post("/evaluations", s.createEvaluation)
		})
		r.Route("/evaluations/{evaluation_id}", func(r chi.Router) {
			r.Use(s.loadEvaluation)
			r.Get("/", s.getEvaluation)
			r.Post("/cancel", s.cancelEvaluation)
		})
		r.Get("/runs", s.listRuns)
		r.Post("/runs/compare", s.compareRuns)
		r.Get("/runs/{run_id}", s.getRun)
		r.Post("/runs/{run_id}/approvals/{call_id}", s.approve)
		r.Post("/runs/{run_id}/cancel", s.cancelRun)
		r.Post("/runs/{run_id}/replay", s.replayRun)
		r.Route("/projects", func(r chi.Router) {
			r.Get("/", s.listProjects)
			r.Post("/", s.createProject)
			r.Route("/{project_id}", func(r chi.Router) {
				r.Use(s.loadProject)
				r.Get("/", s.getProject)
				r.Patch("/", s.patchProject)
				r.Delete("/", s.deleteProject)
				r.Route("/deployments", func(r chi.Router) {
					r.Get("/", s.listDeployments)
					r.Post("/", s.createDeployment)
					r.Get("/{deployment_id}", s.getDeployment)
					r.Patch("/{deployment_id}", s.patchDeployment)
					r.Delete("/{deployment_id}", s.deleteDeployment)
				})
				r.Route("/connections", func(r chi.Router) {
					r.Get("/", s.listConnections)
					r.Post("/", s.createConnection)
					r.Get("/{connection_id}", s.getConnection)
					r.Patch("/{connection_id}", s.patchConnection)
					r.Delete("/{connection_id}", s.deleteConnection)
					r.Get("/{connection_id}/tools", s.listConnectionTools)
				})
				r.Get("/prompts", s.listPrompts)
				r.Post("/prompts", s.createPrompt)
				r.Get("/usage", s.getUsage)
				r.Get("/datasets", s.listDatasets)
				r.Post("/datasets", s.createDataset)
				r.Route("/api-keys", func(r chi.Router) {
					r.Get("/", s.listAPIKeys)
					r.Post("/", s.createAPIKey)
					r.Get("/{key_id}", s.getAPIKey)
					r.Patch("/{key_id}", s.patchAPIKey)
					r.Delete("/{key_id}", s.revokeAPIKey)
				})
			})
		})
	})
	return r
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readiness is the body of /readyz: each dependency and "ok" or "failed".
// Causes go to the log only; a probe endpoint is open to anyone.
type readiness struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	type check struct {
		name  string
		check func(context.Context) error
	}
	checks := []check{{"postgres", s.pool.Ping}}
	if s.ready != nil {
		checks = append(checks, check{"ready", s.ready})
	}
	body := readiness{Status: "ok", Checks: map[string]string{}}
	status := http.StatusOK
	for _, c := range checks {
		if err := c.check(ctx); err != nil {
			s.log.WarnContext(ctx, "not ready", "dependency", c.name, "request_id", requestIDFrom(ctx), "err", err)
			body.Checks[c.name] = "failed"
			body.Status, status = "unavailable", http.StatusServiceUnavailable
			continue
		}
		body.Checks[c.name] = "ok"
	}
	writeJSON(w, status, body)
}
