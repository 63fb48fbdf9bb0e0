package prompt

import (
	"errors"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
)

const connID = "7f9c2d1e-2a4b-4c3d-9e8f-1a2b3c4d5e6f"

// fullDocument uses every part of the document.
const fullDocument = `{
  "deployment": "qwen3-32b",
  "model_params": {"temperature": 0.7, "max_tokens": 512, "top_p": 1, "stop": ["\n\n"], "seed": 7, "logit_bias": {}},
  "system_prompt": "You are {{ persona }}.",
  "messages": [
    {"role": "user", "content": "Hi, I am {{ name }}{% if age %}, {{ age }} years old{% endif %}."},
    {"role": "assistant", "content": "Hello {{ name }}!"}
  ],
  "input": {"type": "structured", "variables": [
    {"name": "persona", "type": "string", "description": "Who the assistant is", "default": "a helpful assistant"},
    {"name": "name", "type": "string", "required": true, "validation": {"basic": {"min_length": 1, "max_length": 50}}},
    {"name": "age", "type": "integer", "validation": {"basic": {"ge": 0, "le": 150}, "custom": ["must be plausible for an adult"]}}
  ]},
  "output": {"type": "structured", "variables": [
    {"name": "answer", "type": "string", "required": true},
    {"name": "confidence", "type": "number", "validation": {"basic": {"ge": 0, "le": 1}}}
  ]},
  "tools": [
    {"type": "connection", "connection_id": "` + connID + `", "allowed_tools": ["echo", "get-sum"], "active": true, "require_approval": ["get-sum"]},
    {"type": "function", "name": "get_weather", "description": "Weather for a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
  ],
  "allow_multiple_calls": true,
  "llm_retry_limit": 2,
  "settings": {"min_concurrency": 1, "max_concurrency": 10, "autoscale": false, "cache": {"enabled": true, "ttl_seconds": 60, "nondeterministic": true}, "rate_limit": {"enabled": true, "requests_per_minute": 600, "burst": 20}}
}`

// project is the Checker of a project with one model deployment, one prompt
// deployment and one connection.
var project = Checker{
	DeploymentKind: func(name string) (string, bool) {
		switch name {
		case "qwen3-32b":
			return bud.KindModel, true
		case "support-bot":
			return bud.KindPrompt, true
		}
		return "", false
	},
	ConnectionExists: func(id string) bool { return id == connID },
}

func mustParse(t *testing.T, raw string) *Document {
	t.Helper()
	d, err := Parse([]byte(raw))
	require.NoError(t, err)
	return d
}

// fieldKeys returns the sorted field paths of a *bud.Error, requiring code.
func fieldKeys(t *testing.T, err error, code string) []string {
	t.Helper()
	require.Error(t, err)
	var e *bud.Error
	require.True(t, errors.As(err, &e), "not a *bud.Error: %v", err)
	require.Equal(t, code, e.Code, "error: %v", err)
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func ptr[T any](v T) *T { return &v }
