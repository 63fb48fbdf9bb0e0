package prompt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"

	"github.com/budhq/bud/strictschema"
)

// objectSchema is the JSON Schema of a set of variables: an object with one
// property each, the required ones listed, and nothing else allowed.
func objectSchema(vars []Variable) map[string]any {
	props := make(map[string]any, len(vars))
	required := []string{}
	for _, v := range vars {
		props[v.Name] = variableSchema(v)
		if v.Required {
			required = append(required, v.Name)
		}
	}
	return map[string]any{
		"type":                 "object",
		"properties":           props,
		"required":             required,
		"additionalProperties": false,
	}
}

// variableSchema is the JSON Schema of one variable's values. The document's
// pydantic-style names map onto JSON Schema keywords one to one (ge onto
// minimum, gt onto exclusiveMinimum, …), so an error on a keyword names the
// constraint the author wrote.
func variableSchema(v Variable) map[string]any {
	s := map[string]any{}
	var b Basic
	if v.Validation != nil && v.Validation.Basic != nil {
		b = *v.Validation.Basic
	}
	switch v.Type {
	case TypeString:
		s["type"] = "string"
		setInt(s, "minLength", b.MinLength)
		setInt(s, "maxLength", b.MaxLength)
		if b.Pattern != "" {
			s["pattern"] = b.Pattern
		}
		if b.Format != "" {
			s["format"] = b.Format
		}
	case TypeInteger, TypeNumber:
		s["type"] = v.Type
		setFloat(s, "exclusiveMinimum", b.Gt)
		setFloat(s, "minimum", b.Ge)
		setFloat(s, "exclusiveMaximum", b.Lt)
		setFloat(s, "maximum", b.Le)
		setFloat(s, "multipleOf", b.MultipleOf)
		setEnum(s, b.Enum)
	case TypeBoolean:
		s["type"] = "boolean"
		setEnum(s, b.Enum)
	case TypeEnum:
		s["type"] = "string"
		opts := make([]any, len(v.Options))
		for i, o := range v.Options {
			opts[i] = o
		}
		s["enum"] = opts
	case TypeArray:
		s["type"] = "array"
		if v.Items != nil {
			s["items"] = variableSchema(*v.Items)
		}
		setInt(s, "minItems", b.MinItems)
		setInt(s, "maxItems", b.MaxItems)
		if b.UniqueItems {
			s["uniqueItems"] = true
		}
	case TypeObject:
		s = objectSchema(v.Variables)
	}
	if v.Description != "" {
		s["description"] = v.Description
	}
	if v.hasDefault() {
		s["default"] = json.RawMessage(v.Default)
	}
	return s
}

// setEnum sets a basic.enum's values, if any, as JSON values.
func setEnum(s map[string]any, values []json.RawMessage) {
	if len(values) == 0 {
		return
	}
	enum := make([]any, len(values))
	for i, v := range values {
		enum[i] = v
	}
	s["enum"] = enum
}

func setInt(s map[string]any, key string, n *int) {
	if n != nil {
		s[key] = *n
	}
}

func setFloat(s map[string]any, key string, f *float64) {
	if f != nil {
		s[key] = *f
	}
}

// schemaURL names the one resource of a private compiler; nothing is ever
// fetched from it.
const schemaURL = "urn:bud:prompt:schema"

// refuseLoader loads nothing, so a schema with "$ref": "file:///etc/passwd"
// or an http URL fails to compile instead of reading files or the network.
type refuseLoader struct{}

func (refuseLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schema references %q: only references inside the schema are allowed", url)
}

// compileSchema compiles a JSON Schema document (draft 2020-12 unless it
// says otherwise) with format assertions on and no external references.
func compileSchema(schema any) (*jsonschema.Schema, error) {
	raw, err := json.Marshal(schema)
	if err != nil {
		return nil, fmt.Errorf("encode schema: %w", err)
	}
	return compileSchemaJSON(raw)
}

func compileSchemaJSON(raw []byte) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("decode schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(refuseLoader{})
	c.RegisterFormat(&jsonschema.Format{Name: "url", Validate: validateURL})
	c.RegisterFormat(&jsonschema.Format{Name: "ip", Validate: validateIP})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("add schema: %w", err)
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("compile schema: %w", err)
	}
	return sch, nil
}

// validateURL is Bud's "url" format, pydantic's HttpUrl: an absolute http
// or https URL with a host.
func validateURL(v any) error {
	s, ok := v.(string)
	if !ok {
		return nil
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return err
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("not an http or https URL")
	case u.Host == "" || u.Hostname() == "":
		return errors.New("no host")
	}
	return nil
}

// validateIP is Bud's "ip" format, pydantic's IPvAnyAddress: an IPv4 or an
// IPv6 address, without a zone.
func validateIP(v any) error {
	s, ok := v.(string)
	if !ok {
		return nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return err
	}
	if a.Zone() != "" {
		return errors.New("has a zone")
	}
	return nil
}

// schemaErrorText shortens a compile error to what an author can act on.
func schemaErrorText(err error) string {
	var sv *jsonschema.SchemaValidationError
	if errors.As(err, &sv) {
		var ve *jsonschema.ValidationError
		if errors.As(sv.Err, &ve) {
			var parts []string
			for _, leaf := range leaves(ve) {
				loc := "/" + strings.Join(leaf.InstanceLocation, "/")
				parts = append(parts, fmt.Sprintf("at %s: %s", loc, stripTerm(kindText(leaf.ErrorKind))))
			}
			return strings.Join(parts, "; ")
		}
	}
	msg := strings.TrimPrefix(err.Error(), "compile schema: ")
	msg = strings.ReplaceAll(msg, strconv.Quote(schemaURL), "the schema")
	msg = strings.ReplaceAll(msg, schemaURL, "the schema")
	return msg
}

// leaves flattens a validation error tree into its most specific errors.
func leaves(e *jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(e.Causes) == 0 {
		return []*jsonschema.ValidationError{e}
	}
	var out []*jsonschema.ValidationError
	for _, c := range e.Causes {
		out = append(out, leaves(c)...)
	}
	return out
}

// fieldProblems turns a validation error into problems keyed by field path
// below prefix, each message naming the constraint broken in the document's
// own terms (min_length, ge, …). The instance is used to tell array indexes
// from object keys. Several problems on one field are joined.
func fieldProblems(err error, instance any, prefix, unknownText string) map[string]string {
	out := map[string]string{}
	add := func(field, msg string) {
		if prev, ok := out[field]; ok {
			if !strings.Contains(prev, msg) {
				out[field] = prev + "; " + msg
			}
			return
		}
		out[field] = msg
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		add(prefix, err.Error())
		return out
	}
	for _, leaf := range leaves(ve) {
		field := instancePath(prefix, instance, leaf.InstanceLocation)
		switch k := leaf.ErrorKind.(type) {
		case *kind.Required:
			for _, m := range k.Missing {
				add(joinPath(field, m), "is required")
			}
		case *kind.AdditionalProperties:
			for _, m := range k.Properties {
				add(joinPath(field, m), unknownText)
			}
		default:
			add(field, kindText(leaf.ErrorKind))
		}
	}
	return out
}

// instancePath writes a location as the document writes paths: keys joined
// by dots, indexes in brackets.
func instancePath(prefix string, instance any, loc []string) string {
	path := prefix
	cur := instance
	for _, tok := range loc {
		switch c := cur.(type) {
		case []any:
			path += "[" + tok + "]"
			if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(c) {
				cur = c[i]
			} else {
				cur = nil
			}
		case map[string]any:
			path = joinPath(path, tok)
			cur = c[tok]
		default:
			path = joinPath(path, tok)
			cur = nil
		}
	}
	return path
}

// kindText says what a value must be, naming the document's constraint.
func kindText(k jsonschema.ErrorKind) string {
	switch k := k.(type) {
	case *kind.Type:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = article(w)
		}
		return fmt.Sprintf("must be %s, not %s", strings.Join(want, " or "), article(k.Got))
	case *kind.MinLength:
		return fmt.Sprintf("must be at least %d characters long (min_length)", k.Want)
	case *kind.MaxLength:
		return fmt.Sprintf("must be at most %d characters long (max_length)", k.Want)
	case *kind.Pattern:
		return fmt.Sprintf("must match the pattern %q (pattern)", k.Want)
	case *kind.Format:
		return fmt.Sprintf("must be a valid %s (format)", k.Want)
	case *kind.Minimum:
		return fmt.Sprintf("must be >= %s (ge)", ratText(k.Want))
	case *kind.ExclusiveMinimum:
		return fmt.Sprintf("must be > %s (gt)", ratText(k.Want))
	case *kind.Maximum:
		return fmt.Sprintf("must be <= %s (le)", ratText(k.Want))
	case *kind.ExclusiveMaximum:
		return fmt.Sprintf("must be < %s (lt)", ratText(k.Want))
	case *kind.MultipleOf:
		return fmt.Sprintf("must be a multiple of %s (multiple_of)", ratText(k.Want))
	case *kind.MinItems:
		return fmt.Sprintf("must have at least %d items (min_items)", k.Want)
	case *kind.MaxItems:
		return fmt.Sprintf("must have at most %d items (max_items)", k.Want)
	case *kind.Enum:
		// A string variable's values are its options; other types list
		// theirs in basic.enum.
		term, opts := "options", make([]string, len(k.Want))
		for i, w := range k.Want {
			if _, isString := w.(string); !isString {
				term = "enum"
			}
			opts[i] = fmt.Sprintf("%q", fmt.Sprint(w))
		}
		sort.Strings(opts)
		return "must be one of " + strings.Join(opts, ", ") + " (" + term + ")"
	case *kind.UniqueItems:
		return fmt.Sprintf("must not repeat items: items %d and %d are equal (unique_items)", k.Duplicates[0], k.Duplicates[1])
	case *kind.FalseSchema:
		return "is not allowed"
	}
	return "breaks the " + strings.Join(k.KeywordPath(), "/") + " rule"
}

// stripTerm drops the document's constraint name from a message about a
// schema the author wrote in JSON Schema terms, where it would mislead.
func stripTerm(msg string) string {
	if i := strings.LastIndex(msg, " ("); i >= 0 && strings.HasSuffix(msg, ")") {
		return msg[:i]
	}
	return msg
}

func article(jsonType string) string {
	switch jsonType {
	case "integer", "object", "array":
		return "an " + jsonType
	case "null":
		return "null"
	}
	return "a " + jsonType
}

func ratText(r *big.Rat) string {
	if r.IsInt() {
		return r.Num().String()
	}
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// strictObjectSchema is the schema of a set of variables as OpenAI's strict
// mode takes it (package strictschema): every property required, an
// optional one nullable (a null then reads as absent, and the variable's
// default applies), nothing else allowed at any level, and only the
// constraints strict mode supports. What it leaves out (lengths, defaults,
// formats strict mode lacks, …) the full schema still checks after the
// reply.
func strictObjectSchema(vars []Variable) map[string]any {
	props := make(map[string]any, len(vars))
	required := make([]string, 0, len(vars))
	for _, v := range vars {
		s := strictVariableSchema(v)
		if !v.Required {
			s = nullable(s)
		}
		props[v.Name] = s
		required = append(required, v.Name)
	}
	return map[string]any{
		"type":                 "object",
		"properties":           props,
		"required":             required,
		"additionalProperties": false,
	}
}

// strictVariableSchema is variableSchema restricted to strict mode.
func strictVariableSchema(v Variable) map[string]any {
	s := map[string]any{}
	var b Basic
	if v.Validation != nil && v.Validation.Basic != nil {
		b = *v.Validation.Basic
	}
	switch v.Type {
	case TypeString:
		s["type"] = "string"
		if b.Pattern != "" {
			s["pattern"] = b.Pattern
		}
		if strictschema.SupportsFormat(b.Format) {
			s["format"] = b.Format
		}
	case TypeInteger, TypeNumber:
		s["type"] = v.Type
		setFloat(s, "exclusiveMinimum", b.Gt)
		setFloat(s, "minimum", b.Ge)
		setFloat(s, "exclusiveMaximum", b.Lt)
		setFloat(s, "maximum", b.Le)
		setFloat(s, "multipleOf", b.MultipleOf)
		setEnum(s, b.Enum)
	case TypeBoolean:
		s["type"] = "boolean"
		setEnum(s, b.Enum)
	case TypeEnum:
		s["type"] = "string"
		opts := make([]any, len(v.Options))
		for i, o := range v.Options {
			opts[i] = o
		}
		s["enum"] = opts
	case TypeArray:
		s["type"] = "array"
		if v.Items != nil {
			s["items"] = strictVariableSchema(*v.Items)
		}
		setInt(s, "minItems", b.MinItems)
		setInt(s, "maxItems", b.MaxItems)
	case TypeObject:
		s = strictObjectSchema(v.Variables)
	}
	if v.Description != "" {
		s["description"] = v.Description
	}
	return s
}

// nullable lets a strict schema's value also be null: an object becomes one
// branch of an anyOf, as OpenAI documents it; any other type is listed with
// "null", and an enum takes null among its values.
func nullable(s map[string]any) map[string]any {
	t, _ := s["type"].(string)
	if t == "object" {
		return map[string]any{"anyOf": []any{s, map[string]any{"type": "null"}}}
	}
	s["type"] = []any{t, "null"}
	if e, ok := s["enum"].([]any); ok {
		s["enum"] = append(e, nil)
	}
	return s
}
