package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/secrets"
)

// rotateFixture is a migrated database holding one deployment key and one
// connection's credentials, sealed under key.
type rotateFixture struct {
	url     string
	pool    *pgxpool.Pool
	key     string
	deploy  uuid.UUID
	connect uuid.UUID
}

func newRotateFixture(t *testing.T) rotateFixture {
	t.Helper()
	ctx := context.Background()
	url := dbtest.NewDatabase(t)
	pool, err := db.Open(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, db.Migrate(ctx, pool, nil))

	f := rotateFixture{url: url, pool: pool, key: secrets.NewKey()}
	box := boxOf(t, f.key)
	q := dbsqlc.New(pool)
	p, err := q.CreateProject(ctx, dbsqlc.CreateProjectParams{Name: "proj"})
	require.NoError(t, err)
	d, err := q.CreateDeployment(ctx, dbsqlc.CreateDeploymentParams{
		ProjectID: p.ID, Name: "m", Kind: "model", BaseURL: "https://api.example.com/v1", UpstreamModel: "m",
		DefaultParams: []byte("{}"), Settings: []byte("{}"),
	})
	require.NoError(t, err)
	f.deploy = d.ID
	require.NoError(t, q.ResealDeployment(ctx, dbsqlc.ResealDeploymentParams{ID: d.ID, APIKeySealed: box.Seal([]byte("sk-1"), d.ID[:])}))
	f.connect = uuid.New()
	_, err = q.CreateConnection(ctx, dbsqlc.CreateConnectionParams{
		ID: f.connect, ProjectID: p.ID, Name: "c", Kind: "slack", Config: []byte("{}"),
		CredentialsSealed: box.Seal([]byte(`{"token":"xoxb-1"}`), f.connect[:]),
	})
	require.NoError(t, err)
	return f
}

func boxOf(t *testing.T, key string) *secrets.Box {
	t.Helper()
	raw, err := secrets.ParseKey(key)
	require.NoError(t, err)
	box, err := secrets.NewBox(raw)
	require.NoError(t, err)
	return box
}

// opensUnder reports whether both sealed values open under key.
func (f rotateFixture) opensUnder(t *testing.T, key string) bool {
	t.Helper()
	ctx := context.Background()
	box := boxOf(t, key)
	q := dbsqlc.New(f.pool)
	ds, err := q.ListSealedDeployments(ctx)
	require.NoError(t, err)
	require.Len(t, ds, 1)
	cs, err := q.ListSealedConnections(ctx)
	require.NoError(t, err)
	require.Len(t, cs, 1)
	_, derr := box.Open(ds[0].APIKeySealed, f.deploy[:])
	_, cerr := box.Open(cs[0].CredentialsSealed, f.connect[:])
	return derr == nil && cerr == nil
}

func TestRotateKeyCommandDevDataDir(t *testing.T) {
	t.Parallel()
	f := newRotateFixture(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "encryption-key")
	require.NoError(t, os.WriteFile(keyFile, []byte(f.key+"\n"), 0o600))

	var stdout, stderr bytes.Buffer
	err := runRotateKey(context.Background(), []string{"--database-url", f.url, "--data-dir", dir, "--encryption-key="}, &stdout, &stderr)
	require.NoError(t, err, "stderr: %s", stderr.String())
	newKey := strings.TrimSpace(stdout.String())
	_, err = secrets.ParseKey(newKey)
	require.NoError(t, err, "stdout is the generated key alone: %q", stdout.String())
	require.Contains(t, stderr.String(), "re-sealed 1 deployment API key(s) and 1 connection credential set(s)")

	b, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	require.Equal(t, newKey, strings.TrimSpace(string(b)), "bud dev's key file holds the new key")
	require.NoFileExists(t, keyFile+".new")
	require.True(t, f.opensUnder(t, newKey))
	require.False(t, f.opensUnder(t, f.key))
}

func TestRotateKeyCommandGivenKeys(t *testing.T) {
	t.Parallel()
	f := newRotateFixture(t)
	dir := t.TempDir() // no key file: the current key comes from the flag
	newKey := secrets.NewKey()

	var stdout, stderr bytes.Buffer
	err := runRotateKey(context.Background(), []string{"--database-url", f.url, "--data-dir", dir, "--encryption-key", f.key, "--new-key", newKey}, &stdout, &stderr)
	require.NoError(t, err, "stderr: %s", stderr.String())
	require.Empty(t, stdout.String(), "a given key is not printed")
	require.Contains(t, stderr.String(), "set BUD_ENCRYPTION_KEY")
	require.NoFileExists(t, filepath.Join(dir, "encryption-key"))
	require.True(t, f.opensUnder(t, newKey))

	// The same again: the current key no longer opens anything.
	err = runRotateKey(context.Background(), []string{"--database-url", f.url, "--data-dir", dir, "--encryption-key", f.key, "--new-key", secrets.NewKey()}, &stdout, &stderr)
	require.ErrorIs(t, err, db.ErrKeyMismatch)
	require.True(t, f.opensUnder(t, newKey), "nothing was changed")

	err = runRotateKey(context.Background(), []string{"--database-url", f.url, "--data-dir", dir, "--encryption-key", newKey, "--new-key", newKey}, &stdout, &stderr)
	require.ErrorContains(t, err, "is the current key")
}

func TestRotateKeyCommandRefusalKeepsKeyFile(t *testing.T) {
	t.Parallel()
	f := newRotateFixture(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "encryption-key")
	// The data directory holds a key that is not the database's.
	other := secrets.NewKey()
	require.NoError(t, os.WriteFile(keyFile, []byte(other+"\n"), 0o600))

	var stdout, stderr bytes.Buffer
	err := runRotateKey(context.Background(), []string{"--database-url", f.url, "--data-dir", dir, "--encryption-key="}, &stdout, &stderr)
	require.ErrorIs(t, err, db.ErrKeyMismatch)
	require.Empty(t, stdout.String(), "no key is printed when nothing changed")
	b, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	require.Equal(t, other, strings.TrimSpace(string(b)))
	require.NoFileExists(t, keyFile+".new")
	require.True(t, f.opensUnder(t, f.key))
}
