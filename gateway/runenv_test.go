package gateway_test

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/statestore/statestoretest"
	"github.com/budhq/bud/workflows/workflowstest"
)

// runEnv is the rig the tests of prompt runs share, started once, on
// first use (workflowstest.Env: why one per binary).
var runEnv struct {
	once sync.Once
	err  error
	*workflowstest.Env
}

func startRunEnv() (err error) {
	runEnv.Env, err = workflowstest.Start("test_gateway_runs_", "gateway-test")
	return err
}

// stopRunEnv stops runEnv, if it started, and passes code through;
// TestMain calls it after the tests.
func stopRunEnv(code int) int {
	runEnv.Env.Stop()
	return code
}

// setupRuns is setup for a gateway that runs prompts: on runEnv's schema,
// Temporal and worker, with the shared state store for documents. Tests
// keep apart by their own projects (unique names).
func setupRuns(t *testing.T, o setupOpts) *bundle {
	t.Helper()
	o.documents = statestoretest.Store(t) // skips the test where daprd is not built
	runEnv.once.Do(func() { runEnv.err = startRunEnv() })
	require.NoError(t, runEnv.err, "start Temporal, the worker and their schema")
	o.pool, o.box, o.temporal, o.nats = runEnv.Pool, runEnv.Box, runEnv.Client, runEnv.NATS
	return setup(t, o)
}
