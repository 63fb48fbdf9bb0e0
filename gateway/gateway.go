// Package gateway is BudGateway: the public OpenAI-compatible API. It
// authenticates callers by project API key and routes each request by its
// `model` to a deployment of that project.
//
// The hot path touches no database: keys (the gateway's own cache) and
// deployments (a deployment.Cache) are kept in memory, dropped within
// milliseconds by Postgres notifications when they change (with a TTL as a
// safety net), and a key's last use is written in batches.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/budhq/bud/admission"
	"github.com/budhq/bud/changes"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/deployment"
	"github.com/budhq/bud/egress"
	"github.com/budhq/bud/metrics"
	"github.com/budhq/bud/replycache"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/secrets"
	budusage "github.com/budhq/bud/usage"
)

// Defaults for Config's zero values.
const (
	DefaultMaxBodyBytes = 32 << 20
	// DefaultMaxBodyBytesInFlight holds eight bodies of the largest size.
	DefaultMaxBodyBytesInFlight = 256 << 20
	DefaultCacheTTL             = 5 * time.Second
	DefaultUpstreamTimeout      = 10 * time.Minute
	DefaultLastUsedFlush        = time.Second
	maxUpstreamBody             = 64 << 20
)

// Config configures the gateway.
type Config struct {
	Pool   *pgxpool.Pool
	Box    *secrets.Box // opens deployments' provider keys
	Logger *slog.Logger
	// Ready is an extra readiness check (Temporal); nil means none.
	Ready func(ctx context.Context) error
	// Registry receives the gateway's metrics; nil makes a fresh one. The
	// gateway does not serve it: its series name projects and deployments,
	// so the caller serves it on a listener of its own (metrics.NewMux).
	Registry *prometheus.Registry
	// MaxBodyBytes bounds a request body (413 beyond it).
	MaxBodyBytes int64
	// MaxBodyBytesInFlight bounds the bytes of request bodies the gateway
	// holds at once, counted as they arrive; a request whose body would
	// go beyond it is answered 503 server_busy at once. Keep it above
	// MaxBodyBytes, or the largest bodies are never accepted.
	MaxBodyBytesInFlight int64
	// CacheTTL bounds how long a cached key or deployment is trusted
	// without a notification; notifications usually act within milliseconds.
	CacheTTL time.Duration
	// UpstreamTimeout bounds the wait for an upstream's response headers
	// (504 beyond it). A stream, once started, may run longer.
	UpstreamTimeout time.Duration
	// LastUsedFlush is how often keys' last use is written.
	LastUsedFlush time.Duration
	// Transport overrides the upstream transport (tests); Egress then
	// does not apply.
	Transport http.RoundTripper
	// Egress says which addresses upstreams may resolve to, checked at
	// each dial (redirects included); nil refuses only link-local and
	// cloud metadata addresses.
	Egress *egress.Policy
	// Runs starts, continues and reads prompt runs; nil disables
	// /v1/responses.
	Runs *runs.Client
	// Documents reads prompt documents (the Dapr state store); nil disables
	// /v1/responses.
	Documents interface {
		Get(ctx context.Context, key string) ([]byte, error)
	}
	// NATS carries the deltas of streaming runs from the workers, and the
	// announcement of a run's first turn; nil makes /v1/responses with
	// stream: true answer 503, and runs are awaited by update alone.
	NATS *nats.Conn
	// Admitter decides whether a request to a deployment may proceed. A
	// process has one, shared by its gateway and its worker's model calls,
	// so that a deployment's limits hold for both; the caller owns it and
	// closes it. nil makes one that counts in this gateway alone.
	Admitter *admission.Admitter
	// Usage counts every request that reaches a deployment (package
	// usage); the caller runs it. nil counts nothing.
	Usage *budusage.Recorder
	// Cache answers repeated requests to deployments whose settings cache
	// them, without calling the model or starting a run (package
	// replycache); nil caches nothing.
	Cache *replycache.Cache
}

// Gateway serves the OpenAI-compatible API. Run must be running for
// notifications and last-use writes to happen.
type Gateway struct {
	cfg         Config
	log         *slog.Logger
	q           *dbsqlc.Queries
	keys        *keyCache
	deployments *deployment.Cache
	changes     *changes.Listener
	client      *http.Client
	metrics     *gatewayMetrics
	lastUsed    *lastUsed
	router      chi.Router
	buffers     buffers
	bodies      *bodyBudget
	versions    versions
	// firstTurn answers a run's first turn as soon as it ends.
	firstTurn firstTurn
	// admitter decides whether a request to a deployment may proceed.
	admitter *admission.Admitter
}

// New returns a gateway. Call Run to start its background work.
func New(cfg Config) (*Gateway, error) {
	if cfg.Pool == nil {
		return nil, errors.New("gateway: Pool is required")
	}
	if cfg.Registry == nil {
		cfg.Registry = metrics.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxBodyBytesInFlight <= 0 {
		cfg.MaxBodyBytesInFlight = DefaultMaxBodyBytesInFlight
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if cfg.LastUsedFlush <= 0 {
		cfg.LastUsedFlush = DefaultLastUsedFlush
	}
	transport := cfg.Transport
	if transport == nil {
		dialer := cfg.Egress.Dialer()
		dialer.Timeout = 10 * time.Second
		transport = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			MaxIdleConns:          4096,
			MaxIdleConnsPerHost:   1024,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: cfg.UpstreamTimeout,
			// Bodies are relayed as they are; decompressing would cost CPU
			// and break streaming.
			DisableCompression: true,
			ForceAttemptHTTP2:  true,
		}
	}
	q := dbsqlc.New(cfg.Pool)
	keys := newKeyCache(q, cfg.CacheTTL, maxCachedKeys)
	deployments := deployment.NewCache(deployment.Config{Pool: cfg.Pool, Box: cfg.Box, TTL: cfg.CacheTTL})
	g := &Gateway{
		cfg:         cfg,
		log:         cfg.Logger,
		q:           q,
		keys:        keys,
		deployments: deployments,
		changes:     changes.NewListener(cfg.Pool, cfg.Logger, keys, deployments),
		client:      &http.Client{Transport: transport},
		metrics:     newGatewayMetrics(cfg.Registry),
		lastUsed:    newLastUsed(),
		bodies:      &bodyBudget{limit: cfg.MaxBodyBytesInFlight},
		admitter:    cfg.Admitter,
	}
	if g.admitter == nil {
		g.admitter = admission.New(admission.Config{Logger: cfg.Logger})
	}
	g.firstTurn = firstTurn{nats: cfg.NATS, runs: cfg.Runs, q: q, log: cfg.Logger, announceWait: defaultAnnounceWait}
	g.router = g.routes()
	return g, nil
}

func (g *Gateway) routes() chi.Router {
	r := chi.NewRouter()
	r.Use(metrics.NewHTTP(g.cfg.Registry, "bud_gateway").Middleware, g.bodies.bound)
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", g.readyz)
	r.With(g.authenticated(endpointChat)).Post("/v1/chat/completions", g.chatCompletions)
	r.With(g.authenticated(endpointCompletions)).Post("/v1/completions", g.completions)
	r.With(g.authenticated(endpointEmbeddings)).Post("/v1/embeddings", g.embeddings)
	r.Group(func(r chi.Router) {
		r.Use(g.authenticated(""))
		r.Post("/v1/responses", g.responses)
		r.Get("/v1/responses/{id}", g.getResponse)
		r.Post("/v1/responses/{id}/cancel", g.cancelResponse)
		r.Delete("/v1/responses/{id}", g.deleteResponse)
		r.Get("/v1/responses/{id}/input_items", g.inputItems)
		r.Get("/v1/models", g.listModels)
		r.Get("/v1/models/*", g.getModel)
	})
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeAPIError(w, &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: codeUnknownURL,
			Message: "Unknown request URL: " + r.Method + " " + r.URL.Path + "."})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeAPIError(w, &apiError{Status: http.StatusMethodNotAllowed, Type: typeInvalidRequest, Code: codeMethodNotAllowed,
			Message: "Method " + r.Method + " is not allowed on " + r.URL.Path + "."})
	})
	return r
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.router.ServeHTTP(w, r) }

// Listening is closed once the gateway is subscribed to change
// notifications, from which point a change reaches its cache at once.
func (g *Gateway) Listening() <-chan struct{} { return g.changes.Listening() }

// Run listens for changes and writes keys' last use until ctx ends, then
// writes what is pending and returns.
func (g *Gateway) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = g.changes.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		t := time.NewTicker(g.cfg.LastUsedFlush)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				g.flushLastUsed(fctx)
				cancel()
				return
			case <-t.C:
				g.flushLastUsed(ctx)
			}
		}
	}()
	wg.Wait()
	return nil
}

func (g *Gateway) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := g.cfg.Pool.Ping(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "failing": "postgres"})
		return
	}
	if g.cfg.Ready != nil {
		if err := g.cfg.Ready(ctx); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "failing": "temporal"})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// writeJSON answers with v as the JSON body and the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
