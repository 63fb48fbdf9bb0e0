// Package workflows holds BudPrompt's Temporal workflows. Workflows only
// orchestrate; every effect is an activity in package activities.
package workflows

import (
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/customrule"
	"github.com/budhq/bud/evaluation"
	"github.com/budhq/bud/run"
)

// PingInput is the input of Ping.
type PingInput struct {
	Message string
}

// PingOutput is the result of Ping: the echoed message and the worker that
// ran the activity.
type PingOutput struct {
	Message string
	Worker  string
}

// Ping runs one activity and returns its result. It is the smallest
// workflow that exercises the whole path — client, server, worker,
// activity — and is what health checks and wiring tests run.
func Ping(ctx workflow.Context, in PingInput) (PingOutput, error) {
	var a *activities.Activities
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	var out activities.EchoOutput
	if err := workflow.ExecuteActivity(ctx, a.Echo, activities.EchoInput{Message: in.Message}).Get(ctx, &out); err != nil {
		return PingOutput{}, err
	}
	return PingOutput{Message: out.Message, Worker: out.Worker}, nil
}

// Register registers every workflow and activity of BudPrompt on r.
func Register(r worker.Registry, a *activities.Activities) {
	r.RegisterWorkflow(Ping)
	registerPromptRun(r)
	r.RegisterWorkflowWithOptions(Evaluation, workflow.RegisterOptions{Name: evaluation.WorkflowName})
	r.RegisterWorkflowWithOptions(TranslateRules, workflow.RegisterOptions{Name: customrule.WorkflowName})
	r.RegisterActivity(a)
}

// HeartbeatThrottle is how often at most a worker sends an activity's
// heartbeats to the server, and so how soon a running model call learns
// that its run was cancelled (the heartbeat's answer says so, and the
// call's HTTP request is cancelled then): the SDK's default, 80% of the
// heartbeat timeout, would leave a cancelled call running for 8 s. It
// costs one heartbeat request a model call every HeartbeatThrottle.
const HeartbeatThrottle = 300 * time.Millisecond

// NewWorker returns a worker on run.TaskQueue with everything registered,
// sized by opts (scaling.Config.WorkerOptions; the zero value is the
// SDK's default worker). Its MaxHeartbeatThrottleInterval is
// HeartbeatThrottle unless opts sets one. The caller starts and stops it.
func NewWorker(c client.Client, a *activities.Activities, opts worker.Options) worker.Worker {
	if opts.MaxHeartbeatThrottleInterval == 0 {
		opts.MaxHeartbeatThrottleInterval = HeartbeatThrottle
	}
	w := worker.New(c, run.TaskQueue, opts)
	Register(w, a)
	return w
}
