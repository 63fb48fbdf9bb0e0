package db_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/secrets"
)

func newBox(t *testing.T) *secrets.Box {
	t.Helper()
	key, err := secrets.ParseKey(secrets.NewKey())
	require.NoError(t, err)
	box, err := secrets.NewBox(key)
	require.NoError(t, err)
	return box
}

// sealedRows is every sealed value in the database by row id.
func sealedRows(t *testing.T, pool *pgxpool.Pool) map[uuid.UUID][]byte {
	t.Helper()
	ctx := context.Background()
	q := dbsqlc.New(pool)
	out := map[uuid.UUID][]byte{}
	ds, err := q.ListSealedDeployments(ctx)
	require.NoError(t, err)
	for _, d := range ds {
		out[d.ID] = d.APIKeySealed
	}
	cs, err := q.ListSealedConnections(ctx)
	require.NoError(t, err)
	for _, c := range cs {
		out[c.ID] = c.CredentialsSealed
	}
	return out
}

// seed stores two deployments with a key, one without, and two connections
// with credentials, all sealed by box; it returns the plaintexts by row id.
func seed(t *testing.T, pool *pgxpool.Pool, box *secrets.Box) map[uuid.UUID]string {
	t.Helper()
	ctx := context.Background()
	q := dbsqlc.New(pool)
	p, err := q.CreateProject(ctx, dbsqlc.CreateProjectParams{Name: "proj"})
	require.NoError(t, err)
	plain := map[uuid.UUID]string{}
	for i, key := range []string{"sk-one", "sk-two", ""} {
		d, err := q.CreateDeployment(ctx, dbsqlc.CreateDeploymentParams{
			ProjectID: p.ID, Name: "m" + string(rune('a'+i)), Kind: "model",
			BaseURL: "https://api.example.com/v1", UpstreamModel: "m", DefaultParams: []byte("{}"), Settings: []byte("{}"),
		})
		require.NoError(t, err)
		if key == "" {
			continue
		}
		require.NoError(t, q.ResealDeployment(ctx, dbsqlc.ResealDeploymentParams{ID: d.ID, APIKeySealed: box.Seal([]byte(key), d.ID[:])}))
		plain[d.ID] = key
	}
	for i, creds := range []string{`{"token":"xoxb-1"}`, `{"headers":{"Authorization":"Bearer s3cret"}}`} {
		id := uuid.New()
		_, err := q.CreateConnection(ctx, dbsqlc.CreateConnectionParams{
			ID: id, ProjectID: p.ID, Name: "c" + string(rune('a'+i)), Kind: "mcp", Config: []byte("{}"),
			CredentialsSealed: box.Seal([]byte(creds), id[:]),
		})
		require.NoError(t, err)
		plain[id] = creds
	}
	return plain
}

func TestRotateKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := dbtest.NewSchema(t)
	a, b := newBox(t), newBox(t)
	plain := seed(t, pool, a)

	n, err := db.RotateKey(ctx, pool, a, b)
	require.NoError(t, err)
	require.Equal(t, db.Resealed{Deployments: 2, Connections: 2}, n)

	rows := sealedRows(t, pool)
	require.Len(t, rows, len(plain))
	for id, sealed := range rows {
		got, err := b.Open(sealed, id[:])
		require.NoError(t, err, "opens under the new key")
		require.Equal(t, plain[id], string(got))
		_, err = a.Open(sealed, id[:])
		require.Error(t, err, "no longer opens under the old key")
	}

	// Rotating again from the key that is no longer current finds every
	// value wrong and changes nothing.
	_, err = db.RotateKey(ctx, pool, a, newBox(t))
	require.ErrorIs(t, err, db.ErrKeyMismatch)
	require.Equal(t, rows, sealedRows(t, pool))
}

func TestRotateKeyRefusesACorruptValue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := dbtest.NewSchema(t)
	a := newBox(t)
	plain := seed(t, pool, a)

	// One connection's credentials are corrupted: one flipped bit.
	var victim uuid.UUID
	for id := range sealedRows(t, pool) {
		if plain[id][0] == '{' {
			victim = id
			break
		}
	}
	before := sealedRows(t, pool)
	corrupt := append([]byte(nil), before[victim]...)
	corrupt[len(corrupt)-1] ^= 1
	require.NoError(t, dbsqlc.New(pool).ResealConnection(ctx, dbsqlc.ResealConnectionParams{ID: victim, CredentialsSealed: corrupt}))
	before[victim] = corrupt

	n, err := db.RotateKey(ctx, pool, a, newBox(t))
	require.ErrorIs(t, err, db.ErrKeyMismatch)
	require.Contains(t, err.Error(), "connection "+victim.String(), "the error names the row")
	require.NotContains(t, err.Error(), "s3cret")
	require.NotContains(t, err.Error(), "xoxb")
	require.Equal(t, db.Resealed{}, n)
	require.Equal(t, before, sealedRows(t, pool), "nothing was changed")
	for id, sealed := range before {
		if id == victim {
			continue
		}
		got, err := a.Open(sealed, id[:])
		require.NoError(t, err, "the rest still opens under the old key")
		require.Equal(t, plain[id], string(got))
	}
}

func TestRotateKeyEmpty(t *testing.T) {
	t.Parallel()
	pool, _ := dbtest.NewSchema(t)
	n, err := db.RotateKey(context.Background(), pool, newBox(t), newBox(t))
	require.NoError(t, err)
	require.Equal(t, db.Resealed{}, n)
}
