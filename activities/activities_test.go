package activities_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/changes"
	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/deployment"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/secrets"
	"github.com/budhq/bud/upstreamtest"
)

const (
	providerKey   = "sk-test-provider"
	upstreamModel = "Qwen/Qwen3-32B"
)

// bundle is what an activity test works with: a fresh schema with a
// project and its model deployment "qwen" pointing at the stand-in, which
// wants providerKey.
type bundle struct {
	pool     *pgxpool.Pool
	q        *dbsqlc.Queries
	box      *secrets.Box
	upstream *upstreamtest.Server
	project  uuid.UUID
	acts     *activities.Activities
	env      *testsuite.TestActivityEnvironment
}

func setup(t *testing.T) *bundle {
	t.Helper()
	ctx := t.Context()
	pool, _ := dbtest.NewSchema(t)
	key, err := secrets.ParseKey(secrets.NewKey())
	require.NoError(t, err)
	box, err := secrets.NewBox(key)
	require.NoError(t, err)
	up := upstreamtest.Start(t)
	up.RequireAPIKey(providerKey)

	q := dbsqlc.New(pool)
	project, err := q.CreateProject(ctx, dbsqlc.CreateProjectParams{Name: "p-" + uuid.NewString()[:8]})
	require.NoError(t, err)
	b := &bundle{pool: pool, q: q, box: box, upstream: up, project: project.ID}
	b.modelDeployment(t, "qwen", up.URL(), providerKey, `{"temperature": 0.9, "max_tokens": 100}`)

	b.acts = activities.New(activities.Config{Identity: "test", Pool: pool, Box: box})
	b.env = newActivityEnv(b.acts)
	return b
}

// newActivityEnv is a test activity environment running acts, logging
// nothing: the failures the tests provoke would flood the output.
func newActivityEnv(acts *activities.Activities) *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	return env
}

func (b *bundle) modelDeployment(t *testing.T, name, baseURL, apiKey, defaults string) dbsqlc.Deployment {
	t.Helper()
	row, err := b.q.CreateDeployment(t.Context(), dbsqlc.CreateDeploymentParams{
		ProjectID: b.project, Name: name, Kind: "model", BaseURL: baseURL, UpstreamModel: upstreamModel,
		DefaultParams: []byte(defaults), Settings: []byte(`{}`),
	})
	require.NoError(t, err)
	if apiKey != "" {
		row, err = b.q.UpdateDeployment(t.Context(), dbsqlc.UpdateDeploymentParams{
			ProjectID: b.project, ID: row.ID, Name: row.Name, BaseURL: row.BaseURL, UpstreamModel: row.UpstreamModel,
			APIKeySealed: b.box.Seal([]byte(apiKey), row.ID[:]), DefaultParams: row.DefaultParams, Settings: row.Settings,
		})
		require.NoError(t, err)
	}
	return row
}

func (b *bundle) callModel(t *testing.T, in activities.CallModelInput) (activities.CallModelResult, error) {
	t.Helper()
	if in.ProjectID == uuid.Nil {
		in.ProjectID = b.project
	}
	if in.Deployment == "" {
		in.Deployment = "qwen"
	}
	if in.Messages == nil {
		in.Messages = []chat.Message{{Role: "user", Content: "hi"}}
	}
	v, err := b.env.ExecuteActivity(b.acts.CallModel, in)
	if err != nil {
		return activities.CallModelResult{}, err
	}
	var res activities.CallModelResult
	require.NoError(t, v.Get(&res))
	return res, nil
}

// appError returns the ApplicationError in err, requiring one.
func appError(t *testing.T, err error) (*temporal.ApplicationError, run.Failure) {
	t.Helper()
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "not an application error: %v", err)
	var f run.Failure
	if appErr.HasDetails() {
		require.NoError(t, appErr.Details(&f))
	}
	return appErr, f
}

func TestCallModelSendsTheChatRequest(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.upstream.Script(upstreamtest.Text("Bonjour.").WithUsage(upstreamtest.Usage{PromptTokens: 12, CompletionTokens: 3}))
	messages := []chat.Message{
		{Role: "system", Content: "Translate to French."},
		{Role: "user", Content: "Hello."},
		{Role: "assistant", ToolCalls: []chat.ToolCall{{ID: "call_1", Type: "function", Function: chat.ToolCallFunction{Name: "lookup", Arguments: `{"w":"hello"}`}}}},
		{Role: "tool", ToolCallID: "call_1", Content: "bonjour"},
	}
	responseFormat := json.RawMessage(`{"type":"json_schema","json_schema":{"name":"output","strict":true,"schema":{"type":"object","properties":{"fr":{"type":"string"}},"required":["fr"],"additionalProperties":false}}}`)
	tools := []chat.Tool{{Type: "function", Function: chat.Function{Name: "lookup", Description: "Dictionary", Parameters: json.RawMessage(`{"type":"object","properties":{"w":{"type":"string"}}}`)}}}

	res, err := b.callModel(t, activities.CallModelInput{
		Messages:       messages,
		ModelParams:    json.RawMessage(`{"temperature": 0.2, "seed": 7}`),
		ResponseFormat: responseFormat,
		Tools:          tools,
	})

	require.NoError(t, err)
	require.Equal(t, "Bonjour.", res.Content)
	require.Equal(t, "stop", res.FinishReason)
	require.Equal(t, chat.Usage{PromptTokens: 12, CompletionTokens: 3, TotalTokens: 15}, res.Usage)
	require.Equal(t, upstreamModel, res.Model)
	require.Equal(t, int32(1), res.Attempt)
	require.GreaterOrEqual(t, res.LatencyMS, int64(0))
	require.Equal(t, new(true), res.Strict, "the call's record says its schema went strict")
	require.Empty(t, res.StrictReason)

	reqs := b.upstream.Requests()
	require.Len(t, reqs, 1)
	r := reqs[0]
	require.Equal(t, "/v1/chat/completions", r.Path)
	require.Equal(t, "Bearer "+providerKey, r.Header.Get("Authorization"))
	require.JSONEq(t, `{
	  "model": "Qwen/Qwen3-32B",
	  "temperature": 0.2,
	  "max_tokens": 100,
	  "seed": 7,
	  "messages": [
	    {"role": "system", "content": "Translate to French."},
	    {"role": "user", "content": "Hello."},
	    {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"w\":\"hello\"}"}}]},
	    {"role": "tool", "tool_call_id": "call_1", "content": "bonjour"}
	  ],
	  "response_format": `+string(responseFormat)+`,
	  "tools": [{"type": "function", "function": {"name": "lookup", "description": "Dictionary", "parameters": {"type":"object","properties":{"w":{"type":"string"}}}}}]
	}`, string(r.Body), "the upstream model replaces the name, the document's parameters win over the deployment's defaults")
}

// TestCallModelRecordsANonStrictSchema: a call whose schema went
// non-strict says so, and why, in its result and so in its record.
func TestCallModelRecordsANonStrictSchema(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.upstream.Script(upstreamtest.Text(`{"a": "x"}`))
	res, err := b.callModel(t, activities.CallModelInput{
		Messages:       []chat.Message{{Role: "user", Content: "Hi."}},
		ResponseFormat: json.RawMessage(`{"type":"json_schema","json_schema":{"name":"output","strict":false,"schema":{"type":"object"}}}`),
		StrictReason:   "too many enum values",
	})
	require.NoError(t, err)
	require.Equal(t, new(false), res.Strict)
	require.Equal(t, "too many enum values", res.StrictReason)
	call := activities.ModelCallOf(1, res)
	require.Equal(t, new(false), call.Strict)
	require.Equal(t, "too many enum values", call.StrictReason)

	// A call without a schema says nothing of strictness.
	b.upstream.Script(upstreamtest.Text("Hello."))
	res, err = b.callModel(t, activities.CallModelInput{Messages: []chat.Message{{Role: "user", Content: "Hi."}}})
	require.NoError(t, err)
	require.Nil(t, res.Strict)
}

func TestCallModelReturnsToolCalls(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.upstream.Script(upstreamtest.ToolCalls(upstreamtest.Call("get_weather", `{"city":"Paris"}`)))

	res, err := b.callModel(t, activities.CallModelInput{})

	require.NoError(t, err)
	require.Empty(t, res.Content)
	require.Equal(t, "tool_calls", res.FinishReason)
	require.Len(t, res.ToolCalls, 1)
	require.NotEmpty(t, res.ToolCalls[0].ID)
	require.Equal(t, "function", res.ToolCalls[0].Type)
	require.Equal(t, chat.ToolCallFunction{Name: "get_weather", Arguments: `{"city":"Paris"}`}, res.ToolCalls[0].Function)
}

func TestCallModelRateLimitIsRetryable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.upstream.Script(upstreamtest.Error(http.StatusTooManyRequests, "rate_limit_error", "Rate limit reached.").WithHeader("Retry-After", "2"))

	_, err := b.callModel(t, activities.CallModelInput{})

	appErr, f := appError(t, err)
	require.Equal(t, run.UpstreamUnavailable, appErr.Type())
	require.False(t, appErr.NonRetryable())
	require.Equal(t, run.Failure{Status: 429, Message: "Rate limit reached."}, f)
	require.Equal(t, 2*time.Second, appErr.NextRetryDelay(), "Retry-After sets the next retry")
}

func TestCallModelServerErrorIsRetryable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.upstream.Script(upstreamtest.Raw(http.StatusBadGateway, "text/html", []byte("<html>bad gateway</html>")))

	_, err := b.callModel(t, activities.CallModelInput{})

	appErr, f := appError(t, err)
	require.Equal(t, run.UpstreamUnavailable, appErr.Type())
	require.False(t, appErr.NonRetryable())
	require.Equal(t, run.Failure{Status: 502, Message: "Bad Gateway"}, f, "a body that is not an error envelope is not passed on")
}

func TestCallModelBadRequestIsNotRetryable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.upstream.Script(upstreamtest.Error(http.StatusBadRequest, "invalid_request_error", "Invalid 'temperature': must be <= 2."))

	_, err := b.callModel(t, activities.CallModelInput{})

	appErr, f := appError(t, err)
	require.Equal(t, run.UpstreamRejected, appErr.Type())
	require.True(t, appErr.NonRetryable())
	require.Equal(t, run.Failure{Status: 400, Message: "Invalid 'temperature': must be <= 2."}, f)
}

func TestCallModelWrongProviderKeyIsRejected(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.modelDeployment(t, "wrong-key", b.upstream.URL(), "sk-wrong", `{}`)

	_, err := b.callModel(t, activities.CallModelInput{Deployment: "wrong-key"})

	appErr, f := appError(t, err)
	require.Equal(t, run.UpstreamRejected, appErr.Type())
	require.Equal(t, 401, f.Status)
	require.Equal(t, "Bearer sk-wrong", b.upstream.Requests()[0].Header.Get("Authorization"))
}

func TestCallModelUnknownDeployment(t *testing.T) {
	t.Parallel()
	b := setup(t)
	prompt, err := b.q.CreatePrompt(t.Context(), dbsqlc.CreatePromptParams{ProjectID: b.project, Name: "bot", Tags: []string{}})
	require.NoError(t, err)
	_, err = b.q.CreatePromptDeployment(t.Context(), dbsqlc.CreatePromptDeploymentParams{ProjectID: b.project, Name: "bot", PromptID: &prompt.ID, Settings: []byte(`{}`)})
	require.NoError(t, err)

	for _, name := range []string{"missing", "bot"} {
		_, err := b.callModel(t, activities.CallModelInput{Deployment: name})
		appErr, f := appError(t, err)
		require.Equal(t, run.ModelNotFound, appErr.Type(), name)
		require.True(t, appErr.NonRetryable())
		require.Contains(t, f.Message, name)
	}
	_, err = b.callModel(t, activities.CallModelInput{ProjectID: uuid.New()})
	appErr, _ := appError(t, err)
	require.Equal(t, run.ModelNotFound, appErr.Type(), "another project's deployment is not found")
	require.Empty(t, b.upstream.Requests())
}

func TestCallModelUnreachableIsRetryable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	b.modelDeployment(t, "gone", "http://"+addr+"/v1", "", `{}`)

	_, err = b.callModel(t, activities.CallModelInput{Deployment: "gone"})

	appErr, f := appError(t, err)
	require.Equal(t, run.UpstreamUnavailable, appErr.Type())
	require.False(t, appErr.NonRetryable())
	require.Zero(t, f.Status)
	require.NotContains(t, f.Message, addr, "the public message names no address")
}

func TestCallModelClientTimeoutIsRetryable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acts := activities.New(activities.Config{Pool: b.pool, Box: b.box, HTTPClient: &http.Client{Timeout: 50 * time.Millisecond}})
	env := newActivityEnv(acts)
	b.upstream.Script(upstreamtest.Text("late").WithDelay(time.Minute))

	_, err := env.ExecuteActivity(acts.CallModel, activities.CallModelInput{ProjectID: b.project, Deployment: "qwen", Messages: []chat.Message{{Role: "user", Content: "hi"}}})

	appErr, _ := appError(t, err)
	require.Equal(t, run.UpstreamUnavailable, appErr.Type())
	require.False(t, appErr.NonRetryable())
}

func TestCallModelKeyOfAnotherBoxIsAConfigurationFault(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other, err := secrets.ParseKey(secrets.NewKey())
	require.NoError(t, err)
	otherBox, err := secrets.NewBox(other)
	require.NoError(t, err)
	acts := activities.New(activities.Config{Pool: b.pool, Box: otherBox})
	env := newActivityEnv(acts)

	_, err = env.ExecuteActivity(acts.CallModel, activities.CallModelInput{ProjectID: b.project, Deployment: "qwen", Messages: []chat.Message{{Role: "user", Content: "hi"}}})

	appErr, f := appError(t, err)
	require.Equal(t, run.ProviderKey, appErr.Type())
	require.True(t, appErr.NonRetryable())
	require.Equal(t, "internal error", f.Message)
}

// TestCallModelSeesAChangedDeploymentAtOnce: with the change listener a
// worker runs, a changed or created deployment is called as it now is,
// though the cache trusts its entries for an hour.
func TestCallModelSeesAChangedDeploymentAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	deployments := deployment.NewCache(deployment.Config{Pool: b.pool, Box: b.box, TTL: time.Hour})
	l := changes.NewListener(b.pool, nil, deployments)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-l.Listening():
	case <-time.After(10 * time.Second):
		t.Fatal("never subscribed to changes")
	}
	b.acts = activities.New(activities.Config{Identity: "test", Pool: b.pool, Box: b.box, Deployments: deployments})
	b.env = newActivityEnv(b.acts)

	_, err := b.callModel(t, activities.CallModelInput{})
	require.NoError(t, err)
	require.Equal(t, upstreamModel, b.upstream.Requests()[0].Model)
	_, err = b.callModel(t, activities.CallModelInput{Deployment: "later"})
	appErr, _ := appError(t, err)
	require.Equal(t, run.ModelNotFound, appErr.Type())

	row, err := b.q.GetDeploymentByName(t.Context(), dbsqlc.GetDeploymentByNameParams{ProjectID: b.project, Name: "qwen"})
	require.NoError(t, err)
	_, err = b.q.UpdateDeployment(t.Context(), dbsqlc.UpdateDeploymentParams{
		ProjectID: b.project, ID: row.ID, Name: row.Name, BaseURL: row.BaseURL, UpstreamModel: "renamed",
		APIKeySealed: row.APIKeySealed, DefaultParams: row.DefaultParams, Settings: row.Settings,
	})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := b.callModel(t, activities.CallModelInput{})
		reqs := b.upstream.Requests()
		return err == nil && reqs[len(reqs)-1].Model == "renamed"
	}, time.Second, 10*time.Millisecond)

	b.modelDeployment(t, "later", b.upstream.URL(), providerKey, `{}`)
	require.Eventually(t, func() bool {
		_, err := b.callModel(t, activities.CallModelInput{Deployment: "later"})
		return err == nil
	}, time.Second, 10*time.Millisecond)
}

func TestEcho(t *testing.T) {
	t.Parallel()
	acts := &activities.Activities{Identity: "w1"}
	env := newActivityEnv(acts)
	v, err := env.ExecuteActivity(acts.Echo, activities.EchoInput{Message: "hi"})
	require.NoError(t, err)
	var out activities.EchoOutput
	require.NoError(t, v.Get(&out))
	require.Equal(t, "hi", out.Message)
	require.Equal(t, "w1", out.Worker)
}
