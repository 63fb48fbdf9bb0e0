package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/upstreamtest"
)

// A prompt deployment that pins no version follows its prompt's default:
// when the default changes, the gateway serves the new version at once
// (its cache is told by the database), not when its cache entry expires.
func TestDevDefaultVersionChangeIsServedAtOnce(t *testing.T) {
	e := startToolsEnv(t)
	e.up.SetDefault(upstreamtest.Echo())
	doc := func(greeting string) map[string]any {
		return map[string]any{"deployment": "m", "messages": []any{map[string]any{"role": "user", "content": greeting + " {{ input }}"}}}
	}
	var prompt struct{ ID string }
	e.api.do("POST", "/api/projects/"+e.project+"/prompts", map[string]any{"name": "greeter", "document": doc("Hello")}, http.StatusCreated, &prompt)
	e.api.do("POST", "/api/prompts/"+prompt.ID+"/versions", map[string]any{"document": doc("Bonjour")}, http.StatusCreated, nil)
	e.api.do("POST", "/api/projects/"+e.project+"/deployments", map[string]any{"kind": "prompt", "prompt_id": prompt.ID}, http.StatusCreated, nil)

	run := func() string {
		return e.respondOK(t, map[string]any{"prompt": map[string]any{"id": "greeter"}, "input": "Ada"}).OutputText
	}
	require.Equal(t, "Hello Ada", run())
	e.api.do("PATCH", "/api/prompts/"+prompt.ID, map[string]any{"default_version": 2}, http.StatusOK, nil)
	start := time.Now()
	require.Eventually(t, func() bool { return run() == "Bonjour Ada" }, time.Second, 20*time.Millisecond,
		"the new default is served within a second, well inside the cache's 5 s life")
	t.Logf("new default served after %s", time.Since(start))
}
