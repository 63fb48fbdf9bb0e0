//go:build !budbrokenreplay

package workflows

import "go.temporal.io/sdk/workflow"

// beforeFirstCommand issues nothing in a normal build. A build with the
// budbrokenreplay tag issues a command here (brokenreplay_on.go), so that
// the tests of `bud replay` have a binary whose PromptRun no recorded
// history matches.
func beforeFirstCommand(workflow.Context) error { return nil }
