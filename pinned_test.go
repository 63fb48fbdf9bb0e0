package bud_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
)

// TestRespelledAgreesWithEncodingJSON holds Respelled to the
// case-insensitive upstream it guards against, Go's encoding/json: a key
// is a respelling exactly when that decoder reads it as a pinned field
// without being the field's exact name; Unicode folds (the Kelvin sign,
// the long s) included.
func TestRespelledAgreesWithEncodingJSON(t *testing.T) {
	t.Parallel()
	var pinned struct {
		Model          any `json:"model"`
		Messages       any `json:"messages"`
		Stream         any `json:"stream"`
		StreamOptions  any `json:"stream_options"`
		ResponseFormat any `json:"response_format"`
		Tools          any `json:"tools"`
	}
	for _, k := range []string{
		"model", "Model", "MODEL", "mOdEl", "messages", "Messages", "stream", "Stream", "STREAM", "\u017ftream",
		"stream_options", "Stream_Options", "response_format", "Response_Format", "tools", "TOOLS", "\u212aeys",
		"temperature", "Temperature", "models", "stream-options", "streamoptions", "tool", "", "seed",
	} {
		pinned.Model, pinned.Messages, pinned.Stream, pinned.StreamOptions, pinned.ResponseFormat, pinned.Tools = nil, nil, nil, nil, nil, nil
		body, err := json.Marshal(map[string]int{k: 1})
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(body, &pinned))
		readAsPinned := pinned.Model != nil || pinned.Messages != nil || pinned.Stream != nil ||
			pinned.StreamOptions != nil || pinned.ResponseFormat != nil || pinned.Tools != nil
		exact := false
		for _, name := range []string{"model", "messages", "stream", "stream_options", "response_format", "tools"} {
			exact = exact || k == name
		}
		require.Equal(t, readAsPinned && !exact, bud.Respelled(k), "%q", k)
	}
}
