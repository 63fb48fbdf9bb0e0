// Package statestoretest gives a test binary one real daprd, started on
// first use against a database of its own, and a Store on it. A package
// that uses it runs its tests through Main so the sidecar is stopped and
// the database dropped at the end:
//
//	func TestMain(m *testing.M) { os.Exit(statestoretest.Main(m)) }
package statestoretest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/statestore"
)

// shared is per test binary: a test binary is one process, and starting a
// daprd per test would cost a second each.
var shared struct {
	once    sync.Once
	err     error
	dbName  string
	sidecar *statestore.Sidecar
	store   *statestore.Store
}

// Main runs the tests, then stops the sidecar and drops its database.
func Main(m *testing.M) int {
	code := m.Run()
	if shared.store != nil {
		_ = shared.store.Close()
	}
	if shared.sidecar != nil {
		_ = shared.sidecar.Stop()
	}
	if shared.dbName != "" {
		ctx := context.Background()
		if c, err := pgx.Connect(ctx, dbtest.URL()); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+shared.dbName+" WITH (FORCE)")
			_ = c.Close(ctx)
		}
	}
	return code
}

// Store returns the shared Store, starting daprd on first use. Without a
// built daprd it skips the test, except under CI, where it fails.
func Store(tb testing.TB) *statestore.Store {
	tb.Helper()
	if _, err := statestore.FindDaprd(); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("CI is set and daprd is missing: %v", err)
		}
		tb.Skipf("daprd is not built (run `make daprd`): %v", err)
	}
	shared.once.Do(func() { shared.err = start() })
	if shared.err != nil {
		tb.Fatalf("statestoretest: %v", shared.err)
	}
	return shared.store
}

// Sidecar returns the shared sidecar (Store must have been called).
func Sidecar() *statestore.Sidecar { return shared.sidecar }

func start() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var b [6]byte
	_, _ = rand.Read(b[:])
	shared.dbName = "dapr_test_" + hex.EncodeToString(b[:])
	admin, err := pgx.Connect(ctx, dbtest.URL())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+shared.dbName); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	cfg := admin.Config()
	dbURL := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, shared.dbName)
	shared.sidecar, err = statestore.StartSidecar(ctx, statestore.SidecarOptions{
		DatabaseURL: dbURL,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	shared.store, err = statestore.NewStore(shared.sidecar.GRPCAddr(), statestore.StoreName)
	return err
}
