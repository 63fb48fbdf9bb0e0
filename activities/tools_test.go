package activities_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/connection"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/prompt"
	"github.com/budhq/bud/run"
)

// fakeTools is a ToolExecutor with fixed tools per connection.
type fakeTools struct {
	names map[uuid.UUID]string
	tools map[uuid.UUID][]connection.Tool
}

func (f fakeTools) Tools(_ context.Context, _, conn uuid.UUID) (string, []connection.Tool, error) {
	return f.names[conn], f.tools[conn], nil
}

func (f fakeTools) Call(context.Context, uuid.UUID, uuid.UUID, string, json.RawMessage) (connection.Result, error) {
	return connection.Result{}, fmt.Errorf("not called here")
}

func resolve(t *testing.T, tools activities.ToolExecutor, in activities.ResolveToolsInput) (activities.ResolveToolsResult, error) {
	t.Helper()
	env := newActivityEnv(&activities.Activities{Tools: tools})
	v, err := env.ExecuteActivity((&activities.Activities{}).ResolveTools, in)
	if err != nil {
		return activities.ResolveToolsResult{}, err
	}
	var res activities.ResolveToolsResult
	require.NoError(t, v.Get(&res))
	return res, nil
}

func TestResolveToolsNamesAndPolicies(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	long := strings.Repeat("x", 70)
	f := fakeTools{
		names: map[uuid.UUID]string{a: "everything", b: "other server"},
		tools: map[uuid.UUID][]connection.Tool{
			a: {{Name: "echo"}, {Name: "get-sum", InputSchema: json.RawMessage(`{"type":"object","properties":{"a":{"type":"number"}}}`)}, {Name: "hidden"}, {Name: "get_weather"}},
			b: {{Name: "echo"}, {Name: long}, {Name: long + "y"}, {Name: "bad name!"}},
		},
	}
	res, err := resolve(t, f, activities.ResolveToolsInput{
		Taken: []string{"get_weather"},
		Tools: []prompt.Tool{
			{Type: prompt.ToolConnection, ConnectionID: a.String(), Active: true, AllowedTools: []string{"echo", "get-sum", "get_weather"},
				RequireApproval: prompt.Approval{Policy: prompt.ApprovalListed, Tools: []string{"get-sum"}}},
			{Type: prompt.ToolConnection, ConnectionID: b.String(), Active: true, RequireApproval: prompt.Approval{Policy: prompt.ApprovalAlways}},
			{Type: prompt.ToolConnection, ConnectionID: uuid.NewString(), Active: false},
		},
	})
	require.NoError(t, err)
	var names []string
	seen := map[string]bool{}
	for i, tl := range res.Tools {
		names = append(names, tl.Function.Name)
		require.LessOrEqual(t, len(tl.Function.Name), 64)
		require.Regexp(t, `^[a-zA-Z0-9_-]+$`, tl.Function.Name)
		require.False(t, seen[tl.Function.Name], "unique: %s", tl.Function.Name)
		seen[tl.Function.Name] = true
		require.Equal(t, tl.Function.Name, res.Routes[i].Name)
	}
	require.Equal(t, []string{"echo", "get-sum", "everything__get_weather", "other_server__echo"}, names[:4])
	require.Len(t, names, 7, "hidden is not allowed; the inactive connection is not listed")
	require.Equal(t, "get_weather", res.Routes[2].Tool, "the connection's own name is kept for the call")
	require.Equal(t, []bool{false, true, false, true, true, true, true}, func() []bool {
		var out []bool
		for _, r := range res.Routes {
			out = append(out, r.RequireApproval)
		}
		return out
	}())
	require.JSONEq(t, `{"type":"object","properties":{}}`, string(res.Tools[0].Function.Parameters), "a tool without a schema takes any object")
	require.Equal(t, "everything", res.Routes[0].ServerLabel)
}

// httpConnection stores an http connection to srv with one operation.
func (b *bundle) httpConnection(t *testing.T, srv *httptest.Server, secret string) uuid.UUID {
	t.Helper()
	id := uuid.New()
	config, err := json.Marshal(connection.Config{BaseURL: srv.URL, Operations: []connection.Operation{
		{Name: "lookup", Method: "GET", Path: "/items/{id}", Parameters: json.RawMessage(`{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}`)},
	}})
	require.NoError(t, err)
	sealed, err := connection.SealCredentials(b.box, id, connection.Credentials{Headers: map[string]string{"Authorization": "Bearer " + secret}})
	require.NoError(t, err)
	_, err = b.q.CreateConnection(t.Context(), dbsqlc.CreateConnectionParams{
		ID: id, ProjectID: b.project, Name: "items", Kind: connection.KindHTTP, Config: config, CredentialsSealed: sealed,
	})
	require.NoError(t, err)
	return id
}

func (b *bundle) callTool(t *testing.T, conn uuid.UUID, args string) (activities.CallToolResult, error) {
	t.Helper()
	acts := activities.New(activities.Config{Pool: b.pool, Box: b.box, Tools: &activities.Connections{Pool: b.pool, Box: b.box}})
	v, err := newActivityEnv(acts).ExecuteActivity(acts.CallTool, activities.CallToolInput{ProjectID: b.project, ConnectionID: conn, Tool: "lookup", Arguments: args})
	if err != nil {
		return activities.CallToolResult{}, err
	}
	var res activities.CallToolResult
	require.NoError(t, v.Get(&res))
	return res, nil
}

// CallTool opens the stored connection with its sealed credentials, and its
// failures are typed for the retry policy: 5xx and 429 retryable, 401 and
// bad arguments not; a 404 is the tool's answer, for the model to read.
func TestCallToolThroughAStoredConnection(t *testing.T) {
	b := setup(t)
	const secret = "item-secret-81f3"
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+secret {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(status)
		if status == http.StatusNotFound {
			// An upstream that echoes the request: the secret must not
			// reach the model.
			fmt.Fprintf(w, `{"path":%q,"authorization":%q}`, r.URL.Path, r.Header.Get("Authorization"))
			return
		}
		fmt.Fprintf(w, `{"path":%q}`, r.URL.Path)
	}))
	defer srv.Close()
	conn := b.httpConnection(t, srv, secret)

	res, err := b.callTool(t, conn, `{"id":"42"}`)
	require.NoError(t, err)
	require.JSONEq(t, `{"path":"/items/42"}`, res.Output)
	require.False(t, res.IsError)

	status = http.StatusNotFound
	res, err = b.callTool(t, conn, `{"id":"43"}`)
	require.NoError(t, err)
	require.True(t, res.IsError)
	require.Contains(t, res.Output, "/items/43")
	require.NotContains(t, res.Output, secret)

	status = http.StatusServiceUnavailable
	_, err = b.callTool(t, conn, `{"id":"44"}`)
	appErr, f := appError(t, err)
	require.Equal(t, run.ToolUnavailable, appErr.Type())
	require.False(t, appErr.NonRetryable())
	require.NotContains(t, f.Message, secret)

	_, err = b.callTool(t, conn, `[1, 2]`)
	appErr, _ = appError(t, err)
	require.Equal(t, run.ToolRejected, appErr.Type())
	require.True(t, appErr.NonRetryable())

	_, err = b.callTool(t, uuid.New(), `{}`)
	appErr, _ = appError(t, err)
	require.Equal(t, run.ConnectionNotFound, appErr.Type())

	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	_, err = b.callTool(t, conn, `{"id":"45"}`)
	appErr, f = appError(t, err)
	require.Equal(t, run.ToolRejected, appErr.Type())
	require.True(t, appErr.NonRetryable())
	require.NotContains(t, f.Message, secret)
}
