package main

import (
	"log/slog"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"

	"github.com/budhq/bud/scaling"
)

// TestWorkerScalingFromSettings reads the BUD_WORKER_* settings as `bud
// worker` does and builds the worker's options from them.
func TestWorkerScalingFromSettings(t *testing.T) {
	var c config
	require.NoError(t, c.parse("worker", nil))
	sc, err := c.workerScaling()
	require.NoError(t, err)
	require.Equal(t, scaling.Fixed(), sc, "unset, a worker has the SDK's fixed slots and pollers")
	opts, err := workerOptions(slog.New(slog.DiscardHandler), sc)
	require.NoError(t, err)
	require.Equal(t, scaling.DefaultMaxSlots, opts.Tuner.GetActivityTaskSlotSupplier().MaxSlots())
	require.Equal(t, worker.NewPollerBehaviorSimpleMaximum(worker.PollerBehaviorSimpleMaximumOptions{MaximumNumberOfPollers: scaling.DefaultFixedPollers}), opts.ActivityTaskPollerBehavior)

	require.NoError(t, c.parse("worker", []string{"--worker-max-slots", "8", "--worker-max-pollers", "3"}))
	sc, err = c.workerScaling()
	require.NoError(t, err)
	require.Equal(t, scaling.Config{MaxSlots: 8, MaxPollers: 3}, sc)

	t.Setenv("BUD_WORKER_AUTOSCALE", "on")
	require.NoError(t, c.parse("worker", []string{"--worker-max-slots", "64", "--worker-min-slots", "4", "--worker-target-cpu", "0.7"}))
	sc, err = c.workerScaling()
	require.NoError(t, err)
	require.Equal(t, scaling.Config{Autoscale: true, MinSlots: 4, MaxSlots: 64, MaxPollers: scaling.DefaultMaxPollers,
		TargetCPU: 0.7, TargetMemory: scaling.DefaultTargetMemory}, sc)
	opts, err = workerOptions(slog.New(slog.DiscardHandler), sc)
	require.NoError(t, err)
	_, resource := opts.Tuner.GetActivityTaskSlotSupplier().(*worker.ResourceBasedSlotSupplier)
	require.True(t, resource, "autoscaled slots follow CPU and memory")
	require.Equal(t, worker.NewPollerBehaviorAutoscaling(worker.PollerBehaviorAutoscalingOptions{MinimumNumberOfPollers: 1, MaximumNumberOfPollers: scaling.DefaultMaxPollers}), opts.ActivityTaskPollerBehavior)
}

// TestWorkerScalingRefused names the setting at fault for each bad value,
// and `bud worker` refuses it before it dials anything.
func TestWorkerScalingRefused(t *testing.T) {
	for _, tc := range []struct {
		settings map[string]string
		want     string
	}{
		{map[string]string{"BUD_WORKER_AUTOSCALE": "sometimes"}, `BUD_WORKER_AUTOSCALE: "sometimes" is neither on nor off`},
		{map[string]string{"BUD_WORKER_MAX_SLOTS": "lots"}, `BUD_WORKER_MAX_SLOTS: "lots" is not a whole number`},
		{map[string]string{"BUD_WORKER_MAX_SLOTS": "1"}, "BUD_WORKER_MAX_SLOTS: 1 is below 2"},
		{map[string]string{"BUD_WORKER_MAX_POLLERS": "1"}, "BUD_WORKER_MAX_POLLERS: 1 is below 2"},
		{map[string]string{"BUD_WORKER_MIN_SLOTS": "4"}, "BUD_WORKER_MIN_SLOTS is set, but it sizes an autoscaled worker and BUD_WORKER_AUTOSCALE is off"},
		{map[string]string{"BUD_WORKER_TARGET_CPU": "0.5"}, "BUD_WORKER_TARGET_CPU is set, but it sizes an autoscaled worker"},
		{map[string]string{"BUD_WORKER_AUTOSCALE": "on", "BUD_WORKER_MIN_SLOTS": "50", "BUD_WORKER_MAX_SLOTS": "10"}, "BUD_WORKER_MIN_SLOTS: 50 is not between 1 and BUD_WORKER_MAX_SLOTS (10)"},
		{map[string]string{"BUD_WORKER_AUTOSCALE": "on", "BUD_WORKER_MIN_SLOTS": "0"}, "BUD_WORKER_MIN_SLOTS: 0 is not between 1"},
		{map[string]string{"BUD_WORKER_AUTOSCALE": "on", "BUD_WORKER_TARGET_CPU": "80"}, `BUD_WORKER_TARGET_CPU: "80" is not a share above 0 and at most 1`},
		{map[string]string{"BUD_WORKER_AUTOSCALE": "on", "BUD_WORKER_TARGET_MEMORY": "0"}, `BUD_WORKER_TARGET_MEMORY: "0" is not a share`},
	} {
		t.Run(tc.want, func(t *testing.T) {
			for _, env := range []string{"BUD_WORKER_AUTOSCALE", "BUD_WORKER_MIN_SLOTS", "BUD_WORKER_MAX_SLOTS", "BUD_WORKER_MAX_POLLERS", "BUD_WORKER_TARGET_CPU", "BUD_WORKER_TARGET_MEMORY"} {
				t.Setenv(env, tc.settings[env])
			}
			var c config
			require.NoError(t, c.parse("worker", nil))
			_, err := c.workerScaling()
			require.ErrorContains(t, err, tc.want)

			// A Temporal that would hang a dial: nothing answers there.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer ln.Close()
			t.Setenv("TEMPORAL_ADDRESS", ln.Addr().String())
			t.Setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
			require.ErrorContains(t, runWorker(t.Context(), nil), tc.want, "refused at start, before the database or Temporal")
		})
	}
}
