package daprd_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/daprd"
	"github.com/budhq/bud/daprd/daprdtest"
	"github.com/budhq/bud/statestore"
	"github.com/budhq/bud/statestore/statestoretest"
)

// The tests that need a running daprd share one, with a Store on it.
func TestMain(m *testing.M) { os.Exit(statestoretest.Main(m)) }

// A second sidecar with another app id sees the same documents, and once it
// is stopped its store answers ErrUnavailable at once instead of hanging.
func TestOtherSidecarAndStop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	shared := statestoretest.Store(t)
	key := statestoretest.NewKey()
	require.NoError(t, shared.Put(ctx, key, []byte(statestoretest.Document)))

	start := time.Now()
	sc, err := daprd.Start(ctx, daprd.Config{AppID: "bud-other", DatabaseURL: daprdtest.DatabaseURL(t)})
	require.NoError(t, err)
	t.Logf("daprd healthy after %s", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() { _ = sc.Stop() })
	store, err := statestore.NewStore(sc.GRPCAddr(), "", statestore.WithAPIToken(sc.APIToken()))
	require.NoError(t, err)
	defer store.Close()

	got, err := store.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, statestoretest.Document, string(got))
	require.NoError(t, store.Healthy(ctx))

	start = time.Now()
	require.NoError(t, sc.Stop())
	t.Logf("daprd stopped after %s", time.Since(start).Round(time.Millisecond))
	select {
	case <-sc.Done():
	default:
		t.Fatal("Done is open after Stop")
	}

	calls := map[string]func(ctx context.Context) error{
		"get":         func(ctx context.Context) error { _, err := store.Get(ctx, key); return err },
		"put":         func(ctx context.Context) error { return store.Put(ctx, statestoretest.NewKey(), []byte(`{}`)) },
		"delete":      func(ctx context.Context) error { return store.Delete(ctx, key) },
		"delete many": func(ctx context.Context) error { return store.DeleteMany(ctx, []string{key}) },
		"healthy":     store.Healthy,
	}
	for name, call := range calls {
		start := time.Now()
		err := call(ctx)
		took := time.Since(start)
		require.ErrorIs(t, err, statestore.ErrUnavailable, name)
		require.Less(t, took, 2*time.Second, name)
		t.Logf("%s: %s after %s", name, err, took.Round(time.Microsecond))
	}

	// The shared sidecar is untouched.
	_, err = shared.Get(ctx, key)
	require.NoError(t, err)
}

func TestStartMissingBinary(t *testing.T) {
	t.Parallel()
	_, err := daprd.Start(context.Background(), daprd.Config{
		Binary:      "/nonexistent/bin/daprd",
		DatabaseURL: "postgres://unused",
	})
	require.ErrorContains(t, err, "make daprd")
	require.ErrorContains(t, err, "/nonexistent/bin/daprd")
}

func TestFindBinaryFromEnv(t *testing.T) {
	t.Setenv(daprd.EnvBinary, "/nonexistent/daprd")
	_, err := daprd.FindBinary()
	require.ErrorContains(t, err, "make daprd")
	require.ErrorContains(t, err, daprd.EnvBinary)
}

// When daprd cannot initialise the store it exits at once; the error says
// why in daprd's own words.
func TestStartBadDatabase(t *testing.T) {
	t.Parallel()
	daprdtest.Require(t)
	start := time.Now()
	_, err := daprd.Start(context.Background(), daprd.Config{
		DatabaseURL: "postgres://postgres@127.0.0.1:1/nowhere?sslmode=disable&connect_timeout=2",
	})
	require.Error(t, err)
	require.Contains(t, err.Error(), "daprd exited during start-up")
	require.Contains(t, err.Error(), "failed to ping the database")
	require.Less(t, time.Since(start), 10*time.Second)
	require.False(t, strings.Contains(err.Error(), "(no warnings or errors)"))
}

// A port given explicitly and taken fails the start, naming the cause.
func TestStartPortTaken(t *testing.T) {
	t.Parallel()
	dbURL := daprdtest.DatabaseURL(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	_, err = daprd.Start(context.Background(), daprd.Config{
		GRPCPort:    l.Addr().(*net.TCPAddr).Port,
		DatabaseURL: dbURL,
	})
	require.ErrorContains(t, err, "address already in use")
}

// A given API token is the one daprd requires, over HTTP too, even when
// the environment holds another DAPR_API_TOKEN.
func TestAPIToken(t *testing.T) {
	daprdtest.Require(t)
	t.Setenv("DAPR_API_TOKEN", "from-the-environment")
	ctx := context.Background()
	sc, err := daprd.Start(ctx, daprd.Config{AppID: "bud-token", DatabaseURL: daprdtest.DatabaseURL(t), APIToken: "explicit-token"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sc.Stop() })
	require.Equal(t, "explicit-token", sc.APIToken())

	for token, want := range map[string]int{"": http.StatusUnauthorized, "from-the-environment": http.StatusUnauthorized, "explicit-token": http.StatusOK} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+sc.HTTPAddr()+"/v1.0/metadata", nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("dapr-api-token", token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, "token %q", token)
	}
}
