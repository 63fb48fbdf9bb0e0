package prompt

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
)

func TestParseFullDocument(t *testing.T) {
	t.Parallel()
	d := mustParse(t, fullDocument)
	require.Equal(t, "qwen3-32b", d.Deployment)
	require.Len(t, d.Messages, 2)
	require.Equal(t, ShapeStructured, d.Input.Type)
	require.Equal(t, 50, *d.Input.Variables[1].Validation.Basic.MaxLength)
	require.Equal(t, 150.0, *d.Input.Variables[2].Validation.Basic.Le)
	require.JSONEq(t, `"a helpful assistant"`, string(d.Input.Variables[0].Default))
	require.Equal(t, Approval{Policy: ApprovalListed, Tools: []string{"get-sum"}}, d.Tools[0].RequireApproval)
	require.True(t, d.Tools[0].Active)
	require.Equal(t, 2, d.LLMRetryLimit)
	require.Equal(t, bud.Settings{MinConcurrency: 1, MaxConcurrency: 10,
		Cache:     bud.CacheSettings{Enabled: true, TTLSeconds: 60, Nondeterministic: true},
		RateLimit: bud.RateLimitSettings{Enabled: true, RequestsPerMinute: 600, Burst: 20}}, d.Settings.Settings)
	// Unknown model parameters are kept; numbers keep their text.
	require.JSONEq(t, `{"temperature": 0.7, "max_tokens": 512, "top_p": 1, "stop": ["\n\n"], "seed": 7, "logit_bias": {}}`, string(d.ModelParams))
	require.NoError(t, d.Validate(project))
}

func TestParseRoundTrip(t *testing.T) {
	t.Parallel()
	d := mustParse(t, fullDocument)
	raw, err := json.Marshal(d)
	require.NoError(t, err)
	again := mustParse(t, string(raw))
	require.Equal(t, d, again)
	// Each tool is written with its own type's fields only.
	var generic map[string]any
	require.NoError(t, json.Unmarshal(raw, &generic))
	tools := generic["tools"].([]any)
	require.Equal(t, map[string]any{"type": "connection", "connection_id": connID, "allowed_tools": []any{"echo", "get-sum"}, "active": true, "require_approval": []any{"get-sum"}}, tools[0])
	require.NotContains(t, tools[1], "active")
	require.NotContains(t, tools[1], "require_approval")
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	d := mustParse(t, `{"deployment": "qwen3-32b", "messages": [{"role": "user", "content": "{{ input }}"}],
		"settings": {"max_concurrency": 5},
		"tools": [{"type": "connection", "connection_id": "`+connID+`"}]}`)
	require.Equal(t, DefaultLLMRetryLimit, d.LLMRetryLimit)
	require.Equal(t, Shape{Type: ShapeText}, d.Input)
	require.Equal(t, Shape{Type: ShapeText}, d.Output)
	want := bud.DefaultSettings()
	want.MaxConcurrency = 5
	require.Equal(t, want, d.Settings.Settings)
	require.True(t, d.Tools[0].Active)
	require.Equal(t, Approval{Policy: ApprovalAlways}, d.Tools[0].RequireApproval)
	require.NoError(t, d.Validate(project))

	d = mustParse(t, `{"deployment": "qwen3-32b", "system_prompt": "hi"}`)
	require.Equal(t, bud.DefaultSettings(), d.Settings.Settings)

	// An explicit inactive tool stays inactive; null reads as absent.
	d = mustParse(t, `{"deployment": "x", "system_prompt": "hi", "llm_retry_limit": null,
		"tools": [{"type": "connection", "connection_id": "`+connID+`", "active": false, "require_approval": null}]}`)
	require.False(t, d.Tools[0].Active)
	require.Equal(t, ApprovalAlways, d.Tools[0].RequireApproval.Policy)
	require.Equal(t, DefaultLLMRetryLimit, d.LLMRetryLimit)
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		raw    string
		fields []string
	}{
		{
			name: "unknown nested field",
			raw: `{"deployment": "x", "input": {"type": "structured", "variables": [
				{"name": "a", "type": "string"},
				{"name": "b", "type": "string", "validation": {"basic": {"min_lenght": 1}}}]}}`,
			fields: []string{"input.variables[1].validation.basic.min_lenght"},
		},
		{
			name: "wrong types, all at once",
			raw: `{"deployment": 5, "llm_retry_limit": "3", "messages": {}, "allow_multiple_calls": "yes",
				"settings": {"max_concurrency": 1.5, "cache": {"ttl": 3}},
				"tools": [{"type": "connection", "require_approval": 5}, {"type": "function", "name": "f", "active": true}],
				"input": {"type": "structured", "variables": [{"name": "n", "type": "integer", "validation": {"basic": {"ge": "0", "min_items": 1.5}}}]},
				"model_params": [], "extra": 1}`,
			fields: []string{
				"allow_multiple_calls", "deployment", "extra",
				"input.variables[0].validation.basic.ge", "input.variables[0].validation.basic.min_items",
				"llm_retry_limit", "messages", "model_params", "settings.cache.ttl", "settings.max_concurrency",
				"tools[0].require_approval", "tools[1].active",
			},
		},
		{
			name:   "message fields",
			raw:    `{"deployment": "x", "messages": [{"role": "user", "content": 1}, {"role": "user", "text": "hi"}]}`,
			fields: []string{"messages[0].content", "messages[1].text"},
		},
		{
			name:   "infinite number",
			raw:    `{"deployment": "x", "input": {"type": "structured", "variables": [{"name": "n", "type": "number", "validation": {"basic": {"le": 1e999}}}]}}`,
			fields: []string{"input.variables[0].validation.basic.le"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.raw))
			require.Equal(t, tc.fields, fieldKeys(t, err, bud.EINVALID))
		})
	}
}

func TestParseNotADocument(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{``, `[]`, `"x"`, `{"deployment": "x"`, `{"deployment": "x"} {}`, `{"a": tru}`} {
		_, err := Parse([]byte(raw))
		require.Equal(t, bud.EINVALID, bud.ErrorCode(err), "input %q", raw)
		require.Empty(t, bud.ErrorFields(err), "input %q", raw)
	}
}

func TestApprovalRequires(t *testing.T) {
	t.Parallel()
	require.False(t, Approval{Policy: ApprovalNever}.Requires("echo"))
	require.True(t, Approval{Policy: ApprovalAlways}.Requires("echo"))
	listed := Approval{Policy: ApprovalListed, Tools: []string{"delete"}}
	require.True(t, listed.Requires("delete"))
	require.False(t, listed.Requires("echo"))
}
