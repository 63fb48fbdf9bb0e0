package gateway_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/budhq/bud/admission"
	"github.com/budhq/bud/app"
	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/egress"
	"github.com/budhq/bud/gateway"
	"github.com/budhq/bud/metrics"
	"github.com/budhq/bud/replycache"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/secrets"
	"github.com/budhq/bud/statestore/statestoretest"
	"github.com/budhq/bud/upstreamtest"
	"github.com/budhq/bud/usage"
)

const adminToken = "test-admin-token-of-at-least-32-characters"

func TestMain(m *testing.M) { os.Exit(stopRunEnv(statestoretest.Main(m))) }

// bundle is a gateway wired to a real schema, BudApp for set-up, and the
// upstream stand-in.
type bundle struct {
	t        testing.TB
	gw       *httptest.Server
	appURL   string
	up       *upstreamtest.Server
	gateway  *gateway.Gateway
	metrics  http.Handler
	schema   string
	pool     *pgxpool.Pool
	box      *secrets.Box
	dbExec   func(sql string, args ...any)
	dbScalar func(dst any, sql string, args ...any)
	// usage is the gateway's usage recorder, flushed by the tests that
	// read usage_hourly.
	usage *usage.Recorder
}

type setupOpts struct {
	upstreamTimeout time.Duration
	// maxBodyBytesInFlight is the gateway's MaxBodyBytesInFlight.
	maxBodyBytesInFlight int64
	temporal             client.Client
	// egress is the gateway's Egress policy.
	egress    *egress.Policy
	documents interface {
		Get(ctx context.Context, key string) ([]byte, error)
	}
	// pool and box, when set, are the database and secrets box to use
	// instead of a fresh schema (setupRuns).
	pool *pgxpool.Pool
	box  *secrets.Box
	// redis and redisPrefix are the gateway's shared state; none keeps it
	// in the process.
	redis       redis.UniversalClient
	redisPrefix string
	// nats carries streaming runs' deltas (setupRuns); none answers
	// stream: true on /v1/responses with 503.
	nats *nats.Conn
}

func setup(t testing.TB, opts ...setupOpts) *bundle {
	t.Helper()
	var o setupOpts
	if len(opts) > 0 {
		o = opts[0]
	}
	pool, box, schema := o.pool, o.box, ""
	if pool == nil {
		pool, schema = dbtest.NewSchema(t)
		key := make([]byte, secrets.KeySize)
		_, _ = rand.Read(key)
		var err error
		box, err = secrets.NewBox(key)
		require.NoError(t, err)
	}

	appH, err := app.New(app.Config{Pool: pool, Box: box, AdminToken: adminToken, Documents: statestoretest.Store(t), Runs: o.runs(t)})
	require.NoError(t, err)
	appSrv := httptest.NewServer(appH)
	t.Cleanup(appSrv.Close)

	reg := metrics.NewRegistry()
	adm := admission.New(admission.Config{Redis: o.redis, Prefix: o.redisPrefix})
	t.Cleanup(adm.Close)
	rec, err := usage.New(usage.Config{Pool: pool})
	require.NoError(t, err)
	g, err := gateway.New(gateway.Config{
		Usage: rec, Cache: replycache.New(replycache.NewMemory(0), replycache.Options{}),
		Pool: pool, Box: box, Registry: reg,
		// An hour: anything that changes sooner was changed by a notification.
		CacheTTL:             time.Hour,
		LastUsedFlush:        20 * time.Millisecond,
		UpstreamTimeout:      o.upstreamTimeout,
		MaxBodyBytesInFlight: o.maxBodyBytesInFlight,
		Runs:                 o.runs(t),
		Documents:            o.documents,
		Egress:               o.egress,
		Admitter:             adm,
		NATS:                 o.nats,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-g.Listening():
	case <-time.After(10 * time.Second):
		t.Fatal("gateway never subscribed to changes")
	}
	gwSrv := httptest.NewServer(g)
	t.Cleanup(gwSrv.Close)

	b := &bundle{t: t, gw: gwSrv, appURL: appSrv.URL, up: upstreamtest.Start(t), gateway: g, metrics: metrics.Handler(reg), schema: schema, pool: pool, box: box, usage: rec}
	b.dbExec = func(sql string, args ...any) {
		_, err := pool.Exec(context.Background(), sql, args...)
		require.NoError(t, err)
	}
	b.dbScalar = func(dst any, sql string, args ...any) {
		require.NoError(t, pool.QueryRow(context.Background(), sql, args...).Scan(dst))
	}
	return b
}

// api calls BudApp and decodes the reply.
func (b *bundle) api(method, path string, body any, want int) map[string]any {
	b.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		require.NoError(b.t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, b.appURL+path, rd)
	require.NoError(b.t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	require.Equal(b.t, want, resp.StatusCode, "%s %s: %s", method, path, raw)
	out := map[string]any{}
	if len(raw) > 0 {
		require.NoError(b.t, json.Unmarshal(raw, &out))
	}
	return out
}

func (b *bundle) project(name string) string {
	return b.api("POST", "/api/projects", map[string]any{"name": name}, http.StatusCreated)["id"].(string)
}

func (b *bundle) deployment(project, name string, extra map[string]any) string {
	body := map[string]any{"name": name, "kind": "model", "upstream": map[string]any{"base_url": b.up.URL(), "model": "upstream-" + name}}
	for k, v := range extra {
		body[k] = v
	}
	return b.api("POST", "/api/projects/"+project+"/deployments", body, http.StatusCreated)["id"].(string)
}

func (b *bundle) key(project string) (id, secret string) {
	k := b.api("POST", "/api/projects/"+project+"/api-keys", map[string]any{"name": "k"}, http.StatusCreated)
	return k["id"].(string), k["secret"].(string)
}

func (b *bundle) client(secret string) *openai.Client {
	c := openai.NewClient(option.WithBaseURL(b.gw.URL+"/v1/"), option.WithAPIKey(secret), option.WithMaxRetries(0))
	return &c
}

func (b *bundle) metricsText() string {
	rec := httptest.NewRecorder()
	b.metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func requireAPIError(t testing.TB, err error, status int, code string) *openai.Error {
	t.Helper()
	var apiErr *openai.Error
	require.True(t, errors.As(err, &apiErr), "want an API error, got %v", err)
	require.Equal(t, status, apiErr.StatusCode, apiErr.RawJSON())
	require.Equal(t, code, apiErr.Code, apiErr.RawJSON())
	return apiErr
}

// TestMetricsNotPublic checks that the public handler does not serve the
// metrics, whose series name every project and deployment: they go to the
// registry, which the caller serves on a listener of its own.
func TestMetricsNotPublic(t *testing.T) {
	b := setup(t)
	resp, err := http.Get(b.gw.URL + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Contains(t, b.metricsText(), `bud_gateway_http_requests_total{method="GET",route="unmatched",status="404"} 1`)
}

func TestChatNonStreaming(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.project("acme")
	b.deployment(p, "qwen3-32b", map[string]any{
		"upstream":       map[string]any{"base_url": b.up.URL(), "model": "Qwen/Qwen3-32B", "api_key": "sk-provider"},
		"default_params": map[string]any{"temperature": 0.3, "max_tokens": 100},
	})
	_, secret := b.key(p)
	b.up.RequireAPIKey("sk-provider")
	b.up.Script(upstreamtest.Text("Hello there, friend."))

	resp, err := b.client(secret).Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{
		Model:     "qwen3-32b",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")},
		MaxTokens: openai.Int(7),
		Seed:      openai.Int(42),
		User:      openai.String("u-1"),
	}, option.WithJSONSet("x_vendor_field", map[string]any{"keep": true}))
	require.NoError(t, err)
	require.Equal(t, "Hello there, friend.", resp.Choices[0].Message.Content)
	require.Positive(t, resp.Usage.TotalTokens)

	reqs := b.up.Requests()
	require.Len(t, reqs, 1)
	got := reqs[0].JSON
	require.Equal(t, "Qwen/Qwen3-32B", got["model"], "model is replaced with the upstream's name")
	require.Equal(t, 0.3, got["temperature"], "a default fills what the caller left out")
	require.Equal(t, 7.0, got["max_tokens"], "the caller's value wins over the default")
	require.Equal(t, 42.0, got["seed"])
	require.Equal(t, "u-1", got["user"])
	require.Equal(t, map[string]any{"keep": true}, got["x_vendor_field"], "unknown fields pass through")
	require.Equal(t, "Bearer sk-provider", reqs[0].Header.Get("Authorization"), "the provider key replaces the caller's")

	m := b.metricsText()
	require.Contains(t, m, `bud_gateway_requests_total{deployment="qwen3-32b",endpoint="chat.completions",project="`+p+`",status="200"} 1`)
	require.Contains(t, m, `bud_gateway_tokens_total{deployment="qwen3-32b",direction="out",project="`+p+`"} `+strconv.FormatInt(resp.Usage.CompletionTokens, 10)+"\n")
	require.NotContains(t, m, `deployment=""`, "a request that names its deployment counts under it alone")
}

func TestChatStreaming(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.project("acme")
	b.deployment(p, "llama", nil)
	_, secret := b.key(p)
	text := "one two three four five six seven eight nine ten"
	b.up.Script(upstreamtest.Text(text).WithUsage(upstreamtest.Usage{PromptTokens: 5, CompletionTokens: 10, TotalTokens: 15}))

	stream := b.client(secret).Chat.Completions.NewStreaming(ctx(t), openai.ChatCompletionNewParams{
		Model:         "llama",
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("count")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var deltas []string
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		chunk := stream.Current()
		acc.AddChunk(chunk)
		if len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Content != "" {
			deltas = append(deltas, chunk.Choices[0].Delta.Content)
		}
	}
	require.NoError(t, stream.Err())
	require.Greater(t, len(deltas), 3, "the reply arrives in several chunks")
	require.Equal(t, text, strings.Join(deltas, ""), "chunks arrive in order")
	require.Equal(t, text, acc.Choices[0].Message.Content)
	require.EqualValues(t, 15, acc.Usage.TotalTokens)
	require.Equal(t, true, b.up.Requests()[0].JSON["stream"])

	m := b.metricsText()
	require.Contains(t, m, `bud_gateway_tokens_total{deployment="llama",direction="in",project="`+p+`"} 5`)
	require.Contains(t, m, `bud_gateway_tokens_total{deployment="llama",direction="out",project="`+p+`"} 10`)
}

func TestToolsRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.project("acme")
	b.deployment(p, "tooly", nil)
	_, secret := b.key(p)
	b.up.Script(
		upstreamtest.ToolCalls(upstreamtest.Call("get_weather", `{"city":"Paris"}`)),
		upstreamtest.Text("It is sunny in Paris."),
	)
	c := b.client(secret)
	params := openai.ChatCompletionNewParams{
		Model:    "tooly",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather in Paris?")},
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name:       "get_weather",
			Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
		})},
		ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("auto")},
	}
	first, err := c.Chat.Completions.New(ctx(t), params)
	require.NoError(t, err)
	require.Equal(t, "tool_calls", first.Choices[0].FinishReason)
	calls := first.Choices[0].Message.ToolCalls
	require.Len(t, calls, 1)
	require.Equal(t, "get_weather", calls[0].Function.Name)
	require.JSONEq(t, `{"city":"Paris"}`, calls[0].Function.Arguments)

	params.Messages = append(params.Messages, first.Choices[0].Message.ToParam(), openai.ToolMessage(`{"sky":"sunny"}`, calls[0].ID))
	second, err := c.Chat.Completions.New(ctx(t), params)
	require.NoError(t, err)
	require.Equal(t, "It is sunny in Paris.", second.Choices[0].Message.Content)

	reqs := b.up.Requests()
	require.Len(t, reqs, 2)
	require.NotNil(t, reqs[0].JSON["tools"], "tools pass through")
	require.Equal(t, "auto", reqs[0].JSON["tool_choice"])
	msgs := reqs[1].JSON["messages"].([]any)
	last := msgs[len(msgs)-1].(map[string]any)
	require.Equal(t, "tool", last["role"])
	require.Equal(t, calls[0].ID, last["tool_call_id"])
}

func TestErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{upstreamTimeout: 300 * time.Millisecond})
	p := b.project("acme")
	b.deployment(p, "m", nil)
	dead := deadURL(t)
	b.deployment(p, "down", map[string]any{"upstream": map[string]any{"base_url": dead, "model": "x"}})
	keyID, secret := b.key(p)
	c := b.client(secret)
	msg := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}

	t.Run("no key", func(t *testing.T) {
		_, err := b.client("").Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{Model: "m", Messages: msg})
		requireAPIError(t, err, 401, "invalid_api_key")
	})
	t.Run("unknown key", func(t *testing.T) {
		_, err := b.client("bud-nope").Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{Model: "m", Messages: msg})
		requireAPIError(t, err, 401, "invalid_api_key")
	})
	t.Run("unknown model", func(t *testing.T) {
		_, err := c.Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{Model: "nope", Messages: msg})
		e := requireAPIError(t, err, 404, "model_not_found")
		require.Equal(t, "model", e.Param)
		m := b.metricsText()
		require.Contains(t, m, `bud_gateway_errors_total{deployment="",project="`+p+`",type="model_not_found"} 1`)
		require.Contains(t, m, `bud_gateway_requests_total{deployment="",endpoint="chat.completions",project="`+p+`",status="404"} 1`)
		require.NotContains(t, m, `bud_gateway_upstream_duration_seconds_count{deployment="",project="`+p+`"}`, "no upstream was called")
		require.NotContains(t, m, `bud_gateway_tokens_total{deployment="",`)
	})
	t.Run("upstream error passes through", func(t *testing.T) {
		b.up.Script(upstreamtest.Reply{Status: 429, Error: &upstreamtest.APIError{Message: "Slow down.", Type: "requests", Code: "rate_limit_exceeded"}})
		_, err := c.Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{Model: "m", Messages: msg})
		e := requireAPIError(t, err, 429, "rate_limit_exceeded")
		require.Contains(t, e.Message, "Slow down.")
	})
	t.Run("upstream unreachable", func(t *testing.T) {
		_, err := c.Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{Model: "down", Messages: msg})
		requireAPIError(t, err, 502, "upstream_unreachable")
	})
	t.Run("upstream timeout", func(t *testing.T) {
		b.up.Script(upstreamtest.Text("late").WithDelay(5 * time.Second))
		_, err := c.Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{Model: "m", Messages: msg})
		requireAPIError(t, err, 504, "upstream_timeout")
	})

	raw := func(body string, header ...string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", b.gw.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+secret)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return resp.StatusCode, out["error"].(map[string]any)
	}
	t.Run("missing model", func(t *testing.T) {
		st, e := raw(`{"messages":[]}`)
		require.Equal(t, 400, st)
		require.Equal(t, "model", e["param"])
	})
	t.Run("invalid JSON", func(t *testing.T) {
		st, e := raw(`{"model": "m",`)
		require.Equal(t, 400, st)
		require.Equal(t, "invalid_json", e["code"])
	})
	t.Run("body too large", func(t *testing.T) {
		st, e := raw(`{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("a", gateway.DefaultMaxBodyBytes) + `"}]}`)
		require.Equal(t, 413, st)
		require.Equal(t, "request_too_large", e["code"])
	})
	t.Run("azure api-key header", func(t *testing.T) {
		req, _ := http.NewRequest("POST", b.gw.URL+"/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("api-key", secret)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
	})
	t.Run("expired key", func(t *testing.T) {
		b.dbExec("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", keyID)
		require.Eventually(t, func() bool {
			_, err := c.Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{Model: "m", Messages: msg})
			var e *openai.Error
			return errors.As(err, &e) && e.StatusCode == 401 && e.Code == "invalid_api_key"
		}, time.Second, 10*time.Millisecond)
	})
}

// deadURL is a base URL where nothing listens.
func deadURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return "http://" + addr + "/v1"
}

// TestIsolation: a key of project A can neither call, nor list, nor detect
// a deployment of project B; the answers are byte-identical to those for a
// name that exists nowhere.
func TestIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pa, pb := b.project("a"), b.project("b")
	b.deployment(pa, "mine", nil)
	b.deployment(pb, "theirs", nil)
	_, secretA := b.key(pa)

	call := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, b.gw.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+secretA)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	chat := func(model string) string {
		return `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`
	}
	st1, body1 := call("POST", "/v1/chat/completions", chat("theirs"))
	st2, body2 := call("POST", "/v1/chat/completions", chat("ghost"))
	require.Equal(t, 404, st1)
	require.Equal(t, st1, st2)
	require.Equal(t, strings.ReplaceAll(body1, "theirs", "X"), strings.ReplaceAll(body2, "ghost", "X"))

	st1, body1 = call("GET", "/v1/models/theirs", "")
	st2, body2 = call("GET", "/v1/models/ghost", "")
	require.Equal(t, 404, st1)
	require.Equal(t, st1, st2)
	require.Equal(t, strings.ReplaceAll(body1, "theirs", "X"), strings.ReplaceAll(body2, "ghost", "X"))

	page, err := b.client(secretA).Models.List(ctx(t))
	require.NoError(t, err)
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
	}
	require.Equal(t, []string{"mine"}, ids)
	m, err := b.client(secretA).Models.Get(ctx(t), "mine")
	require.NoError(t, err)
	require.Equal(t, "mine", m.ID)
	require.Empty(t, b.up.Requests(), "nothing reached any upstream")
}

// TestChangesTakeEffectWithinOneSecond: the cache TTL is an hour here, so
// only the change notifications can make these changes visible in time.
func TestChangesTakeEffectWithinOneSecond(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.project("acme")
	depID := b.deployment(p, "m", nil)
	keyID, secret := b.key(p)
	c := b.client(secret)
	msg := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}
	_, err := c.Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{Model: "m", Messages: msg})
	require.NoError(t, err)

	// A changed deployment: the next request goes to the new upstream model.
	b.api("PATCH", "/api/projects/"+p+"/deployments/"+depID, map[string]any{"upstream": map[string]any{"model": "renamed"}}, http.StatusOK)
	require.Eventually(t, func() bool {
		_, err := c.Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{Model: "m", Messages: msg})
		reqs := b.up.Requests()
		return err == nil && reqs[len(reqs)-1].JSON["model"] == "renamed"
	}, time.Second, 10*time.Millisecond)

	// A deleted deployment: 404.
	b.api("DELETE", "/api/projects/"+p+"/deployments/"+depID, nil, http.StatusNoContent)
	require.Eventually(t, func() bool {
		_, err := c.Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{Model: "m", Messages: msg})
		var e *openai.Error
		return errors.As(err, &e) && e.StatusCode == 404
	}, time.Second, 10*time.Millisecond)

	// A revoked key: 401.
	b.deployment(p, "m2", nil)
	_, err = c.Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{Model: "m2", Messages: msg})
	require.NoError(t, err)
	b.api("DELETE", "/api/projects/"+p+"/api-keys/"+keyID, nil, http.StatusNoContent)
	require.Eventually(t, func() bool {
		_, err := c.Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{Model: "m2", Messages: msg})
		var e *openai.Error
		return errors.As(err, &e) && e.StatusCode == 401
	}, time.Second, 10*time.Millisecond)

	// A deleted project takes its keys with it.
	_, secret2 := b.key(p)
	_, err = b.client(secret2).Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{Model: "m2", Messages: msg})
	require.NoError(t, err)
	b.api("DELETE", "/api/projects/"+p, nil, http.StatusNoContent)
	require.Eventually(t, func() bool {
		_, err := b.client(secret2).Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{Model: "m2", Messages: msg})
		var e *openai.Error
		return errors.As(err, &e) && e.StatusCode == 401
	}, time.Second, 10*time.Millisecond)
}

func TestLastUsedIsWrittenInBatches(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.project("acme")
	b.deployment(p, "m", nil)
	keyID, secret := b.key(p)
	for range 5 {
		_, err := b.client(secret).Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{Model: "m", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		var used *time.Time
		b.dbScalar(&used, "SELECT last_used_at FROM api_keys WHERE id = $1", uuid.MustParse(keyID))
		return used != nil
	}, 5*time.Second, 10*time.Millisecond)
	k := b.api("GET", "/api/projects/"+p+"/api-keys/"+keyID, nil, http.StatusOK)
	require.NotNil(t, k["last_used_at"])
}

// TestClientDisconnectCancelsUpstream: a client that goes away mid-stream
// cancels the upstream request at once.
func TestClientDisconnectCancelsUpstream(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.project("acme")
	b.deployment(p, "slow", nil)
	_, secret := b.key(p)
	b.up.Script(upstreamtest.Text(strings.Repeat("word ", 200)).WithChunkDelay(50 * time.Millisecond))

	cctx, cancel := context.WithCancel(context.Background())
	stream := b.client(secret).Chat.Completions.NewStreaming(cctx, openai.ChatCompletionNewParams{
		Model: "slow", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("talk")},
	})
	require.True(t, stream.Next(), "the first chunk arrives before the reply is complete")
	cancel()
	_ = stream.Close()
	got, err := b.up.WaitCancelled(ctx(t), 1)
	require.NoError(t, err)
	require.True(t, got[0].Cancelled)
}

func TestUnknownRoute(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp, err := http.Get(b.gw.URL + "/v1/nothing")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 404, resp.StatusCode)
	var out struct{ Error struct{ Code string } }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	require.Equal(t, "unknown_url", out.Error.Code)
}

// noDocuments is a document store that is never reached.
type noDocuments struct{}

func (noDocuments) Get(context.Context, string) ([]byte, error) {
	return nil, errors.New("no documents")
}

// TestStreamingWithoutNATSIs503: a gateway that runs prompts but has no
// NATS refuses stream: true with a 503 that says why, before any run.
func TestStreamingWithoutNATSIs503(t *testing.T) {
	t.Parallel()
	tc, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"}) // never dialled
	require.NoError(t, err)
	defer tc.Close()
	b := setup(t, setupOpts{temporal: tc, documents: noDocuments{}})
	_, secret := b.key(b.project("acme"))

	st := b.client(secret).Responses.NewStreaming(ctx(t), responses.ResponseNewParams{Prompt: responses.ResponsePromptParam{ID: "any"}})
	require.False(t, st.Next())
	apiErr := requireAPIError(t, st.Err(), http.StatusServiceUnavailable, "streaming_unavailable")
	require.Contains(t, apiErr.Message, "BUD_NATS_URL")
}

// runs is the runs client over the options' Temporal client; nil without one.
func (o setupOpts) runs(t testing.TB) *runs.Client {
	t.Helper()
	if o.temporal == nil {
		return nil
	}
	rc, err := runs.New(o.temporal, "")
	require.NoError(t, err)
	return rc
}
