//go:build budbrokenreplay

package workflows

import (
	"time"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/budhq/bud/run"
)

// registerPromptRun registers brokenPromptRun as run.WorkflowName. Only the
// tests of `bud replay` build this file; no released binary has it.
func registerPromptRun(r worker.Registry) {
	r.RegisterWorkflowWithOptions(brokenPromptRun, workflow.RegisterOptions{Name: run.WorkflowName})
}

// brokenPromptRun is PromptRun with a timer before its first command: a
// change no recorded run made, which replay must report.
func brokenPromptRun(ctx workflow.Context, in run.Input) (run.Turn, error) {
	if err := workflow.Sleep(ctx, time.Millisecond); err != nil {
		return run.Turn{}, err
	}
	return PromptRun(ctx, in)
}
