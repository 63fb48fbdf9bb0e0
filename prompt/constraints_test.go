package prompt

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
)

// constraintVars use every pydantic-style constraint beyond the first set,
// nested objects and lists of objects with rules of their own included.
const constraintVars = `[
	{"name": "code", "type": "string", "validation": {"basic": {"strip_whitespace": true, "to_upper": true, "pattern": "^[A-Z]{3}$"}}},
	{"name": "handle", "type": "string", "default": "  Ada ", "validation": {"basic": {"strip_whitespace": true, "to_lower": true, "max_length": 5}}},
	{"name": "site", "type": "string", "validation": {"basic": {"format": "url"}}},
	{"name": "addr", "type": "string", "validation": {"basic": {"format": "ip"}}},
	{"name": "v4", "type": "string", "validation": {"basic": {"format": "ipv4"}}},
	{"name": "host", "type": "string", "validation": {"basic": {"format": "hostname"}}},
	{"name": "price", "type": "number", "validation": {"basic": {"max_digits": 5, "decimal_places": 2}}},
	{"name": "level", "type": "integer", "validation": {"basic": {"enum": [1, 2, 3]}}},
	{"name": "ratio", "type": "number", "validation": {"basic": {"enum": [0.5, 1]}}},
	{"name": "flag", "type": "boolean", "validation": {"basic": {"enum": [true]}}},
	{"name": "tags", "type": "array", "items": {"type": "string", "validation": {"basic": {"to_lower": true}}}, "validation": {"basic": {"unique_items": true}}},
	{"name": "lines", "type": "array", "items": {"type": "object", "variables": [
		{"name": "sku", "type": "string", "required": true, "validation": {"basic": {"strip_whitespace": true, "min_length": 2}}},
		{"name": "qty", "type": "integer", "required": true, "validation": {"basic": {"ge": 1, "max_digits": 2}}}]}},
	{"name": "owner", "type": "object", "variables": [
		{"name": "email", "type": "string", "required": true, "validation": {"basic": {"format": "email", "to_lower": true}}}]}
]`

func TestBasicConstraintsInput(t *testing.T) {
	t.Parallel()
	c := mustCompile(t, `{"deployment": "qwen3-32b", "system_prompt": "{{ code }}", "input": {"type": "structured", "variables": `+constraintVars+`}}`)

	// Normalisers run first: what is checked and rendered is the rewritten
	// value, the default's too.
	vars, err := c.ValidateInput("", map[string]any{
		"code": "  abc ", "site": "https://example.com/a?b=1", "addr": "2001:db8::1", "v4": "10.0.0.1", "host": "api.example.com",
		"price": 123.45, "level": 2, "ratio": 0.5, "flag": true, "tags": []any{"A", "b"},
		"lines": []any{map[string]any{"sku": " x1 ", "qty": 12}},
		"owner": map[string]any{"email": "Ada@Example.COM"},
	})
	require.NoError(t, err)
	require.Equal(t, "ABC", vars["code"])
	require.Equal(t, "ada", vars["handle"])
	require.Equal(t, []any{"a", "b"}, vars["tags"])
	require.Equal(t, "x1", vars["lines"].([]any)[0].(map[string]any)["sku"])
	require.Equal(t, "ada@example.com", vars["owner"].(map[string]any)["email"])

	_, err = c.ValidateInput("", map[string]any{
		"code": "abcd", "handle": "Grace Hopper", "site": "ftp://example.com", "addr": "1.2.3", "v4": "::1", "host": "bad host",
		"price": 12345.6, "level": 4, "ratio": 0.25, "flag": false, "tags": []any{"A", "a"},
		"lines": []any{map[string]any{"sku": " x ", "qty": 100}, map[string]any{"sku": "ok", "qty": 0}},
		"owner": map[string]any{"email": "nobody"},
	})
	require.Equal(t, map[string]string{
		"prompt.variables.code":         `must match the pattern "^[A-Z]{3}$" (pattern)`,
		"prompt.variables.handle":       "must be at most 5 characters long (max_length)",
		"prompt.variables.site":         "must be a valid url (format)",
		"prompt.variables.addr":         "must be a valid ip (format)",
		"prompt.variables.v4":           "must be a valid ipv4 (format)",
		"prompt.variables.host":         "must be a valid hostname (format)",
		"prompt.variables.price":        "must have at most 5 digits (max_digits)",
		"prompt.variables.level":        `must be one of "1", "2", "3" (enum)`,
		"prompt.variables.ratio":        `must be one of "0.5", "1" (enum)`,
		"prompt.variables.flag":         `must be one of "true" (enum)`,
		"prompt.variables.tags":         "must not repeat items: items 0 and 1 are equal (unique_items)",
		"prompt.variables.lines[0].sku": "must be at least 2 characters long (min_length)",
		"prompt.variables.lines[0].qty": "must have at most 2 digits (max_digits)",
		"prompt.variables.lines[1].qty": "must be >= 1 (ge)",
		"prompt.variables.owner.email":  "must be a valid email (format)",
	}, bud.ErrorFields(err))

	_, err = c.ValidateInput("", map[string]any{"price": 1.005})
	require.Equal(t, map[string]string{"prompt.variables.price": "must have at most 2 decimal places (decimal_places)"}, bud.ErrorFields(err))
	_, err = c.ValidateInput("", map[string]any{"price": 0.05})
	require.NoError(t, err)
}

func TestBasicConstraintsOutput(t *testing.T) {
	t.Parallel()
	c := mustCompile(t, `{"deployment": "qwen3-32b", "system_prompt": "hi", "output": {"type": "structured", "variables": `+constraintVars+`}}`)
	v, err := c.ValidateOutput(`{"code": " xyz", "price": 99.5, "level": 3, "tags": ["X"], "lines": [{"sku": " ab ", "qty": 1}], "owner": {"email": "A@B.CO"}}`)
	require.NoError(t, err)
	require.Equal(t, map[string]any{"code": "XYZ", "handle": "ada", "price": 99.5, "level": int64(3), "tags": []any{"x"},
		"lines": []any{map[string]any{"sku": "ab", "qty": int64(1)}}, "owner": map[string]any{"email": "a@b.co"}}, v)

	_, err = c.ValidateOutput(`{"price": 9.999, "level": 7, "tags": ["a", "A"], "lines": [{"sku": "ab", "qty": 123}]}`)
	require.Equal(t, map[string]string{
		"output.price":        "must have at most 2 decimal places (decimal_places)",
		"output.level":        `must be one of "1", "2", "3" (enum)`,
		"output.tags":         "must not repeat items: items 0 and 1 are equal (unique_items)",
		"output.lines[0].qty": "must have at most 2 digits (max_digits)",
	}, bud.ErrorFields(err))

	// What strict mode supports goes upstream (enums, nullable); the rest
	// Bud checks.
	require.True(t, c.OutputFormat().Strict)
	require.Contains(t, string(c.OutputFormat().Schema), `"level":{"enum":[1,2,3,null],"type":["integer","null"]}`)
}

func TestBasicConstraintsRefused(t *testing.T) {
	t.Parallel()
	d := mustParse(t, `{"deployment": "qwen3-32b", "system_prompt": "hi", "input": {"type": "structured", "variables": [
		{"name": "a", "type": "integer", "validation": {"basic": {"unique_items": true, "strip_whitespace": true, "decimal_places": 2, "max_digits": 0}}},
		{"name": "b", "type": "string", "validation": {"basic": {"to_lower": true, "to_upper": true, "format": "phone", "enum": [1]}}},
		{"name": "c", "type": "number", "validation": {"basic": {"max_digits": 3, "decimal_places": 4, "enum": [1, "x", 1.0]}}},
		{"name": "d", "type": "array", "items": {"type": "string"}, "validation": {"basic": {"enum": [1]}}},
		{"name": "e", "type": "string", "default": "  FITS ONCE STRIPPED  ", "validation": {"basic": {"strip_whitespace": true, "to_lower": true, "max_length": 18}}},
		{"name": "f", "type": "number", "default": 1.234, "validation": {"basic": {"decimal_places": 2}}}]}}`)
	require.Equal(t, map[string]string{
		"input.variables[0].validation.basic.unique_items":     "applies only to arrays",
		"input.variables[0].validation.basic.strip_whitespace": "applies only to strings",
		"input.variables[0].validation.basic.decimal_places":   "applies only to numbers",
		"input.variables[0].validation.basic.max_digits":       "must be >= 1",
		"input.variables[1].validation.basic.to_upper":         "cannot be set with to_lower",
		"input.variables[1].validation.basic.format":           `must be one of "email", "uri", "url", "date", "date-time", "time", "uuid", "hostname", "ipv4", "ipv6", "ip"`,
		"input.variables[1].validation.basic.enum":             `for a string, use "type": "enum" with options`,
		"input.variables[2].validation.basic.decimal_places":   "must not exceed max_digits (3)",
		"input.variables[2].validation.basic.enum[1]":          "must be a number",
		"input.variables[2].validation.basic.enum[2]":          "duplicates enum[0]",
		"input.variables[3].validation.basic.enum":             "applies only to integers, numbers and booleans",
		"input.variables[5].default":                           "must have at most 2 decimal places (decimal_places)",
	}, bud.ErrorFields(d.Validate(Checker{})))
}
