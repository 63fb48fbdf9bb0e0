package scaling_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/budhq/bud/metrics"
	"github.com/budhq/bud/scaling"
	"github.com/budhq/bud/temporalserver"
)

// read reads the value of a series (name{labels}) from what a metrics
// listener serves; ok is false when it is absent.
func read(h *httptest.Server, series string) (v float64, ok bool, err error) {
	resp, err := h.Client().Get(h.URL + "/metrics")
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, false, err
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0, false, nil
	}
	v, err = strconv.ParseFloat(string(m[1]), 64)
	return v, err == nil, err
}

// scrape is read in the test's goroutine.
func scrape(t *testing.T, h *httptest.Server, series string) (float64, bool) {
	t.Helper()
	v, ok, err := read(h, series)
	require.NoError(t, err)
	return v, ok
}

// TestBacklogExported starts runs on a task queue no worker polls, and
// scrapes the backlog the way a scaler would: the workflow tasks are
// there, and gone from the metrics once the server cannot be asked.
func TestBacklogExported(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	srv, err := temporalserver.Start(ctx, temporalserver.Options{})
	require.NoError(t, err)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = srv.Stop()
		}
	})
	tc, err := client.Dial(client.Options{HostPort: srv.HostPort(), Namespace: srv.Namespace(),
		Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	require.NoError(t, err)
	t.Cleanup(tc.Close)

	const queue, runs = "unpolled", 5
	for range runs {
		_, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: queue}, "PromptRun")
		require.NoError(t, err)
	}
	reg := metrics.NewRegistry()
	b := scaling.NewBacklog(reg, tc.WorkflowService(), srv.Namespace(), queue, slog.New(slog.DiscardHandler))
	h := httptest.NewServer(metrics.NewMux(reg))
	defer h.Close()

	workflows := `bud_worker_task_queue_backlog{task_queue="unpolled",task_type="workflow"}`
	activities := `bud_worker_task_queue_backlog{task_queue="unpolled",task_type="activity"}`
	// The server counts a queue's backlog as it writes the tasks; its
	// count may trail the starts by a moment.
	require.Eventually(t, func() bool {
		if b.Poll(ctx) != nil {
			return false
		}
		v, ok, err := read(h, workflows)
		return err == nil && ok && v == runs
	}, 30*time.Second, 100*time.Millisecond)
	v, ok := scrape(t, h, activities)
	require.True(t, ok)
	require.Zero(t, v, "no activity was scheduled")
	age, ok := scrape(t, h, `bud_worker_task_queue_backlog_age_seconds{task_queue="unpolled",task_type="workflow"}`)
	require.True(t, ok)
	require.Positive(t, age, "the oldest task has waited since its start")

	stopped = true
	require.NoError(t, srv.Stop())
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	require.Error(t, b.Poll(pctx))
	_, ok = scrape(t, h, workflows)
	require.False(t, ok, "a backlog the server cannot tell is absent, not stale")
	errs, ok := scrape(t, h, "bud_worker_task_queue_backlog_errors_total")
	require.True(t, ok)
	require.Equal(t, 1.0, errs)
}
