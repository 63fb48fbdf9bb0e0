package runs_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/scaling"
	"github.com/budhq/bud/temporalserver"
)

// The shape of the fairness measurement: a worker with few slots, each
// run one model call long, a flood far larger than the worker drains
// quickly, and a trickle of runs of another deployment meanwhile.
const (
	fairSlots      = 4
	fairCall       = 100 * time.Millisecond
	fairFlood      = 200
	fairTrickle    = 12
	fairTrickleGap = 250 * time.Millisecond
)

// modelCall stands in for a run's model call: it holds a slot for d.
func modelCall(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// callingRun is a workflow under the run's name that makes one model call.
func callingRun(ctx workflow.Context, in run.Input) (run.Turn, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	if err := workflow.ExecuteActivity(ctx, "ModelCall", fairCall).Get(ctx, nil); err != nil {
		return run.Turn{}, err
	}
	return run.Turn{ResponseID: in.ResponseID, Turn: 1, Status: run.StatusCompleted}, nil
}

// fairBench is an embedded server and a worker of fairSlots slots, sized
// as `bud worker` sizes its own.
type fairBench struct {
	ctx     context.Context
	tc      client.Client
	project uuid.UUID
}

func newFairBench(t *testing.T, fifo bool) *fairBench {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	t.Cleanup(cancel)
	srv, err := temporalserver.Start(ctx, temporalserver.Options{SearchAttributes: runs.SearchAttributes(), FirstComeFirstServed: fifo})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })
	tc, err := client.Dial(client.Options{HostPort: srv.HostPort(), Namespace: srv.Namespace(),
		Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	require.NoError(t, err)
	t.Cleanup(tc.Close)
	sc := scaling.Fixed()
	sc.MaxSlots = fairSlots
	opts, err := sc.WorkerOptions(nil)
	require.NoError(t, err)
	w := worker.New(tc, run.TaskQueue, opts)
	w.RegisterWorkflowWithOptions(callingRun, workflow.RegisterOptions{Name: run.WorkflowName})
	w.RegisterActivityWithOptions(modelCall, activity.RegisterOptions{Name: "ModelCall"})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	return &fairBench{ctx: ctx, tc: tc, project: uuid.New()}
}

// start starts a run of deployment as the gateway does (runs.StartOptions)
// and returns a wait for its end, which gives how long it took.
func (b *fairBench) start(deployment uuid.UUID, minConcurrency int) (func() (time.Duration, error), error) {
	in := run.Input{ResponseID: "resp_" + uuid.NewString(), ProjectID: b.project, Document: []byte(`{}`), Source: run.SourceAPI,
		Deployment: deployment.String()[:8], DeploymentID: deployment, MinConcurrency: minConcurrency}
	began := time.Now()
	we, err := b.tc.ExecuteWorkflow(b.ctx, runs.StartOptions(in), run.WorkflowName, in)
	if err != nil {
		return nil, err
	}
	return func() (time.Duration, error) {
		err := we.Get(b.ctx, nil)
		return time.Since(began), err
	}, nil
}

// trickle runs fairTrickle runs of deployment, one every fairTrickleGap,
// and returns their latencies, start to end, sorted.
func (b *fairBench) trickle(t *testing.T, deployment uuid.UUID, minConcurrency int) []time.Duration {
	t.Helper()
	var wg sync.WaitGroup
	lat := make([]time.Duration, fairTrickle)
	errs := make([]error, fairTrickle)
	tick := time.NewTicker(fairTrickleGap)
	defer tick.Stop()
	for i := range fairTrickle {
		if i > 0 {
			<-tick.C
		}
		wait, err := b.start(deployment, minConcurrency)
		require.NoError(t, err)
		wg.Go(func() { lat[i], errs[i] = wait() })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	slices.Sort(lat)
	return lat
}

// flood starts fairFlood runs of deployment as fast as the server takes
// them; the returned wait gives how long they took to end, all of them.
func (b *fairBench) flood(t *testing.T, deployment uuid.UUID) (wait func() time.Duration) {
	t.Helper()
	began := time.Now()
	waits := make([]func() (time.Duration, error), fairFlood)
	errs := make([]error, fairFlood)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < fairFlood; i += 8 {
				waits[i], errs[i] = b.start(deployment, 0)
			}
		})
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	return func() time.Duration {
		for _, w := range waits {
			_, err := w()
			require.NoError(t, err)
		}
		return time.Since(began)
	}
}

func p50(lat []time.Duration) time.Duration { return lat[len(lat)/2] }

// TestReservedDeploymentFlowsUnderFlood measures what fairness does for a
// deployment whose runs trickle in while another deployment of the same
// project floods a worker of fairSlots slots: its runs' latency alone,
// under the flood with the server's fairness on (Bud's embedded server),
// and under the flood first come first served (a server without it).
// With fairness its runs go ahead of the flood's backlog; without, they
// wait behind it.
func TestReservedDeploymentFlowsUnderFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("measures a flood of runs for tens of seconds")
	}
	flooder, reserved := uuid.New(), uuid.New()
	const minConcurrency = 2

	fair := newFairBench(t, false)
	alone := fair.trickle(t, reserved, minConcurrency)
	floodDone := fair.flood(t, flooder)
	underFlood := fair.trickle(t, reserved, minConcurrency)
	fairDrain := floodDone()

	fifo := newFairBench(t, true)
	fifoDone := fifo.flood(t, flooder)
	fifoFlood := fifo.trickle(t, reserved, minConcurrency)
	fifoDrain := fifoDone()

	t.Logf("worker: %d slots, each run one %v call; flood: %d runs; trickle: %d runs, one every %v",
		fairSlots, fairCall, fairFlood, fairTrickle, fairTrickleGap)
	t.Logf("reserved deployment alone:              p50 %v  max %v", p50(alone), alone[len(alone)-1])
	t.Logf("reserved deployment under flood, fair:  p50 %v  max %v  (flood drained in %v)", p50(underFlood), underFlood[len(underFlood)-1], fairDrain)
	t.Logf("reserved deployment under flood, FIFO:  p50 %v  max %v  (flood drained in %v)", p50(fifoFlood), fifoFlood[len(fifoFlood)-1], fifoDrain)

	require.Less(t, p50(underFlood), 4*p50(alone)+fairCall,
		"under the flood, with fairness, the reserved deployment's runs stay within a few times their latency alone")
	// The worst wait shows what fairness saves: first come first served,
	// some of the same runs wait behind most of the flood. (The median
	// depends on when the trickle starts against the flood's tail, which a
	// busy machine shifts.)
	require.Greater(t, fifoFlood[len(fifoFlood)-1], 3*underFlood[len(underFlood)-1],
		"first come first served, the same runs wait behind the flood: fairness is what keeps them flowing")
}
