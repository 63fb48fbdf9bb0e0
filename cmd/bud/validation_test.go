package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/upstreamtest"
)

// TestDevPromptRunValidation goes through `bud dev` with a stand-in the
// test scripts: every kind of bad variable is a 400 naming it, a structured
// output that fails validation is repaired, and one that stays invalid
// exhausts llm_retry_limit and fails the run.
func TestDevPromptRunValidation(t *testing.T) {
	up := upstreamtest.Start(t)
	env := newDevEnv(t)
	p := env.start(t)
	defer p.stop(t)
	token, err := os.ReadFile(filepath.Join(env.dataDir, "admin-token"))
	require.NoError(t, err)
	api := apiClient{t: t, base: "http://" + env.app, token: strings.TrimSpace(string(token))}

	var project struct{ ID string }
	api.do("POST", "/api/projects", map[string]any{"name": "validation"}, http.StatusCreated, &project)
	api.do("POST", "/api/projects/"+project.ID+"/deployments", map[string]any{
		"name": "m", "kind": "model", "upstream": map[string]any{"base_url": up.URL(), "model": "stand-in"},
	}, http.StatusCreated, nil)
	basic := func(b map[string]any) map[string]any { return map[string]any{"basic": b} }
	api.do("POST", "/api/projects/"+project.ID+"/deployments", map[string]any{
		"kind": "prompt",
		"prompt": map[string]any{"name": "typed", "document": map[string]any{
			"deployment": "m",
			"messages":   []any{map[string]any{"role": "user", "content": "{{ title }} {{ count }} {{ ratio }} {{ flag }} {{ color }} {{ tags }} {{ owner.email }}"}},
			"input": map[string]any{"type": "structured", "variables": []any{
				map[string]any{"name": "title", "type": "string", "required": true, "validation": basic(map[string]any{"min_length": 3, "max_length": 10, "pattern": "^[a-z ]+$"})},
				map[string]any{"name": "count", "type": "integer", "default": 1, "validation": basic(map[string]any{"ge": 1, "le": 5})},
				map[string]any{"name": "ratio", "type": "number", "default": 0.5, "validation": basic(map[string]any{"gt": 0, "lt": 1})},
				map[string]any{"name": "flag", "type": "boolean", "default": false},
				map[string]any{"name": "color", "type": "enum", "options": []any{"red", "blue"}, "default": "red"},
				map[string]any{"name": "tags", "type": "array", "items": map[string]any{"type": "string"}, "default": []any{"a"}, "validation": basic(map[string]any{"min_items": 1, "max_items": 2})},
				map[string]any{"name": "owner", "type": "object", "default": map[string]any{"email": "a@b.co"}, "variables": []any{
					map[string]any{"name": "email", "type": "string", "required": true, "validation": basic(map[string]any{"format": "email"})},
				}},
			}},
			"output":               map[string]any{"type": "structured", "variables": []any{map[string]any{"name": "answer", "type": "integer", "required": true}}},
			"allow_multiple_calls": true,
			"llm_retry_limit":      1,
		}},
	}, http.StatusCreated, nil)
	var key struct{ Secret string }
	api.do("POST", "/api/projects/"+project.ID+"/api-keys", map[string]any{"name": "k"}, http.StatusCreated, &key)
	c := openai.NewClient(option.WithBaseURL("http://"+env.gateway+"/v1/"), option.WithAPIKey(key.Secret), option.WithMaxRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	call := func(vars map[string]any) (*responses.Response, error) {
		v := map[string]responses.ResponsePromptVariableUnionParam{}
		for k, val := range vars {
			v[k] = responses.ResponsePromptVariableUnionParam{OfString: openai.String(val.(string))}
		}
		return c.Responses.New(ctx, responses.ResponseNewParams{Prompt: responses.ResponsePromptParam{ID: "typed", Variables: v}})
	}
	for _, tc := range []struct {
		name  string
		vars  map[string]any
		param string
	}{
		{"missing required", map[string]any{}, "prompt.variables.title"},
		{"too short", map[string]any{"title": "ab"}, "prompt.variables.title"},
		{"too long", map[string]any{"title": "abcdefghijk"}, "prompt.variables.title"},
		{"pattern", map[string]any{"title": "ABC"}, "prompt.variables.title"},
		{"integer type", map[string]any{"title": "abc", "count": "many"}, "prompt.variables.count"},
		{"integer ge", map[string]any{"title": "abc", "count": "0"}, "prompt.variables.count"},
		{"integer le", map[string]any{"title": "abc", "count": "6"}, "prompt.variables.count"},
		{"number gt", map[string]any{"title": "abc", "ratio": "0"}, "prompt.variables.ratio"},
		{"number lt", map[string]any{"title": "abc", "ratio": "1"}, "prompt.variables.ratio"},
		{"boolean type", map[string]any{"title": "abc", "flag": "maybe"}, "prompt.variables.flag"},
		{"enum option", map[string]any{"title": "abc", "color": "green"}, "prompt.variables.color"},
		{"array min items", map[string]any{"title": "abc", "tags": "[]"}, "prompt.variables.tags"},
		{"array max items", map[string]any{"title": "abc", "tags": `["a","b","c"]`}, "prompt.variables.tags"},
		{"nested format", map[string]any{"title": "abc", "owner": `{"email":"nope"}`}, "prompt.variables.owner.email"},
		{"unknown variable", map[string]any{"title": "abc", "extra": "x"}, "prompt.variables.extra"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := call(tc.vars)
			var apiErr *openai.Error
			require.True(t, errors.As(err, &apiErr), "%v", err)
			require.Equal(t, 400, apiErr.StatusCode, apiErr.RawJSON())
			require.Equal(t, tc.param, apiErr.Param, apiErr.RawJSON())
		})
	}
	require.Zero(t, up.Received(), "no bad input reached the model")

	// A repair that succeeds: the first reply is not an integer answer.
	up.Script(upstreamtest.JSONContent(map[string]any{"answer": "forty-two"}), upstreamtest.JSONContent(map[string]any{"answer": 42}))
	resp, err := call(map[string]any{"title": "hello"})
	require.NoError(t, err)
	require.Equal(t, responses.ResponseStatusCompleted, resp.Status)
	require.JSONEq(t, `{"answer":42}`, resp.OutputText())
	require.Equal(t, 2, up.Received())

	// A repair that never succeeds: 1 + llm_retry_limit calls, then failed.
	up.Script(upstreamtest.Text("no"), upstreamtest.Text("still no"), upstreamtest.Text("never called"))
	resp, err = call(map[string]any{"title": "hello"})
	require.NoError(t, err)
	require.Equal(t, responses.ResponseStatusFailed, resp.Status)
	require.Equal(t, "InvalidOutput", string(resp.Error.Code))
	require.Equal(t, 4, up.Received(), "exactly two more calls")
}
