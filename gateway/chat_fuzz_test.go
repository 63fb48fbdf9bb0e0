package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/budhq/bud"
	"github.com/budhq/bud/deployment"
)

// decodedRequest is a chat completion request as encoding/json reads it:
// the reference the gateway's reading without a decode (chatRequest) is
// held to.
type decodedRequest struct {
	fields map[string]json.RawMessage
	model  string
	stream bool
}

func (req *decodedRequest) parse(body []byte) *apiError {
	if err := json.Unmarshal(body, &req.fields); err != nil {
		return errJSON(err)
	}
	raw, ok := req.fields["model"]
	if !ok || bytes.Equal(raw, []byte("null")) {
		return errInvalid("model", codeMissingParameter, "You must provide a model parameter.")
	}
	if err := json.Unmarshal(raw, &req.model); err != nil {
		return errInvalid("model", codeInvalidType, "Invalid type for 'model': expected a string.")
	}
	if req.model == "" {
		return errInvalid("model", codeMissingParameter, "You must provide a model parameter.")
	}
	if raw, ok := req.fields["stream"]; ok && !bytes.Equal(raw, []byte("null")) {
		if err := json.Unmarshal(raw, &req.stream); err != nil {
			return errInvalid("stream", codeInvalidType, "Invalid type for 'stream': expected a boolean.")
		}
	}
	return nil
}

var fuzzBodies = []string{
	`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"m","stream":true,"stream_options":{"include_usage":true}}`,
	`{"model":"m","temperature":0.1,"tools":[{"type":"function","function":{"name":"f"}}],"x-unknown":{"a":[1,2]}}`,
	`{"model":null}`, `{"model":5}`, `{"model":""}`, `{"stream":"yes","model":"m"}`,
	`[]`, `null`, ``, `{`, `{"model":"m"}trailing`, "\xff\xfe", `{"model":"\u0000"}`,
	`{"model":"m","Model":"other","MODEL":"x","Stream":true,"STREAM_OPTIONS":{},"Messages":[]}`,
	`{"model":"m","stream":true,"stream":false,"stream_options":{"a":1},"stream_options":null}`,
	`{"mod\u0065l":"m","str\u0065am":true,"te\u006dperature":1}`,
	`{ "model" : "a\"b\\c\u00e9" , "max_tokens" : 16 , "temperature":2 ,"temperature":3}`,
	`{"model":"m","stream":nul}`, `{"model":"m","stream":truex}`, `{"model":"m","stream":[true]}`,
	`{"model":"` + strings.Repeat(`\u0041`, 300) + `"}`, `{"model":"` + strings.Repeat("x", 2000) + `"}`,
	"{\"model\":\"m\",\"\u017ftream\":true,\"\u212aeep\":1}",
}

var fuzzDeployment = &deployment.Deployment{
	Kind: "model", UpstreamModel: "upstream/model", UpstreamModelJSON: []byte(`"upstream/model"`),
	Defaults: map[string]json.RawMessage{
		"temperature": json.RawMessage(`0.7`), "max_tokens": json.RawMessage(`64`),
		// What validation refuses in defaults is still never sent.
		"Stream": json.RawMessage(`true`), "MODEL": json.RawMessage(`"x"`), "stream": json.RawMessage(`true`),
	},
}

// FuzzParseChatRequest holds the gateway's reading of a chat completion
// request to encoding/json's (decodedRequest): the same bodies are refused
// with the same error, the same model and stream are read, and the
// upstream's body holds every field of the caller's as encoding/json reads
// them, the deployment's defaults for the others, the deployment's model
// under every spelling, and no other spelling of a pinned field, so that a
// case-insensitive upstream reads the model and stream the gateway does.
func FuzzParseChatRequest(f *testing.F) {
	for _, s := range fuzzBodies {
		f.Add([]byte(s))
	}
	d := fuzzDeployment
	f.Fuzz(func(t *testing.T, body []byte) {
		var want decodedRequest
		wantErr := parseJSON(body, &want)
		req := &chatRequest{}
		aerr := req.parseBody(body)
		if wantErr != nil || aerr != nil {
			if wantErr == nil || aerr == nil || *wantErr != *aerr {
				t.Fatalf("encoding/json: %+v; gateway: %+v", wantErr, aerr)
			}
			return
		}
		if req.modelWhole {
			if req.model != want.model {
				t.Fatalf("model %q, encoding/json reads %q", req.model, want.model)
			}
		} else if !strings.HasPrefix(want.model, req.model) || len(want.model) <= bud.MaxNameLen || len(req.model) < maxEchoed {
			t.Fatalf("model cut to %q from %q", req.model, want.model)
		}
		if req.stream != want.stream {
			t.Fatalf("stream %v, encoding/json reads %v", req.stream, want.stream)
		}

		out := req.appendUpstreamBody(nil, d, false)
		var got map[string]json.RawMessage
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("upstream body is not a JSON object: %v: %s", err, out)
		}
		expected := map[string]json.RawMessage{"model": json.RawMessage(`"upstream/model"`)}
		for k, v := range want.fields {
			if k != "model" && !bud.Respelled(k) {
				expected[k] = v
			}
		}
		for k, v := range d.Defaults {
			if _, set := want.fields[k]; !set && k != "model" && k != "stream" && k != "stream_options" && !bud.Respelled(k) {
				expected[k] = v
			}
		}
		if len(got) != len(expected) {
			t.Fatalf("upstream body %s, want the members %v", out, expected)
		}
		for k, v := range expected {
			if string(got[k]) != string(v) {
				t.Fatalf("field %q: %s, want %s (body %s)", k, got[k], v, out)
			}
		}
		// Every repeat of stream is gone: an upstream that takes the
		// first of a repeated key reads what the gateway read.
		dec := json.NewDecoder(bytes.NewReader(out))
		_, _ = dec.Token()
		streams := 0
		for dec.More() {
			tok, _ := dec.Token()
			if tok == "stream" {
				streams++
			}
			var skip json.RawMessage
			_ = dec.Decode(&skip)
		}
		if streams > 1 {
			t.Fatalf("stream sent %d times: %s", streams, out)
		}
		// A case-insensitive upstream reads the same model and stream.
		var ci struct {
			Model  string `json:"model"`
			Stream *bool  `json:"stream"`
		}
		if err := json.Unmarshal(out, &ci); err != nil || ci.Model != "upstream/model" || (ci.Stream != nil && *ci.Stream) != req.stream {
			t.Fatalf("a case-insensitive upstream reads model %q, stream %v (%v): %s", ci.Model, ci.Stream, err, out)
		}
	})
}

// FuzzMembers holds the member walk to encoding/json's tokenizer: the same
// keys, in order, and each value's text as the decoder reads it.
func FuzzMembers(f *testing.F) {
	for _, s := range fuzzBodies {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		b = trimSpace(b)
		if len(b) == 0 || b[0] != '{' || !json.Valid(b) {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		if _, err := dec.Token(); err != nil {
			t.Fatal(err)
		}
		m := newMembers(b)
		for {
			k, v, ok := m.next()
			if !dec.More() {
				if ok {
					t.Fatalf("member %q after the last", k)
				}
				break
			}
			tok, err := dec.Token()
			if err != nil || !ok {
				t.Fatalf("members ended early (%v, %v)", err, ok)
			}
			if decodeKey(k) != tok.(string) {
				t.Fatalf("key %q, encoding/json reads %q", decodeKey(k), tok)
			}
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				t.Fatal(err)
			}
			if string(raw) != string(v) {
				t.Fatalf("value %s, encoding/json reads %s", v, raw)
			}
		}
		if _, err := dec.Token(); err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
	})
}

// FuzzFindUsage holds findUsage to a decode of the whole text.
func FuzzFindUsage(f *testing.F) {
	for _, s := range []string{
		`{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`,
		`{"usage" : {"prompt_tokens":5,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens":7},"system_fingerprint":"fp"}`,
		`{"usage":null}`, `{"usage":{"prompt_tokens":5,`, `{"usage":{"prompt_tokens":"five"}}`, `{"choices":[]}`,
		`{"USAGE":{"Prompt_Tokens":1,"prompt_tokens":2,"completion_tokens":null}}`, `{"usage":{"prompt_tokens":1.0}}`,
		`{"usage":{"prompt_tokens":9223372036854775808}}`, `{"usage":{"prompt_tokens":-9223372036854775808}}`,
		`{"usage":{"prompt_tokens":1},"usage":{"completion_tokens":2}}`, `{"usage":{"prompt_tokens":1},"usage":null}`,
		`{"usage":[]}`, `{"usage":{"prompt_tokens":1e2}}`, `{"usage":{"prompt_tokens":-0}}`, `[DONE]`, ` {"us\u0061ge":{"prompt_tokens":3}} `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var v struct {
			Usage *usage `json:"usage"`
		}
		err := json.Unmarshal(b, &v)
		wantOK := err == nil && v.Usage != nil
		got, ok := findUsage(b)
		if ok != wantOK || (ok && got != *v.Usage) {
			t.Fatalf("findUsage(%s) = %+v, %v; encoding/json: %+v, %v", b, got, ok, v.Usage, err)
		}
	})
}
