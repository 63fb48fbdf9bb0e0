package upstreamtest_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/upstreamtest"
)

// withSchema is a chat request asking for schema in a json_schema response
// format, strict or not.
func withSchema(schema string, strict bool) map[string]any {
	req := chatRequest("m", "Hi.")
	req["response_format"] = map[string]any{"type": "json_schema", "json_schema": map[string]any{
		"name": "output", "strict": strict, "schema": json.RawMessage(schema)}}
	return req
}

func TestRequireStrictSchemas(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.Script(upstreamtest.Text(`{"a": "x"}`))
	optional := `{"type": "object", "properties": {"a": {"type": "string"}, "nickname": {"type": "string"}}, "required": ["a"], "additionalProperties": false}`

	// Off, as vLLM: any schema goes.
	resp, body := post(t, s, "/chat/completions", withSchema(optional, true))
	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)

	s.RequireStrictSchemas(true)
	s.Script(upstreamtest.Text(`{"a": "x"}`))
	for _, tc := range []struct{ schema, message string }{
		{optional, "Invalid schema for response_format 'output': In context=(), 'required' is required to be supplied and to be an array including every key in properties. Missing 'nickname'."},
		{`{"type": "object", "properties": {"a": {"type": "object", "properties": {}, "required": []}}, "required": ["a"], "additionalProperties": false}`,
			"Invalid schema for response_format 'output': In context=('properties', 'a'), 'additionalProperties' is required to be supplied and to be false."},
		{`{"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}}, "required": ["a"], "additionalProperties": false}`,
			"Invalid schema for response_format 'output': In context=('properties', 'a'), 'maxLength' is not permitted."},
	} {
		resp, body := post(t, s, "/chat/completions", withSchema(tc.schema, true))
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "body: %s", body)
		require.JSONEq(t, `{"error": {"message": `+string(must(json.Marshal(tc.message)))+`, "type": "invalid_request_error", "param": "response_format", "code": null}}`, string(body))
	}
	require.Equal(t, 1, s.Pending(), "a refused request uses up no scripted reply")

	// Strict false takes any schema; a strict schema that keeps the rules
	// is answered.
	resp, body = post(t, s, "/chat/completions", withSchema(optional, false))
	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
	resp, body = post(t, s, "/chat/completions", withSchema(`{"type": "object", "properties": {"a": {"type": "string"}, "nickname": {"type": ["string", "null"]}}, "required": ["a", "nickname"], "additionalProperties": false}`, true))
	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
