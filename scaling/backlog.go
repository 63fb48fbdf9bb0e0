package scaling

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
)

// BacklogEvery is how often a worker asks the server for its task queue's
// backlog: the server's own numbers are refreshed about as often.
const BacklogEvery = 5 * time.Second

// Names of the backlog metrics. Each has the labels task_queue and
// task_type (workflow or activity). Every worker exports the same numbers
// — the queue's, not its own — so a scaler reads their max.
const (
	// MetricBacklog is the approximate number of tasks waiting in the
	// queue for a worker.
	MetricBacklog = "bud_worker_task_queue_backlog"
	// MetricBacklogAge is how long the oldest of them has waited, in
	// seconds.
	MetricBacklogAge = "bud_worker_task_queue_backlog_age_seconds"
	// MetricAddRate and MetricDispatchRate are tasks per second added to
	// the queue and handed to workers, over the server's last ~30 s.
	MetricAddRate      = "bud_worker_task_queue_add_rate"
	MetricDispatchRate = "bud_worker_task_queue_dispatch_rate"
	// MetricBacklogErrors counts the times the server could not be asked;
	// the gauges are then absent until it answers again, rather than
	// stale.
	MetricBacklogErrors = "bud_worker_task_queue_backlog_errors_total"
)

// taskTypes are the kinds of tasks of the runs' queue, by label.
var taskTypes = []struct {
	label string
	typ   enumspb.TaskQueueType
}{
	{"workflow", enumspb.TASK_QUEUE_TYPE_WORKFLOW},
	{"activity", enumspb.TASK_QUEUE_TYPE_ACTIVITY},
}

// Backlog exports a task queue's backlog, as the server reports it
// (DescribeTaskQueue with report_stats), as Prometheus gauges: what KEDA's
// Temporal scaler reads from the server itself, for an HPA that reads
// Prometheus instead.
type Backlog struct {
	svc       workflowservice.WorkflowServiceClient
	namespace string
	taskQueue string
	log       *slog.Logger

	count, age, addRate, dispatchRate *prometheus.GaugeVec
	errors                            prometheus.Counter
	failing                           bool
}

// NewBacklog registers the backlog metrics of taskQueue of namespace in
// reg; svc is a client's WorkflowService. Poll or Run fills them.
func NewBacklog(reg prometheus.Registerer, svc workflowservice.WorkflowServiceClient, namespace, taskQueue string, log *slog.Logger) *Backlog {
	labels := []string{"task_queue", "task_type"}
	b := &Backlog{
		svc: svc, namespace: namespace, taskQueue: taskQueue, log: log,
		count: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricBacklog, Help: "Approximate number of tasks waiting in the task queue for a worker, as the Temporal server reports it.",
		}, labels),
		age: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricBacklogAge, Help: "How long the oldest task waiting in the task queue has waited, in seconds.",
		}, labels),
		addRate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricAddRate, Help: "Tasks added to the task queue per second, over the server's last ~30 s.",
		}, labels),
		dispatchRate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricDispatchRate, Help: "Tasks handed to workers per second, over the server's last ~30 s.",
		}, labels),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricBacklogErrors, Help: "Times the Temporal server could not be asked for the task queue's backlog.",
		}),
	}
	reg.MustRegister(b.count, b.age, b.addRate, b.dispatchRate, b.errors)
	return b
}

// Poll asks the server once for the backlog of each task type and sets
// the gauges; on an error they are removed, so that no scaler acts on a
// stale number.
func (b *Backlog) Poll(ctx context.Context) error {
	stats := make([]*taskqueuepb.TaskQueueStats, len(taskTypes))
	for i, tt := range taskTypes {
		resp, err := b.svc.DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
			Namespace:     b.namespace,
			TaskQueue:     &taskqueuepb.TaskQueue{Name: b.taskQueue, Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
			TaskQueueType: tt.typ,
			ReportStats:   true,
		})
		if err != nil {
			for _, g := range []*prometheus.GaugeVec{b.count, b.age, b.addRate, b.dispatchRate} {
				g.Reset()
			}
			b.errors.Inc()
			return fmt.Errorf("describe task queue %s (%s): %w", b.taskQueue, tt.label, err)
		}
		stats[i] = resp.GetStats()
	}
	for i, tt := range taskTypes {
		st := stats[i]
		b.count.WithLabelValues(b.taskQueue, tt.label).Set(float64(st.GetApproximateBacklogCount()))
		b.age.WithLabelValues(b.taskQueue, tt.label).Set(st.GetApproximateBacklogAge().AsDuration().Seconds())
		b.addRate.WithLabelValues(b.taskQueue, tt.label).Set(float64(st.GetTasksAddRate()))
		b.dispatchRate.WithLabelValues(b.taskQueue, tt.label).Set(float64(st.GetTasksDispatchRate()))
	}
	return nil
}

// Run polls every interval until ctx ends. A failure is logged when it
// starts and when it ends, not at every poll.
func (b *Backlog) Run(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, every)
		err := b.Poll(pctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !b.failing:
			b.failing = true
			b.log.Warn("task queue backlog unknown until the server answers", "err", err)
		case err == nil && b.failing:
			b.failing = false
			b.log.Info("task queue backlog known again")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
