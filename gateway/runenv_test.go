package gateway_test

import (
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

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/secrets"
	"github.com/budhq/bud/statestore/statestoretest"
	"github.com/budhq/bud/temporalserver"
	"github.com/budhq/bud/workflows"
)

// runEnv is what the tests of prompt runs share, once per test binary: an
// embedded Temporal server, a client of it, one BudPrompt worker, and the
// schema the worker reads deployments from and records runs in. There is
// one worker because workers poll a fixed task queue: a worker per test
// would run other tests' runs against its own schema. Tests keep apart by
// their own projects and their own upstream stand-ins.
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

func startRunEnv() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// dbtest.NewSchema ties a schema to one test; this one lives as long
	// as the binary, so it is made here and dropped by stopRunEnv.
	var b [6]byte
	_, _ = rand.Read(b[:])
	runEnv.schema = "test_gateway_runs_" + hex.EncodeToString(b[:])
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
		Identity:  "gateway-test",
		Logger:    sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	if err != nil {
		return fmt.Errorf("dial temporal: %w", err)
	}
	runEnv.worker = workflows.NewWorker(runEnv.client, activities.New(activities.Config{
		Identity: "gateway-test", Pool: runEnv.pool, Box: runEnv.box,
		Tools: &activities.Connections{Pool: runEnv.pool, Box: runEnv.box, HTTPClient: &http.Client{Timeout: workflows.CallToolTimeout}},
	}))
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

// setupRuns is setup for a gateway that runs prompts: on runEnv's schema,
// Temporal and worker, with the shared state store for documents. Tests
// keep apart by their own projects (unique names).
func setupRuns(t *testing.T, o setupOpts) *bundle {
	t.Helper()
	o.documents = statestoretest.Store(t) // skips the test where daprd is not built
	runEnv.once.Do(func() { runEnv.err = startRunEnv() })
	require.NoError(t, runEnv.err, "start Temporal, the worker and their schema")
	o.pool, o.box, o.temporal = runEnv.pool, runEnv.box, runEnv.client
	return setup(t, o)
}
