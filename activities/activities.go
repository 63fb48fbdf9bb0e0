// Package activities holds BudPrompt's Temporal activities: every step of a
// prompt run that touches the network, the clock, randomness or the
// database. Activities are methods on Activities, which carries their
// dependencies; workflows refer to them through a nil *Activities.
package activities

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/activity"
)

// Activities holds what activities need. Construct one per worker.
type Activities struct {
	// Identity names the worker process in activity results, so a caller
	// can tell which worker did the work.
	Identity string
}

// EchoInput is the input of Echo.
type EchoInput struct {
	Message string
}

// EchoOutput is the result of Echo.
type EchoOutput struct {
	Message  string
	Worker   string
	Attempt  int32
	Workflow string
}

// Echo returns its input with the worker's identity. It proves the worker's
// wiring end to end: a workflow scheduled it, this process ran it.
func (a *Activities) Echo(ctx context.Context, in EchoInput) (EchoOutput, error) {
	if in.Message == "" {
		return EchoOutput{}, fmt.Errorf("echo: empty message")
	}
	info := activity.GetInfo(ctx)
	return EchoOutput{Message: in.Message, Worker: a.Identity, Attempt: info.Attempt, Workflow: info.WorkflowExecution.ID}, nil
}
