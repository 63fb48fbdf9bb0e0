package usage

import (
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

// recorderMetrics are the bud_usage_* series. Request series are labelled
// by project id and deployment name only: a label per API key or prompt
// version would make a series per key and version, which grow without
// bound as callers mint keys and save versions. Those breakdowns are in
// the rollups.
type recorderMetrics struct {
	requests, errors, cacheHits, rateLimited *prometheus.CounterVec
	tokens                                   *prometheus.CounterVec
	latency                                  *prometheus.HistogramVec

	flushes *prometheus.CounterVec
	pending prometheus.Gauge
	dropped prometheus.Counter

	mu sync.RWMutex
	// byDeployment holds each deployment's series, resolved once:
	// WithLabelValues allocates on every call.
	byDeployment map[seriesKey]*series
}

type seriesKey struct {
	project    uuid.UUID
	deployment string
}

// series are one deployment's request series.
type series struct {
	deployment                               string
	requests, errors, cacheHits, rateLimited prometheus.Counter
	tokensIn, tokensOut                      prometheus.Counter
	latency                                  prometheus.Observer
}

func newRecorderMetrics(reg prometheus.Registerer) (*recorderMetrics, error) {
	labels := []string{"project", "deployment"}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	m := &recorderMetrics{
		requests:    counter("bud_usage_requests_total", "Requests counted in usage, by project and deployment (\"\" when the request named none)."),
		errors:      counter("bud_usage_errors_total", "Requests that failed for a reason other than a rate limit, by project and deployment."),
		cacheHits:   counter("bud_usage_cache_hits_total", "Requests answered from the response cache, by project and deployment."),
		rateLimited: counter("bud_usage_rate_limited_total", "Requests refused by a rate or concurrency limit, by project and deployment."),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bud_usage_tokens_total",
			Help: "Tokens reported by upstreams, by project, deployment and direction (in: prompt, out: completion).",
		}, []string{"project", "deployment", "direction"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bud_usage_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its answer, rate-limited requests excepted, by project and deployment.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, labels),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bud_usage_flushes_total",
			Help: "Writes of the usage rollups, by result (ok, error).",
		}, []string{"result"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bud_usage_pending_rows",
			Help: "Rollup rows kept in memory after a failed write, waiting for the next one.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bud_usage_dropped_requests_total",
			Help: "Requests left out of the rollups because the rows kept during a database outage reached their bound.",
		}),
		byDeployment: make(map[seriesKey]*series),
	}
	for _, c := range []prometheus.Collector{m.requests, m.errors, m.cacheHits, m.rateLimited, m.tokens, m.latency, m.flushes, m.pending, m.dropped} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("usage: register metrics: %w", err)
		}
	}
	// Both results exist from the start, so a rate over errors is 0
	// rather than absent before the first failure.
	m.flushes.WithLabelValues("ok")
	m.flushes.WithLabelValues("error")
	return m, nil
}

// series returns the series of project's deployment.
func (m *recorderMetrics) series(project uuid.UUID, deployment string) *series {
	k := seriesKey{project, deployment}
	m.mu.RLock()
	s := m.byDeployment[k]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s = m.byDeployment[k]; s != nil {
		return s
	}
	p := project.String()
	s = &series{
		deployment:  deployment,
		requests:    m.requests.WithLabelValues(p, deployment),
		errors:      m.errors.WithLabelValues(p, deployment),
		cacheHits:   m.cacheHits.WithLabelValues(p, deployment),
		rateLimited: m.rateLimited.WithLabelValues(p, deployment),
		tokensIn:    m.tokens.WithLabelValues(p, deployment, "in"),
		tokensOut:   m.tokens.WithLabelValues(p, deployment, "out"),
		latency:     m.latency.WithLabelValues(p, deployment),
	}
	m.byDeployment[k] = s
	return s
}

// observe counts e, whose tokens and latency the caller has checked.
func (s *series) observe(e Event, in, out int64, latency time.Duration, timed bool) {
	s.requests.Inc()
	if e.Error {
		s.errors.Inc()
	}
	if e.CacheHit {
		s.cacheHits.Inc()
	}
	if e.RateLimited {
		s.rateLimited.Inc()
	}
	if in > 0 {
		s.tokensIn.Add(float64(in))
	}
	if out > 0 {
		s.tokensOut.Add(float64(out))
	}
	if timed {
		s.latency.Observe(latency.Seconds())
	}
}
