package app_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
)

func TestProjectCRUD(t *testing.T) {
	t.Parallel()
	b := setup(t)

	r := b.do(t, "POST", "/api/projects", map[string]any{"name": "alpha", "description": "the first"})
	p := decodeAs[bud.Project](t, r, http.StatusCreated)
	require.NotEqual(t, uuid.Nil, p.ID)
	require.Equal(t, "alpha", p.Name)
	require.Equal(t, "the first", p.Description)
	require.False(t, p.CreatedAt.IsZero())
	require.Equal(t, "/api/projects/"+p.ID.String(), r.header.Get("Location"))
	path := "/api/projects/" + p.ID.String()

	got := decodeAs[bud.Project](t, b.do(t, "GET", path, nil), http.StatusOK)
	require.Equal(t, p.ID, got.ID)
	require.Equal(t, p.Name, got.Name)

	// A PATCH changes only what it names.
	got = decodeAs[bud.Project](t, b.do(t, "PATCH", path, map[string]any{"description": "renamed soon"}), http.StatusOK)
	require.Equal(t, "alpha", got.Name)
	require.Equal(t, "renamed soon", got.Description)
	got = decodeAs[bud.Project](t, b.do(t, "PATCH", path, map[string]any{"name": "beta"}), http.StatusOK)
	require.Equal(t, "beta", got.Name)
	require.Equal(t, "renamed soon", got.Description)
	require.False(t, got.UpdatedAt.Before(got.CreatedAt))
	got = decodeAs[bud.Project](t, b.do(t, "PATCH", path, map[string]any{}), http.StatusOK)
	require.Equal(t, "beta", got.Name)

	list := decodeAs[page[bud.Project]](t, b.do(t, "GET", "/api/projects", nil), http.StatusOK)
	require.EqualValues(t, 1, list.Total)
	require.Len(t, list.Data, 1)
	require.Equal(t, "beta", list.Data[0].Name)

	require.Equal(t, http.StatusNoContent, b.do(t, "DELETE", path, nil).status)
	for _, method := range []string{"GET", "DELETE"} {
		require.Equal(t, "not_found", errorOf(t, b.do(t, method, path, nil), http.StatusNotFound).Error.Code)
	}
	errorOf(t, b.do(t, "PATCH", path, map[string]any{"name": "gamma"}), http.StatusNotFound)
}

func TestProjectPagination(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var ids []uuid.UUID
	for i := range 5 {
		ids = append(ids, b.createProject(t, fmt.Sprintf("p%d", i)).ID)
	}

	list := decodeAs[page[bud.Project]](t, b.do(t, "GET", "/api/projects", nil), http.StatusOK)
	require.Equal(t, page[bud.Project]{Data: list.Data, Total: 5, Limit: 50, Offset: 0}, list)
	require.Len(t, list.Data, 5)

	list = decodeAs[page[bud.Project]](t, b.do(t, "GET", "/api/projects?limit=2&offset=1", nil), http.StatusOK)
	require.EqualValues(t, 5, list.Total)
	require.Equal(t, 2, list.Limit)
	require.Equal(t, 1, list.Offset)
	require.Equal(t, []uuid.UUID{ids[1], ids[2]}, []uuid.UUID{list.Data[0].ID, list.Data[1].ID}, "in creation order")

	list = decodeAs[page[bud.Project]](t, b.do(t, "GET", "/api/projects?limit=200&offset=4", nil), http.StatusOK)
	require.Len(t, list.Data, 1)
	require.Equal(t, ids[4], list.Data[0].ID)

	r := b.do(t, "GET", "/api/projects?offset=10", nil)
	require.JSONEq(t, `{"data":[],"total":5,"limit":50,"offset":10}`, string(r.body), "past the end is an empty list, not null")

	for query, fields := range map[string][]string{
		"limit=0":           {"limit"},
		"limit=201":         {"limit"},
		"limit=x":           {"limit"},
		"limit=1.5":         {"limit"},
		"offset=-1":         {"offset"},
		"offset=ten":        {"offset"},
		"offset=9999999999": {"offset"},
		"limit=-1&offset=x": {"limit", "offset"},
	} {
		e := errorOf(t, b.do(t, "GET", "/api/projects?"+query, nil), http.StatusBadRequest)
		require.Equal(t, "invalid", e.Error.Code, query)
		for _, f := range fields {
			require.Contains(t, e.Error.Fields, f, query)
		}
	}
}

func TestProjectNameConflict(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createProject(t, "taken")

	e := errorOf(t, b.do(t, "POST", "/api/projects", map[string]any{"name": "taken"}), http.StatusConflict)
	require.Equal(t, "conflict", e.Error.Code)
	require.Contains(t, e.Error.Fields, "name")

	other := b.createProject(t, "free")
	e = errorOf(t, b.do(t, "PATCH", "/api/projects/"+other.ID.String(), map[string]any{"name": "taken"}), http.StatusConflict)
	require.Contains(t, e.Error.Fields, "name")

	// Renaming a project to its own name is no clash.
	decodeAs[bud.Project](t, b.do(t, "PATCH", "/api/projects/"+other.ID.String(), map[string]any{"name": "free"}), http.StatusOK)
}

func TestDeleteProjectCascades(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	q := dbsqlc.New(b.pool)
	doomed := b.createProject(t, "doomed")
	kept := b.createProject(t, "kept")
	for _, p := range []bud.Project{doomed, kept} {
		b.createDeployment(t, p.ID, modelBody("d1", nil))
		b.createDeployment(t, p.ID, modelBody("d2", map[string]any{
			"upstream": map[string]any{"base_url": "https://api.example.com/v1", "model": "m", "api_key": "sk-provider"},
		}))
	}
	doomedKey := b.createKey(t, doomed.ID, "ci")
	keptKey := b.createKey(t, kept.ID, "ci")

	require.Equal(t, http.StatusNoContent, b.do(t, "DELETE", "/api/projects/"+doomed.ID.String(), nil).status)

	n, err := q.CountDeployments(ctx, doomed.ID)
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = q.CountAPIKeys(ctx, doomed.ID)
	require.NoError(t, err)
	require.Zero(t, n)
	_, err = q.GetAPIKeyByHash(ctx, bud.HashAPIKey(doomedKey.Secret))
	require.True(t, db.IsNoRows(err), "a deleted project's key can no longer be found to authenticate: %v", err)

	n, err = q.CountDeployments(ctx, kept.ID)
	require.NoError(t, err)
	require.EqualValues(t, 2, n)
	_, err = q.GetAPIKeyByHash(ctx, bud.HashAPIKey(keptKey.Secret))
	require.NoError(t, err)

	// Everything under the deleted project is gone from the API too.
	base := "/api/projects/" + doomed.ID.String()
	for _, path := range []string{base, base + "/deployments", base + "/api-keys", base + "/api-keys/" + doomedKey.ID.String()} {
		errorOf(t, b.do(t, "GET", path, nil), http.StatusNotFound)
	}
}

func TestUnknownProjectIsNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	absent := "/api/projects/" + uuid.NewString()
	want := errorOf(t, b.do(t, "GET", absent, nil), http.StatusNotFound)
	require.Equal(t, "not_found", want.Error.Code)

	for _, base := range []string{absent, "/api/projects/not-a-uuid", "/api/projects/" + uuid.NewString()} {
		for _, c := range []struct{ method, path, body string }{
			{"GET", base, ""},
			{"PATCH", base, `{"name":"x"}`},
			{"DELETE", base, ""},
			{"GET", base + "/deployments", ""},
			{"POST", base + "/deployments", `{"name":"x","upstream":{"base_url":"https://a.example","model":"m"}}`},
			{"GET", base + "/deployments/" + uuid.NewString(), ""},
			{"GET", base + "/api-keys", ""},
			{"POST", base + "/api-keys", `{"name":"x"}`},
			{"DELETE", base + "/api-keys/" + uuid.NewString(), ""},
		} {
			var body any
			if c.body != "" {
				body = c.body
			}
			e := errorOf(t, b.do(t, c.method, c.path, body), http.StatusNotFound)
			require.Equal(t, want.Error, e.Error, "%s %s", c.method, c.path)
		}
	}
}
