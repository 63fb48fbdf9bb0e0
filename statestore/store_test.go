package statestore_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/budhq/bud/daprd"
	"github.com/budhq/bud/daprd/daprdtest"
	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/statestore"
	"github.com/budhq/bud/statestore/statestoretest"
)

func TestDocumentKey(t *testing.T) {
	t.Parallel()
	id := uuid.MustParse("0b8e1c1e-8f5a-4a53-9a1b-5d7f2c3e4a10")
	require.Equal(t, "prompt:0b8e1c1e-8f5a-4a53-9a1b-5d7f2c3e4a10:v3", statestore.DocumentKey(id, 3))
}

// A document kept by its content has one key per distinct byte string.
func TestContentKey(t *testing.T) {
	t.Parallel()
	a, b := []byte(`{"deployment":"m"}`), []byte(`{"deployment":"n"}`)
	require.Equal(t, "document:sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", statestore.ContentKey(nil))
	require.Equal(t, statestore.ContentKey(a), statestore.ContentKey([]byte(`{"deployment":"m"}`)))
	require.NotEqual(t, statestore.ContentKey(a), statestore.ContentKey(b))
}

func TestPutGet(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := statestoretest.NewKey()
	require.NoError(t, b.store.Put(b.ctx, key, []byte(statestoretest.Document)))
	got, err := b.store.Get(b.ctx, key)
	require.NoError(t, err)
	require.Equal(t, statestoretest.Document, string(got), "stored bytes come back unchanged")
}

func TestGetAbsent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.store.Get(b.ctx, statestoretest.NewKey())
	require.ErrorIs(t, err, statestore.ErrNotFound)
}

func TestPutFirstWriteWins(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := statestoretest.NewKey()
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
	require.ErrorContains(t, b.store.Put(b.ctx, statestoretest.NewKey(), []byte(`{"v":`)), "not valid JSON")
	require.ErrorContains(t, b.store.Put(b.ctx, statestoretest.NewKey(), nil), "not valid JSON")
	require.ErrorContains(t, b.store.Put(b.ctx, "app||prompt:x:v1", []byte(`{}`)), `"||"`)
	require.ErrorContains(t, b.store.Put(b.ctx, "", []byte(`{}`)), "empty key")
	_, err := b.store.Get(b.ctx, "a||b")
	require.ErrorContains(t, err, `"||"`)
}

func TestDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := statestoretest.NewKey()
	require.NoError(t, b.store.Put(b.ctx, key, []byte(statestoretest.Document)))
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
	other := statestoretest.NewKey()
	require.NoError(t, b.store.Put(b.ctx, other, []byte(`{}`)))

	require.NoError(t, b.store.DeleteMany(b.ctx, append(keys, statestoretest.NewKey())), "absent keys are skipped")
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
	key := statestoretest.NewKey()
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
	key := statestoretest.NewKey()
	require.NoError(t, b.store.Put(b.ctx, key, []byte(statestoretest.Document)))

	conn, err := pgx.Connect(b.ctx, b.dbURL)
	require.NoError(t, err)
	defer conn.Close(b.ctx)
	var value []byte
	require.NoError(t, conn.QueryRow(b.ctx, "SELECT value FROM dapr_state WHERE key = $1", key).Scan(&value))
	require.Equal(t, statestoretest.Document, string(value))
}

// A caller's own deadline is reported as such, not as ErrUnavailable.
func TestCallerDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithCancel(b.ctx)
	cancel()
	_, err := b.store.Get(ctx, statestoretest.NewKey())
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, statestore.ErrUnavailable)
}

// When the database behind daprd goes away, calls and Healthy answer
// ErrUnavailable.
func TestDatabaseGone(t *testing.T) {
	t.Parallel()
	daprdtest.Require(t)
	dbURL := dbtest.NewDatabase(t)
	ctx := context.Background()
	sc, err := daprd.Start(ctx, daprd.Config{DatabaseURL: dbURL})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sc.Stop() })
	store, err := statestore.NewStore(sc.GRPCAddr(), "", statestore.WithAPIToken(sc.APIToken()))
	require.NoError(t, err)
	defer store.Close()
	key := statestoretest.NewKey()
	require.NoError(t, store.Put(ctx, key, []byte(`{}`)))

	dropDatabase(t, dbURL)

	_, err = store.Get(ctx, key)
	require.ErrorIs(t, err, statestore.ErrUnavailable)
	require.ErrorIs(t, store.Put(ctx, statestoretest.NewKey(), []byte(`{}`)), statestore.ErrUnavailable)
	require.ErrorIs(t, store.Healthy(ctx), statestore.ErrUnavailable)
	t.Log(store.Healthy(ctx))
}

// dropDatabase drops the database dbURL names, closing the connections
// daprd holds to it.
func dropDatabase(tb testing.TB, dbURL string) {
	tb.Helper()
	u, err := url.Parse(dbURL)
	require.NoError(tb, err)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dbtest.URL())
	require.NoError(tb, err)
	defer admin.Close(ctx)
	name := pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()
	_, err = admin.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)")
	require.NoError(tb, err)
}

// A Store outlives its sidecar: once daprd is back on the same port, calls
// succeed again within a few seconds.
func TestStoreReconnects(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := daprd.Config{AppID: "bud-restarted", DatabaseURL: b.dbURL}
	sc, err := daprd.Start(b.ctx, cfg)
	require.NoError(t, err)
	store, err := statestore.NewStore(sc.GRPCAddr(), "", statestore.WithAPIToken(sc.APIToken()))
	require.NoError(t, err)
	defer store.Close()
	key := statestoretest.NewKey()
	require.NoError(t, store.Put(b.ctx, key, []byte(`{}`)))

	require.NoError(t, sc.Stop())
	// Fail a few times so the connection backs off.
	for range 5 {
		_, err := store.Get(b.ctx, key)
		require.ErrorIs(t, err, statestore.ErrUnavailable)
	}

	_, port, _ := net.SplitHostPort(sc.GRPCAddr())
	cfg.GRPCPort, _ = strconv.Atoi(port)
	cfg.APIToken = sc.APIToken()
	sc, err = daprd.Start(b.ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sc.Stop() })
	start := time.Now()
	require.Eventually(t, func() bool { _, err := store.Get(b.ctx, key); return err == nil }, 5*time.Second, 20*time.Millisecond)
	t.Logf("calls succeed again %s after daprd is healthy", time.Since(start).Round(time.Millisecond))
}

// daprd runs with an API token: a Store without it, or with another, is
// refused; the Store that sends it is served.
func TestAPITokenRequired(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sc := daprdtest.Sidecar(t)
	require.NotEmpty(t, sc.APIToken())
	key := statestoretest.NewKey()
	require.NoError(t, b.store.Put(b.ctx, key, []byte(`{}`)))

	for name, opts := range map[string][]statestore.Option{
		"no token":    nil,
		"wrong token": {statestore.WithAPIToken("not-" + sc.APIToken())},
	} {
		t.Run(name, func(t *testing.T) {
			store, err := statestore.NewStore(sc.GRPCAddr(), "", opts...)
			require.NoError(t, err)
			defer store.Close()
			_, err = store.Get(b.ctx, key)
			require.Error(t, err)
			require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
			require.Error(t, store.Put(b.ctx, statestoretest.NewKey(), []byte(`{}`)))
		})
	}
}
