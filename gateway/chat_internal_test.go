package gateway

import (
	"testing"

	"github.com/stretchr/testify/require"
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
		{"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"note\":\"} \\\" {\"}}\n", usage{1, 2}, true},
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
