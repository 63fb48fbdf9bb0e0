package scaling_test

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/budhq/bud/scaling"
)

// busy is a SysInfoProvider with fixed readings.
type busy struct{ cpu, mem float64 }

func (b busy) CpuUsage(*worker.SysInfoContext) (float64, error)    { return b.cpu, nil }
func (b busy) MemoryUsage(*worker.SysInfoContext) (float64, error) { return b.mem, nil }

func TestFixedWorkerOptions(t *testing.T) {
	t.Parallel()
	c := scaling.Fixed()
	c.MaxSlots, c.MaxPollers = 4, 3
	opts, err := c.WorkerOptions(nil)
	require.NoError(t, err)
	for kind, s := range map[string]worker.SlotSupplier{
		"workflow": opts.Tuner.GetWorkflowTaskSlotSupplier(),
		"activity": opts.Tuner.GetActivityTaskSlotSupplier(),
		"local":    opts.Tuner.GetLocalActivitySlotSupplier(),
	} {
		require.Equal(t, 4, s.MaxSlots(), kind)
		_, resource := s.(*worker.ResourceBasedSlotSupplier)
		require.False(t, resource, kind)
	}
	want := worker.NewPollerBehaviorSimpleMaximum(worker.PollerBehaviorSimpleMaximumOptions{MaximumNumberOfPollers: 3})
	require.Equal(t, want, opts.WorkflowTaskPollerBehavior)
	require.Equal(t, want, opts.ActivityTaskPollerBehavior)
	require.True(t, opts.DisableEagerActivities, "an eager activity skips the queue's fairness")
	require.Zero(t, opts.MaxConcurrentActivityExecutionSize, "the tuner sizes the worker")
}

func TestAutoscaledWorkerOptions(t *testing.T) {
	t.Parallel()
	c := scaling.Autoscaled()
	c.MinSlots, c.MaxSlots, c.MaxPollers = 3, 50, 20
	opts, err := c.WorkerOptions(busy{})
	require.NoError(t, err)
	for kind, s := range map[string]worker.SlotSupplier{
		"workflow": opts.Tuner.GetWorkflowTaskSlotSupplier(),
		"activity": opts.Tuner.GetActivityTaskSlotSupplier(),
		"local":    opts.Tuner.GetLocalActivitySlotSupplier(),
	} {
		_, resource := s.(*worker.ResourceBasedSlotSupplier)
		require.True(t, resource, kind)
	}
	want := worker.NewPollerBehaviorAutoscaling(worker.PollerBehaviorAutoscalingOptions{MinimumNumberOfPollers: 1, MaximumNumberOfPollers: 20})
	require.Equal(t, want, opts.WorkflowTaskPollerBehavior)
	require.Equal(t, want, opts.ActivityTaskPollerBehavior)
	require.NotEqual(t, worker.NewPollerBehaviorSimpleMaximum(worker.PollerBehaviorSimpleMaximumOptions{MaximumNumberOfPollers: 20}), opts.ActivityTaskPollerBehavior)
	require.True(t, opts.DisableEagerActivities)

	_, err = c.WorkerOptions(nil)
	require.ErrorContains(t, err, "CPU and memory")
}

// TestAutoscaledSlotsFollowLoad reserves activity slots from an
// autoscaled worker's supplier as the SDK does: MinSlots come without a
// look at the machine, more while CPU and memory are below their
// targets, none past MaxSlots or over the memory target.
func TestAutoscaledSlotsFollowLoad(t *testing.T) {
	t.Parallel()
	supplier := func(sys worker.SysInfoProvider) worker.SlotSupplier {
		c := scaling.Autoscaled()
		c.MinSlots, c.MaxSlots = 2, 8
		opts, err := c.WorkerOptions(sys)
		require.NoError(t, err)
		return opts.Tuner.GetActivityTaskSlotSupplier()
	}
	reserve := func(sys worker.SysInfoProvider, issued int) bool {
		return supplier(sys).TryReserveSlot(issuedSlots(issued)) != nil
	}
	permit, err := supplier(busy{cpu: 1, mem: 1}).ReserveSlot(t.Context(), issuedSlots(1))
	require.NoError(t, err)
	require.NotNil(t, permit, "below MinSlots, whatever the load")
	require.False(t, reserve(busy{cpu: 1, mem: 1}, 5), "above MinSlots on a busy machine: none")
	require.True(t, reserve(busy{cpu: 0.1, mem: 0.1}, 5), "idle machine: one more")
	require.False(t, reserve(busy{cpu: 0.1, mem: 0.95}, 5), "memory past its target")
	require.False(t, reserve(busy{cpu: 0.1, mem: 0.1}, 8), "at MaxSlots")
}

func TestCheckRefuses(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]scaling.Config{
		"one slot":              {MaxSlots: 1, MaxPollers: 2},
		"one poller":            {MaxSlots: 10, MaxPollers: 1},
		"fixed with min":        {MaxSlots: 10, MaxPollers: 2, MinSlots: 3},
		"fixed with target":     {MaxSlots: 10, MaxPollers: 2, TargetCPU: 0.5},
		"min above max":         {Autoscale: true, MinSlots: 20, MaxSlots: 10, MaxPollers: 2, TargetCPU: 0.5, TargetMemory: 0.5},
		"no min":                {Autoscale: true, MaxSlots: 10, MaxPollers: 2, TargetCPU: 0.5, TargetMemory: 0.5},
		"cpu target above 1":    {Autoscale: true, MinSlots: 1, MaxSlots: 10, MaxPollers: 2, TargetCPU: 1.5, TargetMemory: 0.5},
		"memory target missing": {Autoscale: true, MinSlots: 1, MaxSlots: 10, MaxPollers: 2, TargetCPU: 0.5},
	} {
		require.Error(t, c.Check(), name)
		_, err := c.WorkerOptions(busy{})
		require.Error(t, err, name)
	}
	require.NoError(t, scaling.Fixed().Check())
	require.NoError(t, scaling.Autoscaled().Check())
}

// issuedSlots is a reservation's information, as the SDK gives it, when
// n slots are out.
type issuedSlots int

func (n issuedSlots) TaskQueue() string                    { return "bud-prompt" }
func (n issuedSlots) TaskQueueKind() enumspb.TaskQueueKind { return enumspb.TASK_QUEUE_KIND_NORMAL }
func (n issuedSlots) WorkerBuildId() string                { return "" }
func (n issuedSlots) WorkerIdentity() string               { return "test" }
func (n issuedSlots) NumIssuedSlots() int                  { return int(n) }
func (n issuedSlots) Logger() log.Logger {
	return log.NewStructuredLogger(slog.New(slog.DiscardHandler))
}
func (n issuedSlots) MetricsHandler() client.MetricsHandler {
	return client.MetricsNopHandler
}
