package gateway

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestErrorsEchoBoundedNames: a name of megabytes is repeated in its 404
// cut short, so the answer stays small.
func TestErrorsEchoBoundedNames(t *testing.T) {
	long := strings.Repeat("m", 4<<20)
	for _, e := range []*apiError{errModelNotFound(long), errPromptNotFound(long)} {
		require.Less(t, len(e.Message), 2*maxEchoed)
		require.Contains(t, e.Message, "…")
	}
	require.Contains(t, errModelNotFound("qwen").Message, "'qwen'")
}
