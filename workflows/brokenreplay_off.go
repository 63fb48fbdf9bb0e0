//go:build !budbrokenreplay

package workflows

import (
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/budhq/bud/run"
)

// registerPromptRun registers PromptRun as run.WorkflowName. A build with
// the budbrokenreplay tag registers another code under that name
// (brokenreplay_on.go), so that the tests of `bud replay` have a binary
// whose prompt runs no recorded history matches.
func registerPromptRun(r worker.Registry) {
	r.RegisterWorkflowWithOptions(PromptRun, workflow.RegisterOptions{Name: run.WorkflowName})
}
