package gateway

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/deployment"
)

// TestFindUsage: the last usage object is read whole, nested objects and
// braces in strings included, from a reply or a stream chunk; anything
// that is not a whole object is no usage.
func TestFindUsage(t *testing.T) {
	for _, tc := range []struct {
		body string
		want usage
		ok   bool
	}{
		{`{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`, usage{5, 7}, true},
		{`{"usage" : {"prompt_tokens":5,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens":7},"system_fingerprint":"fp"}`, usage{5, 7}, true},
		{"{\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"note\":\"} \\\" {\"}}\n", usage{1, 2}, true},
		{`{"usage":null}`, usage{}, false},
		{`{"usage":{"prompt_tokens":5,`, usage{}, false},
		{`{"usage":{"prompt_tokens":"five"}}`, usage{}, false},
		{`{"choices":[]}`, usage{}, false},
	} {
		got, ok := findUsage([]byte(tc.body))
		require.Equal(t, tc.ok, ok, tc.body)
		require.Equal(t, tc.want, got, tc.body)
	}
}

// BenchmarkChatRequestBody measures what the gateway does with a chat
// completion's bodies apart from the network: read the request's model and
// stream, write the upstream's body, read the reply's usage. "decoded"
// does the same through encoding/json (decodedRequest, a map per request,
// and a decode of the usage), the reference the walk is held to.
func BenchmarkChatRequestBody(b *testing.B) {
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}`)
	reply := []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"stand-in","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! This is a short fixed reply."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":11,"total_tokens":23}}`)
	d := &deployment.Deployment{UpstreamModelJSON: []byte(`"stand-in"`), Defaults: map[string]json.RawMessage{"temperature": json.RawMessage(`0.2`)}}
	out := make([]byte, 0, 1024)
	b.Run("walked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req chatRequest
			if aerr := req.parseBody(body); aerr != nil || req.model != "m" {
				b.Fatal(aerr)
			}
			out = req.appendUpstreamBody(out[:0], d, false)
			if u, ok := findUsage(reply); !ok || u.PromptTokens != 12 {
				b.Fatal(u)
			}
		}
	})
	b.Run("decoded", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req decodedRequest
			if aerr := parseJSON(body, &req); aerr != nil || req.model != "m" {
				b.Fatal(aerr)
			}
			out = append(out[:0], `{"model":"stand-in"`...)
			for k, v := range req.fields {
				if k != "model" {
					out = append(appendJSONString(append(out, ','), k), ':')
					out = append(out, v...)
				}
			}
			var u struct {
				Usage *usage `json:"usage"`
			}
			if err := json.Unmarshal(reply, &u); err != nil || u.Usage.PromptTokens != 12 {
				b.Fatal(err)
			}
		}
	})
}
