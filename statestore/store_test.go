package statestore_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/budhq/bud/statestore"
)

// A document as BudApp writes it: key order, spacing, template markup and an
// integer beyond 2^53 must all survive the round trip.
const promptDoc = `{"deployment": "gpt-small",
  "model_params": {"temperature": 0.2, "seed": 9007199254740993},
  "system_prompt": "Answer <b>briefly</b> & politely.",
  "messages": [{"role": "user", "content": "{{ input }}"}]}`

func newKey() string { return statestore.DocumentKey(uuid.New(), 1) }

func TestDocumentKey(t *testing.T) {
	t.Parallel()
	id := uuid.MustParse("0b8e1c1e-8f5a-4a53-9a1b-5d7f2c3e4a10")
	require.Equal(t, "prompt:0b8e1c1e-8f5a-4a53-9a1b-5d7f2c3e4a10:v3", statestore.DocumentKey(id, 3))
}

func TestPutGet(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := newKey()
	require.NoError(t, b.store.Put(b.ctx, key, []byte(promptDoc)))
	got, err := b.store.Get(b.ctx, key)
	require.NoError(t, err)
	require.Equal(t, promptDoc, string(got), "stored bytes come back unchanged")
}

func TestGetAbsent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.store.Get(b.ctx, newKey())
	require.ErrorIs(t, err, statestore.ErrNotFound)
}

func TestPutFirstWriteWins(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := newKey()
	require.NoError(t, b.store.Put(b.ctx, key, []byte(`{"v":1}`)))

	err := b.store.Put(b.ctx, key, []byte(`{"v":2}`))
	require.ErrorIs(t, err, statestore.ErrExists)
	got, err := b.store.Get(b.ctx, key)
	require.NoError(t, err)
	require.Equal(t, `{"v":1}`, string(got), "the first document stays")

	// A retry of the same write is not a conflict.
	require.NoError(t, b.store.Put(b.ctx, key, []byte(`{"v":1}`)))
}

func TestPutRejectsBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.ErrorContains(t, b.store.Put(b.ctx, newKey(), []byte(`{"v":`)), "not valid JSON")
	require.ErrorContains(t, b.store.Put(b.ctx, newKey(), nil), "not valid JSON")
	require.ErrorContains(t, b.store.Put(b.ctx, "app||prompt:x:v1", []byte(`{}`)), `"||"`)
	require.ErrorContains(t, b.store.Put(b.ctx, "", []byte(`{}`)), "empty key")
	_, err := b.store.Get(b.ctx, "a||b")
	require.ErrorContains(t, err, `"||"`)
}

func TestDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := newKey()
	require.NoError(t, b.store.Put(b.ctx, key, []byte(promptDoc)))
	require.NoError(t, b.store.Delete(b.ctx, key))
	_, err := b.store.Get(b.ctx, key)
	require.ErrorIs(t, err, statestore.ErrNotFound)
	require.NoError(t, b.store.Delete(b.ctx, key), "deleting an absent key succeeds")
	// After a delete the key is free again.
	require.NoError(t, b.store.Put(b.ctx, key, []byte(`{"v":2}`)))
}

func TestDeleteMany(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := uuid.New()
	var keys []string
	for v := 1; v <= 5; v++ {
		k := statestore.DocumentKey(id, v)
		require.NoError(t, b.store.Put(b.ctx, k, []byte(fmt.Sprintf(`{"v":%d}`, v))))
		keys = append(keys, k)
	}
	other := newKey()
	require.NoError(t, b.store.Put(b.ctx, other, []byte(`{}`)))

	require.NoError(t, b.store.DeleteMany(b.ctx, append(keys, newKey())), "absent keys are skipped")
	for _, k := range keys {
		_, err := b.store.Get(b.ctx, k)
		require.ErrorIs(t, err, statestore.ErrNotFound, k)
	}
	_, err := b.store.Get(b.ctx, other)
	require.NoError(t, err, "keys not named stay")
	require.NoError(t, b.store.DeleteMany(b.ctx, keys), "repeating is safe")
	require.NoError(t, b.store.DeleteMany(b.ctx, nil))
}

func TestConcurrentPuts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := uuid.New()
	var g errgroup.Group
	for v := 1; v <= 50; v++ {
		g.Go(func() error {
			return b.store.Put(b.ctx, statestore.DocumentKey(id, v), []byte(fmt.Sprintf(`{"v":%d}`, v)))
		})
	}
	require.NoError(t, g.Wait())
	for v := 1; v <= 50; v++ {
		got, err := b.store.Get(b.ctx, statestore.DocumentKey(id, v))
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf(`{"v":%d}`, v), string(got))
	}
}

func TestConcurrentPutsSameKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := newKey()
	var g errgroup.Group
	results := make([]error, 10)
	for i := range results {
		g.Go(func() error {
			results[i] = b.store.Put(b.ctx, key, []byte(fmt.Sprintf(`{"writer":%d}`, i)))
			return nil
		})
	}
	require.NoError(t, g.Wait())
	var won int
	for _, err := range results {
		if err == nil {
			won++
			continue
		}
		require.ErrorIs(t, err, statestore.ErrExists)
	}
	require.Equal(t, 1, won, "exactly one writer wins")
}

func TestHealthy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.store.Healthy(b.ctx))
}

// The table is named by the prefix and keys are stored as given, not as
// "<app id>||<key>".
func TestStoredRow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := newKey()
	require.NoError(t, b.store.Put(b.ctx, key, []byte(promptDoc)))

	conn, err := pgx.Connect(b.ctx, b.dbURL)
	require.NoError(t, err)
	defer conn.Close(b.ctx)
	var value []byte
	require.NoError(t, conn.QueryRow(b.ctx, "SELECT value FROM dapr_state WHERE key = $1", key).Scan(&value))
	require.Equal(t, promptDoc, string(value))
}

// A second sidecar with another app id sees the same documents, and once it
// is stopped its store answers ErrUnavailable at once instead of hanging.
func TestOtherSidecarAndStop(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := newKey()
	require.NoError(t, b.store.Put(b.ctx, key, []byte(promptDoc)))

	start := time.Now()
	sc, err := statestore.StartSidecar(b.ctx, statestore.SidecarOptions{AppID: "bud-other", DatabaseURL: b.dbURL})
	require.NoError(t, err)
	t.Logf("daprd healthy after %s", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() { _ = sc.Stop() })
	store, err := statestore.NewStore(sc.GRPCAddr(), "")
	require.NoError(t, err)
	defer store.Close()

	got, err := store.Get(b.ctx, key)
	require.NoError(t, err)
	require.Equal(t, promptDoc, string(got))
	require.NoError(t, store.Healthy(b.ctx))

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
		"put":         func(ctx context.Context) error { return store.Put(ctx, newKey(), []byte(`{}`)) },
		"delete":      func(ctx context.Context) error { return store.Delete(ctx, key) },
		"delete many": func(ctx context.Context) error { return store.DeleteMany(ctx, []string{key}) },
		"healthy":     store.Healthy,
	}
	for name, call := range calls {
		start := time.Now()
		err := call(b.ctx)
		took := time.Since(start)
		require.ErrorIs(t, err, statestore.ErrUnavailable, name)
		require.Less(t, took, 2*time.Second, name)
		t.Logf("%s: %s after %s", name, err, took.Round(time.Microsecond))
	}

	// The shared sidecar is untouched.
	_, err = b.store.Get(b.ctx, key)
	require.NoError(t, err)
}

// A caller's own deadline is reported as such, not as ErrUnavailable.
func TestCallerDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithCancel(b.ctx)
	cancel()
	_, err := b.store.Get(ctx, newKey())
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, statestore.ErrUnavailable)
}

func TestStartSidecarMissingBinary(t *testing.T) {
	t.Parallel()
	_, err := statestore.StartSidecar(context.Background(), statestore.SidecarOptions{
		Binary:      "/nonexistent/bin/daprd",
		DatabaseURL: "postgres://unused",
	})
	require.ErrorContains(t, err, "make daprd")
	require.ErrorContains(t, err, "/nonexistent/bin/daprd")
}

func TestFindDaprdFromEnv(t *testing.T) {
	t.Setenv(statestore.EnvDaprd, "/nonexistent/daprd")
	_, err := statestore.FindDaprd()
	require.ErrorContains(t, err, "make daprd")
	require.ErrorContains(t, err, statestore.EnvDaprd)
}

// When daprd cannot initialise the store it exits at once; the error says
// why in daprd's own words.
func TestStartSidecarBadDatabase(t *testing.T) {
	t.Parallel()
	requireDaprd(t)
	start := time.Now()
	_, err := statestore.StartSidecar(context.Background(), statestore.SidecarOptions{
		DatabaseURL: "postgres://postgres@127.0.0.1:1/nowhere?sslmode=disable&connect_timeout=2",
	})
	require.Error(t, err)
	require.Contains(t, err.Error(), "daprd exited during start-up")
	require.Contains(t, err.Error(), "failed to ping the database")
	require.Less(t, time.Since(start), 10*time.Second)
	require.False(t, strings.Contains(err.Error(), "(no warnings or errors)"))
}

// When the database behind daprd goes away, calls and Healthy answer
// ErrUnavailable.
func TestDatabaseGone(t *testing.T) {
	t.Parallel()
	requireDaprd(t)
	name, dbURL, err := createDatabase()
	require.NoError(t, err)
	t.Cleanup(func() { dropDatabase(name) })
	ctx := context.Background()
	sc, err := statestore.StartSidecar(ctx, statestore.SidecarOptions{DatabaseURL: dbURL})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sc.Stop() })
	store, err := statestore.NewStore(sc.GRPCAddr(), "")
	require.NoError(t, err)
	defer store.Close()
	key := newKey()
	require.NoError(t, store.Put(ctx, key, []byte(`{}`)))

	dropDatabase(name)

	_, err = store.Get(ctx, key)
	require.ErrorIs(t, err, statestore.ErrUnavailable)
	require.ErrorIs(t, store.Put(ctx, newKey(), []byte(`{}`)), statestore.ErrUnavailable)
	require.ErrorIs(t, store.Healthy(ctx), statestore.ErrUnavailable)
	t.Log(store.Healthy(ctx))
}

// A port given explicitly and taken fails the start, naming the cause.
func TestStartSidecarPortTaken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	_, err = statestore.StartSidecar(b.ctx, statestore.SidecarOptions{
		GRPCPort:    l.Addr().(*net.TCPAddr).Port,
		DatabaseURL: b.dbURL,
	})
	require.ErrorContains(t, err, "address already in use")
}

// A Store outlives its sidecar: once daprd is back on the same port, calls
// succeed again within a few seconds.
func TestStoreReconnects(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := statestore.SidecarOptions{AppID: "bud-restarted", DatabaseURL: b.dbURL}
	sc, err := statestore.StartSidecar(b.ctx, o)
	require.NoError(t, err)
	store, err := statestore.NewStore(sc.GRPCAddr(), "")
	require.NoError(t, err)
	defer store.Close()
	key := newKey()
	require.NoError(t, store.Put(b.ctx, key, []byte(`{}`)))

	require.NoError(t, sc.Stop())
	// Fail a few times so the connection backs off.
	for range 5 {
		_, err := store.Get(b.ctx, key)
		require.ErrorIs(t, err, statestore.ErrUnavailable)
	}

	_, port, _ := net.SplitHostPort(sc.GRPCAddr())
	o.GRPCPort, _ = strconv.Atoi(port)
	sc, err = statestore.StartSidecar(b.ctx, o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sc.Stop() })
	start := time.Now()
	require.Eventually(t, func() bool { _, err := store.Get(b.ctx, key); return err == nil }, 5*time.Second, 20*time.Millisecond)
	t.Logf("calls succeed again %s after daprd is healthy", time.Since(start).Round(time.Millisecond))
}
