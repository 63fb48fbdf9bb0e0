package app_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db/dbsqlc"
)

func deploymentsPath(projectID uuid.UUID) string {
	return "/api/projects/" + projectID.String() + "/deployments"
}

func TestDeploymentCRUD(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	base := deploymentsPath(p.ID)

	body := map[string]any{
		"name":           "gpt-fast",
		"kind":           "model",
		"upstream":       map[string]any{"base_url": "https://api.example.com/v1", "model": "gpt-4o-mini", "api_key": "sk-live-123"},
		"default_params": map[string]any{"temperature": 0.2, "max_tokens": 512},
		"settings": map[string]any{
			"min_concurrency": 1, "max_concurrency": 8, "autoscale": false,
			"cache":      map[string]any{"enabled": true, "ttl_seconds": 300},
			"rate_limit": map[string]any{"enabled": true, "requests_per_minute": 600, "burst": 20},
		},
	}
	r := b.do(t, "POST", base, body)
	d := decodeAs[bud.Deployment](t, r, http.StatusCreated)
	require.Equal(t, base+"/"+d.ID.String(), r.header.Get("Location"))
	require.Equal(t, p.ID, d.ProjectID)
	require.Equal(t, "gpt-fast", d.Name)
	require.Equal(t, bud.KindModel, d.Kind)
	require.Equal(t, &bud.Upstream{BaseURL: "https://api.example.com/v1", Model: "gpt-4o-mini", APIKeySet: true}, d.Upstream)
	require.JSONEq(t, `{"temperature":0.2,"max_tokens":512}`, string(d.DefaultParams))
	require.Equal(t, bud.Settings{
		MinConcurrency: 1, MaxConcurrency: 8,
		Cache:     bud.CacheSettings{Enabled: true, TTLSeconds: 300},
		RateLimit: bud.RateLimitSettings{Enabled: true, RequestsPerMinute: 600, Burst: 20},
	}, d.Settings)
	path := base + "/" + d.ID.String()

	got := decodeAs[bud.Deployment](t, b.do(t, "GET", path, nil), http.StatusOK)
	require.Equal(t, d.Settings, got.Settings)
	require.Equal(t, d.Upstream, got.Upstream)

	list := decodeAs[page[bud.Deployment]](t, b.do(t, "GET", base, nil), http.StatusOK)
	require.EqualValues(t, 1, list.Total)
	require.Equal(t, d.ID, list.Data[0].ID)

	// Renaming keeps the rest, the provider key included.
	got = decodeAs[bud.Deployment](t, b.do(t, "PATCH", path, map[string]any{"name": "gpt-cheap"}), http.StatusOK)
	require.Equal(t, "gpt-cheap", got.Name)
	require.Equal(t, d.Upstream, got.Upstream)
	require.Equal(t, d.Settings, got.Settings)
	require.JSONEq(t, string(d.DefaultParams), string(got.DefaultParams))

	// Upstream fields are optional one by one; an empty api_key removes it.
	got = decodeAs[bud.Deployment](t, b.do(t, "PATCH", path, map[string]any{"upstream": map[string]any{"model": "gpt-4o"}}), http.StatusOK)
	require.Equal(t, &bud.Upstream{BaseURL: "https://api.example.com/v1", Model: "gpt-4o", APIKeySet: true}, got.Upstream)
	got = decodeAs[bud.Deployment](t, b.do(t, "PATCH", path, map[string]any{"upstream": map[string]any{"api_key": ""}}), http.StatusOK)
	require.Equal(t, &bud.Upstream{BaseURL: "https://api.example.com/v1", Model: "gpt-4o", APIKeySet: false}, got.Upstream)
	row, err := dbsqlc.New(b.pool).GetDeployment(context.Background(), dbsqlc.GetDeploymentParams{ProjectID: p.ID, ID: d.ID})
	require.NoError(t, err)
	require.Nil(t, row.APIKeySealed)

	require.Equal(t, http.StatusNoContent, b.do(t, "DELETE", path, nil).status)
	errorOf(t, b.do(t, "GET", path, nil), http.StatusNotFound)
	errorOf(t, b.do(t, "DELETE", path, nil), http.StatusNotFound)
	errorOf(t, b.do(t, "PATCH", path, map[string]any{"name": "x"}), http.StatusNotFound)
	errorOf(t, b.do(t, "GET", base+"/not-a-uuid", nil), http.StatusNotFound)
}

func TestDeploymentDefaults(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")

	// No kind, no settings, no default params.
	d := b.createDeployment(t, p.ID, map[string]any{
		"name":     "plain",
		"upstream": map[string]any{"base_url": "http://localhost:8000", "model": "llama"},
	})
	require.Equal(t, bud.KindModel, d.Kind)
	require.Equal(t, bud.DefaultSettings(), d.Settings)
	require.JSONEq(t, `{}`, string(d.DefaultParams))
	require.False(t, d.Upstream.APIKeySet)

	// A partial settings object fills from the defaults, level by level.
	d = b.createDeployment(t, p.ID, modelBody("partial", map[string]any{
		"settings": map[string]any{"cache": map[string]any{"enabled": true, "ttl_seconds": 60}, "rate_limit": map[string]any{"requests_per_minute": 60, "burst": 5}},
	}))
	want := bud.DefaultSettings()
	want.Cache = bud.CacheSettings{Enabled: true, TTLSeconds: 60}
	want.RateLimit.RequestsPerMinute, want.RateLimit.Burst = 60, 5
	require.Equal(t, want, d.Settings)

	// null means "not given".
	d = b.createDeployment(t, p.ID, modelBody("nulls", map[string]any{"settings": nil, "default_params": nil}))
	require.Equal(t, bud.DefaultSettings(), d.Settings)
	require.JSONEq(t, `{}`, string(d.DefaultParams))
}

func TestDeploymentPatchReplaces(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	d := b.createDeployment(t, p.ID, modelBody("m", map[string]any{
		"default_params": map[string]any{"temperature": 0.5},
		"settings":       map[string]any{"max_concurrency": 10, "rate_limit": map[string]any{"enabled": true, "requests_per_minute": 60}},
	}))
	path := deploymentsPath(p.ID) + "/" + d.ID.String()

	// Absent members keep their value.
	got := decodeAs[bud.Deployment](t, b.do(t, "PATCH", path, map[string]any{"name": "m2"}), http.StatusOK)
	require.Equal(t, d.Settings, got.Settings)

	// settings replaces the whole object; what it leaves out takes the default.
	got = decodeAs[bud.Deployment](t, b.do(t, "PATCH", path, map[string]any{"settings": map[string]any{"min_concurrency": 2}}), http.StatusOK)
	want := bud.DefaultSettings()
	want.MinConcurrency = 2
	require.Equal(t, want, got.Settings)

	// default_params replaces too.
	got = decodeAs[bud.Deployment](t, b.do(t, "PATCH", path, map[string]any{"default_params": map[string]any{"top_p": 0.9}}), http.StatusOK)
	require.JSONEq(t, `{"top_p":0.9}`, string(got.DefaultParams))
	got = decodeAs[bud.Deployment](t, b.do(t, "PATCH", path, map[string]any{"default_params": map[string]any{}}), http.StatusOK)
	require.JSONEq(t, `{}`, string(got.DefaultParams))

	// The merged result is checked: emptying the base URL leaves none, and
	// a refused PATCH changes nothing.
	e := errorOf(t, b.do(t, "PATCH", path, map[string]any{"name": "m3", "upstream": map[string]any{"base_url": ""}}), http.StatusBadRequest)
	require.Contains(t, e.Error.Fields, "upstream.base_url")
	got = decodeAs[bud.Deployment](t, b.do(t, "GET", path, nil), http.StatusOK)
	require.Equal(t, "m2", got.Name)
	require.Equal(t, "https://api.example.com/v1", got.Upstream.BaseURL)
}

func TestDeploymentProviderKeyIsSealed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	q := dbsqlc.New(b.pool)
	p := b.createProject(t, "proj")
	const plaintext = "sk-provider-secret-0123456789"

	r := b.do(t, "POST", deploymentsPath(p.ID), modelBody("m", map[string]any{
		"upstream": map[string]any{"base_url": "https://api.example.com/v1", "model": "m", "api_key": plaintext},
	}))
	d := decodeAs[bud.Deployment](t, r, http.StatusCreated)
	bodies := [][]byte{r.body}

	row, err := q.GetDeployment(ctx, dbsqlc.GetDeploymentParams{ProjectID: p.ID, ID: d.ID})
	require.NoError(t, err)
	require.NotEmpty(t, row.APIKeySealed)
	require.NotContains(t, string(row.APIKeySealed), plaintext)
	opened, err := b.box.Open(row.APIKeySealed, d.ID[:])
	require.NoError(t, err)
	require.Equal(t, plaintext, string(opened))
	other := uuid.New()
	_, err = b.box.Open(row.APIKeySealed, other[:])
	require.Error(t, err, "the sealed key is bound to its deployment")

	path := deploymentsPath(p.ID) + "/" + d.ID.String()
	for _, req := range []struct {
		method string
		body   any
	}{{"GET", nil}, {"PATCH", map[string]any{"name": "m2"}}} {
		r := b.do(t, req.method, path, req.body)
		require.Equal(t, http.StatusOK, r.status)
		bodies = append(bodies, r.body)
	}
	bodies = append(bodies, b.do(t, "GET", deploymentsPath(p.ID), nil).body)

	// A new key is sealed afresh.
	const rotated = "sk-rotated-9876543210"
	r = b.do(t, "PATCH", path, map[string]any{"upstream": map[string]any{"api_key": rotated}})
	require.Equal(t, http.StatusOK, r.status)
	bodies = append(bodies, r.body)
	row, err = q.GetDeployment(ctx, dbsqlc.GetDeploymentParams{ProjectID: p.ID, ID: d.ID})
	require.NoError(t, err)
	opened, err = b.box.Open(row.APIKeySealed, d.ID[:])
	require.NoError(t, err)
	require.Equal(t, rotated, string(opened))

	for _, body := range bodies {
		require.NotContains(t, string(body), plaintext)
		require.NotContains(t, string(body), rotated)
		require.NotContains(t, string(body), `"api_key"`)
		require.Contains(t, string(body), `"api_key_set":true`)
	}
}

func TestDeploymentNameConflict(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p1 := b.createProject(t, "one")
	p2 := b.createProject(t, "two")
	b.createDeployment(t, p1.ID, modelBody("shared", nil))

	e := errorOf(t, b.do(t, "POST", deploymentsPath(p1.ID), modelBody("shared", nil)), http.StatusConflict)
	require.Equal(t, "conflict", e.Error.Code)
	require.Contains(t, e.Error.Fields, "name")

	// The same name in another project is fine.
	b.createDeployment(t, p2.ID, modelBody("shared", nil))

	d := b.createDeployment(t, p1.ID, modelBody("other", nil))
	e = errorOf(t, b.do(t, "PATCH", deploymentsPath(p1.ID)+"/"+d.ID.String(), map[string]any{"name": "shared"}), http.StatusConflict)
	require.Contains(t, e.Error.Fields, "name")
}

func TestDeploymentOfAnotherProjectIsNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.createProject(t, "a")
	other := b.createProject(t, "b")
	theirs := b.createDeployment(t, other.ID, modelBody("theirs", nil))

	want := errorOf(t, b.do(t, "GET", deploymentsPath(a.ID)+"/"+uuid.NewString(), nil), http.StatusNotFound)
	path := deploymentsPath(a.ID) + "/" + theirs.ID.String()
	for _, c := range []struct {
		method string
		body   any
	}{{"GET", nil}, {"PATCH", map[string]any{"name": "stolen"}}, {"DELETE", nil}} {
		e := errorOf(t, b.do(t, c.method, path, c.body), http.StatusNotFound)
		require.Equal(t, want.Error, e.Error, c.method)
	}

	got := decodeAs[bud.Deployment](t, b.do(t, "GET", deploymentsPath(other.ID)+"/"+theirs.ID.String(), nil), http.StatusOK)
	require.Equal(t, "theirs", got.Name, "untouched")
	list := decodeAs[page[bud.Deployment]](t, b.do(t, "GET", deploymentsPath(a.ID), nil), http.StatusOK)
	require.Zero(t, list.Total)
}

func TestDeploymentPagination(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	var ids []uuid.UUID
	for i := range 3 {
		ids = append(ids, b.createDeployment(t, p.ID, modelBody(fmt.Sprintf("d%d", i), nil)).ID)
	}
	list := decodeAs[page[bud.Deployment]](t, b.do(t, "GET", deploymentsPath(p.ID)+"?limit=2", nil), http.StatusOK)
	require.EqualValues(t, 3, list.Total)
	require.Equal(t, 2, list.Limit)
	require.Equal(t, []uuid.UUID{ids[0], ids[1]}, []uuid.UUID{list.Data[0].ID, list.Data[1].ID})
	list = decodeAs[page[bud.Deployment]](t, b.do(t, "GET", deploymentsPath(p.ID)+"?limit=2&offset=2", nil), http.StatusOK)
	require.Len(t, list.Data, 1)
	require.Equal(t, ids[2], list.Data[0].ID)

	e := errorOf(t, b.do(t, "GET", deploymentsPath(p.ID)+"?limit=500", nil), http.StatusBadRequest)
	require.Contains(t, e.Error.Fields, "limit")
}

// A prompt deployment is made by deploying a prompt; this API shows it but
// gives it no upstream.

// TestDeploymentMoveNeedsAPIKey checks a stored provider key does not
// follow its deployment to another host: whoever holds the admin token could
// otherwise point base_url at their own server and read the key there.
func TestDeploymentMoveNeedsAPIKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	q := dbsqlc.New(b.pool)
	p := b.createProject(t, "proj")
	const key = "sk-provider-secret-0123456789"
	d := b.createDeployment(t, p.ID, modelBody("m", map[string]any{
		"upstream": map[string]any{"base_url": "https://api.example.com/v1", "model": "m", "api_key": key},
	}))
	path := deploymentsPath(p.ID) + "/" + d.ID.String()
	sealed := func() []byte {
		t.Helper()
		row, err := q.GetDeployment(ctx, dbsqlc.GetDeploymentParams{ProjectID: p.ID, ID: d.ID})
		require.NoError(t, err)
		return row.APIKeySealed
	}
	before := sealed()

	for name, to := range map[string]string{
		"host":   "https://attacker.example/v1",
		"scheme": "http://api.example.com/v1",
		"port":   "https://api.example.com:8443/v1",
	} {
		e := errorOf(t, b.do(t, "PATCH", path, map[string]any{"upstream": map[string]any{"base_url": to}}), http.StatusUnprocessableEntity)
		require.Equal(t, bud.EUNPROCESSABLE, e.Error.Code, name)
		require.Contains(t, e.Error.Fields, "upstream.api_key", name)
		require.NotContains(t, e.Error.Message, key)
	}
	got := decodeAs[bud.Deployment](t, b.do(t, "GET", path, nil), http.StatusOK)
	require.Equal(t, "https://api.example.com/v1", got.Upstream.BaseURL, "a refused PATCH changes nothing")
	require.Equal(t, before, sealed())

	// The same host (default port spelled out, another path) keeps the key.
	got = decodeAs[bud.Deployment](t, b.do(t, "PATCH", path, map[string]any{"upstream": map[string]any{"base_url": "https://API.example.com:443/v2"}}), http.StatusOK)
	require.True(t, got.Upstream.APIKeySet)
	require.Equal(t, before, sealed())

	// Sent again, the key goes with it.
	const next = "sk-other-host-0123456789"
	got = decodeAs[bud.Deployment](t, b.do(t, "PATCH", path, map[string]any{"upstream": map[string]any{"base_url": "https://other.example/v1", "api_key": next}}), http.StatusOK)
	require.Equal(t, "https://other.example/v1", got.Upstream.BaseURL)
	require.True(t, got.Upstream.APIKeySet)
	opened, err := b.box.Open(sealed(), d.ID[:])
	require.NoError(t, err)
	require.Equal(t, next, string(opened))

	// An empty key sent with the move removes it.
	got = decodeAs[bud.Deployment](t, b.do(t, "PATCH", path, map[string]any{"upstream": map[string]any{"base_url": "https://third.example/v1", "api_key": ""}}), http.StatusOK)
	require.False(t, got.Upstream.APIKeySet)

	// Without a key stored, nothing needs sending.
	got = decodeAs[bud.Deployment](t, b.do(t, "PATCH", path, map[string]any{"upstream": map[string]any{"base_url": "https://fourth.example/v1"}}), http.StatusOK)
	require.Equal(t, "https://fourth.example/v1", got.Upstream.BaseURL)
}

// TestDeploymentBaseURLRefusesUserinfo checks a password cannot ride in
// base_url, where it would be stored and returned in clear.
func TestDeploymentBaseURLRefusesUserinfo(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	const withUser = "https://user:pass@api.example.com/v1"
	e := errorOf(t, b.do(t, "POST", deploymentsPath(p.ID), modelBody("m", map[string]any{
		"upstream": map[string]any{"base_url": withUser, "model": "m"},
	})), http.StatusBadRequest)
	require.Contains(t, e.Error.Fields, "upstream.base_url")
	require.NotContains(t, e.Error.Message, "user:pass@")

	d := b.createDeployment(t, p.ID, modelBody("m", nil))
	path := deploymentsPath(p.ID) + "/" + d.ID.String()
	e = errorOf(t, b.do(t, "PATCH", path, map[string]any{"upstream": map[string]any{"base_url": "https://user@api.example.com/v1"}}), http.StatusBadRequest)
	require.Contains(t, e.Error.Fields, "upstream.base_url")
}
