//go:build budbrokenreplay

package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"
)

// beforeFirstCommand starts a timer before PromptRun's first command: a
// change no recorded run made, which replay must report. Only the tests of
// `bud replay` build this file; no released binary has it.
func beforeFirstCommand(ctx workflow.Context) error {
	return workflow.Sleep(ctx, time.Millisecond)
}
