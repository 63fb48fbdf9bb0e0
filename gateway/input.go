package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/budhq/bud"
	"github.com/budhq/bud/deployment"
	"github.com/budhq/bud/prompt"
)

// pickVersion chooses the version to run: the caller's, else the
// deployment's pinned one, else the prompt's default, all without a
// database read (the deployment's cache entry holds the default).
func pickVersion(d *deployment.Deployment, raw json.RawMessage) (int32, *apiError) {
	if n, aerr := parseVersion(raw); n != 0 || aerr != nil {
		return n, aerr
	}
	if d.PromptVersion != nil {
		return *d.PromptVersion, nil
	}
	return d.DefaultVersion, nil
}

// parseVersion reads prompt.version: a number, or a string such as "3" or
// "v3"; 0 when it is absent.
func parseVersion(raw json.RawMessage) (int32, *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var n int64
	var s string
	switch {
	case json.Unmarshal(raw, &n) == nil:
	case json.Unmarshal(raw, &s) == nil:
		var err error
		if n, err = strconv.ParseInt(strings.TrimPrefix(s, "v"), 10, 32); err != nil {
			return 0, errInvalid("prompt.version", codeInvalidValue, "prompt.version must be a version number.")
		}
	default:
		return 0, errInvalid("prompt.version", codeInvalidType, "prompt.version must be a version number.")
	}
	if n < 1 || n > 1<<31-1 {
		return 0, errInvalid("prompt.version", codeInvalidValue, "prompt.version must be a positive version number.")
	}
	return int32(n), nil
}

// errInputType answers an input that is neither a string nor a list.
func errInputType() *apiError {
	return errInvalid("input", codeInvalidType, "input must be a string or a list of input items.")
}

// splitInput reads `input`: a string is the text input; a list holds input
// items appended after the rendered messages.
func splitInput(raw json.RawMessage) (string, json.RawMessage, *apiError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil, nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", nil, errInputType()
		}
		return s, nil, nil
	case '[':
		var items []map[string]any
		if err := json.Unmarshal(raw, &items); err != nil {
			return "", nil, errInputType()
		}
		return "", raw, nil
	}
	return "", nil, errInputType()
}

// continueItems reads a continue's input as a list of input items; a
// string is one user message.
func continueItems(raw json.RawMessage) (json.RawMessage, *apiError) {
	text, items, aerr := splitInput(raw)
	switch {
	case aerr != nil:
		return nil, aerr
	case items != nil:
		return items, nil
	case text == "":
		return json.RawMessage("[]"), nil
	}
	b, _ := json.Marshal([]any{map[string]any{"type": "message", "role": "user", "content": text}}) // a string always encodes
	return b, nil
}

// coerceVariables accepts variables as OpenAI's SDKs send them — strings, or
// {type: input_text, text} objects — and turns a string into the typed value
// the prompt declares (a number, a boolean, a list or an object written as
// JSON), so typed prompts can be called from any OpenAI client.
func coerceVariables(doc *prompt.Document, vars map[string]any) map[string]any {
	if len(vars) == 0 {
		return vars
	}
	types := map[string]string{}
	for _, v := range doc.Input.Variables {
		types[v.Name] = v.Type
	}
	out := make(map[string]any, len(vars))
	for k, v := range vars {
		if m, ok := v.(map[string]any); ok && m["type"] == "input_text" {
			if t, ok := m["text"].(string); ok {
				v = t
			}
		}
		if s, ok := v.(string); ok {
			switch types[k] {
			case prompt.TypeInteger, prompt.TypeNumber, prompt.TypeBoolean, prompt.TypeArray, prompt.TypeObject:
				var parsed any
				if json.Unmarshal([]byte(s), &parsed) == nil {
					v = parsed
				}
			}
		}
		out[k] = v
	}
	return out
}

// inputError maps invalid input to a 400 naming the first variable at fault
// and every problem in the message.
func inputError(err error) *apiError {
	fields := bud.ErrorFields(err)
	param := ""
	for f := range fields {
		if param == "" || f < param {
			param = f
		}
	}
	return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: param, Code: codeInvalidPromptInput, Message: bud.ErrorMessage(err)}
}
