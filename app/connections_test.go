package app_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/app"
	"github.com/budhq/bud/connection/slacktest"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/secrets"
)

func connectionsPath(projectID uuid.UUID) string {
	return "/api/projects/" + projectID.String() + "/connections"
}

// mcpBody is a valid mcp connection body; extra fields override its own.
func mcpBody(name, url string, extra map[string]any) map[string]any {
	body := map[string]any{
		"name":        name,
		"kind":        "mcp",
		"config":      map[string]any{"url": url},
		"credentials": map[string]any{"headers": map[string]any{"Authorization": "Bearer right-token"}},
	}
	for k, v := range extra {
		body[k] = v
	}
	return body
}

func (b *bundle) createConnection(t *testing.T, projectID uuid.UUID, body map[string]any) app.Connection {
	t.Helper()
	return decodeAs[app.Connection](t, b.do(t, "POST", connectionsPath(projectID), body), http.StatusCreated)
}

// connectionRow reads a connection's row as stored.
func (b *bundle) connectionRow(t *testing.T, c app.Connection) dbsqlc.Connection {
	t.Helper()
	row, err := dbsqlc.New(b.pool).GetConnection(context.Background(), dbsqlc.GetConnectionParams{ProjectID: c.ProjectID, ID: c.ID})
	require.NoError(t, err)
	return row
}

func TestConnectionCRUD(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	base := connectionsPath(p.ID)

	r := b.do(t, "POST", base, map[string]any{
		"name":   "docs",
		"kind":   "mcp",
		"config": map[string]any{"url": "https://mcp.example.com/mcp"},
		"credentials": map[string]any{"headers": map[string]any{
			"X-Api-Key": "hdr-value-1", "Authorization": "Bearer tok-value-1",
		}},
	})
	c := decodeAs[app.Connection](t, r, http.StatusCreated)
	require.Equal(t, base+"/"+c.ID.String(), r.header.Get("Location"))
	require.Equal(t, p.ID, c.ProjectID)
	require.Equal(t, "docs", c.Name)
	require.Equal(t, "mcp", c.Kind)
	require.False(t, c.CreatedAt.IsZero())

	// The exact shape: the transport filled in, header names sorted, never
	// a value.
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(r.body, &raw))
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	require.Equal(t, []string{"config", "created_at", "credentials", "id", "kind", "name", "project_id", "updated_at"}, keys)
	require.JSONEq(t, `{"url": "https://mcp.example.com/mcp", "transport": "streamable_http"}`, string(raw["config"]))
	require.JSONEq(t, `{"headers": ["Authorization", "X-Api-Key"], "token": false}`, string(raw["credentials"]))
	path := base + "/" + c.ID.String()

	got := decodeAs[app.Connection](t, b.do(t, "GET", path, nil), http.StatusOK)
	require.Equal(t, c.Config, got.Config)
	require.Equal(t, c.Credentials, got.Credentials)

	b.createConnection(t, p.ID, map[string]any{"name": "chat", "kind": "slack", "credentials": map[string]any{"token": "xoxb-1"}})
	list := decodeAs[page[app.Connection]](t, b.do(t, "GET", base, nil), http.StatusOK)
	require.EqualValues(t, 2, list.Total)
	require.Equal(t, 50, list.Limit)
	require.Len(t, list.Data, 2)
	require.Equal(t, c.ID, list.Data[0].ID, "oldest first")
	require.Equal(t, app.ConnectionCredentials{Headers: []string{}, Token: true}, list.Data[1].Credentials)
	list = decodeAs[page[app.Connection]](t, b.do(t, "GET", base+"?limit=1&offset=1", nil), http.StatusOK)
	require.EqualValues(t, 2, list.Total)
	require.Len(t, list.Data, 1)
	require.Equal(t, "chat", list.Data[0].Name)
	e := errorOf(t, b.do(t, "GET", base+"?limit=0", nil), http.StatusBadRequest)
	require.Contains(t, e.Error.Fields, "limit")

	// Renaming keeps the rest; the sealed credentials are kept as they are.
	sealed := b.connectionRow(t, c).CredentialsSealed
	got = decodeAs[app.Connection](t, b.do(t, "PATCH", path, map[string]any{"name": "docs-2"}), http.StatusOK)
	require.Equal(t, "docs-2", got.Name)
	require.Equal(t, c.Config, got.Config)
	require.Equal(t, c.Credentials, got.Credentials)
	require.Equal(t, sealed, b.connectionRow(t, c).CredentialsSealed)
	require.True(t, got.UpdatedAt.After(c.UpdatedAt) || got.UpdatedAt.Equal(c.UpdatedAt))

	// Sending the kind it has is fine (a client may PATCH back what it read).
	got = decodeAs[app.Connection](t, b.do(t, "PATCH", path, map[string]any{"kind": "mcp"}), http.StatusOK)
	require.Equal(t, "docs-2", got.Name)

	// config replaces whole.
	// Moving it elsewhere takes the credentials again (see
	// TestConnectionMoveNeedsCredentials).
	creds := map[string]any{"headers": map[string]any{"X-Api-Key": "hdr-value-1", "Authorization": "Bearer tok-value-1"}}
	got = decodeAs[app.Connection](t, b.do(t, "PATCH", path, map[string]any{"config": map[string]any{"url": "https://other.example.com/sse", "transport": "sse"}, "credentials": creds}), http.StatusOK)
	require.Equal(t, "https://other.example.com/sse", got.Config.URL)
	require.Equal(t, "sse", got.Config.Transport)
	require.Equal(t, c.Credentials, got.Credentials)
	got = decodeAs[app.Connection](t, b.do(t, "PATCH", path, map[string]any{"config": map[string]any{"url": "https://other.example.com/mcp"}, "credentials": creds}), http.StatusOK)
	require.Equal(t, "streamable_http", got.Config.Transport, "a replaced config takes the defaults again")

	// credentials replace the whole set; null keeps it; {} removes it.
	got = decodeAs[app.Connection](t, b.do(t, "PATCH", path, map[string]any{"credentials": map[string]any{"headers": map[string]any{"X-Token": "t-2"}}}), http.StatusOK)
	require.Equal(t, app.ConnectionCredentials{Headers: []string{"X-Token"}, Token: false}, got.Credentials)
	require.NotEqual(t, sealed, b.connectionRow(t, c).CredentialsSealed)
	got = decodeAs[app.Connection](t, b.do(t, "PATCH", path, map[string]any{"credentials": nil}), http.StatusOK)
	require.Equal(t, []string{"X-Token"}, got.Credentials.Headers)
	got = decodeAs[app.Connection](t, b.do(t, "PATCH", path, map[string]any{"credentials": map[string]any{}}), http.StatusOK)
	require.Equal(t, app.ConnectionCredentials{Headers: []string{}, Token: false}, got.Credentials)
	require.Nil(t, b.connectionRow(t, c).CredentialsSealed, "no credentials are stored as NULL")

	require.Equal(t, http.StatusNoContent, b.do(t, "DELETE", path, nil).status)
	errorOf(t, b.do(t, "GET", path, nil), http.StatusNotFound)
	errorOf(t, b.do(t, "DELETE", path, nil), http.StatusNotFound)
	errorOf(t, b.do(t, "PATCH", path, map[string]any{"name": "x"}), http.StatusNotFound)
	errorOf(t, b.do(t, "GET", path+"/tools", nil), http.StatusNotFound)
	list = decodeAs[page[app.Connection]](t, b.do(t, "GET", base, nil), http.StatusOK)
	require.EqualValues(t, 1, list.Total)
}

func TestConnectionKinds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")

	n := b.createConnection(t, p.ID, map[string]any{"name": "wiki", "kind": "notion", "credentials": map[string]any{"token": "ntn_abc"}})
	require.Equal(t, app.ConnectionCredentials{Headers: []string{}, Token: true}, n.Credentials)
	require.Empty(t, n.Config.BaseURL)

	op := map[string]any{
		"name": "get_weather", "description": "Weather of a city", "method": "GET", "path": "/weather/{city}",
		"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []any{"city"}},
	}
	h := b.createConnection(t, p.ID, map[string]any{
		"name": "weather", "kind": "http",
		"config":      map[string]any{"base_url": "https://api.weather.example", "operations": []any{op}},
		"credentials": map[string]any{"headers": map[string]any{"X-Api-Key": "k-123"}},
	})
	require.Len(t, h.Config.Operations, 1)
	require.Equal(t, "get_weather", h.Config.Operations[0].Name)
	require.JSONEq(t, `{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`, string(h.Config.Operations[0].Parameters))
	require.Equal(t, []string{"X-Api-Key"}, h.Credentials.Headers)

	// Without credentials at all, an mcp connection stores none.
	m := b.createConnection(t, p.ID, map[string]any{"name": "open", "kind": "mcp", "config": map[string]any{"url": "http://127.0.0.1:9/mcp"}})
	require.Equal(t, app.ConnectionCredentials{Headers: []string{}, Token: false}, m.Credentials)
	require.Nil(t, b.connectionRow(t, m).CredentialsSealed)
}

func TestConnectionValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	base := connectionsPath(p.ID)
	okOp := map[string]any{"name": "op", "method": "GET", "path": "/x"}

	for _, tc := range []struct {
		name   string
		body   any
		fields []string
	}{
		{"empty object", map[string]any{}, []string{"name", "kind"}},
		{"bad name", mcpBody("has space", "https://x.example/mcp", nil), []string{"name"}},
		{"long name", mcpBody(strings.Repeat("a", 101), "https://x.example/mcp", nil), []string{"name"}},
		{"unknown kind", map[string]any{"name": "c", "kind": "smtp"}, []string{"kind"}},
		{"mcp without url", mcpBody("c", "", nil), []string{"config.url"}},
		{"mcp url not http", mcpBody("c", "ftp://x.example/mcp", nil), []string{"config.url"}},
		{"mcp url with credentials", mcpBody("c", "https://user:pw@x.example/mcp", nil), []string{"config.url"}},
		{"mcp bad transport", mcpBody("c", "", map[string]any{"config": map[string]any{"url": "https://x.example/mcp", "transport": "websocket"}}), []string{"config.transport"}},
		{"mcp with a token", mcpBody("c", "https://x.example/mcp", map[string]any{"credentials": map[string]any{"token": "t-1"}}), []string{"credentials.token"}},
		{"mcp with base_url and operations", mcpBody("c", "", map[string]any{"config": map[string]any{"url": "https://x.example/mcp", "base_url": "https://x.example", "operations": []any{okOp}}}),
			[]string{"config.base_url", "config.operations"}},
		{"slack without token", map[string]any{"name": "c", "kind": "slack"}, []string{"credentials.token"}},
		{"slack token with a space", map[string]any{"name": "c", "kind": "slack", "credentials": map[string]any{"token": "xoxb 1"}}, []string{"credentials.token"}},
		{"slack token too long", map[string]any{"name": "c", "kind": "slack", "credentials": map[string]any{"token": strings.Repeat("x", 4097)}}, []string{"credentials.token"}},
		{"slack with headers and url", map[string]any{"name": "c", "kind": "slack", "config": map[string]any{"url": "https://x.example"}, "credentials": map[string]any{"token": "xoxb-1", "headers": map[string]any{"A": "b-1"}}},
			[]string{"config.url", "credentials.headers"}},
		{"notion bad base_url", map[string]any{"name": "c", "kind": "notion", "config": map[string]any{"base_url": "https://x.example/?q=1"}, "credentials": map[string]any{"token": "ntn_1"}}, []string{"config.base_url"}},
		{"http without base_url or operations", map[string]any{"name": "c", "kind": "http"}, []string{"config.base_url", "config.operations"}},
		{"http bad operation", map[string]any{"name": "c", "kind": "http", "config": map[string]any{"base_url": "https://x.example", "operations": []any{
			map[string]any{"name": "bad name", "method": "FETCH", "path": "x/{id}", "parameters": map[string]any{"type": "string"}},
		}}}, []string{"config.operations[0].name", "config.operations[0].method", "config.operations[0].path", "config.operations[0].parameters"}},
		{"http duplicate operation", map[string]any{"name": "c", "kind": "http", "config": map[string]any{"base_url": "https://x.example", "operations": []any{okOp, okOp}}}, []string{"config.operations[1].name"}},
		{"http placeholder not a parameter", map[string]any{"name": "c", "kind": "http", "config": map[string]any{"base_url": "https://x.example", "operations": []any{
			map[string]any{"name": "op", "method": "GET", "path": "/x/{id}"},
		}}}, []string{"config.operations[0].path"}},
		{"header name", mcpBody("c", "https://x.example/mcp", map[string]any{"credentials": map[string]any{"headers": map[string]any{"Bad Header": "v-1"}}}), []string{"credentials.headers.Bad Header"}},
		{"header set by the client", mcpBody("c", "https://x.example/mcp", map[string]any{"credentials": map[string]any{"headers": map[string]any{"Host": "evil.example"}}}), []string{"credentials.headers.Host"}},
		{"header value empty", mcpBody("c", "https://x.example/mcp", map[string]any{"credentials": map[string]any{"headers": map[string]any{"X-Key": ""}}}), []string{"credentials.headers.X-Key"}},
		{"header value with a line break", mcpBody("c", "https://x.example/mcp", map[string]any{"credentials": map[string]any{"headers": map[string]any{"X-Key": "s3cret\r\nX-Evil: 1"}}}), []string{"credentials.headers.X-Key"}},
		{"header value too long", mcpBody("c", "https://x.example/mcp", map[string]any{"credentials": map[string]any{"headers": map[string]any{"X-Key": strings.Repeat("v", 4097)}}}), []string{"credentials.headers.X-Key"}},
		{"header twice in two cases", mcpBody("c", "https://x.example/mcp", map[string]any{"credentials": map[string]any{"headers": map[string]any{"Authorization": "Bearer a-1", "authorization": "Bearer b-2"}}}), []string{"credentials.headers.authorization"}},
		{"every problem at once", map[string]any{"name": "", "kind": "mcp", "config": map[string]any{"transport": "x"}, "credentials": map[string]any{"token": "t-1"}},
			[]string{"name", "config.url", "config.transport", "credentials.token"}},
		{"unknown field", mcpBody("c", "https://x.example/mcp", map[string]any{"secret": "x"}), []string{"secret"}},
		{"unknown config field", mcpBody("c", "", map[string]any{"config": map[string]any{"url": "https://x.example/mcp", "timeout": 3}}), []string{"config.timeout"}},
		{"unknown credentials field", mcpBody("c", "https://x.example/mcp", map[string]any{"credentials": map[string]any{"api_key": "k"}}), []string{"credentials.api_key"}},
		{"wrong type", mcpBody("c", "https://x.example/mcp", map[string]any{"name": 5}), []string{"name"}},
		{"config not an object", mcpBody("c", "https://x.example/mcp", map[string]any{"config": "https://x.example/mcp"}), []string{"config"}},
	} {
		r := b.do(t, "POST", base, tc.body)
		e := errorOf(t, r, http.StatusBadRequest)
		require.Equal(t, "invalid", e.Error.Code, tc.name)
		got := make([]string, 0, len(e.Error.Fields))
		for f := range e.Error.Fields {
			got = append(got, f)
		}
		require.ElementsMatch(t, tc.fields, got, "%s: %s", tc.name, r.body)
		require.NotContains(t, string(r.body), "s3cret", tc.name)
	}

	// Malformed bodies are 400 without fields.
	for _, body := range []string{`{"name":`, `[]`, `{"name":"c"} {}`} {
		e := errorOf(t, b.do(t, "POST", base, body), http.StatusBadRequest)
		require.Equal(t, "invalid", e.Error.Code)
	}
	e := errorOf(t, b.do(t, "POST", base, `{"name":"c"}`, withHeader("Content-Type", "text/plain")), http.StatusBadRequest)
	require.Contains(t, e.Error.Message, "Content-Type")

	list := decodeAs[page[app.Connection]](t, b.do(t, "GET", base, nil), http.StatusOK)
	require.Zero(t, list.Total, "nothing was stored")
}

func TestConnectionPatchValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	s := b.createConnection(t, p.ID, map[string]any{"name": "chat", "kind": "slack", "credentials": map[string]any{"token": "xoxb-1"}})
	m := b.createConnection(t, p.ID, mcpBody("docs", "https://x.example/mcp", nil))
	sPath := connectionsPath(p.ID) + "/" + s.ID.String()
	mPath := connectionsPath(p.ID) + "/" + m.ID.String()
	sealed := b.connectionRow(t, s).CredentialsSealed

	for _, tc := range []struct {
		name, path string
		body       any
		fields     []string
	}{
		{"bad name", sPath, map[string]any{"name": "no good"}, []string{"name"}},
		{"kind changed", sPath, map[string]any{"kind": "notion"}, []string{"kind"}},
		// The merged connection is checked: removing the credentials
		// leaves a slack connection without its token.
		{"credentials removed", sPath, map[string]any{"credentials": map[string]any{}}, []string{"credentials.token"}},
		{"config not for the kind", sPath, map[string]any{"config": map[string]any{"url": "https://x.example"}}, []string{"config.url"}},
		{"config replaced without url", mPath, map[string]any{"config": map[string]any{"transport": "sse"}}, []string{"config.url"}},
		{"token on mcp", mPath, map[string]any{"credentials": map[string]any{"token": "t-1"}}, []string{"credentials.token"}},
		{"bad header", mPath, map[string]any{"credentials": map[string]any{"headers": map[string]any{"X-Key": "a\nb"}}}, []string{"credentials.headers.X-Key"}},
		{"unknown field", mPath, map[string]any{"project_id": p.ID}, []string{"project_id"}},
	} {
		e := errorOf(t, b.do(t, "PATCH", tc.path, tc.body), http.StatusBadRequest)
		got := make([]string, 0, len(e.Error.Fields))
		for f := range e.Error.Fields {
			got = append(got, f)
		}
		require.ElementsMatch(t, tc.fields, got, tc.name)
	}
	require.Equal(t, sealed, b.connectionRow(t, s).CredentialsSealed, "nothing was changed")
	got := decodeAs[app.Connection](t, b.do(t, "GET", mPath, nil), http.StatusOK)
	require.Equal(t, m.Config, got.Config)
	require.Equal(t, m.Credentials, got.Credentials)
	require.Equal(t, "docs", got.Name)
}

func TestConnectionNotFoundAcrossProjects(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p1 := b.createProject(t, "one")
	p2 := b.createProject(t, "two")
	c := b.createConnection(t, p1.ID, mcpBody("docs", "https://x.example/mcp", nil))

	absent := connectionsPath(p2.ID) + "/" + uuid.NewString()
	want := errorOf(t, b.do(t, "GET", absent, nil), http.StatusNotFound)
	require.Equal(t, "not_found", want.Error.Code)
	for _, path := range []string{
		connectionsPath(p2.ID) + "/" + c.ID.String(),    // another project's
		connectionsPath(p1.ID) + "/" + uuid.NewString(), // absent
		connectionsPath(p1.ID) + "/not-a-uuid",          // malformed
	} {
		for _, method := range []string{"GET", "PATCH", "DELETE"} {
			var body any
			if method == "PATCH" {
				body = map[string]any{"name": "stolen"}
			}
			e := errorOf(t, b.do(t, method, path, body), http.StatusNotFound)
			require.Equal(t, want.Error, e.Error, "%s %s", method, path)
		}
		e := errorOf(t, b.do(t, "GET", path+"/tools", nil), http.StatusNotFound)
		require.Equal(t, want.Error, e.Error, path+"/tools")
	}
	// A project that is not there, or not a UUID, is the project's 404.
	for _, path := range []string{connectionsPath(uuid.New()), "/api/projects/nope/connections"} {
		e := errorOf(t, b.do(t, "GET", path, nil), http.StatusNotFound)
		require.Equal(t, "project not found", e.Error.Message)
		errorOf(t, b.do(t, "POST", path, mcpBody("x", "https://x.example/mcp", nil)), http.StatusNotFound)
	}
	list := decodeAs[page[app.Connection]](t, b.do(t, "GET", connectionsPath(p2.ID), nil), http.StatusOK)
	require.Zero(t, list.Total)
	got := decodeAs[app.Connection](t, b.do(t, "GET", connectionsPath(p1.ID)+"/"+c.ID.String(), nil), http.StatusOK)
	require.Equal(t, "docs", got.Name, "untouched by the other project's requests")

	// Deleting the project deletes its connections.
	require.Equal(t, http.StatusNoContent, b.do(t, "DELETE", "/api/projects/"+p1.ID.String(), nil).status)
	_, err := dbsqlc.New(b.pool).GetConnection(context.Background(), dbsqlc.GetConnectionParams{ProjectID: p1.ID, ID: c.ID})
	require.Error(t, err)
}

func TestConnectionNameConflict(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	other := b.createProject(t, "other")
	b.createConnection(t, p.ID, mcpBody("docs", "https://x.example/mcp", nil))

	e := errorOf(t, b.do(t, "POST", connectionsPath(p.ID), map[string]any{"name": "docs", "kind": "slack", "credentials": map[string]any{"token": "xoxb-1"}}), http.StatusConflict)
	require.Equal(t, "conflict", e.Error.Code)
	require.Equal(t, map[string]string{"name": "is already taken"}, e.Error.Fields)
	require.Contains(t, e.Error.Message, `"docs"`)

	c2 := b.createConnection(t, p.ID, mcpBody("docs-2", "https://x.example/mcp", nil))
	e = errorOf(t, b.do(t, "PATCH", connectionsPath(p.ID)+"/"+c2.ID.String(), map[string]any{"name": "docs"}), http.StatusConflict)
	require.Equal(t, map[string]string{"name": "is already taken"}, e.Error.Fields)

	// Names are unique per project only.
	b.createConnection(t, other.ID, mcpBody("docs", "https://x.example/mcp", nil))
}

// TestConnectionCredentialsNeverLeave: the stored row holds no credential
// in clear, and no response carries one.
func TestConnectionCredentialsNeverLeave(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	p := b.createProject(t, "proj")
	base := connectionsPath(p.ID)
	secrets := []string{"tok-SECRET-0001", "hdr-SECRET-0002", "xoxb-SECRET-0003", "hdr-SECRET-0004"}

	var bodies []response
	keep := func(r response, status int) response {
		t.Helper()
		require.Equal(t, status, r.status, "body: %s", r.body)
		bodies = append(bodies, r)
		return r
	}
	r := keep(b.do(t, "POST", base, mcpBody("docs", "https://x.example/mcp", map[string]any{"credentials": map[string]any{"headers": map[string]any{
		"Authorization": "Bearer " + secrets[0], "X-Api-Key": secrets[1],
	}}})), http.StatusCreated)
	var m app.Connection
	require.NoError(t, json.Unmarshal(r.body, &m))
	r = keep(b.do(t, "POST", base, map[string]any{"name": "chat", "kind": "slack", "credentials": map[string]any{"token": secrets[2]}}), http.StatusCreated)
	var s app.Connection
	require.NoError(t, json.Unmarshal(r.body, &s))
	mPath, sPath := base+"/"+m.ID.String(), base+"/"+s.ID.String()
	keep(b.do(t, "GET", mPath, nil), http.StatusOK)
	keep(b.do(t, "GET", sPath, nil), http.StatusOK)
	keep(b.do(t, "GET", base, nil), http.StatusOK)
	keep(b.do(t, "PATCH", mPath, map[string]any{"name": "docs-2"}), http.StatusOK)
	keep(b.do(t, "PATCH", mPath, map[string]any{"credentials": map[string]any{"headers": map[string]any{"Authorization": "Bearer " + secrets[0], "X-Other": secrets[3]}}}), http.StatusOK)
	keep(b.do(t, "PATCH", sPath, map[string]any{"config": map[string]any{"base_url": "https://slack.example/api"}, "credentials": map[string]any{"token": secrets[2]}}), http.StatusOK)
	keep(b.do(t, "GET", base+"?limit=1", nil), http.StatusOK)
	for _, r := range bodies {
		for _, secret := range secrets {
			require.NotContains(t, string(r.body), secret)
		}
		for k, vs := range r.header {
			for _, v := range vs {
				for _, secret := range secrets {
					require.NotContains(t, v, secret, "header %s", k)
				}
			}
		}
	}

	// Every column of every row, as text and as bytes.
	rows, err := b.pool.Query(ctx, `SELECT row_to_json(c)::text, c.config::text, coalesce(c.credentials_sealed, ''::bytea) FROM connections c`)
	require.NoError(t, err)
	n := 0
	for rows.Next() {
		var asJSON, config string
		var sealed []byte
		require.NoError(t, rows.Scan(&asJSON, &config, &sealed))
		for _, secret := range append(secrets, "Bearer") {
			require.NotContains(t, asJSON, secret)
			require.NotContains(t, config, secret)
			require.NotContains(t, string(sealed), secret)
		}
		require.NotEmpty(t, sealed)
		n++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, 2, n)

	// The sealed value opens with the row's own id only: copied into
	// another row it is useless.
	row := b.connectionRow(t, m)
	plain, err := b.box.Open(row.CredentialsSealed, m.ID[:])
	require.NoError(t, err)
	require.JSONEq(t, `{"headers": {"Authorization": "Bearer `+secrets[0]+`", "X-Other": "`+secrets[3]+`"}}`, string(plain))
	_, err = b.box.Open(row.CredentialsSealed, s.ID[:])
	require.Error(t, err)

	for _, secret := range secrets {
		require.NotContains(t, b.logs.String(), secret)
	}
}

// mcpServer is an MCP server over streamable HTTP that answers only
// requests with the Authorization header want.
func mcpServer(t *testing.T, want string) string {
	t.Helper()
	server := mcp.NewServer(&mcp.Implementation{Name: "test", Version: "1"}, nil)
	type echoArgs struct {
		Text string `json:"text" jsonschema:"what to echo"`
	}
	mcp.AddTool(server, &mcp.Tool{Name: "echo", Description: "Echoes text back"}, func(_ context.Context, _ *mcp.CallToolRequest, in echoArgs) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
	})
	type sumArgs struct {
		A int `json:"a"`
		B int `json:"b"`
	}
	mcp.AddTool(server, &mcp.Tool{Name: "get-sum", Description: "Adds two numbers"}, func(_ context.Context, _ *mcp.CallToolRequest, in sumArgs) (*mcp.CallToolResult, any, error) {
		return nil, map[string]int{"sum": in.A + in.B}, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != want {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/mcp"
}

type toolsOut struct {
	Data []struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		InputSchema json.RawMessage `json:"input_schema"`
	} `json:"data"`
	ConnectionID uuid.UUID `json:"connection_id"`
}

func TestConnectionToolsMCP(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	url := mcpServer(t, "Bearer right-token")

	c := b.createConnection(t, p.ID, mcpBody("docs", url, nil))
	r := b.do(t, "GET", connectionsPath(p.ID)+"/"+c.ID.String()+"/tools", nil)
	out := decodeAs[toolsOut](t, r, http.StatusOK)
	require.Equal(t, c.ID, out.ConnectionID)
	require.Len(t, out.Data, 2)
	byName := map[string]int{}
	for i, tool := range out.Data {
		byName[tool.Name] = i
	}
	echo := out.Data[byName["echo"]]
	require.Equal(t, "Echoes text back", echo.Description)
	var schema struct {
		Type       string                    `json:"type"`
		Properties map[string]map[string]any `json:"properties"`
	}
	require.NoError(t, json.Unmarshal(echo.InputSchema, &schema))
	require.Equal(t, "object", schema.Type)
	require.Equal(t, "string", schema.Properties["text"]["type"])
	require.Equal(t, "Adds two numbers", out.Data[byName["get-sum"]].Description)
	var raw map[string]any
	require.NoError(t, json.Unmarshal(r.body, &raw))
	require.ElementsMatch(t, []string{"data", "connection_id"}, keysOf(raw))
	require.ElementsMatch(t, []string{"name", "description", "input_schema"}, keysOf(raw["data"].([]any)[0].(map[string]any)))

	// The wrong header: the server refuses it, and the caller is told so,
	// without the value.
	wrong := b.createConnection(t, p.ID, mcpBody("wrong", url, map[string]any{"credentials": map[string]any{"headers": map[string]any{"Authorization": "Bearer wrong-SECRET-9"}}}))
	r = b.do(t, "GET", connectionsPath(p.ID)+"/"+wrong.ID.String()+"/tools", nil)
	e := errorOf(t, r, http.StatusUnprocessableEntity)
	require.Equal(t, "unprocessable", e.Error.Code)
	require.Contains(t, e.Error.Message, "refused its credentials")
	require.Contains(t, e.Error.Message, "401")
	require.NotContains(t, string(r.body), "wrong-SECRET-9")
	require.Empty(t, e.Error.RequestID, "not an internal error")

	// No header at all is refused the same way.
	none := b.createConnection(t, p.ID, mcpBody("none", url, map[string]any{"credentials": nil}))
	e = errorOf(t, b.do(t, "GET", connectionsPath(p.ID)+"/"+none.ID.String()+"/tools", nil), http.StatusUnprocessableEntity)
	require.Contains(t, e.Error.Message, "refused its credentials")
	require.NotContains(t, b.logs.String(), "wrong-SECRET-9")
}

func TestConnectionToolsUnreachable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	// A port that was just free: nothing listens on it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	c := b.createConnection(t, p.ID, mcpBody("gone", "http://"+addr+"/mcp", nil))
	r := b.do(t, "GET", connectionsPath(p.ID)+"/"+c.ID.String()+"/tools", nil)
	e := errorOf(t, r, http.StatusServiceUnavailable)
	require.Equal(t, "unavailable", e.Error.Code)
	require.Contains(t, e.Error.Message, "could not be reached")
	require.Contains(t, e.Error.Message, "connection refused", "the message says why")
	require.NotContains(t, string(r.body), "right-token")
}

func TestConnectionToolsSlack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	slack := slacktest.New(t, "xoxb-good-token")

	bad := b.createConnection(t, p.ID, map[string]any{"name": "bad", "kind": "slack", "config": map[string]any{"base_url": slack.URL}, "credentials": map[string]any{"token": "xoxb-bad-SECRET"}})
	r := b.do(t, "GET", connectionsPath(p.ID)+"/"+bad.ID.String()+"/tools", nil)
	e := errorOf(t, r, http.StatusUnprocessableEntity)
	require.Equal(t, "unprocessable", e.Error.Code)
	require.Contains(t, e.Error.Message, "refused its credentials")
	require.NotContains(t, string(r.body), "xoxb-bad-SECRET")

	good := b.createConnection(t, p.ID, map[string]any{"name": "good", "kind": "slack", "config": map[string]any{"base_url": slack.URL}, "credentials": map[string]any{"token": "xoxb-good-token"}})
	out := decodeAs[toolsOut](t, b.do(t, "GET", connectionsPath(p.ID)+"/"+good.ID.String()+"/tools", nil), http.StatusOK)
	require.Equal(t, good.ID, out.ConnectionID)
	require.NotEmpty(t, out.Data)
	var names []string
	for _, tool := range out.Data {
		require.NotEmpty(t, tool.Name)
		require.NotEmpty(t, tool.InputSchema)
		names = append(names, tool.Name)
	}
	require.Equal(t, []string{"post_message", "list_channels", "channel_history", "lookup_user_by_email"}, names)
	// The listing checked the token with Slack, with the good token.
	reqs := slack.Requests()
	last := reqs[len(reqs)-1]
	require.Equal(t, "/auth.test", last.Path)
	require.Equal(t, "Bearer xoxb-good-token", last.Header.Get("Authorization"))
}

func keysOf[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// TestPromptVersionNamesConnection: a prompt's connection tool must name
// one of its project's connections.
func TestPromptVersionNamesConnection(t *testing.T) {
	t.Parallel()
	b, p := promptSetup(t)
	pr := b.createPrompt(t, p.ID, "greeter", nil)
	c := b.createConnection(t, p.ID, mcpBody("docs", "https://x.example/mcp", nil))
	other := b.createProject(t, "other")
	foreign := b.createConnection(t, other.ID, mcpBody("docs", "https://x.example/mcp", nil))
	versions := "/api/prompts/" + pr.ID.String() + "/versions"
	withTool := func(id string) map[string]any {
		return map[string]any{"document": promptDoc("llm", map[string]any{"tools": []any{map[string]any{"type": "connection", "connection_id": id}}})}
	}

	// Unknown, and another project's, read alike. A document that breaks
	// a rule of its meaning is 422 in this API, as an unknown deployment is.
	for _, id := range []string{uuid.NewString(), foreign.ID.String()} {
		e := errorOf(t, b.do(t, "POST", versions, withTool(id)), http.StatusUnprocessableEntity)
		require.Equal(t, map[string]string{"document.tools[0].connection_id": "no connection with this id in this project"}, e.Error.Fields)
	}
	v := decodeAs[versionOut](t, b.do(t, "POST", versions, withTool(c.ID.String())), http.StatusCreated)
	require.EqualValues(t, 2, v.Version)
	tools := v.Document["tools"].([]any)
	require.Equal(t, c.ID.String(), tools[0].(map[string]any)["connection_id"])

	// The same check applies when a prompt is created.
	e := errorOf(t, b.do(t, "POST", "/api/projects/"+p.ID.String()+"/prompts", map[string]any{"name": "p2", "document": withTool(uuid.NewString())["document"]}), http.StatusUnprocessableEntity)
	require.Contains(t, e.Error.Fields, "document.tools[0].connection_id")
}

// TestConnectionSealedUnderAnotherKey: credentials that do not open with
// the server's key (sealed under another, say BUD_ENCRYPTION_KEY changed
// without `bud rotate-key`) leave the connection readable, say so, refuse
// what needs them with a 409, and are mended by sending them again.
func TestConnectionSealedUnderAnotherKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	c := b.createConnection(t, p.ID, mcpBody("docs", "https://mcp.example.com/mcp", nil))
	path := connectionsPath(p.ID) + "/" + c.ID.String()
	key, err := secrets.ParseKey(secrets.NewKey())
	require.NoError(t, err)
	other, err := secrets.NewBox(key)
	require.NoError(t, err)
	row := b.connectionRow(t, c)
	_, err = dbsqlc.New(b.pool).UpdateConnection(t.Context(), dbsqlc.UpdateConnectionParams{ProjectID: row.ProjectID, ID: row.ID, Name: row.Name,
		Config: row.Config, CredentialsSealed: other.Seal([]byte(`{"headers":{"Authorization":"Bearer right-token"}}`), row.ID[:])})
	require.NoError(t, err)

	got := decodeAs[app.Connection](t, b.do(t, "GET", path, nil), http.StatusOK)
	require.Equal(t, c.Config, got.Config)
	require.Empty(t, got.Credentials.Headers)
	require.Contains(t, got.Credentials.Error, "BUD_ENCRYPTION_KEY")
	list := decodeAs[page[app.Connection]](t, b.do(t, "GET", connectionsPath(p.ID), nil), http.StatusOK)
	require.Len(t, list.Data, 1)
	require.Equal(t, got.Credentials, list.Data[0].Credentials)

	e := errorOf(t, b.do(t, "GET", path+"/tools", nil), http.StatusConflict)
	require.Contains(t, e.Error.Fields, "credentials")
	e = errorOf(t, b.do(t, "PATCH", path, map[string]any{"name": "docs-2"}), http.StatusConflict)
	require.Contains(t, e.Error.Fields, "credentials")

	got = decodeAs[app.Connection](t, b.do(t, "PATCH", path, map[string]any{
		"credentials": map[string]any{"headers": map[string]any{"Authorization": "Bearer new-token"}}}), http.StatusOK)
	require.Equal(t, app.ConnectionCredentials{Headers: []string{"Authorization"}}, got.Credentials)
	got = decodeAs[app.Connection](t, b.do(t, "GET", path, nil), http.StatusOK)
	require.Empty(t, got.Credentials.Error)
}

// TestConnectionMoveNeedsCredentials checks stored credentials do not
// follow a connection to another URL: whoever holds the admin token could
// otherwise point it at their own server and read them there.
func TestConnectionMoveNeedsCredentials(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	m := b.createConnection(t, p.ID, mcpBody("docs", "https://x.example/mcp", nil))
	s := b.createConnection(t, p.ID, map[string]any{"name": "chat", "kind": "slack", "credentials": map[string]any{"token": "xoxb-1"}})
	h := b.createConnection(t, p.ID, map[string]any{
		"name": "api", "kind": "http",
		"config":      map[string]any{"base_url": "https://api.example/v1", "operations": []any{map[string]any{"name": "get", "method": "GET", "path": "/items"}}},
		"credentials": map[string]any{"headers": map[string]any{"Authorization": "Bearer h-1"}},
	})
	mPath := connectionsPath(p.ID) + "/" + m.ID.String()
	sPath := connectionsPath(p.ID) + "/" + s.ID.String()
	hPath := connectionsPath(p.ID) + "/" + h.ID.String()
	ops := []any{map[string]any{"name": "get", "method": "GET", "path": "/items"}}

	for _, tc := range []struct {
		name, path, field string
		config            map[string]any
	}{
		{"mcp host", mPath, "config.url", map[string]any{"url": "https://attacker.example/mcp"}},
		// Servers on a shared host are told apart by path.
		{"mcp path", mPath, "config.url", map[string]any{"url": "https://x.example/other"}},
		{"slack base url", sPath, "config.base_url", map[string]any{"base_url": "https://attacker.example/api"}},
		{"http base url", hPath, "config.base_url", map[string]any{"base_url": "https://attacker.example/v1", "operations": ops}},
	} {
		sealed := b.connectionRow(t, connectionOf(t, b, tc.path)).CredentialsSealed
		e := errorOf(t, b.do(t, "PATCH", tc.path, map[string]any{"config": tc.config}), http.StatusUnprocessableEntity)
		require.Equal(t, "unprocessable", e.Error.Code, tc.name)
		require.Contains(t, e.Error.Fields, "credentials", tc.name)
		require.Contains(t, e.Error.Fields["credentials"], tc.field, tc.name)
		require.Equal(t, sealed, b.connectionRow(t, connectionOf(t, b, tc.path)).CredentialsSealed, "%s: nothing changed", tc.name)
	}
	got := decodeAs[app.Connection](t, b.do(t, "GET", mPath, nil), http.StatusOK)
	require.Equal(t, m.Config, got.Config)

	// Sent again, they go with it.
	got = decodeAs[app.Connection](t, b.do(t, "PATCH", mPath, map[string]any{
		"config":      map[string]any{"url": "https://y.example/mcp"},
		"credentials": map[string]any{"headers": map[string]any{"Authorization": "Bearer y-1"}},
	}), http.StatusOK)
	require.Equal(t, "https://y.example/mcp", got.Config.URL)
	require.Equal(t, []string{"Authorization"}, got.Credentials.Headers)
	got = decodeAs[app.Connection](t, b.do(t, "PATCH", sPath, map[string]any{
		"config": map[string]any{"base_url": "https://slack.example/api"}, "credentials": map[string]any{"token": "xoxb-2"},
	}), http.StatusOK)
	require.Equal(t, "https://slack.example/api", got.Config.BaseURL)

	// The same URL, or a config change that does not move it, keeps them.
	got = decodeAs[app.Connection](t, b.do(t, "PATCH", mPath, map[string]any{"config": map[string]any{"url": "https://y.example/mcp", "transport": "sse"}}), http.StatusOK)
	require.Equal(t, []string{"Authorization"}, got.Credentials.Headers)

	// Without credentials stored, nothing needs sending.
	got = decodeAs[app.Connection](t, b.do(t, "PATCH", hPath, map[string]any{"credentials": map[string]any{}}), http.StatusOK)
	require.Empty(t, got.Credentials.Headers)
	got = decodeAs[app.Connection](t, b.do(t, "PATCH", hPath, map[string]any{"config": map[string]any{"base_url": "https://other.example/v1", "operations": ops}}), http.StatusOK)
	require.Equal(t, "https://other.example/v1", got.Config.BaseURL)
}

// connectionOf reads the connection at path.
func connectionOf(t *testing.T, b *bundle, path string) app.Connection {
	t.Helper()
	return decodeAs[app.Connection](t, b.do(t, "GET", path, nil), http.StatusOK)
}
