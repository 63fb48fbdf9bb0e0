package connection

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// builtinTools compiles the argument schemas of a built-in kind's tools,
// written in this package, by tool name: a schema that does not compile is
// a bug, found by any test.
func builtinTools(tools ...Tool) (list []Tool, schemas map[string]*jsonschema.Schema) {
	schemas = make(map[string]*jsonschema.Schema, len(tools))
	for _, t := range tools {
		sch, err := compileSchema(t.InputSchema)
		if err != nil {
			panic("connection: schema of built-in tool " + t.Name + ": " + err.Error())
		}
		schemas[t.Name] = sch
	}
	return tools, schemas
}

// argumentsObject returns args as a JSON object's text ("{}" for none), or
// a rejection.
func argumentsObject(red redactor, tool string, args json.RawMessage) (json.RawMessage, any, *Error) {
	args = bytes.TrimSpace(args)
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(args))
	if err != nil {
		return nil, nil, red.errorf(ReasonRejected, 0, "the arguments of tool %s are not valid JSON", tool)
	}
	if _, ok := doc.(map[string]any); !ok {
		return nil, nil, red.errorf(ReasonRejected, 0, "the arguments of tool %s must be a JSON object", tool)
	}
	return args, doc, nil
}

// checkArguments checks args against a tool's schema and returns them as
// a JSON object's text.
func checkArguments(red redactor, tool string, schema *jsonschema.Schema, args json.RawMessage) (json.RawMessage, *Error) {
	args, doc, e := argumentsObject(red, tool, args)
	if e != nil {
		return nil, e
	}
	if err := schema.Validate(doc); err != nil {
		return nil, red.errorf(ReasonRejected, 0, "the arguments of tool %s do not match its schema: %s", tool, validationText(err))
	}
	return args, nil
}

// validationText lists the most specific failures of a validation, e.g.
// "at '/channel': missing property 'channel'".
func validationText(err error) string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err.Error()
	}
	var parts []string
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			parts = append(parts, e.Error())
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return strings.Join(parts, "; ")
}

// unknownTool is the rejection of a call of a tool the connection lacks.
func unknownTool(red redactor, kind, name string) *Error {
	return red.errorf(ReasonRejected, 0, "the %s connection has no tool %q", kind, name)
}
