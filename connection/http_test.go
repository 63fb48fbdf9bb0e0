package connection_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/connection"
)

// httpStub serves status and body to every request and returns its URL.
func httpStub(t *testing.T, status int, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// recorded is a request an http test server saw.
type recorded struct {
	Method, Path, RawPath, Query, ContentType, APIKey string
	Body                                              string
}

// recordingAPI answers each path as the handlers map says and records the
// requests.
type recordingAPI struct {
	URL string
	mu  sync.Mutex
	got []recorded
}

func newRecordingAPI(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *recordingAPI {
	t.Helper()
	api := &recordingAPI{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		api.mu.Lock()
		api.got = append(api.got, recorded{
			Method: r.Method, Path: r.URL.Path, RawPath: r.URL.EscapedPath(), Query: r.URL.RawQuery,
			ContentType: r.Header.Get("Content-Type"), APIKey: r.Header.Get("X-Api-Key"), Body: string(body),
		})
		api.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	api.URL = srv.URL
	return api
}

func (a *recordingAPI) last() recorded {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.got[len(a.got)-1]
}

func (a *recordingAPI) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.got)
}

func httpConnection(baseURL string) connection.Connection {
	return connection.Connection{
		Name: "api", Kind: connection.KindHTTP,
		Config: connection.Config{BaseURL: baseURL + "/v1", Operations: []connection.Operation{
			{
				Name: "get_user", Description: "Get a user", Method: "GET", Path: "/orgs/{org}/users/{id}",
				Parameters: json.RawMessage(`{"type":"object","properties":{
					"org":{"type":"string"},"id":{"type":"integer"},"fields":{"type":"array","items":{"type":"string"}},
					"verbose":{"type":"boolean"}},"required":["org","id"],"additionalProperties":false}`),
			},
			{
				Name: "create_user", Method: "POST", Path: "/users",
				Parameters: json.RawMessage(`{"type":"object","properties":{"name":{"type":"string","minLength":1},"tags":{"type":"array"}},"required":["name"]}`),
			},
			{Name: "delete_user", Method: "DELETE", Path: "/users/{id}", Parameters: json.RawMessage(`{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}`)},
			{Name: "ping", Method: "PUT", Path: "/ping"},
		}},
		Credentials: connection.Credentials{Headers: map[string]string{"X-Api-Key": secret}},
	}
}

func TestHTTP(t *testing.T) {
	t.Parallel()
	api := newRecordingAPI(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet:
			_, _ = io.WriteString(w, `{"id":42,"name":"Ada"}`)
		case r.Method == http.MethodPost:
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"id":43}`)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	client := open(t, httpConnection(api.URL))
	ctx := t.Context()

	tools, err := client.Tools(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"get_user", "create_user", "delete_user", "ping"}, toolNames(tools))
	require.Equal(t, "Get a user", tools[0].Description)
	require.JSONEq(t, `{"type":"object"}`, string(tools[3].InputSchema))
	require.Zero(t, api.count(), "Tools makes no request")

	res, err := client.Call(ctx, "get_user", json.RawMessage(`{"org":"a b/c","id":42,"fields":["name","email"],"verbose":true}`))
	require.NoError(t, err)
	require.Equal(t, connection.Result{Text: `{"id":42,"name":"Ada"}`}, res)
	got := api.last()
	require.Equal(t, "GET", got.Method)
	require.Equal(t, "/v1/orgs/a%20b%2Fc/users/42", got.RawPath)
	require.Equal(t, "fields=name&fields=email&verbose=true", got.Query)
	require.Equal(t, secret, got.APIKey)
	require.Empty(t, got.Body)

	res, err = client.Call(ctx, "create_user", json.RawMessage(`{"name":"Grace","tags":["admiral"]}`))
	require.NoError(t, err)
	require.Equal(t, connection.Result{Text: `{"id":43}`}, res)
	got = api.last()
	require.Equal(t, "POST /v1/users", got.Method+" "+got.Path)
	require.Equal(t, "application/json", got.ContentType)
	require.JSONEq(t, `{"name":"Grace","tags":["admiral"]}`, got.Body)

	res, err = client.Call(ctx, "delete_user", json.RawMessage(`{"id":"u1"}`))
	require.NoError(t, err)
	require.Equal(t, connection.Result{Text: "HTTP 204 No Content (no body)"}, res)
	got = api.last()
	require.Equal(t, "DELETE /v1/users/u1", got.Method+" "+got.Path)
	require.Empty(t, got.Query)

	_, err = client.Call(ctx, "ping", nil)
	require.NoError(t, err)
	require.Equal(t, "{}", api.last().Body)

	// The schema refuses these before any request.
	before := api.count()
	for _, tc := range []struct{ tool, args, want string }{
		{"get_user", `{"org":"a"}`, "missing property 'id'"},
		{"get_user", `{"org":"a","id":"forty-two"}`, "/id"},
		{"get_user", `{"org":"a","id":1,"extra":1}`, "extra"},
		{"create_user", `{"name":""}`, "/name"},
		{"create_user", `[1]`, "must be a JSON object"},
		{"create_user", `{"name":`, "not valid JSON"},
		{"nope", `{}`, "no tool"},
	} {
		_, err := client.Call(ctx, tc.tool, json.RawMessage(tc.args))
		e := requireReason(t, err, connection.ReasonRejected)
		require.Contains(t, e.Message, tc.want, tc.args)
	}
	require.Equal(t, before, api.count())
}

func TestHTTPStatuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status int
		reason string // "" for a Result
		result connection.Result
	}{
		{http.StatusOK, "", connection.Result{Text: `{"echo":"[redacted]"}`}},
		{http.StatusNotFound, "", connection.Result{Text: `HTTP 404: {"echo":"[redacted]"}`, IsError: true}},
		{http.StatusUnprocessableEntity, "", connection.Result{Text: `HTTP 422: {"echo":"[redacted]"}`, IsError: true}},
		{http.StatusConflict, "", connection.Result{Text: `HTTP 409: {"echo":"[redacted]"}`, IsError: true}},
		{http.StatusUnauthorized, connection.ReasonUnauthorized, connection.Result{}},
		{http.StatusForbidden, connection.ReasonUnauthorized, connection.Result{}},
		{http.StatusRequestTimeout, connection.ReasonUnavailable, connection.Result{}},
		{http.StatusTooManyRequests, connection.ReasonUnavailable, connection.Result{}},
		{http.StatusInternalServerError, connection.ReasonUnavailable, connection.Result{}},
		{http.StatusBadGateway, connection.ReasonUnavailable, connection.Result{}},
	} {
		// The far end echoes the credential: redacted wherever it goes.
		url := httpStub(t, tc.status, `{"echo":"`+secret+`"}`)
		client := open(t, httpConnection(url))
		res, err := client.Call(t.Context(), "ping", nil)
		if tc.reason == "" {
			require.NoError(t, err, tc.status)
			require.Equal(t, tc.result, res, tc.status)
			continue
		}
		e := requireReason(t, err, tc.reason)
		require.Equal(t, tc.status, e.Status)
		if tc.status == http.StatusTooManyRequests {
			require.Contains(t, e.Message, "retry after 7 s")
		}
	}
}

func TestHTTPTruncates(t *testing.T) {
	t.Parallel()
	// A body over 64 KiB whose cut falls inside a two-byte rune.
	body := "x" + strings.Repeat("é", connection.MaxReplyText)
	url := httpStub(t, http.StatusOK, body)
	client := open(t, httpConnection(url))
	res, err := client.Call(t.Context(), "ping", nil)
	require.NoError(t, err)
	text, note, ok := strings.Cut(res.Text, "\n[truncated: the reply is longer than 64 KiB]")
	require.True(t, ok, "no truncation note")
	require.Empty(t, note)
	require.True(t, strings.HasPrefix(body, text))
	require.LessOrEqual(t, len(text), connection.MaxReplyText)
	require.Greater(t, len(text), connection.MaxReplyText-4)
	require.True(t, strings.HasSuffix(text, "é"))
}

func TestHTTPCredentialsStayWithTheAPI(t *testing.T) {
	t.Parallel()
	// A redirect to another origin does not carry the credential headers.
	other := newRecordingAPI(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "elsewhere") })
	api := newRecordingAPI(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/landing", http.StatusFound)
	})
	client := open(t, httpConnection(api.URL))
	res, err := client.Call(t.Context(), "delete_user", json.RawMessage(`{"id":"1"}`))
	require.NoError(t, err)
	require.Equal(t, "elsewhere", res.Text)
	require.Equal(t, secret, api.last().APIKey)
	require.Empty(t, other.last().APIKey)
}

func TestHTTPUnreachable(t *testing.T) {
	t.Parallel()
	client := open(t, httpConnection("http://127.0.0.1:1"))
	_, err := client.Call(t.Context(), "ping", nil)
	e := requireReason(t, err, connection.ReasonUnreachable)
	require.Equal(t, "HTTP API at http://127.0.0.1:1/v1 could not be reached: connection refused", e.Message)
}

// TestHTTPPathArgumentsStayInside checks a path argument cannot walk the
// request out of the base URL: "/" is escaped, and "." and "..", which
// escaping leaves as they are, are refused before any request.
func TestHTTPPathArgumentsStayInside(t *testing.T) {
	t.Parallel()
	api := newRecordingAPI(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{}`)
	})
	c := httpConnection(api.URL)
	c.Config.Operations = append(c.Config.Operations, connection.Operation{
		Name: "get_pair", Method: "GET", Path: "/pairs/{a}{b}",
		Parameters: json.RawMessage(`{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"required":["a","b"]}`),
	})
	client := open(t, c)
	ctx := t.Context()

	for _, tc := range []struct{ tool, args string }{
		{"delete_user", `{"id":".."}`},
		{"delete_user", `{"id":"."}`},
		{"get_user", `{"org":"..","id":1}`},
		{"get_pair", `{"a":".","b":"."}`},
	} {
		_, err := client.Call(ctx, tc.tool, json.RawMessage(tc.args))
		e := requireReason(t, err, connection.ReasonRejected)
		require.Contains(t, e.Message, `"." or ".."`, tc.args)
	}
	require.Zero(t, api.count(), "no request was sent")

	// Slashes are escaped, and dots within a segment are just dots.
	_, err := client.Call(ctx, "delete_user", json.RawMessage(`{"id":"../../admin"}`))
	require.NoError(t, err)
	require.Equal(t, "/v1/users/..%2F..%2Fadmin", api.last().RawPath)
	_, err = client.Call(ctx, "get_pair", json.RawMessage(`{"a":"a.","b":".b"}`))
	require.NoError(t, err)
	require.Equal(t, "/v1/pairs/a..b", api.last().Path)
}
