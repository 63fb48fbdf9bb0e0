package gateway

import (
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

// The endpoints the model request metrics cover, as their endpoint label
// names them.
const (
	endpointChat        = "chat.completions"
	endpointCompletions = "completions"
	endpointEmbeddings  = "embeddings"
)

// gatewayMetrics are labelled by project id and deployment name; callers
// cannot create label values, since both come from our own database.
type gatewayMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	upstream *prometheus.HistogramVec
	tokens   *prometheus.CounterVec
	errors   *prometheus.CounterVec

	seriesMu sync.RWMutex
	// series holds each deployment's chat series. Deployment names come
	// from the database, so it grows as the vectors' own children do.
	series map[seriesKey]*chatSeries
}

type seriesKey struct {
	project    uuid.UUID
	deployment string
	endpoint   string
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
	m.series = make(map[seriesKey]*chatSeries)
	return m
}

// chatSeries are the chat completion series of a project's deployment, or
// of none ("": a request refused before it named one), resolved once:
// WithLabelValues costs an allocation per call, and a request makes
// several. Without a deployment there is no upstream and so no upstream
// or token series: those are nil.
type chatSeries struct {
	vecs                          *gatewayMetrics
	project, deployment, endpoint string
	latency, upstream             prometheus.Observer
	tokensIn, tokensOut           prometheus.Counter

	mu       sync.Mutex
	byStatus map[int]prometheus.Counter
}

// model returns the series of endpoint (endpointChat…) of project's
// deployment dep.
func (m *gatewayMetrics) model(project uuid.UUID, dep, endpoint string) *chatSeries {
	k := seriesKey{project, dep, endpoint}
	m.seriesMu.RLock()
	s := m.series[k]
	m.seriesMu.RUnlock()
	if s != nil {
		return s
	}
	m.seriesMu.Lock()
	defer m.seriesMu.Unlock()
	if s = m.series[k]; s != nil {
		return s
	}
	p := project.String()
	s = &chatSeries{
		vecs: m, project: p, deployment: dep, endpoint: endpoint,
		latency:  m.latency.WithLabelValues(p, dep, endpoint),
		byStatus: make(map[int]prometheus.Counter),
	}
	if dep != "" {
		s.upstream = m.upstream.WithLabelValues(p, dep)
		s.tokensIn, s.tokensOut = m.tokens.WithLabelValues(p, dep, "in"), m.tokens.WithLabelValues(p, dep, "out")
	}
	m.series[k] = s
	return s
}

// requests is the request counter of status.
func (s *chatSeries) requests(status int) prometheus.Counter {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.byStatus[status]
	if c == nil {
		c = s.vecs.requests.WithLabelValues(s.project, s.deployment, s.endpoint, strconv.Itoa(status))
		s.byStatus[status] = c
	}
	return c
}

// failed counts a failure of type typ.
func (s *chatSeries) failed(typ string) {
	s.vecs.errors.WithLabelValues(s.project, s.deployment, typ).Inc()
}

// refused counts a request to endpoint that was refused for its key, begun
// at start: it has neither project nor deployment.
func (m *gatewayMetrics) refused(endpoint string, status int, start time.Time) {
	m.requests.WithLabelValues("", "", endpoint, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues("", "", endpoint).Observe(time.Since(start).Seconds())
	m.errors.WithLabelValues("", "", "auth").Inc()
}
