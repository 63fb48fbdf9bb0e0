package app_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
	"github.com/budhq/bud/app"
	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/metrics"
	"github.com/budhq/bud/secrets"
	"github.com/budhq/bud/statestore"
	"github.com/budhq/bud/statestore/statestoretest"
)

// bundle is one API over its own freshly migrated schema.
type bundle struct {
	handler http.Handler
	token   string
	pool    *pgxpool.Pool
	box     *secrets.Box
	logs    *bytes.Buffer
}

// setup builds an API for one test; opts adjust its configuration.
func TestMain(m *testing.M) { os.Exit(stopRunEnv(statestoretest.Main(m))) }

func setup(t *testing.T, opts ...func(*app.Config)) *bundle {
	t.Helper()
	pool, _ := dbtest.NewSchema(t)
	key, err := secrets.ParseKey(secrets.NewKey())
	require.NoError(t, err)
	box, err := secrets.NewBox(key)
	require.NoError(t, err)
	var tok [16]byte
	_, _ = rand.Read(tok[:])

	// Handlers run on the test's goroutine (ServeHTTP is called directly),
	// so a plain buffer is safe; it is shown only when the test fails.
	logs := &bytes.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	cfg := app.Config{
		Pool:       pool,
		Box:        box,
		AdminToken: "admin-" + hex.EncodeToString(tok[:]),
		Logger:     slog.New(slog.NewTextHandler(logs, nil)),
	}
	for _, o := range opts {
		o(&cfg)
	}
	// Started only for the tests that need it: daprd is slow to start and
	// may not be built.
	if cfg.Documents == nil {
		cfg.Documents = statestoretest.Store(t)
	}
	h, err := app.New(cfg)
	require.NoError(t, err)
	return &bundle{handler: h, token: cfg.AdminToken, pool: pool, box: box, logs: logs}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request with the admin token. A string body is sent as is,
// anything else as JSON; mods may change the request last.
func (b *bundle) do(t *testing.T, method, path string, body any, mods ...func(*http.Request)) response {
	t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	default:
		data, err := json.Marshal(v)
		require.NoError(t, err)
		rd = bytes.NewReader(data)
	}
	req := httptest.NewRequest(method, path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	for _, m := range mods {
		m(req)
	}
	rec := httptest.NewRecorder()
	b.handler.ServeHTTP(rec, req)
	return response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

func withHeader(k, v string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set(k, v) }
}

func withoutAuth(r *http.Request) { r.Header.Del("Authorization") }

// decodeAs decodes a response body of the given status.
func decodeAs[T any](t *testing.T, r response, status int) T {
	t.Helper()
	require.Equal(t, status, r.status, "body: %s", r.body)
	var v T
	require.NoError(t, json.Unmarshal(r.body, &v), "body: %s", r.body)
	return v
}

// apiError is the error envelope as a client sees it.
type apiError struct {
	Error struct {
		Code      string            `json:"code"`
		Message   string            `json:"message"`
		Fields    map[string]string `json:"fields"`
		RequestID string            `json:"request_id"`
	} `json:"error"`
}

func errorOf(t *testing.T, r response, status int) apiError {
	t.Helper()
	e := decodeAs[apiError](t, r, status)
	require.NotEmpty(t, e.Error.Code)
	require.NotEmpty(t, e.Error.Message)
	return e
}

type page[T any] struct {
	Data   []T   `json:"data"`
	Total  int64 `json:"total"`
	Limit  int   `json:"limit"`
	Offset int   `json:"offset"`
}

type createdKey struct {
	bud.APIKey
	Secret string `json:"secret"`
}

func (b *bundle) createProject(t *testing.T, name string) bud.Project {
	t.Helper()
	return decodeAs[bud.Project](t, b.do(t, "POST", "/api/projects", map[string]any{"name": name, "description": "for " + name}), http.StatusCreated)
}

// modelBody is a valid deployment body; extra fields override its own.
func modelBody(name string, extra map[string]any) map[string]any {
	body := map[string]any{
		"name":     name,
		"kind":     "model",
		"upstream": map[string]any{"base_url": "https://api.example.com/v1", "model": "gpt-test"},
	}
	for k, v := range extra {
		body[k] = v
	}
	return body
}

func (b *bundle) createDeployment(t *testing.T, projectID uuid.UUID, body map[string]any) bud.Deployment {
	t.Helper()
	return decodeAs[bud.Deployment](t, b.do(t, "POST", "/api/projects/"+projectID.String()+"/deployments", body), http.StatusCreated)
}

func (b *bundle) createKey(t *testing.T, projectID uuid.UUID, name string) createdKey {
	t.Helper()
	return decodeAs[createdKey](t, b.do(t, "POST", "/api/projects/"+projectID.String()+"/api-keys", map[string]any{"name": name}), http.StatusCreated)
}

func TestNewRequiresConfig(t *testing.T) {
	t.Parallel()
	key, err := secrets.ParseKey(secrets.NewKey())
	require.NoError(t, err)
	box, err := secrets.NewBox(key)
	require.NoError(t, err)
	pool := new(pgxpool.Pool) // never used: New fails first or only stores it
	longToken := strings.Repeat("t", app.MinAdminTokenLen)
	docs := new(statestore.Store)

	for name, cfg := range map[string]app.Config{
		"no pool":       {Box: box, AdminToken: longToken, Documents: docs},
		"no box":        {Pool: pool, AdminToken: longToken, Documents: docs},
		"no token":      {Pool: pool, Box: box, Documents: docs},
		"short token":   {Pool: pool, Box: box, AdminToken: longToken[:app.MinAdminTokenLen-1], Documents: docs},
		"no documents":  {Pool: pool, Box: box, AdminToken: longToken},
		"negative body": {Pool: pool, Box: box, AdminToken: longToken, Documents: docs, MaxBodyBytes: -1},
	} {
		_, err := app.New(cfg)
		require.Error(t, err, name)
	}
	_, err = app.New(app.Config{Pool: pool, Box: box, AdminToken: longToken, Documents: docs, Registry: prometheus.NewRegistry()})
	require.NoError(t, err)
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, "GET", "/healthz", nil, withoutAuth)
	require.Equal(t, map[string]string{"status": "ok"}, decodeAs[map[string]string](t, r, http.StatusOK))
	require.NotEmpty(t, r.header.Get("X-Request-Id"))
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	var readyErr error
	b := setup(t, func(c *app.Config) {
		c.Ready = func(context.Context) error { return readyErr }
	})

	type readiness struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	r := decodeAs[readiness](t, b.do(t, "GET", "/readyz", nil, withoutAuth), http.StatusOK)
	require.Equal(t, readiness{Status: "ok", Checks: map[string]string{"postgres": "ok", "ready": "ok"}}, r)

	readyErr = errors.New("temporal at 10.1.2.3:7233 refused")
	resp := b.do(t, "GET", "/readyz", nil, withoutAuth)
	r = decodeAs[readiness](t, resp, http.StatusServiceUnavailable)
	require.Equal(t, readiness{Status: "unavailable", Checks: map[string]string{"postgres": "ok", "ready": "failed"}}, r)
	require.NotContains(t, string(resp.body), "10.1.2.3")
	require.Contains(t, b.logs.String(), "10.1.2.3", "the cause is logged")
}

func TestReadyzWithoutDatabase(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.pool.Close()
	resp := b.do(t, "GET", "/readyz", nil, withoutAuth)
	require.Equal(t, http.StatusServiceUnavailable, resp.status)
	require.JSONEq(t, `{"status":"unavailable","checks":{"postgres":"failed"}}`, string(resp.body))
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := metrics.NewRegistry()
	b := setup(t, func(c *app.Config) { c.Registry = reg })
	require.Equal(t, http.StatusOK, b.do(t, "GET", "/api/projects", nil).status)
	// The metrics name every project: the handler does not serve them, its
	// caller serves the registry on a listener of its own.
	require.Equal(t, http.StatusNotFound, b.do(t, "GET", "/metrics", nil, withoutAuth).status)
	rec := httptest.NewRecorder()
	metrics.Handler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), `bud_app_http_requests_total{method="GET",route="/api/projects",status="200"} 1`)
}

func TestAdminAuth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for name, mod := range map[string]func(*http.Request){
		"missing":      withoutAuth,
		"wrong token":  withHeader("Authorization", "Bearer nope"),
		"token prefix": withHeader("Authorization", "Bearer "+b.token[:len(b.token)-1]),
		"basic scheme": withHeader("Authorization", "Basic "+b.token),
		"bare token":   withHeader("Authorization", b.token),
		"empty bearer": withHeader("Authorization", "Bearer "),
	} {
		for _, path := range []string{"/api/projects", "/api/projects/" + uuid.NewString(), "/api/no-such-route"} {
			r := b.do(t, "GET", path, nil, mod)
			e := errorOf(t, r, http.StatusUnauthorized)
			require.Equal(t, "unauthorized", e.Error.Code, "%s %s", name, path)
			require.Contains(t, r.header.Get("WWW-Authenticate"), "Bearer")
		}
	}
	require.Equal(t, http.StatusOK, b.do(t, "GET", "/api/projects", nil, withHeader("Authorization", "bearer "+b.token)).status,
		"the scheme is case-insensitive")
}

func TestInternalErrorHidesCause(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.pool.Close()

	r := b.do(t, "GET", "/api/projects", nil)
	e := errorOf(t, r, http.StatusInternalServerError)
	id := r.header.Get("X-Request-Id")
	require.NotEmpty(t, id)
	require.Equal(t, "internal", e.Error.Code)
	require.Equal(t, id, e.Error.RequestID)
	require.Equal(t, "internal error (request id "+id+")", e.Error.Message)
	require.Empty(t, e.Error.Fields)
	require.NotContains(t, string(r.body), "closed")
	require.NotContains(t, string(r.body), "projects:")

	logs := b.logs.String()
	require.Contains(t, logs, "request_id="+id)
	require.Contains(t, logs, "count projects", "the log names the operation")
	require.Contains(t, logs, "closed pool", "the log keeps the cause")
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, "GET", "/healthz", nil, withHeader("X-Request-Id", "edge-1234.abc"))
	require.Equal(t, "edge-1234.abc", r.header.Get("X-Request-Id"), "a caller's id is kept")

	r = b.do(t, "GET", "/healthz", nil, withHeader("X-Request-Id", "bad id\nforged=1"))
	require.NotContains(t, r.header.Get("X-Request-Id"), "forged")
	require.NotEmpty(t, r.header.Get("X-Request-Id"))

	r1 := b.do(t, "GET", "/healthz", nil)
	r2 := b.do(t, "GET", "/healthz", nil)
	require.NotEqual(t, r1.header.Get("X-Request-Id"), r2.header.Get("X-Request-Id"))
}

func TestUnknownRouteAndMethod(t *testing.T) {
	t.Parallel()
	b := setup(t)
	e := errorOf(t, b.do(t, "GET", "/nope", nil), http.StatusNotFound)
	require.Equal(t, "not_found", e.Error.Code)

	e = errorOf(t, b.do(t, "PUT", "/api/projects", `{}`), http.StatusMethodNotAllowed)
	require.Equal(t, "method_not_allowed", e.Error.Code)
}

// TestConsoleServesNonAPIPaths: the console answers GETs outside /api, while
// an unknown /api path and a POST elsewhere stay the API's JSON 404.
func TestConsoleServesNonAPIPaths(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *app.Config) {
		c.Console = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "console "+r.URL.Path) })
	})
	r := b.do(t, "GET", "/projects/abc", nil, withoutAuth)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "console /projects/abc", string(r.body))
	r = b.do(t, "GET", "/", nil, withoutAuth)
	require.Equal(t, "console /", string(r.body))

	e := errorOf(t, b.do(t, "GET", "/api/nope", nil), http.StatusNotFound)
	require.Equal(t, "not_found", e.Error.Code)
	e = errorOf(t, b.do(t, "POST", "/projects/abc", `{}`), http.StatusNotFound)
	require.Equal(t, "not_found", e.Error.Code)
}
