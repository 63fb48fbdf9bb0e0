package prompt

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
	"github.com/budhq/bud/strictschema"
)

func TestOutputFormatStrict(t *testing.T) {
	t.Parallel()
	c := mustCompile(t, `{"deployment": "qwen3-32b", "system_prompt": "hi", "output": {"type": "structured", "variables": [
		{"name": "answer", "type": "string", "required": true, "description": "The answer", "validation": {"basic": {"min_length": 1, "pattern": "^[A-Z]"}}},
		{"name": "lang", "type": "enum", "options": ["en", "fr"], "default": "en"},
		{"name": "site", "type": "string", "validation": {"basic": {"format": "uri"}}},
		{"name": "day", "type": "string", "validation": {"basic": {"format": "date"}}},
		{"name": "score", "type": "number", "validation": {"basic": {"ge": 0, "lt": 1}}},
		{"name": "tags", "type": "array", "items": {"type": "string", "validation": {"basic": {"max_length": 10}}}, "validation": {"basic": {"max_items": 3}}},
		{"name": "meta", "type": "object", "variables": [
			{"name": "source", "type": "string", "required": true},
			{"name": "pages", "type": "integer"}]},
		{"name": "people", "type": "array", "required": true, "items": {"type": "object", "variables": [
			{"name": "name", "type": "string", "required": true}]}}]}}`)
	f := c.OutputFormat()
	require.True(t, f.Strict)
	require.Empty(t, f.NotStrictReason)
	require.JSONEq(t, `{"type": "object", "additionalProperties": false,
		"required": ["answer", "lang", "site", "day", "score", "tags", "meta", "people"],
		"properties": {
			"answer": {"type": "string", "description": "The answer", "pattern": "^[A-Z]"},
			"lang": {"type": ["string", "null"], "enum": ["en", "fr", null]},
			"site": {"type": ["string", "null"]},
			"day": {"type": ["string", "null"], "format": "date"},
			"score": {"type": ["number", "null"], "minimum": 0, "exclusiveMaximum": 1},
			"tags": {"type": ["array", "null"], "items": {"type": "string"}, "maxItems": 3},
			"meta": {"anyOf": [{"type": "object", "additionalProperties": false, "required": ["source", "pages"], "properties": {
				"source": {"type": "string"}, "pages": {"type": ["integer", "null"]}}}, {"type": "null"}]},
			"people": {"type": "array", "items": {"type": "object", "additionalProperties": false, "required": ["name"],
				"properties": {"name": {"type": "string"}}}}}}`, string(f.Schema))
	require.Empty(t, strictschema.CheckJSON(f.Schema))

	// What the strict schema leaves out is still checked after the reply,
	// and its nulls read as absent: the default applies.
	v, err := c.ValidateOutput(`{"answer": "Yes", "lang": null, "site": null, "day": null, "score": null, "tags": null, "meta": null, "people": []}`)
	require.NoError(t, err)
	require.Equal(t, map[string]any{"answer": "Yes", "lang": "en", "people": []any{}}, v)
	_, err = c.ValidateOutput(`{"answer": "", "site": "not a uri", "tags": ["a very long tag"], "people": []}`)
	require.Equal(t, map[string]string{
		"output.answer":  `must be at least 1 characters long (min_length); must match the pattern "^[A-Z]" (pattern)`,
		"output.site":    "must be a valid uri (format)",
		"output.tags[0]": "must be at most 10 characters long (max_length)",
	}, bud.ErrorFields(err))
}

// TestOutputFormatNotStrict is an output strict mode cannot express within
// OpenAI's limits: it goes non-strict with the full schema, and says why.
func TestOutputFormatNotStrict(t *testing.T) {
	t.Parallel()
	var vars []string
	for i := range 3 {
		opts := make([]string, 400)
		for j := range opts {
			opts[j] = fmt.Sprintf(`"o%d"`, j)
		}
		vars = append(vars, fmt.Sprintf(`{"name": "e%d", "type": "enum", "required": true, "options": [%s]}`, i, strings.Join(opts, ",")))
	}
	c := mustCompile(t, `{"deployment": "qwen3-32b", "system_prompt": "hi", "output": {"type": "structured", "variables": [`+strings.Join(vars, ",")+`]}}`)
	f := c.OutputFormat()
	require.False(t, f.Strict)
	require.Equal(t, "the output schema is beyond OpenAI's strict mode: In context=(), the schema has 1200 enum values; at most 1000 are allowed.", f.NotStrictReason)
	require.Equal(t, string(c.OutputSchema()), string(f.Schema))

	text := mustCompile(t, `{"deployment": "qwen3-32b", "system_prompt": "hi"}`)
	require.Equal(t, OutputFormat{}, text.OutputFormat())
}

// TestDocumentedOutputsAreStrict checks the output schema of every prompt
// document the README shows, and of every example document under
// testdata/documents, against OpenAI's strict-mode rules; each shape of the
// run form's tests is checked as an output too.
func TestDocumentedOutputsAreStrict(t *testing.T) {
	t.Parallel()
	docs := map[string]string{}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	require.NoError(t, err)
	for i, raw := range readmeDocuments(t, string(readme)) {
		docs[fmt.Sprintf("README document %d", i)] = raw
	}
	files, err := filepath.Glob(filepath.Join("testdata", "documents", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		docs[f] = string(raw)
	}
	structured := 0
	for name, raw := range docs {
		c := mustCompile(t, raw)
		if c.OutputSchema() == nil {
			continue
		}
		structured++
		f := c.OutputFormat()
		require.True(t, f.Strict, "%s: %s", name, f.NotStrictReason)
		require.Empty(t, strictschema.CheckJSON(f.Schema), name)
	}
	require.GreaterOrEqual(t, structured, 2, "the README and testdata show structured outputs")
}

// readmeDocuments finds the prompt documents in the README's examples: every
// JSON object in a single-quoted shell argument or a json code block, and
// the objects inside them, that has a deployment and a system prompt or
// messages.
func readmeDocuments(t *testing.T, readme string) []string {
	t.Helper()
	var candidates []string
	for _, m := range regexp.MustCompile(`(?s)'(\{.*?\})'`).FindAllStringSubmatch(readme, -1) {
		candidates = append(candidates, m[1])
	}
	for _, m := range regexp.MustCompile("(?s)```json\n(.*?)```").FindAllStringSubmatch(readme, -1) {
		candidates = append(candidates, m[1])
	}
	var docs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			_, dep := v["deployment"]
			_, sys := v["system_prompt"]
			_, msgs := v["messages"]
			if dep && (sys || msgs) {
				raw, err := json.Marshal(v)
				require.NoError(t, err)
				docs = append(docs, string(raw))
				return
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	for _, c := range candidates {
		var v any
		if json.Unmarshal([]byte(c), &v) == nil {
			walk(v)
		}
	}
	require.NotEmpty(t, docs, "no prompt document found in the README")
	return docs
}
