package metrics_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/metrics"
)

// TestTemporalHandler reports as the SDK does — a gauge per worker type,
// a counter whose failures carry one tag more, a timer — and reads back
// what the metrics listener serves.
func TestTemporalHandler(t *testing.T) {
	t.Parallel()
	reg := metrics.NewRegistry()
	h := metrics.NewTemporal(reg).WithTags(map[string]string{"namespace": "default", "task_queue": "bud-prompt"})

	h.WithTags(map[string]string{"worker_type": "ActivityWorker"}).Gauge("temporal_worker_task_slots_used").Update(3)
	h.WithTags(map[string]string{"worker_type": "WorkflowWorker"}).Gauge("temporal_worker_task_slots_used").Update(1)
	h.WithTags(map[string]string{"worker_type": "ActivityWorker"}).Gauge("temporal_worker_task_slots_used").Update(4)
	req := h.WithTags(map[string]string{"operation": "PollActivityTaskQueue"})
	req.Counter("temporal_request").Inc(2)
	req.Counter("temporal_request").Inc(1)
	req.WithTags(map[string]string{"status_code": "UNAVAILABLE"}).Counter("temporal_request").Inc(1)
	lat := h.Timer("temporal_activity_schedule_to_start_latency")
	lat.Record(20 * time.Millisecond)
	lat.Record(3 * time.Second)

	rec := httptest.NewRecorder()
	metrics.NewMux(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	body := rec.Body.String()
	for _, want := range []string{
		`temporal_worker_task_slots_used{namespace="default",task_queue="bud-prompt",worker_type="ActivityWorker"} 4`,
		`temporal_worker_task_slots_used{namespace="default",task_queue="bud-prompt",worker_type="WorkflowWorker"} 1`,
		`temporal_request{namespace="default",operation="PollActivityTaskQueue",status_code="",task_queue="bud-prompt"} 3`,
		`temporal_request{namespace="default",operation="PollActivityTaskQueue",status_code="UNAVAILABLE",task_queue="bud-prompt"} 1`,
		`temporal_activity_schedule_to_start_latency_bucket{namespace="default",task_queue="bud-prompt",le="0.025"} 1`,
		`temporal_activity_schedule_to_start_latency_bucket{namespace="default",task_queue="bud-prompt",le="5"} 2`,
		`temporal_activity_schedule_to_start_latency_count{namespace="default",task_queue="bud-prompt"} 2`,
	} {
		require.Contains(t, body, want)
	}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	series := map[string]int{}
	for _, mf := range mfs {
		series[mf.GetName()] = len(mf.GetMetric())
	}
	require.Equal(t, 2, series["temporal_worker_task_slots_used"])
	require.Equal(t, 2, series["temporal_request"])
	require.Equal(t, 1, series["temporal_activity_schedule_to_start_latency"])
}
