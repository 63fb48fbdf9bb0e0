// Package metrics gives each service its own Prometheus registry and the
// HTTP middleware that measures its requests. There is no global registry:
// `bud dev` runs several services in one process and each keeps its own.
package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// NewRegistry returns a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves the registry in the Prometheus text format.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// NewMux serves regs at GET /metrics and answers 404 to everything else.
// It is the handler of a metrics listener of its own: metrics label series
// by project and deployment, so they stay off the public listeners. Several
// registries of one process are served merged (prometheus.Gatherers); the Go
// runtime and process families that every NewRegistry holds come from the
// first only, as Gatherers refuses a series that two registries report.
func NewMux(regs ...*prometheus.Registry) http.Handler {
	gs := make(prometheus.Gatherers, len(regs))
	for i, reg := range regs {
		gs[i] = reg
		if i > 0 {
			gs[i] = withoutRuntime{reg}
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gs, promhttp.HandlerOpts{}))
	return mux
}

// withoutRuntime drops the families of the Go runtime and process
// collectors from what g gathers.
type withoutRuntime struct{ g prometheus.Gatherer }

func (w withoutRuntime) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := w.g.Gather()
	kept := mfs[:0]
	for _, mf := range mfs {
		if name := mf.GetName(); !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			kept = append(kept, mf)
		}
	}
	return kept, err
}

// HTTP measures requests: a counter and a latency histogram by route
// pattern (never the raw path, which would explode the label set), method
// and status.
type HTTP struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewHTTP registers the request metrics of service (bud_app, bud_gateway, …).
func NewHTTP(reg prometheus.Registerer, service string) *HTTP {
	m := &HTTP{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: service + "_http_requests_total",
			Help: "HTTP requests served, by route, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    service + "_http_request_duration_seconds",
			Help:    "HTTP request latency, by route and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.latency)
	return m
}

// Middleware records every request that passes through a chi router.
func (m *HTTP) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil {
			if p := rc.RoutePattern(); p != "" {
				route = p
			}
		}
		m.requests.WithLabelValues(route, r.Method, strconv.Itoa(sw.status)).Inc()
		m.latency.WithLabelValues(route, r.Method).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Flush lets streaming handlers flush through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
