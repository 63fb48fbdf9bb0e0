package gateway

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// endpointChat names chat completions in the model request metrics, the
// one endpoint they cover.
const endpointChat = "chat.completions"

// gatewayMetrics are labelled by project id and deployment name; callers
// cannot create label values, since both come from our own database.
type gatewayMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	upstream *prometheus.HistogramVec
	tokens   *prometheus.CounterVec
	errors   *prometheus.CounterVec
}

func newGatewayMetrics(reg prometheus.Registerer) *gatewayMetrics {
	buckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
	m := &gatewayMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bud_gateway_requests_total",
			Help: "Model requests, by project, deployment, endpoint and status code.",
		}, []string{"project", "deployment", "endpoint", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bud_gateway_request_duration_seconds",
			Help:    "Time from request to the end of the response, by project, deployment and endpoint.",
			Buckets: buckets,
		}, []string{"project", "deployment", "endpoint"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bud_gateway_upstream_duration_seconds",
			Help:    "Time until the upstream's response headers, by project and deployment.",
			Buckets: buckets,
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

// refused counts a request to endpoint that was refused for its key, begun
// at start: it has neither project nor deployment.
func (m *gatewayMetrics) refused(endpoint string, status int, start time.Time) {
	m.requests.WithLabelValues("", "", endpoint, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues("", "", endpoint).Observe(time.Since(start).Seconds())
	m.errors.WithLabelValues("", "", "auth").Inc()
}
