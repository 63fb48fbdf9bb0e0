package gateway

import (
	"encoding/json"
	"testing"

	"github.com/budhq/bud/deployment"
)

// FuzzParseChatRequest feeds arbitrary bodies to the request parser and the
// upstream rewrite: no input may panic, an accepted request always yields a
// JSON object naming the upstream's model, and the caller's fields survive.
func FuzzParseChatRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"m","temperature":0.1,"tools":[{"type":"function","function":{"name":"f"}}],"x-unknown":{"a":[1,2]}}`,
		`{"model":null}`, `{"model":5}`, `{"model":""}`, `{"stream":"yes","model":"m"}`,
		`[]`, `null`, ``, `{`, `{"model":"m"}trailing`, "\xff\xfe", `{"model":"\u0000"}`,
	} {
		f.Add([]byte(s))
	}
	d := &deployment.Deployment{
		Kind: "model", UpstreamModel: "upstream/model", UpstreamModelJSON: []byte(`"upstream/model"`),
		Defaults: map[string]json.RawMessage{"temperature": json.RawMessage(`0.7`), "max_tokens": json.RawMessage(`64`)},
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := &chatRequest{}
		if aerr := parseJSON(body, req); aerr != nil {
			if aerr.Status != 400 || aerr.Message == "" {
				t.Fatalf("rejection must be a 400 with a message: %+v", aerr)
			}
			return
		}
		if req.model == "" {
			t.Fatal("accepted a request without a model")
		}
		out := req.appendUpstreamBody(nil, d)
		var got map[string]json.RawMessage
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("upstream body is not a JSON object: %v: %s", err, out)
		}
		if string(got["model"]) != `"upstream/model"` {
			t.Fatalf("model not replaced: %s", got["model"])
		}
		for k, v := range req.fields {
			if k == "model" {
				continue
			}
			if g, ok := got[k]; !ok || string(g) != string(v) {
				t.Fatalf("field %q changed: %s -> %s", k, v, g)
			}
		}
		for k, v := range d.Defaults {
			if _, set := req.fields[k]; !set && string(got[k]) != string(v) {
				t.Fatalf("default %q not applied: %s", k, got[k])
			}
		}
	})
}
