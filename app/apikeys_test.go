package app_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db/dbsqlc"
)

func keysPath(projectID uuid.UUID) string {
	return "/api/projects/" + projectID.String() + "/api-keys"
}

func TestAPIKeyLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	q := dbsqlc.New(b.pool)
	p := b.createProject(t, "proj")

	expires := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	r := b.do(t, "POST", keysPath(p.ID), map[string]any{"name": "CI deploy key", "expires_at": expires.Format(time.RFC3339)})
	k := decodeAs[createdKey](t, r, http.StatusCreated)
	require.Equal(t, "no-store", r.header.Get("Cache-Control"))
	require.Equal(t, keysPath(p.ID)+"/"+k.ID.String(), r.header.Get("Location"))
	require.True(t, bud.LooksLikeAPIKey(k.Secret), k.Secret)
	require.Equal(t, k.Secret[:len(k.Prefix)], k.Prefix)
	require.Equal(t, p.ID, k.ProjectID)
	require.Equal(t, "CI deploy key", k.Name)
	require.NotNil(t, k.ExpiresAt)
	require.True(t, expires.Equal(*k.ExpiresAt))
	require.False(t, k.Revoked)
	require.Nil(t, k.RevokedAt)
	require.Nil(t, k.LastUsedAt)

	// Only the SHA-256 of the secret is stored.
	row, err := q.GetAPIKey(ctx, dbsqlc.GetAPIKeyParams{ProjectID: p.ID, ID: k.ID})
	require.NoError(t, err)
	sum := sha256.Sum256([]byte(k.Secret))
	require.Equal(t, sum[:], row.SecretHash)
	require.NotContains(t, fmt.Sprintf("%+v", row), k.Secret[len(k.Prefix):])
	byHash, err := q.GetAPIKeyByHash(ctx, sum[:])
	require.NoError(t, err)
	require.Equal(t, k.ID, byHash.ID)

	// The secret is shown once: neither the list nor a read has it.
	second := b.createKey(t, p.ID, "second")
	rl := b.do(t, "GET", keysPath(p.ID), nil)
	list := decodeAs[page[bud.APIKey]](t, rl, http.StatusOK)
	require.EqualValues(t, 2, list.Total)
	require.Equal(t, []uuid.UUID{k.ID, second.ID}, []uuid.UUID{list.Data[0].ID, list.Data[1].ID})
	rg := b.do(t, "GET", keysPath(p.ID)+"/"+k.ID.String(), nil)
	got := decodeAs[bud.APIKey](t, rg, http.StatusOK)
	require.Equal(t, k.APIKey.Prefix, got.Prefix)
	for _, body := range [][]byte{rl.body, rg.body} {
		require.NotContains(t, string(body), k.Secret)
		require.NotContains(t, string(body), second.Secret)
		require.NotContains(t, string(body), `"secret"`)
	}

	list = decodeAs[page[bud.APIKey]](t, b.do(t, "GET", keysPath(p.ID)+"?limit=1&offset=1", nil), http.StatusOK)
	require.Len(t, list.Data, 1)
	require.Equal(t, second.ID, list.Data[0].ID)

	// Revoking sets revoked; revoking again keeps the first time.
	keyPath := keysPath(p.ID) + "/" + k.ID.String()
	require.Equal(t, http.StatusNoContent, b.do(t, "DELETE", keyPath, nil).status)
	got = decodeAs[bud.APIKey](t, b.do(t, "GET", keyPath, nil), http.StatusOK)
	require.True(t, got.Revoked)
	require.NotNil(t, got.RevokedAt)
	require.False(t, got.Usable(time.Now()))
	require.Equal(t, http.StatusNoContent, b.do(t, "DELETE", keyPath, nil).status)
	again := decodeAs[bud.APIKey](t, b.do(t, "GET", keyPath, nil), http.StatusOK)
	require.True(t, got.RevokedAt.Equal(*again.RevokedAt))

	untouched := decodeAs[bud.APIKey](t, b.do(t, "GET", keysPath(p.ID)+"/"+second.ID.String(), nil), http.StatusOK)
	require.False(t, untouched.Revoked)
	require.Nil(t, untouched.ExpiresAt)

	errorOf(t, b.do(t, "GET", keysPath(p.ID)+"/"+uuid.NewString(), nil), http.StatusNotFound)
	errorOf(t, b.do(t, "DELETE", keysPath(p.ID)+"/"+uuid.NewString(), nil), http.StatusNotFound)
	errorOf(t, b.do(t, "GET", keysPath(p.ID)+"/not-a-uuid", nil), http.StatusNotFound)
}

func TestAPIKeyOfAnotherProjectIsNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.createProject(t, "a")
	other := b.createProject(t, "b")
	theirs := b.createKey(t, other.ID, "theirs")

	want := errorOf(t, b.do(t, "GET", keysPath(a.ID)+"/"+uuid.NewString(), nil), http.StatusNotFound)
	for _, method := range []string{"GET", "DELETE"} {
		e := errorOf(t, b.do(t, method, keysPath(a.ID)+"/"+theirs.ID.String(), nil), http.StatusNotFound)
		require.Equal(t, want.Error, e.Error, method)
	}
	got := decodeAs[bud.APIKey](t, b.do(t, "GET", keysPath(other.ID)+"/"+theirs.ID.String(), nil), http.StatusOK)
	require.False(t, got.Revoked, "another project cannot revoke it")
	list := decodeAs[page[bud.APIKey]](t, b.do(t, "GET", keysPath(a.ID), nil), http.StatusOK)
	require.Zero(t, list.Total)
	require.Empty(t, list.Data)
}

// TestAPIKeyRateLimit: a key's own limit is set at creation, changed,
// removed, and shown on every read; a key without one shows null.
func TestAPIKeyRateLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	limit := bud.KeyRateLimit{RequestsPerMinute: 60, Burst: 5, TokensPerMinute: 100_000}
	r := b.do(t, "POST", keysPath(p.ID), map[string]any{"name": "limited", "rate_limit": limit})
	k := decodeAs[createdKey](t, r, http.StatusCreated)
	require.Equal(t, &limit, k.RateLimit)
	path := keysPath(p.ID) + "/" + k.ID.String()
	require.Equal(t, &limit, decodeAs[bud.APIKey](t, b.do(t, "GET", path, nil), http.StatusOK).RateLimit)

	plain := b.createKey(t, p.ID, "plain")
	require.Nil(t, plain.RateLimit)
	require.Contains(t, string(b.do(t, "GET", keysPath(p.ID)+"/"+plain.ID.String(), nil).body), `"rate_limit":null`)

	// A patch changes what it names and keeps the rest.
	got := decodeAs[bud.APIKey](t, b.do(t, "PATCH", path, map[string]any{"rate_limit": map[string]any{"tokens_per_minute": 5000}}), http.StatusOK)
	require.Equal(t, &bud.KeyRateLimit{TokensPerMinute: 5000}, got.RateLimit)
	require.Equal(t, "limited", got.Name)
	got = decodeAs[bud.APIKey](t, b.do(t, "PATCH", path, map[string]any{"name": "renamed"}), http.StatusOK)
	require.Equal(t, "renamed", got.Name)
	require.Equal(t, &bud.KeyRateLimit{TokensPerMinute: 5000}, got.RateLimit)
	got = decodeAs[bud.APIKey](t, b.do(t, "PATCH", path, map[string]any{"rate_limit": nil}), http.StatusOK)
	require.Nil(t, got.RateLimit)
	require.Nil(t, decodeAs[bud.APIKey](t, b.do(t, "GET", path, nil), http.StatusOK).RateLimit)

	// Another project's key is not found.
	other := b.createProject(t, "other")
	errorOf(t, b.do(t, "PATCH", keysPath(other.ID)+"/"+k.ID.String(), map[string]any{"name": "x"}), http.StatusNotFound)
	errorOf(t, b.do(t, "PATCH", keysPath(p.ID)+"/"+uuid.NewString(), map[string]any{"name": "x"}), http.StatusNotFound)
}
