package gateway_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/budhq/bud/upstreamtest"
)

// send posts body (or GETs, without one) to the gateway with the headers
// given and returns the status and the error's code.
func (b *bundle) send(t *testing.T, method, path string, body []byte, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, b.gw.URL+path, bytes.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &e)
	return resp.StatusCode, e.Error.Code
}

// TestNamesThatCannotBeDeploymentsAreNotCached: a `model`, `prompt.id` or
// /v1/models/{model} longer than a deployment name may be answers the
// unknown name's 404 and leaves nothing in the cache.
func TestNamesThatCannotBeDeploymentsAreNotCached(t *testing.T) {
	t.Parallel()
	tc, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"}) // never dialled
	require.NoError(t, err)
	defer tc.Close()
	b := setup(t, setupOpts{temporal: tc, documents: noDocuments{}})
	p := b.project("acme")
	b.deployment(p, "m", nil)
	_, secret := b.key(p)
	auth := []string{"Authorization", "Bearer " + secret}
	chatBody := func(model string) []byte {
		body, err := json.Marshal(map[string]any{"model": model, "messages": []any{map[string]any{"role": "user", "content": "hi"}}})
		require.NoError(t, err)
		return body
	}
	promptBody := func(id string) []byte {
		body, err := json.Marshal(map[string]any{"prompt": map[string]any{"id": id}, "input": "hi"})
		require.NoError(t, err)
		return body
	}

	for i := range 5 {
		long := strings.Repeat(string(rune('a'+i)), 4<<20)
		status, code := b.send(t, "POST", "/v1/chat/completions", chatBody(long), auth...)
		require.Equal(t, http.StatusNotFound, status)
		require.Equal(t, "model_not_found", code)
		status, code = b.send(t, "POST", "/v1/responses", promptBody(long), auth...)
		require.Equal(t, http.StatusNotFound, status)
		require.Equal(t, "prompt_not_found", code)
		status, code = b.send(t, "GET", "/v1/models/"+long[:2000], nil, auth...)
		require.Equal(t, http.StatusNotFound, status)
		require.Equal(t, "model_not_found", code)
	}
	require.Zero(t, b.gateway.CachedDeployments())

	status, code := b.send(t, "POST", "/v1/chat/completions", chatBody("nope"), auth...)
	require.Equal(t, http.StatusNotFound, status)
	require.Equal(t, "model_not_found", code, "an unknown name that could exist gets the same answer")
	require.Equal(t, 1, b.gateway.CachedDeployments())
}

// TestTokensThatCannotBeKeysAreNotLookedUp: a token without the shape of a
// key we issue is refused like a wrong key, with no read and no cache entry.
func TestTokensThatCannotBeKeysAreNotLookedUp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.project("acme")
	b.deployment(p, "m", nil)
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	for _, h := range [][]string{
		{"Authorization", "Bearer nope"},
		{"Authorization", "Bearer bud-nope"},
		{"Authorization", "Bearer sk-" + strings.Repeat("x", 45)},
		{"Authorization", "Bearer bud-" + strings.Repeat("x", 4000)},
		{"api-key", "bud-" + strings.Repeat("x", 42)},
	} {
		status, code := b.send(t, "POST", "/v1/chat/completions", body, h...)
		require.Equal(t, http.StatusUnauthorized, status, h)
		require.Equal(t, "invalid_api_key", code, h)
	}
	require.Zero(t, b.gateway.CachedKeys())

	// A well-formed wrong key is looked up and its absence cached. A load
	// that a change notification overtakes (the set-up's own inserts) is
	// not kept, so the key is sent until one load is.
	wellFormed := "Bearer bud-" + strings.Repeat("x", 43)
	for range 50 {
		status, code := b.send(t, "POST", "/v1/chat/completions", body, "Authorization", wellFormed)
		require.Equal(t, http.StatusUnauthorized, status)
		require.Equal(t, "invalid_api_key", code)
		if b.gateway.CachedKeys() == 1 {
			break
		}
	}
	require.Equal(t, 1, b.gateway.CachedKeys(), "a well-formed wrong key is looked up and cached")
}

// TestModelInAnotherSpellingReachesNoUpstream: upstreams that decode JSON
// case-insensitively would take "Model" over the pinned name, so the
// upstream gets exactly one model field, the deployment's.
func TestModelInAnotherSpellingReachesNoUpstream(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.project("acme")
	b.deployment(p, "m", map[string]any{"default_params": map[string]any{"temperature": 0.2}})
	_, secret := b.key(p)
	b.up.SetDefault(upstreamtest.Text("ok"))

	for _, body := range []string{
		`{"model":"m","Model":"other","messages":[{"role":"user","content":"hi"}]}`,
		`{"MODEL":"other","model":"m","mODel":"another","messages":[{"role":"user","content":"hi"}]}`,
	} {
		status, _ := b.send(t, "POST", "/v1/chat/completions", []byte(body), "Authorization", "Bearer "+secret)
		require.Equal(t, http.StatusOK, status)
	}
	reqs := b.up.Requests()
	require.Len(t, reqs, 2)
	for _, r := range reqs {
		for k, v := range r.JSON {
			if strings.EqualFold(k, "model") {
				require.Equal(t, "model", k, "only the exact key reaches the upstream")
				require.Equal(t, "upstream-m", v)
			}
		}
		require.Equal(t, "upstream-m", r.JSON["model"])
	}
}

// TestStreamInAnotherSpellingReachesNoUpstream: an upstream that decodes
// JSON case-insensitively would stream a reply on "Stream": true, which a
// gateway that read no `stream` would take whole; and one that takes the
// first of a repeated key would stream on the first of two. The upstream
// gets `stream` and `stream_options` only as the gateway read them.
func TestStreamInAnotherSpellingReachesNoUpstream(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.project("acme")
	b.deployment(p, "m", nil)
	_, secret := b.key(p)
	b.up.SetDefault(upstreamtest.Text("ok"))

	for _, body := range []string{
		`{"model":"m","Stream":true,"STREAM_OPTIONS":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","stream":true,"stream":false,"stream_options":{"include_usage":true},"stream_options":null,"messages":[{"role":"user","content":"hi"}]}`,
	} {
		status, _ := b.send(t, "POST", "/v1/chat/completions", []byte(body), "Authorization", "Bearer "+secret)
		require.Equal(t, http.StatusOK, status)
	}
	reqs := b.up.Requests()
	require.Len(t, reqs, 2)
	for k := range reqs[0].JSON {
		require.False(t, strings.EqualFold(k, "stream") || strings.EqualFold(k, "stream_options"), "%s reached the upstream", k)
	}
	require.Equal(t, 1, strings.Count(string(reqs[1].Body), `"stream"`), "%s", reqs[1].Body)
	require.Equal(t, 1, strings.Count(string(reqs[1].Body), `"stream_options"`), "%s", reqs[1].Body)
	require.Equal(t, false, reqs[1].JSON["stream"])
	require.Nil(t, reqs[1].JSON["stream_options"])
}
