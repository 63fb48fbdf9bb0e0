package gateway_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/replycache"
	"github.com/budhq/bud/upstreamtest"
)

// result is a gateway's answer as a test reads it.
type result struct {
	status int
	header http.Header
	body   []byte
}

// post sends body to the gateway with the key secret and reads the whole
// answer.
func (b *bundle) post(ctx context.Context, t testing.TB, path, secret string, body any) (result, error) {
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(ctx, "POST", b.gw.URL+path, bytes.NewReader(raw))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: out}, err
}

func randomName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// keyWithLimit creates a key with its own rate limit (nil: none).
func (b *bundle) keyWithLimit(project string, limit map[string]any) string {
	body := map[string]any{"name": "k"}
	if limit != nil {
		body["rate_limit"] = limit
	}
	return b.api("POST", "/api/projects/"+project+"/api-keys", body, http.StatusCreated)["secret"].(string)
}

// admissionRoute is a route that reaches a deployment, as the admission
// table sends to it.
type admissionRoute struct {
	name string
	// pre is how many requests prepare sends that count against the
	// deployment's and the key's limits.
	pre int
	// prepare deploys what the route reaches on project, served by up,
	// with settings, and returns send: each call sends one request of the
	// route with the key secret, the upstream answering reply (nil: the
	// request is not expected to reach it).
	prepare func(t *testing.T, b *bundle, project, secret string, up *upstreamtest.Server, settings map[string]any) (send func(ctx context.Context, reply *upstreamtest.Reply) (result, error))
}

func chatRoute(stream bool) admissionRoute {
	name := "chat completions"
	if stream {
		name += " stream"
	}
	return admissionRoute{name: name, prepare: func(t *testing.T, b *bundle, project, secret string, up *upstreamtest.Server, settings map[string]any) func(context.Context, *upstreamtest.Reply) (result, error) {
		model := randomName("m-")
		b.api("POST", "/api/projects/"+project+"/deployments", map[string]any{
			"name": model, "kind": "model", "upstream": map[string]any{"base_url": up.URL(), "model": "stand-in"}, "settings": settings,
		}, http.StatusCreated)
		return func(ctx context.Context, reply *upstreamtest.Reply) (result, error) {
			if reply != nil {
				up.Script(*reply)
			}
			return b.post(ctx, t, "/v1/chat/completions", secret, map[string]any{
				"model": model, "stream": stream, "messages": []any{map[string]any{"role": "user", "content": "hi"}},
			})
		}
	}}
}

// promptDeployment deploys a prompt on a model deployment of its own
// served by up, and returns the prompt deployment's name.
func promptDeployment(b *bundle, project string, up *upstreamtest.Server, settings map[string]any, withTool bool) string {
	model, name := randomName("m-"), randomName("p-")
	b.api("POST", "/api/projects/"+project+"/deployments", map[string]any{
		"name": model, "kind": "model", "upstream": map[string]any{"base_url": up.URL(), "model": "stand-in"},
	}, http.StatusCreated)
	doc := map[string]any{"deployment": model, "messages": []any{map[string]any{"role": "user", "content": "{{ input }}"}}}
	if withTool {
		doc["tools"] = []any{map[string]any{
			"type": "function", "name": "get_weather", "description": "The weather in a city.",
			"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
		}}
	}
	b.api("POST", "/api/projects/"+project+"/deployments", map[string]any{
		"kind": "prompt", "settings": settings, "prompt": map[string]any{"name": name, "document": doc},
	}, http.StatusCreated)
	return name
}

var (
	responsesStart       = responsesStartRoute(false)
	responsesStartStream = responsesStartRoute(true)
)

// responsesStartRoute starts a run of a prompt deployment, streamed or
// awaited whole.
func responsesStartRoute(stream bool) admissionRoute {
	name := "responses start"
	if stream {
		name += " stream"
	}
	return admissionRoute{name: name, prepare: func(t *testing.T, b *bundle, project, secret string, up *upstreamtest.Server, settings map[string]any) func(context.Context, *upstreamtest.Reply) (result, error) {
		name := promptDeployment(b, project, up, settings, false)
		return func(ctx context.Context, reply *upstreamtest.Reply) (result, error) {
			if reply != nil {
				up.Script(*reply)
			}
			return b.post(ctx, t, "/v1/responses", secret, map[string]any{"prompt": map[string]any{"id": name}, "input": "hi", "stream": stream})
		}
	}}
}

// responseOf is the Response a /v1/responses answer carries: the body,
// or a stream's response.completed event's.
func responseOf(t *testing.T, body []byte) (id string, metadata map[string]string) {
	t.Helper()
	var r struct {
		ID       string            `json:"id"`
		Metadata map[string]string `json:"metadata"`
	}
	if !bytes.HasPrefix(bytes.TrimSpace(body), []byte("event:")) {
		require.NoError(t, json.Unmarshal(body, &r), "%s", body)
		return r.ID, r.Metadata
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || !strings.Contains(data, `"type":"response.completed"`) {
			continue
		}
		var ev struct {
			Response json.RawMessage `json:"response"`
		}
		require.NoError(t, json.Unmarshal([]byte(data), &ev))
		require.NoError(t, json.Unmarshal(ev.Response, &r))
		return r.ID, r.Metadata
	}
	t.Fatalf("no response.completed event in %s", body)
	return "", nil
}

// responsesContinue starts two runs that pause for a function's output,
// then continues them in turn.
var responsesContinue = admissionRoute{name: "responses continue", pre: 2, prepare: func(t *testing.T, b *bundle, project, secret string, up *upstreamtest.Server, settings map[string]any) func(context.Context, *upstreamtest.Reply) (result, error) {
	name := promptDeployment(b, project, up, settings, true)
	var paused []string
	for range 2 {
		up.Script(upstreamtest.ToolCalls(upstreamtest.ToolCall{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Oslo"}`}).
			WithUsage(upstreamtest.Usage{PromptTokens: 1, CompletionTokens: 1}))
		res, err := b.post(ctx(t), t, "/v1/responses", secret, map[string]any{"prompt": map[string]any{"id": name}, "input": "Oslo?"})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.status, "%s", res.body)
		var r struct{ ID string }
		require.NoError(t, json.Unmarshal(res.body, &r))
		paused = append(paused, r.ID)
	}
	return func(ctx context.Context, reply *upstreamtest.Reply) (result, error) {
		if reply != nil {
			up.Script(*reply)
		}
		prev := paused[0]
		paused = paused[1:]
		return b.post(ctx, t, "/v1/responses", secret, map[string]any{
			"previous_response_id": prev,
			"input":                []any{map[string]any{"type": "function_call_output", "call_id": "call_1", "output": "snow"}},
		})
	}
}}

// requireRefused checks a 429 in OpenAI's envelope, whose Retry-After is
// between least and most seconds.
func requireRefused(t *testing.T, res result, typ string, least, most int, message string) {
	t.Helper()
	require.Equal(t, http.StatusTooManyRequests, res.status, "%s", res.body)
	var e struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    string  `json:"code"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(res.body, &e), "%s", res.body)
	require.Equal(t, typ, e.Error.Type)
	require.Equal(t, "rate_limit_exceeded", e.Error.Code)
	require.Nil(t, e.Error.Param)
	require.Contains(t, e.Error.Message, message)
	retry, err := strconv.Atoi(res.header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After in whole seconds")
	require.GreaterOrEqual(t, retry, least)
	require.LessOrEqual(t, retry, most)
}

// TestAdmissionOnEveryRoute: each policy on each route that reaches a
// deployment: the request within the limit passes with OpenAI's
// x-ratelimit-* headers; the next gets a 429 in OpenAI's envelope, with
// Retry-After and the headers.
func TestAdmissionOnEveryRoute(t *testing.T) {
	b := setupRuns(t, setupOpts{})
	ok := upstreamtest.Text("ok")
	type policy struct {
		name     string
		settings func(pre int) map[string]any
		keyLimit func(pre int) map[string]any
		// run sends the request that passes and the one refused.
		run func(t *testing.T, send func(context.Context, *upstreamtest.Reply) (result, error), up *upstreamtest.Server, pre int)
	}
	requests := func(scope string) func(*testing.T, func(context.Context, *upstreamtest.Reply) (result, error), *upstreamtest.Server, int) {
		return func(t *testing.T, send func(context.Context, *upstreamtest.Reply) (result, error), _ *upstreamtest.Server, _ int) {
			res, err := send(ctx(t), &ok)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, res.status, "%s", res.body)
			require.Equal(t, "1", res.header.Get("X-Ratelimit-Limit-Requests"))
			require.Equal(t, "0", res.header.Get("X-Ratelimit-Remaining-Requests"))
			require.NotEmpty(t, res.header.Get("X-Ratelimit-Reset-Requests"))
			require.Empty(t, res.header.Get("X-Ratelimit-Limit-Tokens"))

			res, err = send(ctx(t), nil)
			require.NoError(t, err)
			// One request a minute, taken moments ago (a run may take a
			// few seconds on a busy machine).
			requireRefused(t, res, "requests", 50, 60, scope)
			require.Equal(t, "0", res.header.Get("X-Ratelimit-Remaining-Requests"))
		}
	}
	policies := []policy{
		{
			name: "requests per minute",
			settings: func(pre int) map[string]any {
				return map[string]any{"rate_limit": map[string]any{"enabled": true, "requests_per_minute": 1, "burst": pre + 1}}
			},
			run: requests("for model '"),
		},
		{
			name:     "key's requests per minute",
			keyLimit: func(pre int) map[string]any { return map[string]any{"requests_per_minute": 1, "burst": pre + 1} },
			run:      requests("for this API key"),
		},
		{
			name: "tokens per minute",
			settings: func(int) map[string]any {
				return map[string]any{"rate_limit": map[string]any{"enabled": true, "tokens_per_minute": 100}}
			},
			run: func(t *testing.T, send func(context.Context, *upstreamtest.Reply) (result, error), up *upstreamtest.Server, pre int) {
				big := ok.WithUsage(upstreamtest.Usage{PromptTokens: 500, CompletionTokens: 500})
				res, err := send(ctx(t), &big)
				require.NoError(t, err)
				require.Equal(t, http.StatusOK, res.status, "%s", res.body)
				require.Equal(t, "100", res.header.Get("X-Ratelimit-Limit-Tokens"))
				left, err := strconv.Atoi(res.header.Get("X-Ratelimit-Remaining-Tokens"))
				require.NoError(t, err)
				require.GreaterOrEqual(t, left, 100-2*pre, "the earlier replies' tokens were charged")
				require.Less(t, left, 100-2*pre+5)
				require.Empty(t, res.header.Get("X-Ratelimit-Limit-Requests"))
				if bytes.Contains(res.body, []byte("chat.completion.chunk")) {
					// A chat stream was asked for its usage for the limit's sake,
					// and the caller, who did not ask, gets no usage chunk.
					reqs := up.Requests()
					require.Equal(t, map[string]any{"include_usage": true}, reqs[len(reqs)-1].JSON["stream_options"])
					require.NotContains(t, string(res.body), `"usage":{`)
					require.Contains(t, string(res.body), "data: [DONE]")
				}

				res, err = send(ctx(t), nil)
				require.NoError(t, err)
				// A minute in debt, and one more token: 60.001 s, less
				// what has refilled since.
				requireRefused(t, res, "tokens", 55, 61, "tokens per minute")
				require.Equal(t, "0", res.header.Get("X-Ratelimit-Remaining-Tokens"))
			},
		},
		{
			name:     "max concurrency",
			settings: func(int) map[string]any { return map[string]any{"max_concurrency": 1} },
			run: func(t *testing.T, send func(context.Context, *upstreamtest.Reply) (result, error), up *upstreamtest.Server, pre int) {
				slow := ok.WithDelay(10 * time.Second)
				held, cancel := context.WithCancel(ctx(t))
				defer cancel()
				done := make(chan error, 1)
				go func() {
					_, err := send(held, &slow)
					done <- err
				}()
				_, err := up.WaitRequests(ctx(t), pre+1)
				require.NoError(t, err, "the first request is in flight")
				res, err := send(ctx(t), nil)
				require.NoError(t, err)
				requireRefused(t, res, "requests", 1, 1, "at most 1 at once")
				require.Empty(t, res.header.Get("X-Ratelimit-Limit-Requests"), "no rate limit, no rate headers")
				cancel()
				<-done
			},
		},
	}
	// The cache column: on the routes it applies to, the repeated request
	// is a hit that reaches no upstream (for a prompt, starts no run, and
	// names the run it reuses); a continued turn is never cached.
	cacheOn := map[string]any{"cache": map[string]any{"enabled": true, "ttl_seconds": 60}}
	routes := []admissionRoute{chatRoute(false), chatRoute(true), responsesStart, responsesStartStream, responsesContinue}
	for _, route := range routes {
		t.Run(route.name+"/response cache", func(t *testing.T) {
			project := b.project(randomName("cache-"))
			secret := b.keyWithLimit(project, nil)
			up := upstreamtest.Start(t)
			send := route.prepare(t, b, project, secret, up, cacheOn)
			before := up.Received()
			first, err := send(ctx(t), &ok)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, first.status, "%s", first.body)
			if route.name == responsesContinue.name {
				require.Empty(t, first.header.Get(replycache.Header))
				return
			}
			require.Equal(t, "miss", first.header.Get(replycache.Header))
			calls := up.Received()
			require.Greater(t, calls, before)
			second, err := send(ctx(t), nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, second.status, "%s", second.body)
			require.Equal(t, "hit", second.header.Get(replycache.Header))
			require.Equal(t, calls, up.Received(), "a hit reaches no upstream")
			if route.name == responsesStart.name || route.name == responsesStartStream.name {
				firstID, _ := responseOf(t, first.body)
				secondID, metadata := responseOf(t, second.body)
				require.Equal(t, firstID, secondID, "the run reused")
				require.Equal(t, firstID, metadata[replycache.MetadataCachedFrom])
				countRuns := func() (n int) {
					b.dbScalar(&n, `SELECT count(*) FROM runs WHERE project_id = $1`, project)
					return n
				}
				require.Eventually(t, func() bool { return countRuns() >= 1 }, 10*time.Second, 20*time.Millisecond)
				time.Sleep(300 * time.Millisecond)
				require.Equal(t, 1, countRuns(), "no run started for the hit")
			}
		})
	}
	for _, route := range routes {
		for _, p := range policies {
			t.Run(route.name+"/"+p.name, func(t *testing.T) {
				project := b.project(randomName("admission-"))
				var settings, limit map[string]any
				if p.settings != nil {
					settings = p.settings(route.pre)
				}
				if p.keyLimit != nil {
					limit = p.keyLimit(route.pre)
				}
				secret := b.keyWithLimit(project, limit)
				up := upstreamtest.Start(t)
				send := route.prepare(t, b, project, secret, up, settings)
				p.run(t, send, up, route.pre)
			})
		}
	}
}

// TestLimitChangesTakeEffectWithinASecond: a deployment's new rate limit,
// and a key's, reach the gateway through the change notifications.
func TestLimitChangesTakeEffectWithinASecond(t *testing.T) {
	t.Parallel()
	b := setup(t)
	project := b.project("acme")
	id := b.deployment(project, "m", nil)
	secret := b.keyWithLimit(project, nil)
	b.up.SetDefault(upstreamtest.Text("ok"))
	chat := func() result {
		res, err := b.post(ctx(t), t, "/v1/chat/completions", secret, map[string]any{"model": "m", "messages": []any{map[string]any{"role": "user", "content": "hi"}}})
		require.NoError(t, err)
		return res
	}
	res := chat()
	require.Equal(t, http.StatusOK, res.status)
	require.Empty(t, res.header.Get("X-Ratelimit-Limit-Requests"))

	b.api("PATCH", "/api/projects/"+project+"/deployments/"+id, map[string]any{
		"settings": map[string]any{"rate_limit": map[string]any{"enabled": true, "requests_per_minute": 1000, "burst": 3}},
	}, http.StatusOK)
	changed := time.Now()
	require.Eventually(t, func() bool { return chat().header.Get("X-Ratelimit-Limit-Requests") == "1000" }, time.Second, 5*time.Millisecond)
	t.Logf("the deployment's limit applied %s after the change", time.Since(changed))
	refused := false
	for range 100 {
		if refused = chat().status == http.StatusTooManyRequests; refused {
			break
		}
	}
	require.True(t, refused, "a burst of 3 at 1000 a minute runs out")

	keys := b.api("GET", "/api/projects/"+project+"/api-keys", nil, http.StatusOK)["data"].([]any)
	keyID := keys[0].(map[string]any)["id"].(string)
	b.api("PATCH", "/api/projects/"+project+"/deployments/"+id, map[string]any{"settings": map[string]any{}}, http.StatusOK)
	b.api("PATCH", "/api/projects/"+project+"/api-keys/"+keyID, map[string]any{"rate_limit": map[string]any{"tokens_per_minute": 777}}, http.StatusOK)
	changed = time.Now()
	require.Eventually(t, func() bool {
		res := chat()
		return res.status == http.StatusOK && res.header.Get("X-Ratelimit-Limit-Tokens") == "777" && res.header.Get("X-Ratelimit-Limit-Requests") == ""
	}, time.Second, 5*time.Millisecond)
	t.Logf("the key's limit applied %s after the change", time.Since(changed))
}

// TestStreamUsageKeptWhenAskedFor: a caller that asks for a stream's
// usage gets it, limit or not.
func TestStreamUsageKeptWhenAskedFor(t *testing.T) {
	t.Parallel()
	b := setup(t)
	project := b.project("acme")
	b.deployment(project, "m", map[string]any{"settings": map[string]any{"rate_limit": map[string]any{"enabled": true, "tokens_per_minute": 1000}}})
	secret := b.keyWithLimit(project, nil)
	b.up.Script(upstreamtest.Text("hello there").WithUsage(upstreamtest.Usage{PromptTokens: 3, CompletionTokens: 4}))
	res, err := b.post(ctx(t), t, "/v1/chat/completions", secret, map[string]any{
		"model": "m", "stream": true, "stream_options": map[string]any{"include_usage": true, "Include_Usage": false},
		"messages": []any{map[string]any{"role": "user", "content": "hi"}},
	})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.status)
	require.Contains(t, string(res.body), `"usage":{"prompt_tokens":3,"completion_tokens":4`)
	require.Equal(t, map[string]any{"include_usage": true}, b.up.Requests()[0].JSON["stream_options"], "one spelling of include_usage reaches the upstream")
	require.True(t, strings.HasSuffix(strings.TrimSpace(string(res.body)), "data: [DONE]"))

	b.up.Script(upstreamtest.Text("again"))
	res, err = b.post(ctx(t), t, "/v1/chat/completions", secret, map[string]any{"model": "m", "messages": []any{map[string]any{"role": "user", "content": "hi"}}})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.status)
	left, err := strconv.Atoi(res.header.Get("X-Ratelimit-Remaining-Tokens"))
	require.NoError(t, err)
	require.InDelta(t, 993, left, 3, "the stream's 7 tokens were charged")
}

// newRedis returns a client of the machine's Redis and a fresh key prefix,
// whose keys are deleted when the test ends.
func newRedis(t *testing.T) (*redis.Client, string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	require.NoError(t, c.Ping(t.Context()).Err())
	prefix := randomName("budtest:") + ":"
	t.Cleanup(func() {
		keys, _ := c.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			_ = c.Del(context.Background(), keys...).Err()
		}
		_ = c.Close()
	})
	return c, prefix
}

// inFlight wraps an upstream's handler and keeps the most requests it
// ever served at once.
type inFlight struct {
	now, peak atomic.Int64
}

func (f *inFlight) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := f.now.Add(1)
		for p := f.peak.Load(); n > p && !f.peak.CompareAndSwap(p, n); p = f.peak.Load() {
		}
		defer f.now.Add(-1)
		h.ServeHTTP(w, r)
	})
}

// TestLimitsSharedByGatewaysThroughRedis: two gateways on one database and
// one Redis, as two processes, admit together no more than a deployment's
// burst and its rate's refill, and hold no more than its max_concurrency
// requests in flight at once.
func TestLimitsSharedByGatewaysThroughRedis(t *testing.T) {
	t.Parallel()
	c1, prefix := newRedis(t)
	c2 := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	t.Cleanup(func() { _ = c2.Close() })
	first := setup(t, setupOpts{redis: c1, redisPrefix: prefix})
	second := setup(t, setupOpts{pool: first.pool, box: first.box, redis: c2, redisPrefix: prefix})
	gateways := []*bundle{first, second}

	var flight inFlight
	up := httptest.NewServer(flight.wrap(first.up.Handler()))
	t.Cleanup(up.Close)
	first.up.SetRecording(false)
	first.up.SetDefault(upstreamtest.Text("ok").WithDelay(20 * time.Millisecond))
	project := first.project("shared")
	secret := first.keyWithLimit(project, nil)
	deploy := func(name string, settings map[string]any) {
		first.api("POST", "/api/projects/"+project+"/deployments", map[string]any{
			"name": name, "kind": "model", "upstream": map[string]any{"base_url": up.URL + "/v1", "model": "stand-in"}, "settings": settings,
		}, http.StatusCreated)
	}
	chat := func(b *bundle, model string) int {
		res, err := b.post(context.Background(), t, "/v1/chat/completions", secret, map[string]any{"model": model, "messages": []any{map[string]any{"role": "user", "content": "hi"}}})
		if err != nil {
			return 0
		}
		return res.status
	}

	t.Run("rate", func(t *testing.T) {
		const rpm, burst = 600, 10
		deploy("rated", map[string]any{"rate_limit": map[string]any{"enabled": true, "requests_per_minute": rpm, "burst": burst}})
		var admitted, refused atomic.Int64
		start := time.Now()
		var wg sync.WaitGroup
		for _, g := range gateways {
			for range 4 {
				wg.Go(func() {
					for time.Since(start) < 500*time.Millisecond {
						switch chat(g, "rated") {
						case http.StatusOK:
							admitted.Add(1)
						case http.StatusTooManyRequests:
							refused.Add(1)
						default:
							t.Error("neither admitted nor refused")
							return
						}
					}
				})
			}
		}
		wg.Wait()
		elapsed := time.Since(start)
		allowed := burst + elapsed.Milliseconds()*rpm/60_000
		t.Logf("two gateways admitted %d and refused %d in %s; the burst and the refill allow %d", admitted.Load(), refused.Load(), elapsed, allowed)
		require.GreaterOrEqual(t, admitted.Load(), int64(burst))
		require.LessOrEqual(t, admitted.Load(), allowed)
	})

	t.Run("concurrency", func(t *testing.T) {
		deploy("narrow", map[string]any{"max_concurrency": 2, "queue_timeout_ms": 30_000})
		flight.peak.Store(0)
		statuses := make(chan int, 24)
		var wg sync.WaitGroup
		for _, g := range gateways {
			for range 12 {
				wg.Go(func() { statuses <- chat(g, "narrow") })
			}
		}
		wg.Wait()
		close(statuses)
		for s := range statuses {
			require.Equal(t, http.StatusOK, s, "every request got a slot within its queue time")
		}
		t.Logf("peak in flight at the upstream: %d", flight.peak.Load())
		require.Equal(t, int64(2), flight.peak.Load())
	})
}
