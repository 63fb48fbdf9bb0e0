package prompt

import (
	"encoding/json"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
)

func mustCompile(t *testing.T, raw string) *Compiled {
	t.Helper()
	c, err := Compile(mustParse(t, raw))
	require.NoError(t, err)
	return c
}

// constrained has a variable for every constraint.
const constrained = `{"deployment": "qwen3-32b", "system_prompt": "{{ name }}", "input": {"type": "structured", "variables": [
	{"name": "name", "type": "string", "required": true, "validation": {"basic": {"min_length": 2, "max_length": 5, "pattern": "^[a-z]+$"}}},
	{"name": "email", "type": "string", "validation": {"basic": {"format": "email"}}},
	{"name": "age", "type": "integer", "validation": {"basic": {"ge": 18, "le": 120}}},
	{"name": "score", "type": "number", "validation": {"basic": {"gt": 0, "lt": 10, "multiple_of": 0.5}}},
	{"name": "plan", "type": "enum", "options": ["free", "pro"], "default": "free"},
	{"name": "subscribed", "type": "boolean", "default": true},
	{"name": "tags", "type": "array", "items": {"type": "string", "validation": {"basic": {"max_length": 3}}}, "validation": {"basic": {"min_items": 1, "max_items": 2}}},
	{"name": "address", "type": "object", "variables": [
		{"name": "city", "type": "string", "required": true},
		{"name": "zip", "type": "string", "default": "00000", "validation": {"basic": {"pattern": "^[0-9]{5}$"}}}]}
]}}`

func TestValidateInputDefaults(t *testing.T) {
	t.Parallel()
	c := mustCompile(t, constrained)
	vars, err := c.ValidateInput("", map[string]any{"name": "ann", "age": 30.0, "score": json.Number("2.5"), "address": map[string]any{"city": "Pune"}, "email": nil})
	require.NoError(t, err)
	require.Equal(t, map[string]any{
		"name": "ann", "age": int64(30), "score": 2.5, "plan": "free", "subscribed": true,
		"address": map[string]any{"city": "Pune", "zip": "00000"},
	}, vars)
}

func TestValidateInputConstraints(t *testing.T) {
	t.Parallel()
	c := mustCompile(t, constrained)
	for _, tc := range []struct {
		name   string
		vars   map[string]any
		fields map[string]string
	}{
		{"required", map[string]any{}, map[string]string{"prompt.variables.name": "is required"}},
		{"min_length", map[string]any{"name": "a"}, map[string]string{"prompt.variables.name": "must be at least 2 characters long (min_length)"}},
		{"max_length", map[string]any{"name": "abcdef"}, map[string]string{"prompt.variables.name": "must be at most 5 characters long (max_length)"}},
		{"pattern", map[string]any{"name": "AB"}, map[string]string{"prompt.variables.name": `must match the pattern "^[a-z]+$" (pattern)`}},
		{"format", map[string]any{"name": "ann", "email": "not-an-email"}, map[string]string{"prompt.variables.email": "must be a valid email (format)"}},
		{"type", map[string]any{"name": "ann", "age": "thirty"}, map[string]string{"prompt.variables.age": "must be an integer, not a string"}},
		{"integer", map[string]any{"name": "ann", "age": 30.5}, map[string]string{"prompt.variables.age": "must be an integer, not a number"}},
		{"ge", map[string]any{"name": "ann", "age": 17}, map[string]string{"prompt.variables.age": "must be >= 18 (ge)"}},
		{"le", map[string]any{"name": "ann", "age": 121}, map[string]string{"prompt.variables.age": "must be <= 120 (le)"}},
		{"gt", map[string]any{"name": "ann", "score": 0}, map[string]string{"prompt.variables.score": "must be > 0 (gt)"}},
		{"lt and multiple_of", map[string]any{"name": "ann", "score": 10.25}, map[string]string{"prompt.variables.score": "must be < 10 (lt); must be a multiple of 0.5 (multiple_of)"}},
		{"options", map[string]any{"name": "ann", "plan": "gold"}, map[string]string{"prompt.variables.plan": `must be one of "free", "pro" (options)`}},
		{"min_items", map[string]any{"name": "ann", "tags": []any{}}, map[string]string{"prompt.variables.tags": "must have at least 1 items (min_items)"}},
		{"max_items and items", map[string]any{"name": "ann", "tags": []string{"a", "b", "long"}}, map[string]string{
			"prompt.variables.tags":    "must have at most 2 items (max_items)",
			"prompt.variables.tags[2]": "must be at most 3 characters long (max_length)",
		}},
		{"nested", map[string]any{"name": "ann", "address": map[string]any{"zip": "1"}}, map[string]string{
			"prompt.variables.address.city": "is required",
			"prompt.variables.address.zip":  `must match the pattern "^[0-9]{5}$" (pattern)`,
		}},
		{"unknown variable", map[string]any{"name": "ann", "nmae": "x"}, map[string]string{"prompt.variables.nmae": "is not a variable of this prompt"}},
		{"all at once", map[string]any{"age": 5, "plan": "gold", "address": "Pune"}, map[string]string{
			"prompt.variables.name":    "is required",
			"prompt.variables.age":     "must be >= 18 (ge)",
			"prompt.variables.plan":    `must be one of "free", "pro" (options)`,
			"prompt.variables.address": "must be an object, not a string",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := c.ValidateInput("", tc.vars)
			require.Equal(t, bud.EINVALID, bud.ErrorCode(err), "%v", err)
			require.Equal(t, tc.fields, bud.ErrorFields(err))
		})
	}
}

func TestValidateInputText(t *testing.T) {
	t.Parallel()
	c := mustCompile(t, `{"deployment": "qwen3-32b", "messages": [{"role": "user", "content": "{{ input }}"}]}`)
	vars, err := c.ValidateInput("hello", nil)
	require.NoError(t, err)
	require.Equal(t, map[string]any{"input": "hello"}, vars)
	require.Nil(t, c.InputSchema())

	_, err = c.ValidateInput("", map[string]any{"x": 1})
	require.Equal(t, map[string]string{"input": "is required", "prompt.variables": "must be empty: this prompt takes text input"}, bud.ErrorFields(err))

	s := mustCompile(t, constrained)
	_, err = s.ValidateInput("hello", map[string]any{"name": "ann"})
	require.Equal(t, []string{"input"}, fieldKeys(t, err, bud.EINVALID))
}

func TestRender(t *testing.T) {
	t.Parallel()
	c := mustCompile(t, `{"deployment": "qwen3-32b",
		"system_prompt": "You are {{ persona }}.",
		"messages": [
			{"role": "developer", "content": "{% if nickname %}Call them {{ nickname }}.{% endif %}"},
			{"role": "user", "content": "I am {{ name|title }}, {{ age }}, from {{ address.city }}{% if address.zip %} {{ address.zip }}{% endif %}. Tags: {{ tags|join(', ') }}. Ratio {{ ratio }}."},
			{"role": "assistant", "content": "{% for t in tags %}[{{ loop.index }}:{{ t }}]{% endfor %}"}
		],
		"input": {"type": "structured", "variables": [
			{"name": "persona", "type": "string", "default": "a helpful assistant"},
			{"name": "nickname", "type": "string"},
			{"name": "name", "type": "string", "required": true},
			{"name": "age", "type": "integer"},
			{"name": "ratio", "type": "number"},
			{"name": "tags", "type": "array", "items": {"type": "string"}},
			{"name": "address", "type": "object", "variables": [{"name": "city", "type": "string"}, {"name": "zip", "type": "string"}]}
		]}}`)
	vars, err := c.ValidateInput("", map[string]any{"name": "ann lee", "age": 30, "ratio": 0.25, "tags": []any{"a", "b"}, "address": map[string]any{"city": "Pune"}})
	require.NoError(t, err)
	msgs, err := c.Render(vars)
	require.NoError(t, err)
	require.Equal(t, []Message{
		{Role: RoleSystem, Content: "You are a helpful assistant."},
		{Role: RoleDeveloper, Content: ""},
		{Role: RoleUser, Content: "I am Ann Lee, 30, from Pune. Tags: a, b. Ratio 0.25."},
		{Role: RoleAssistant, Content: "[1:a][2:b]"},
	}, msgs)

	text := mustCompile(t, `{"deployment": "qwen3-32b", "messages": [{"role": "user", "content": "Translate: {{ input }}"}]}`)
	vars, err = text.ValidateInput("bonjour", nil)
	require.NoError(t, err)
	msgs, err = text.Render(vars)
	require.NoError(t, err)
	require.Equal(t, []Message{{Role: RoleUser, Content: "Translate: bonjour"}}, msgs)
}

func TestRenderConcurrently(t *testing.T) {
	t.Parallel()
	c := mustCompile(t, fullDocument)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vars, err := c.ValidateInput("", map[string]any{"name": "ann", "age": i + 18})
			require.NoError(t, err)
			msgs, err := c.Render(vars)
			require.NoError(t, err)
			require.Len(t, msgs, 3)
		}()
	}
	wg.Wait()
}

func TestValidateOutput(t *testing.T) {
	t.Parallel()
	c := mustCompile(t, fullDocument)
	require.JSONEq(t, `{"type": "object", "additionalProperties": false, "required": ["answer"], "properties": {
		"answer": {"type": "string"}, "confidence": {"type": "number", "minimum": 0, "maximum": 1}}}`, string(c.OutputSchema()))

	v, err := c.ValidateOutput(`{"answer": "42", "confidence": 0.5}`)
	require.NoError(t, err)
	require.Equal(t, map[string]any{"answer": "42", "confidence": 0.5}, v)

	v, err = c.ValidateOutput("```json\n{\"answer\": \"42\", \"confidence\": 1}\n```")
	require.NoError(t, err)
	require.Equal(t, map[string]any{"answer": "42", "confidence": int64(1)}, v)

	_, err = c.ValidateOutput(`{"answer": 42, "confidence": 2, "extra": true}`)
	require.Equal(t, map[string]string{
		"output.answer":     "must be a string, not a number",
		"output.confidence": "must be <= 1 (le)",
		"output.extra":      "is not a field of the output",
	}, bud.ErrorFields(err))
	require.Equal(t, "the reply does not match the output schema: output.answer: must be a string, not a number; output.confidence: must be <= 1 (le); output.extra: is not a field of the output", bud.ErrorMessage(err))

	_, err = c.ValidateOutput(`{}`)
	require.Equal(t, map[string]string{"output.answer": "is required"}, bud.ErrorFields(err))

	_, err = c.ValidateOutput(`Sure! Here is the JSON`)
	require.Equal(t, []string{"output"}, fieldKeys(t, err, bud.EINVALID))

	text := mustCompile(t, `{"deployment": "qwen3-32b", "system_prompt": "hi"}`)
	v, err = text.ValidateOutput("plain words")
	require.NoError(t, err)
	require.Equal(t, "plain words", v)
	require.Nil(t, text.OutputSchema())
}

func TestInputSchema(t *testing.T) {
	t.Parallel()
	c := mustCompile(t, fullDocument)
	require.JSONEq(t, `{"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
		"persona": {"type": "string", "description": "Who the assistant is", "default": "a helpful assistant"},
		"name": {"type": "string", "minLength": 1, "maxLength": 50},
		"age": {"type": "integer", "minimum": 0, "maximum": 150}}}`, string(c.InputSchema()))
}

func TestCompileRefusesInvalid(t *testing.T) {
	t.Parallel()
	d := mustParse(t, fullDocument)
	d.Messages[0].Content = "{{ nobody }}"
	_, err := Compile(d)
	require.Equal(t, []string{"messages[0].content"}, fieldKeys(t, err, bud.EUNPROCESSABLE))
}

func TestValidateOutputAppliesDefaults(t *testing.T) {
	t.Parallel()
	c := mustCompile(t, `{"deployment": "qwen3-32b", "system_prompt": "hi", "output": {"type": "structured", "variables": [
		{"name": "answer", "type": "string", "required": true},
		{"name": "lang", "type": "enum", "options": ["en", "fr"], "default": "en"},
		{"name": "score", "type": "integer", "default": 3, "validation": {"basic": {"le": 5}}},
		{"name": "note", "type": "string"},
		{"name": "meta", "type": "object", "variables": [
			{"name": "source", "type": "string", "default": "model"},
			{"name": "tags", "type": "array", "items": {"type": "string"}, "default": ["none"]}]}]}}`)

	// Left out, or null as a strict schema has the model say so: the
	// default stands in, in nested objects too; a field without a default
	// stays absent.
	for _, reply := range []string{
		`{"answer": "42", "meta": {}}`,
		`{"answer": "42", "lang": null, "score": null, "note": null, "meta": {"source": null, "tags": null}}`,
	} {
		v, err := c.ValidateOutput(reply)
		require.NoError(t, err, reply)
		require.Equal(t, map[string]any{"answer": "42", "lang": "en", "score": int64(3),
			"meta": map[string]any{"source": "model", "tags": []any{"none"}}}, v, reply)
	}

	// A value the reply gives is kept, and checked.
	v, err := c.ValidateOutput(`{"answer": "42", "lang": "fr", "score": 5}`)
	require.NoError(t, err)
	require.Equal(t, map[string]any{"answer": "42", "lang": "fr", "score": int64(5)}, v)
	_, err = c.ValidateOutput(`{"answer": "42", "score": 6}`)
	require.Equal(t, map[string]string{"output.score": "must be <= 5 (le)"}, bud.ErrorFields(err))

	// A required field has no stand-in: null is as good as absent.
	_, err = c.ValidateOutput(`{"answer": null}`)
	require.Equal(t, map[string]string{"output.answer": "is required"}, bud.ErrorFields(err))
}
