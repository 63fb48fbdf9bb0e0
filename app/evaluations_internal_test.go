package app

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// The scorecard's latency percentiles are rounded to 0.1 ms: interpolated
// percentiles otherwise carry float noise.
func TestLatencyRoundedToTenth(t *testing.T) {
	b, err := json.Marshal(latencyOf(68.04999999999995, 419.2499999999998))
	require.NoError(t, err)
	require.JSONEq(t, `{"p50":68,"p95":419.2}`, string(b))
}
