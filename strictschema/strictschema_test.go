package strictschema

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func problems(t *testing.T, schema string) []string {
	t.Helper()
	var out []string
	for _, p := range CheckJSON([]byte(schema)) {
		out = append(out, p.String())
	}
	return out
}

func TestCheckPasses(t *testing.T) {
	t.Parallel()
	for _, schema := range []string{
		`{"type": "object", "properties": {}, "required": [], "additionalProperties": false}`,
		// OpenAI's own examples: optional as nullable, nested objects, anyOf, $defs.
		`{"type": "object", "additionalProperties": false, "required": ["name", "nickname", "address", "tags", "kind", "score", "when"],
		  "properties": {
			"name": {"type": "string", "description": "Full name", "pattern": "^[A-Z]"},
			"nickname": {"type": ["string", "null"]},
			"address": {"anyOf": [{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}, {"type": "null"}]},
			"tags": {"type": "array", "items": {"type": "string", "format": "hostname"}, "minItems": 1, "maxItems": 3},
			"kind": {"type": ["string", "null"], "enum": ["a", "b", null]},
			"score": {"type": "integer", "minimum": 0, "exclusiveMaximum": 10, "multipleOf": 2},
			"when": {"$ref": "#/$defs/when"}},
		  "$defs": {"when": {"type": "string", "format": "date-time"}}}`,
	} {
		require.Empty(t, problems(t, schema), schema)
	}
}

func TestCheckRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		schema string
		want   []string
	}{
		{`{"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"], "additionalProperties": false}`,
			[]string{"In context=(), 'required' is required to be supplied and to be an array including every key in properties. Missing 'b'."}},
		{`{"type": "object", "properties": {"a": {"type": "object", "properties": {}, "required": []}}, "required": ["a"]}`,
			[]string{
				"In context=(), 'additionalProperties' is required to be supplied and to be false.",
				"In context=('properties', 'a'), 'additionalProperties' is required to be supplied and to be false.",
			}},
		{`{"type": "object", "properties": {"a": {"type": "string", "minLength": 1, "default": "x", "format": "uri"}}, "required": ["a"], "additionalProperties": false}`,
			[]string{
				"In context=('properties', 'a'), 'default' is not permitted.",
				"In context=('properties', 'a'), 'minLength' is not permitted.",
				"In context=('properties', 'a'), format \"uri\" is not supported; use one of 'date', 'date-time', 'duration', 'email', 'hostname', 'ipv4', 'ipv6', 'time', 'uuid'.",
			}},
		{`{"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer", "maxLength": 2}, "uniqueItems": true}}, "required": ["a"], "additionalProperties": false}`,
			[]string{
				"In context=('properties', 'a'), 'uniqueItems' is not permitted.",
				"In context=('properties', 'a', 'items'), 'maxLength' is not permitted.",
			}},
		{`{"type": "object", "properties": {"a": {"type": "string", "minimum": 1}, "b": {"type": "array"}}, "required": ["a", "b"], "additionalProperties": false}`,
			[]string{
				"In context=('properties', 'a'), 'minimum' is not permitted on a schema whose type is not number.",
				"In context=('properties', 'b'), 'items' is required to be supplied for an array.",
			}},
		{`{"anyOf": [{"type": "object", "properties": {}, "required": [], "additionalProperties": false}]}`,
			[]string{"In context=(), the root schema must not be 'anyOf': it must be of 'type: \"object\"'."}},
		{`{"type": "string"}`,
			[]string{"In context=(), the root schema must be of 'type: \"object\"', got 'type: \"string\"'."}},
		{`{"type": "object", "properties": {"a": {"description": "no type"}, "b": {"type": "date"}, "c": {"allOf": []}}, "required": ["a", "b", "c"], "additionalProperties": false}`,
			[]string{
				"In context=('properties', 'a'), schema must have a 'type' key.",
				"In context=('properties', 'b'), type 'date' is not a JSON Schema type.",
				"In context=('properties', 'c'), 'allOf' is not permitted.",
				"In context=('properties', 'c'), schema must have a 'type' key.",
			}},
	} {
		require.Equal(t, tc.want, problems(t, tc.schema), tc.schema)
	}
}

// nested is an object schema n objects deep.
func nested(n int) string {
	s := `{"type": "string"}`
	for range n {
		s = `{"type": "object", "properties": {"x": ` + s + `}, "required": ["x"], "additionalProperties": false}`
	}
	return s
}

func TestCheckLimits(t *testing.T) {
	t.Parallel()
	require.Empty(t, problems(t, nested(MaxDepth)))
	require.Equal(t, []string{"In context=('properties', 'x', 'properties', 'x', 'properties', 'x', 'properties', 'x', 'properties', 'x', 'properties', 'x', 'properties', 'x', 'properties', 'x', 'properties', 'x', 'properties', 'x'), objects are nested more than 10 levels deep."},
		problems(t, nested(MaxDepth+1)))

	enum := func(n, size int) string {
		vals := make([]string, n)
		for i := range vals {
			vals[i] = fmt.Sprintf(`"%0*d"`, size, i)
		}
		return `{"type": "string", "enum": [` + strings.Join(vals, ",") + `]}`
	}
	obj := func(props ...string) string {
		var ps, names []string
		for i, p := range props {
			ps = append(ps, fmt.Sprintf(`"p%d": %s`, i, p))
			names = append(names, fmt.Sprintf(`"p%d"`, i))
		}
		return `{"type": "object", "properties": {` + strings.Join(ps, ",") + `}, "required": [` + strings.Join(names, ",") + `], "additionalProperties": false}`
	}
	require.Empty(t, problems(t, obj(enum(LargeEnum+1, 50), enum(100, 5))))
	require.Equal(t, []string{"In context=('properties', 'p0'), an enum of more than 250 string values may total at most 15000 characters; this one has 251 values of 15060 characters."},
		problems(t, obj(enum(LargeEnum+1, 60))))
	require.Equal(t, []string{"In context=(), the schema has 1001 enum values; at most 1000 are allowed."},
		problems(t, obj(enum(500, 3), enum(501, 3))))
}
