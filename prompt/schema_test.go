package prompt

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
)

func compiledDocumentSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema()))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	require.NoError(t, c.AddResource("https://bud.example/prompt.schema.json", doc))
	sch, err := c.Compile("https://bud.example/prompt.schema.json")
	require.NoError(t, err)
	return sch
}

func validateJSON(sch *jsonschema.Schema, raw string) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(raw)))
	if err != nil {
		return err
	}
	return sch.Validate(v)
}

func TestSchemaAccepts(t *testing.T) {
	t.Parallel()
	sch := compiledDocumentSchema(t)
	require.NoError(t, validateJSON(sch, fullDocument))
	require.NoError(t, validateJSON(sch, `{"deployment": "qwen3-32b", "system_prompt": "Be brief."}`))
	require.NoError(t, validateJSON(sch, `{"deployment": "qwen3-32b", "messages": [{"role": "user", "content": "{{ input }}"}],
		"tools": [{"type": "connection", "connection_id": "`+connID+`", "require_approval": "never"}]}`))

	// What Parse reads and writes back is a document the schema accepts.
	raw, err := json.Marshal(mustParse(t, fullDocument))
	require.NoError(t, err)
	require.NoError(t, validateJSON(sch, string(raw)))
	raw, err = json.Marshal(mustParse(t, `{"deployment": "qwen3-32b", "system_prompt": "hi"}`))
	require.NoError(t, err)
	require.NoError(t, validateJSON(sch, string(raw)))
}

func TestSchemaRejects(t *testing.T) {
	t.Parallel()
	sch := compiledDocumentSchema(t)
	for name, raw := range map[string]string{
		"no deployment":        `{"system_prompt": "hi"}`,
		"no prompt text":       `{"deployment": "qwen3-32b"}`,
		"unknown field":        `{"deployment": "qwen3-32b", "system_prompt": "hi", "temperature": 1}`,
		"retry limit":          `{"deployment": "qwen3-32b", "system_prompt": "hi", "llm_retry_limit": 11}`,
		"message role":         `{"deployment": "qwen3-32b", "messages": [{"role": "system", "content": "hi"}]}`,
		"temperature":          `{"deployment": "qwen3-32b", "system_prompt": "hi", "model_params": {"temperature": 3}}`,
		"structured, no vars":  `{"deployment": "qwen3-32b", "system_prompt": "hi", "input": {"type": "structured"}}`,
		"text with vars":       `{"deployment": "qwen3-32b", "system_prompt": "hi", "input": {"type": "text", "variables": [{"name": "a", "type": "string"}]}}`,
		"enum without options": `{"deployment": "qwen3-32b", "system_prompt": "hi", "input": {"type": "structured", "variables": [{"name": "a", "type": "enum"}]}}`,
		"bad variable name":    `{"deployment": "qwen3-32b", "system_prompt": "hi", "input": {"type": "structured", "variables": [{"name": "a-b", "type": "string"}]}}`,
		"named array item":     `{"deployment": "qwen3-32b", "system_prompt": "hi", "input": {"type": "structured", "variables": [{"name": "a", "type": "array", "items": {"name": "x", "type": "string"}}]}}`,
		"misspelt constraint":  `{"deployment": "qwen3-32b", "system_prompt": "hi", "input": {"type": "structured", "variables": [{"name": "a", "type": "string", "validation": {"basic": {"min_lenght": 1}}}]}}`,
		"connection tool name": `{"deployment": "qwen3-32b", "system_prompt": "hi", "tools": [{"type": "connection", "connection_id": "` + connID + `", "name": "x"}]}`,
		"connection id":        `{"deployment": "qwen3-32b", "system_prompt": "hi", "tools": [{"type": "connection", "connection_id": "slack"}]}`,
		"approval":             `{"deployment": "qwen3-32b", "system_prompt": "hi", "tools": [{"type": "connection", "connection_id": "` + connID + `", "require_approval": "sometimes"}]}`,
		"function name":        `{"deployment": "qwen3-32b", "system_prompt": "hi", "tools": [{"type": "function", "name": "get weather"}]}`,
		"settings":             `{"deployment": "qwen3-32b", "system_prompt": "hi", "settings": {"max_concurrency": 0}}`,
	} {
		require.Error(t, validateJSON(sch, raw), name)
	}
}

// TestSchemaLimits keeps the published numbers in step with the code's.
func TestSchemaLimits(t *testing.T) {
	t.Parallel()
	var s struct {
		Properties struct {
			Messages      struct{ MaxItems int } `json:"messages"`
			Tools         struct{ MaxItems int } `json:"tools"`
			LLMRetryLimit struct {
				Maximum int `json:"maximum"`
				Default int `json:"default"`
			} `json:"llm_retry_limit"`
		} `json:"properties"`
		Defs struct {
			Settings struct {
				Properties struct {
					MaxConcurrency struct {
						Maximum int `json:"maximum"`
						Default int `json:"default"`
					} `json:"max_concurrency"`
					Cache struct {
						Properties struct {
							TTL struct{ Maximum int } `json:"ttl_seconds"`
						} `json:"properties"`
					} `json:"cache"`
				} `json:"properties"`
			} `json:"settings"`
			Shape struct {
				Properties struct {
					Variables struct{ MaxItems int } `json:"variables"`
				} `json:"properties"`
			} `json:"shape"`
		} `json:"$defs"`
	}
	require.NoError(t, json.Unmarshal(Schema(), &s))
	require.Equal(t, MaxMessages, s.Properties.Messages.MaxItems)
	require.Equal(t, MaxTools, s.Properties.Tools.MaxItems)
	require.Equal(t, MaxLLMRetryLimit, s.Properties.LLMRetryLimit.Maximum)
	require.Equal(t, DefaultLLMRetryLimit, s.Properties.LLMRetryLimit.Default)
	require.Equal(t, bud.MaxConcurrencyLimit, s.Defs.Settings.Properties.MaxConcurrency.Maximum)
	require.Equal(t, bud.DefaultSettings().MaxConcurrency, s.Defs.Settings.Properties.MaxConcurrency.Default)
	require.Equal(t, bud.MaxCacheTTLSeconds, s.Defs.Settings.Properties.Cache.Properties.TTL.Maximum)
	require.Equal(t, MaxVariables, s.Defs.Shape.Properties.Variables.MaxItems)
}
