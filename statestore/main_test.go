package statestore_test

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
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/statestore"
)

// The package's tests share one daprd, started on first use against a
// database of their own, and stopped by TestMain.
var shared struct {
	once    sync.Once
	err     error
	dbURL   string
	dbName  string
	sidecar *statestore.Sidecar
	store   *statestore.Store
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.store != nil {
		_ = shared.store.Close()
	}
	if shared.sidecar != nil {
		if err := shared.sidecar.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	if shared.dbName != "" {
		dropDatabase(shared.dbName)
	}
	os.Exit(code)
}

// requireDaprd skips the test when bin/daprd has not been built, except
// under CI, where the tests must run.
func requireDaprd(tb testing.TB) {
	tb.Helper()
	if _, err := statestore.FindDaprd(); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("CI is set and daprd is missing: %v", err)
		}
		tb.Skipf("daprd is not built (run `make daprd`): %v", err)
	}
}

// bundle is what a test works with.
type bundle struct {
	ctx     context.Context
	store   *statestore.Store
	sidecar *statestore.Sidecar
	dbURL   string
}

func setup(tb testing.TB) bundle {
	tb.Helper()
	requireDaprd(tb)
	shared.once.Do(func() {
		shared.dbName, shared.dbURL, shared.err = createDatabase()
		if shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		shared.sidecar, shared.err = statestore.StartSidecar(ctx, statestore.SidecarOptions{
			DatabaseURL: shared.dbURL,
			Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		if shared.err != nil {
			return
		}
		shared.store, shared.err = statestore.NewStore(shared.sidecar.GRPCAddr(), statestore.StoreName)
	})
	require.NoError(tb, shared.err, "start the shared daprd")
	return bundle{ctx: context.Background(), store: shared.store, sidecar: shared.sidecar, dbURL: shared.dbURL}
}

func createDatabase() (name, dbURL string, err error) {
	ctx := context.Background()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name = "statestore_test_" + hex.EncodeToString(b[:])
	admin, err := pgx.Connect(ctx, dbtest.URL())
	if err != nil {
		return "", "", fmt.Errorf("connect: %w", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", "", fmt.Errorf("create database: %w", err)
	}
	cfg := admin.Config()
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(cfg.User, cfg.Password),
		Host:     net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))),
		Path:     "/" + name,
		RawQuery: "sslmode=disable",
	}
	if cfg.Password == "" {
		u.User = url.User(cfg.User)
	}
	return name, u.String(), nil
}

func dropDatabase(name string) {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dbtest.URL())
	if err != nil {
		return
	}
	defer c.Close(ctx)
	_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}
