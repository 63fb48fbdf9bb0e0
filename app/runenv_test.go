package app_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/budhq/bud"
	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/app"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/secrets"
	"github.com/budhq/bud/statestore/statestoretest"
	"github.com/budhq/bud/temporalserver"
	"github.com/budhq/bud/upstreamtest"
	"github.com/budhq/bud/workflows"
)

// runEnv is what the tests of prompt runs share, once per test binary: an
// embedded Temporal server (in memory), a client of it, one BudPrompt
// worker, and the database schema the worker's activities read deployments
// from and record runs in.
//
// There is one worker because workers poll run.TaskQueue, a fixed
// name: a worker per test would take other tests' runs and execute them
// against its own test's schema, where their projects do not exist. A
// Temporal namespace per test would keep workers apart, but a namespace
// added while the server runs accepts runs that set Bud's search attributes
// only once the server's namespace cache has refreshed, seconds later, while
// the namespace made at start has them from the first moment. So the tests
// of runs share this one schema instead of having one each, and keep apart
// by creating their own projects (with unique names) and their own upstream
// stand-in, whose URL their model deployments point at.
var runEnv struct {
	once   sync.Once
	err    error
	schema string
	pool   *pgxpool.Pool
	box    *secrets.Box
	server *temporalserver.Server
	client client.Client
	worker worker.Worker
}

// startRunEnv starts runEnv; it runs once, on first use.
func startRunEnv() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// dbtest.NewSchema ties a schema to one test's lifetime; this one lives
	// as long as the binary, so it is made here and dropped by stopRunEnv.
	runEnv.schema = "test_runs_" + randomHex(6)
	admin, err := pgx.Connect(ctx, dbtest.URL())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+runEnv.schema); err != nil {
		runEnv.schema = ""
		return fmt.Errorf("create schema: %w", err)
	}
	cfg, err := pgxpool.ParseConfig(dbtest.URL())
	if err != nil {
		return fmt.Errorf("parse database URL: %w", err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = runEnv.schema
	cfg.MaxConns = 16
	if runEnv.pool, err = db.OpenConfig(ctx, cfg); err != nil {
		return err
	}
	if err := db.Migrate(ctx, runEnv.pool, nil); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	key, err := secrets.ParseKey(secrets.NewKey())
	if err != nil {
		return err
	}
	if runEnv.box, err = secrets.NewBox(key); err != nil {
		return err
	}

	if runEnv.server, err = temporalserver.Start(ctx, temporalserver.Options{SearchAttributes: runs.SearchAttributes()}); err != nil {
		return err
	}
	runEnv.client, err = client.Dial(client.Options{
		HostPort:  runEnv.server.HostPort(),
		Namespace: runEnv.server.Namespace(),
		Identity:  "app-test",
		Logger:    sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	if err != nil {
		return fmt.Errorf("dial temporal: %w", err)
	}
	runEnv.worker = workflows.NewWorker(runEnv.client, activities.New(activities.Config{
		Identity: "test", Pool: runEnv.pool, Box: runEnv.box,
		Tools: &activities.Connections{Pool: runEnv.pool, Box: runEnv.box, HTTPClient: &http.Client{Timeout: workflows.CallToolTimeout}},
	}), worker.Options{})
	if err := runEnv.worker.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	return nil
}

// stopRunEnv stops what startRunEnv started, if it ran, and passes code
// through; TestMain calls it after the tests.
func stopRunEnv(code int) int {
	if runEnv.worker != nil {
		runEnv.worker.Stop()
	}
	if runEnv.client != nil {
		runEnv.client.Close()
	}
	if runEnv.server != nil {
		_ = runEnv.server.Stop()
	}
	if runEnv.pool != nil {
		runEnv.pool.Close()
	}
	if runEnv.schema != "" {
		ctx := context.Background()
		if c, err := pgx.Connect(ctx, dbtest.URL()); err == nil {
			_, _ = c.Exec(ctx, "DROP SCHEMA "+runEnv.schema+" CASCADE")
			_ = c.Close(ctx)
		}
	}
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
	rc, err := runs.New(runEnv.client, "")
	require.NoError(t, err)
	h, err := app.New(app.Config{
		Pool:       runEnv.pool,
		Box:        runEnv.box,
		AdminToken: token,
		// A compare's runs log from their own goroutines.
		Logger:    slog.New(slog.NewTextHandler(logs, nil)),
		Documents: docs,
		Runs:      rc,
	})
	require.NoError(t, err)
	b := &runBundle{
		bundle: &bundle{handler: h, token: token, pool: runEnv.pool, box: runEnv.box},
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
