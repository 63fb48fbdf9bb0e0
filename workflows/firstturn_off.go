//go:build nofirstturn

package workflows

// firstCallEndsTurn is off in this build: the workflow records and
// announces every run itself.
const firstCallEndsTurn = false
