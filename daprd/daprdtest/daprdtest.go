// Package daprdtest gives a test binary one real daprd, started on first use
// against a database of its own. A package that uses it runs its tests
// through Main so the sidecar is stopped and the database dropped at the end:
//
//	func TestMain(m *testing.M) { os.Exit(daprdtest.Main(m)) }
package daprdtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/budhq/bud/daprd"
	"github.com/budhq/bud/db/dbtest"
)

// shared is per test binary: a test binary is one process, and starting a
// daprd per test would cost a second each.
var shared struct {
	once    sync.Once
	err     error
	dbName  string
	dbURL   string
	sidecar *daprd.Sidecar
}

// Main runs the tests, then stops the shared daprd and drops its database.
// It returns the exit code of the tests.
func Main(m *testing.M) int {
	code := m.Run()
	if shared.sidecar != nil {
		if err := shared.sidecar.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	if shared.dbName != "" {
		ctx := context.Background()
		if c, err := pgx.Connect(ctx, dbtest.URL()); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{shared.dbName}.Sanitize()+" WITH (FORCE)")
			_ = c.Close(ctx)
		}
	}
	return code
}

// Require skips the test when daprd has not been built, except under CI,
// where it fails the test.
func Require(tb testing.TB) {
	tb.Helper()
	if _, err := daprd.FindBinary(); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("CI is set and daprd is missing: %v", err)
		}
		tb.Skipf("daprd is not built (run `make daprd`): %v", err)
	}
}

// Sidecar returns the shared daprd, starting it on first use. It calls
// Require first, so without a built daprd the test is skipped.
func Sidecar(tb testing.TB) *daprd.Sidecar {
	tb.Helper()
	start(tb)
	return shared.sidecar
}

// DatabaseURL returns the connection string of the shared daprd's database,
// starting daprd on first use as Sidecar does.
func DatabaseURL(tb testing.TB) string {
	tb.Helper()
	start(tb)
	return shared.dbURL
}

func start(tb testing.TB) {
	tb.Helper()
	Require(tb)
	shared.once.Do(func() { shared.err = startShared() })
	if shared.err != nil {
		tb.Fatalf("daprdtest: start the shared daprd: %v", shared.err)
	}
}

func startShared() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "dapr_test_" + hex.EncodeToString(b[:])
	admin, err := pgx.Connect(ctx, dbtest.URL())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	shared.dbName = name
	cfg := admin.Config()
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(cfg.User),
		Host:     net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))),
		Path:     "/" + name,
		RawQuery: "sslmode=disable",
	}
	if cfg.Password != "" {
		u.User = url.UserPassword(cfg.User, cfg.Password)
	}
	shared.dbURL = u.String()
	shared.sidecar, err = daprd.Start(ctx, daprd.Config{
		DatabaseURL: shared.dbURL,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	return nil
}
