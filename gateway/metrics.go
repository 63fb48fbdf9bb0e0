package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
)

// gatewayMetrics are labelled by project id and deployment name; callers
// cannot create label values, since both come from our own database.
type gatewayMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	upstream *prometheus.HistogramVec
	tokens   *prometheus.CounterVec
	errors   *prometheus.CounterVec
}

var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}

func newGatewayMetrics(reg prometheus.Registerer) *gatewayMetrics {
	m := &gatewayMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bud_gateway_requests_total",
			Help: "Model requests, by project, deployment, endpoint and status code.",
		}, []string{"project", "deployment", "endpoint", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bud_gateway_request_duration_seconds",
			Help:    "Time from request to the end of the response, by project, deployment and endpoint.",
			Buckets: latencyBuckets,
		}, []string{"project", "deployment", "endpoint"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bud_gateway_upstream_duration_seconds",
			Help:    "Time until the upstream's response headers, by project and deployment.",
			Buckets: latencyBuckets,
		}, []string{"project", "deployment"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bud_gateway_tokens_total",
			Help: "Tokens reported by upstreams' usage, by project, deployment and direction (in: prompt, out: completion).",
		}, []string{"project", "deployment", "direction"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bud_gateway_errors_total",
			Help: "Failed requests, by project, deployment and error type.",
		}, []string{"project", "deployment", "type"}),
	}
	reg.MustRegister(m.requests, m.latency, m.upstream, m.tokens, m.errors)
	return m
}
