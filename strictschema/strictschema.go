// Package strictschema checks a JSON Schema against the rules OpenAI's
// Structured Outputs apply to a schema sent with "strict": true, as its
// published documentation states them: the root is an object, not anyOf;
// every object lists each of its properties in required and sets
// additionalProperties to false; only a subset of keywords may appear, some
// only on the type they belong to; and the schema stays within OpenAI's
// size limits. Where the documentation leaves a case open the check is the
// stricter reading, so a schema it passes is one a strict upstream takes.
// Problems are worded as OpenAI words its 400 answers.
package strictschema

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Limits OpenAI documents for a strict schema.
const (
	MaxProperties = 5000 // object properties in all
	MaxDepth      = 10   // levels of nested objects
	MaxEnumValues = 1000 // enum values over all enum properties
	// MaxStringLength bounds the characters of every property name,
	// definition name, enum value and const value taken together.
	MaxStringLength = 120000
	// An enum of more than LargeEnum string values may hold at most
	// MaxLargeEnumLength characters in all.
	LargeEnum          = 250
	MaxLargeEnumLength = 15000
)

// formats are the string formats strict mode supports.
var formats = map[string]bool{
	"date-time": true, "time": true, "date": true, "duration": true, "email": true,
	"hostname": true, "ipv4": true, "ipv6": true, "uuid": true,
}

// SupportsFormat reports whether strict mode takes a string format.
func SupportsFormat(f string) bool { return formats[f] }

// Keywords allowed on any schema, and those allowed only on a schema whose
// type includes the one named.
var (
	anyKeywords = map[string]bool{
		"type": true, "description": true, "enum": true, "const": true, "anyOf": true,
		"$ref": true, "$defs": true, "definitions": true,
	}
	typedKeywords = map[string]string{
		"properties": "object", "required": "object", "additionalProperties": "object",
		"items": "array", "minItems": "array", "maxItems": "array",
		"pattern": "string", "format": "string",
		"minimum": "number", "maximum": "number", "exclusiveMinimum": "number",
		"exclusiveMaximum": "number", "multipleOf": "number",
	}
	jsonTypes = map[string]bool{
		"string": true, "number": true, "integer": true, "boolean": true,
		"object": true, "array": true, "null": true,
	}
)

// Problem is one way a schema breaks strict mode: where (the keywords and
// property names from the root) and what.
type Problem struct {
	Context []string
	Message string
}

// String writes the problem as OpenAI does: "In context=('properties',
// 'name'), 'minLength' is not permitted."
func (p Problem) String() string {
	quoted := make([]string, len(p.Context))
	for i, c := range p.Context {
		quoted[i] = "'" + c + "'"
	}
	ctx := strings.Join(quoted, ", ")
	if len(quoted) == 1 {
		ctx += ","
	}
	return "In context=(" + ctx + "), " + p.Message
}

// Join writes problems one after another, as one message.
func Join(problems []Problem) string {
	parts := make([]string, len(problems))
	for i, p := range problems {
		parts[i] = p.String()
	}
	return strings.Join(parts, " ")
}

// CheckJSON decodes a schema and checks it (see Check).
func CheckJSON(raw []byte) []Problem {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return []Problem{{Message: "the schema is not valid JSON."}}
	}
	return Check(v)
}

// Check returns every way schema, as encoding/json decodes it, breaks
// strict mode; none when a strict upstream takes it.
func Check(schema any) []Problem {
	c := &checker{}
	root, ok := schema.(map[string]any)
	switch {
	case !ok:
		c.add(nil, "the schema must be a JSON object.")
		return c.problems
	case root["anyOf"] != nil:
		c.add(nil, "the root schema must not be 'anyOf': it must be of 'type: \"object\"'.")
	case root["type"] != "object":
		c.add(nil, fmt.Sprintf("the root schema must be of 'type: \"object\"', got 'type: %s'.", typeText(root["type"])))
	}
	c.schema(nil, root, 0)
	if c.props > MaxProperties {
		c.add(nil, fmt.Sprintf("the schema has %d object properties; at most %d are allowed.", c.props, MaxProperties))
	}
	if c.enums > MaxEnumValues {
		c.add(nil, fmt.Sprintf("the schema has %d enum values; at most %d are allowed.", c.enums, MaxEnumValues))
	}
	if c.strLen > MaxStringLength {
		c.add(nil, fmt.Sprintf("the property names, definition names, enum and const values total %d characters; at most %d are allowed.", c.strLen, MaxStringLength))
	}
	return c.problems
}

type checker struct {
	problems             []Problem
	props, enums, strLen int
}

func (c *checker) add(ctx []string, msg string) {
	c.problems = append(c.problems, Problem{Context: append([]string(nil), ctx...), Message: msg})
}

func at(ctx []string, more ...string) []string {
	return append(append([]string(nil), ctx...), more...)
}

// schema checks one schema at ctx, depth objects deep.
func (c *checker) schema(ctx []string, v any, depth int) {
	s, ok := v.(map[string]any)
	if !ok {
		c.add(ctx, "the schema must be a JSON object.")
		return
	}
	types, typeOK := c.types(ctx, s)
	has := func(t string) bool {
		for _, have := range types {
			if have == t || (t == "number" && have == "integer") {
				return true
			}
		}
		return false
	}
	for _, k := range sortedKeys(s) {
		if anyKeywords[k] {
			continue
		}
		want, typed := typedKeywords[k]
		switch {
		case !typed:
			c.add(ctx, fmt.Sprintf("'%s' is not permitted.", k))
		case typeOK && !has(want):
			c.add(ctx, fmt.Sprintf("'%s' is not permitted on a schema whose type is not %s.", k, want))
		}
	}
	_, isRef := s["$ref"]
	_, isAnyOf := s["anyOf"]
	_, isEnum := s["enum"]
	_, isConst := s["const"]
	if _, typed := s["type"]; !typed && !isRef && !isAnyOf && !isEnum && !isConst {
		c.add(ctx, "schema must have a 'type' key.")
	}
	if isRef {
		if ref, _ := s["$ref"].(string); !strings.HasPrefix(ref, "#") {
			c.add(ctx, "'$ref' must point inside the schema ('#…').")
		}
	}
	if isAnyOf {
		branches, ok := s["anyOf"].([]any)
		if !ok || len(branches) == 0 {
			c.add(ctx, "'anyOf' must be a non-empty array of schemas.")
		}
		for i, b := range branches {
			c.schema(at(ctx, "anyOf", fmt.Sprint(i)), b, depth)
		}
	}
	for _, defs := range []string{"$defs", "definitions"} {
		if d, ok := s[defs]; ok {
			m, ok := d.(map[string]any)
			if !ok {
				c.add(ctx, fmt.Sprintf("'%s' must be an object of schemas.", defs))
				continue
			}
			for _, name := range sortedKeys(m) {
				c.strLen += len(name)
				c.schema(at(ctx, defs, name), m[name], depth)
			}
		}
	}
	if isEnum {
		c.enum(ctx, s["enum"])
	}
	if isConst {
		if str, ok := s["const"].(string); ok {
			c.strLen += len(str)
		}
	}
	if f, ok := s["format"]; ok {
		if str, _ := f.(string); !formats[str] {
			c.add(ctx, fmt.Sprintf("format %s is not supported; use one of %s.", jsonText(f), formatList()))
		}
	}
	if !typeOK {
		return
	}
	if has("object") {
		c.object(ctx, s, depth+1)
	}
	if has("array") {
		items, ok := s["items"]
		if !ok {
			c.add(ctx, "'items' is required to be supplied for an array.")
		} else {
			c.schema(at(ctx, "items"), items, depth)
		}
	}
}

// types reads a schema's type: a name or a list of names, each a JSON
// type; ok is false when it is neither, or absent.
func (c *checker) types(ctx []string, s map[string]any) (types []string, ok bool) {
	t, present := s["type"]
	if !present {
		return nil, false
	}
	switch t := t.(type) {
	case string:
		types = []string{t}
	case []any:
		for _, e := range t {
			name, isStr := e.(string)
			if !isStr {
				c.add(ctx, fmt.Sprintf("'type' must be a type name or a list of them, got %s.", jsonText(t)))
				return nil, false
			}
			types = append(types, name)
		}
		if len(types) == 0 {
			c.add(ctx, "'type' must not be an empty list.")
			return nil, false
		}
	default:
		c.add(ctx, fmt.Sprintf("'type' must be a type name or a list of them, got %s.", jsonText(t)))
		return nil, false
	}
	for _, name := range types {
		if !jsonTypes[name] {
			c.add(ctx, fmt.Sprintf("type '%s' is not a JSON Schema type.", name))
			return nil, false
		}
	}
	return types, true
}

// object checks what an object schema must say: every property required,
// nothing else allowed.
func (c *checker) object(ctx []string, s map[string]any, depth int) {
	if depth > MaxDepth {
		c.add(ctx, fmt.Sprintf("objects are nested more than %d levels deep.", MaxDepth))
	}
	if s["additionalProperties"] != false {
		c.add(ctx, "'additionalProperties' is required to be supplied and to be false.")
	}
	props := map[string]any{}
	if p, ok := s["properties"]; ok {
		m, ok := p.(map[string]any)
		if !ok {
			c.add(ctx, "'properties' must be an object of schemas.")
		} else {
			props = m
		}
	}
	required := map[string]bool{}
	reqList, isList := s["required"].([]any)
	if !isList && (s["required"] != nil || len(props) > 0) {
		c.add(ctx, "'required' is required to be supplied and to be an array including every key in properties.")
	}
	for _, r := range reqList {
		name, ok := r.(string)
		if !ok {
			c.add(ctx, "'required' must list property names.")
			continue
		}
		if _, declared := props[name]; !declared {
			c.add(ctx, fmt.Sprintf("'required' lists '%s', which is not in properties.", name))
		}
		required[name] = true
	}
	var missing []string
	for _, name := range sortedKeys(props) {
		c.props++
		c.strLen += len(name)
		if isList && !required[name] {
			missing = append(missing, "'"+name+"'")
		}
		c.schema(at(ctx, "properties", name), props[name], depth)
	}
	if len(missing) > 0 {
		c.add(ctx, "'required' is required to be supplied and to be an array including every key in properties. Missing "+strings.Join(missing, ", ")+".")
	}
}

func (c *checker) enum(ctx []string, v any) {
	values, ok := v.([]any)
	if !ok || len(values) == 0 {
		c.add(ctx, "'enum' must be a non-empty array.")
		return
	}
	c.enums += len(values)
	strs, length := 0, 0
	for _, e := range values {
		switch e := e.(type) {
		case string:
			strs++
			length += len(e)
		case map[string]any, []any:
			c.add(ctx, "'enum' values must be strings, numbers, booleans or null.")
		}
	}
	c.strLen += length
	if strs > LargeEnum && length > MaxLargeEnumLength {
		c.add(ctx, fmt.Sprintf("an enum of more than %d string values may total at most %d characters; this one has %d values of %d characters.", LargeEnum, MaxLargeEnumLength, strs, length))
	}
}

func typeText(t any) string {
	if t == nil {
		return `"None"`
	}
	return jsonText(t)
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func formatList() string {
	names := make([]string, 0, len(formats))
	for f := range formats {
		names = append(names, "'"+f+"'")
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
