// Package gateway is BudGateway: the public OpenAI-compatible API. It
// authenticates callers by project API key and routes each request by its
// `model` to a deployment of that project.
package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/budhq/bud/metrics"
)

// Config configures the gateway.
type Config struct {
	Pool     *pgxpool.Pool
	Logger   *slog.Logger
	Ready    func(ctx context.Context) error // extra readiness check (Temporal); nil means none
	Registry *prometheus.Registry            // nil: a fresh one
}

// New returns the gateway's HTTP handler.
func New(cfg Config) (http.Handler, error) {
	if cfg.Registry == nil {
		cfg.Registry = metrics.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := chi.NewRouter()
	r.Use(metrics.NewHTTP(cfg.Registry, "bud_gateway").Middleware)
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := cfg.Pool.Ping(ctx); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "failing": "postgres"})
			return
		}
		if cfg.Ready != nil {
			if err := cfg.Ready(ctx); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "failing": "temporal"})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Handle("/metrics", metrics.Handler(cfg.Registry))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeOpenAIError(w, http.StatusNotFound, "invalid_request_error", "", "unknown_url", "Unknown request URL: "+r.Method+" "+r.URL.Path)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeOpenAIError(w, http.StatusMethodNotAllowed, "invalid_request_error", "", "method_not_allowed", "Method "+r.Method+" is not allowed on "+r.URL.Path)
	})
	return r, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// openAIError is OpenAI's error envelope.
type openAIError struct {
	Error openAIErrorBody `json:"error"`
}

type openAIErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func writeOpenAIError(w http.ResponseWriter, status int, typ, param, code, msg string) {
	body := openAIErrorBody{Message: msg, Type: typ}
	if param != "" {
		body.Param = &param
	}
	if code != "" {
		body.Code = &code
	}
	writeJSON(w, status, openAIError{Error: body})
}
