// Package workflowstest is the rig that tests of prompt runs share, once
// per test binary: an embedded Temporal server, a client of it, one
// BudPrompt worker, an embedded NATS server carrying its streaming runs'
// deltas, and the database schema the worker's activities read
// deployments from and record runs in.
//
// There is one worker per binary because workers poll run.TaskQueue, a
// fixed name: a worker per test would take other tests' runs and execute
// them against its own test's schema, where their projects do not exist.
// A Temporal namespace per test would keep workers apart, but a namespace
// added while the server runs accepts runs that set Bud's search
// attributes only once the server's namespace cache has refreshed, seconds
// later. So the tests of runs share one schema and keep apart by their
// own projects (with unique names) and their own upstream stand-ins.
package workflowstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/runstream"
	"github.com/budhq/bud/secrets"
	"github.com/budhq/bud/temporalserver"
	"github.com/budhq/bud/workflows"
)

// Env is the running rig.
type Env struct {
	// Schema is the schema Pool works in, dropped by Stop.
	Schema string
	Pool   *pgxpool.Pool
	Box    *secrets.Box
	Server *temporalserver.Server
	Client client.Client
	Worker worker.Worker
	// NATS carries streaming runs' deltas from Worker, on an embedded
	// server of the rig's own.
	NATS *nats.Conn
	nats *runstream.Server
}

// Start starts a rig whose schema is named from schemaPrefix and whose
// client and worker call themselves identity. On an error it stops what
// it started.
func Start(schemaPrefix, identity string) (*Env, error) {
	e := &Env{}
	if err := e.start(schemaPrefix, identity); err != nil {
		e.Stop()
		return nil, err
	}
	return e, nil
}

func (e *Env) start(schemaPrefix, identity string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// dbtest.NewSchema ties a schema to one test; this one lives as long
	// as the binary, so it is made here and dropped by Stop.
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := schemaPrefix + hex.EncodeToString(b[:])
	admin, err := pgx.Connect(ctx, dbtest.URL())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	e.Schema = schema
	cfg, err := pgxpool.ParseConfig(dbtest.URL())
	if err != nil {
		return fmt.Errorf("parse database URL: %w", err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = 16
	if e.Pool, err = db.OpenConfig(ctx, cfg); err != nil {
		return err
	}
	if err := db.Migrate(ctx, e.Pool, nil); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	key, err := secrets.ParseKey(secrets.NewKey())
	if err != nil {
		return err
	}
	if e.Box, err = secrets.NewBox(key); err != nil {
		return err
	}
	if e.Server, err = temporalserver.Start(ctx, temporalserver.Options{SearchAttributes: runs.SearchAttributes()}); err != nil {
		return err
	}
	e.Client, err = client.Dial(client.Options{
		HostPort:  e.Server.HostPort(),
		Namespace: e.Server.Namespace(),
		Identity:  identity,
		Logger:    sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	if err != nil {
		return fmt.Errorf("dial temporal: %w", err)
	}
	if e.nats, err = runstream.StartServer("127.0.0.1:0"); err != nil {
		return fmt.Errorf("start NATS: %w", err)
	}
	if e.NATS, err = runstream.Connect(e.nats.URL()); err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	e.Worker = workflows.NewWorker(e.Client, activities.New(activities.Config{
		Identity: identity, Pool: e.Pool, Box: e.Box, NATS: e.NATS,
		Tools: &activities.Connections{Pool: e.Pool, Box: e.Box, HTTPClient: &http.Client{Timeout: workflows.CallToolTimeout}},
	}), worker.Options{})
	if err := e.Worker.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	return nil
}

// Stop stops what Start started and drops its schema; a nil Env does
// nothing.
func (e *Env) Stop() {
	if e == nil {
		return
	}
	if e.Worker != nil {
		e.Worker.Stop()
	}
	if e.Client != nil {
		e.Client.Close()
	}
	if e.Server != nil {
		_ = e.Server.Stop()
	}
	if e.NATS != nil {
		e.NATS.Close()
	}
	if e.nats != nil {
		e.nats.Shutdown()
	}
	if e.Pool != nil {
		e.Pool.Close()
	}
	if e.Schema != "" {
		ctx := context.Background()
		if c, err := pgx.Connect(ctx, dbtest.URL()); err == nil {
			_, _ = c.Exec(ctx, "DROP SCHEMA "+e.Schema+" CASCADE")
			_ = c.Close(ctx)
		}
	}
}
