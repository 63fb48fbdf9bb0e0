package admission

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestResetIsDurationText: a reset time reads as time.Duration writes it,
// which is OpenAI's form.
func TestResetIsDurationText(t *testing.T) {
	t.Parallel()
	for _, ms := range []int64{0, 1, 20, 999, 1000, 1001, 1500, 17_280, 59_999, 60_000, 360_000, 3_599_999, 3_600_000, 3_723_450, 90_000_000} {
		require.Equal(t, (time.Duration(ms) * time.Millisecond).String(), string(appendReset(nil, ms)), ms)
	}
}

// TestHeadersCostTwoAllocations: six headers, one string and one slice.
func TestHeadersCostTwoAllocations(t *testing.T) {
	h := headers{requests: window{limit: 600, remaining: 19, resetMS: 1500}, tokens: window{limit: 100_000, remaining: 99_000, resetMS: 360_000}, hasRequests: true, hasTokens: true}
	hdr := http.Header{}
	h.write(hdr)
	require.Equal(t, http.Header{
		"X-Ratelimit-Limit-Requests": {"600"}, "X-Ratelimit-Remaining-Requests": {"19"}, "X-Ratelimit-Reset-Requests": {"1.5s"},
		"X-Ratelimit-Limit-Tokens": {"100000"}, "X-Ratelimit-Remaining-Tokens": {"99000"}, "X-Ratelimit-Reset-Tokens": {"6m0s"},
	}, hdr)
	require.LessOrEqual(t, testing.AllocsPerRun(100, func() { h.write(hdr) }), 2.0)
}
