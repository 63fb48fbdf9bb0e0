package app_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
	"github.com/budhq/bud/app"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/statestore/statestoretest"
	"github.com/budhq/bud/upstreamtest"
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
	runEnv.Env, err = workflowstest.Start("test_runs_", "app-test")
	return err
}

// stopRunEnv stops runEnv, if it started, and passes code through;
// TestMain calls it after the tests.
func stopRunEnv(code int) int {
	runEnv.Env.Stop()
	return code
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// runBundle is an API that runs prompts: the shared schema, Temporal and
// worker, with a project and an upstream stand-in of the test's own.
type runBundle struct {
	*bundle
	up      *upstreamtest.Server
	project bud.Project
}

// runSetup builds an API on runEnv for one test, with a fresh project.
func runSetup(t *testing.T) *runBundle {
	t.Helper()
	docs := statestoretest.Store(t) // skips the test where daprd is not built
	runEnv.once.Do(func() { runEnv.err = startRunEnv() })
	require.NoError(t, runEnv.err, "start Temporal, the worker and their schema")

	logs := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	token := "admin-" + randomHex(16)
	rc, err := runs.New(runEnv.Client, "")
	require.NoError(t, err)
	h, err := app.New(app.Config{
		Pool:       runEnv.Pool,
		Box:        runEnv.Box,
		AdminToken: token,
		// A compare's runs log from their own goroutines.
		Logger:    slog.New(slog.NewTextHandler(logs, nil)),
		Documents: docs,
		Runs:      rc,
	})
	require.NoError(t, err)
	b := &runBundle{
		bundle: &bundle{handler: h, token: token, pool: runEnv.Pool, box: runEnv.Box},
		up:     upstreamtest.Start(t),
	}
	b.project = b.createProject(t, "runs-"+randomHex(6))
	return b
}

// deploy adds a model deployment of the project served by the stand-in as
// upstreamModel.
func (b *runBundle) deploy(t *testing.T, name, upstreamModel string) {
	t.Helper()
	b.createDeployment(t, b.project.ID, modelBody(name, map[string]any{
		"upstream": map[string]any{"base_url": b.up.URL(), "model": upstreamModel},
	}))
}

// post sends a request that may wait on runs; a run that hangs fails the
// test instead of holding it up.
func (b *runBundle) post(t *testing.T, path string, body any) response {
	t.Helper()
	return b.do(t, "POST", path, body, withDeadline(t, time.Minute))
}

func withDeadline(t *testing.T, d time.Duration) func(*http.Request) {
	return func(r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		t.Cleanup(cancel)
		*r = *r.WithContext(ctx)
	}
}

// lockedBuffer is a log sink for handlers that log from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
