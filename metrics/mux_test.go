package metrics_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/metrics"
)

// TestNewMuxMerges checks that the registries of one process are served
// together although each holds the Go runtime and process collectors.
func TestNewMuxMerges(t *testing.T) {
	a, b := metrics.NewRegistry(), metrics.NewRegistry()
	for reg, name := range map[*prometheus.Registry]string{a: "bud_a_total", b: "bud_b_total"} {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: name})
		reg.MustRegister(c)
		c.Inc()
	}
	h := metrics.NewMux(a, b)

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	for _, want := range []string{"bud_a_total 1", "bud_b_total 1", "go_goroutines"} {
		require.Contains(t, rec.Body.String(), want)
	}

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	require.Equal(t, http.StatusNotFound, rec.Code)
}
