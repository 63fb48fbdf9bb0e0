package upstreamtest

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func FuzzAppendJSONStringDecodesLikeEncodingJSON(f *testing.F) {
	for _, s := range []string{"", "plain", `quote " backslash \ slash /`, "\n\r\t\b\f\x00\x1f\x7f", "naïve ✓ 🙂", "\u2028\u2029", "bad \xff\xfe utf-8", "<html>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var want string
		enc, err := json.Marshal(s)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(enc, &want))

		var got string
		require.NoError(t, json.Unmarshal(appendJSONString(nil, s), &got), "encoded: %s", appendJSONString(nil, s))
		require.Equal(t, want, got)
	})
}

func FuzzSplitWordsConcatenatesBack(f *testing.F) {
	for _, s := range []string{"", " ", "one", "The quick  brown fox.", "  lead and trail  ", "tab\tand\nnewline", "日本語 テキスト"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words := splitWords(s)
		require.Equal(t, s, strings.Join(words, ""))
		if CountTokens(s) > 0 {
			require.Len(t, words, CountTokens(s), "one chunk per counted word")
		}
	})
}

func FuzzSplitArgumentsKeepsUTF8Whole(f *testing.F) {
	for _, s := range []string{"", "{}", `{"query":"naïve Bayes ✓ classifiers 🙂🙂🙂"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fragments := splitArguments(s)
		require.Equal(t, s, strings.Join(fragments, ""))
		for _, fr := range fragments {
			require.NotEmpty(t, fr)
			if utf8.ValidString(s) {
				require.True(t, utf8.ValidString(fr), "fragment %q of %q", fr, s)
			}
		}
	})
}

func TestCountTokens(t *testing.T) {
	require.Equal(t, 0, CountTokens(""))
	require.Equal(t, 0, CountTokens(" \n\t"))
	require.Equal(t, 4, CountTokens(" Hello from the\nstand-in. "))
}
