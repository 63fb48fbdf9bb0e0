package chat

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	for h, want := range map[string]time.Duration{"": 0, "2": 2 * time.Second, " 7 ": 7 * time.Second, "0": 0, "-3": 0, "soon": 0, "86400": time.Minute} {
		require.Equal(t, want, retryAfter(h), h)
	}
	d := retryAfter(time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat))
	require.Greater(t, d, 28*time.Second, "an HTTP date")
	require.LessOrEqual(t, d, 30*time.Second, "an HTTP date")
	require.Zero(t, retryAfter(time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)), "a date past")
}
