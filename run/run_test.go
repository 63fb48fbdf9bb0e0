package run_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/run"
)

func TestTurnIDs(t *testing.T) {
	require.Equal(t, "resp_ab", run.TurnID("resp_ab", 1))
	require.Equal(t, "resp_ab_3", run.TurnID("resp_ab", 3))
	for id, want := range map[string]struct {
		run string
		n   int
		ok  bool
	}{
		"resp_ab":    {"resp_ab", 1, true},
		"resp_ab_2":  {"resp_ab", 2, true},
		"resp_ab_1":  {"", 0, false},
		"resp_ab_02": {"", 0, false},
		"resp_":      {"", 0, false},
		"msg_ab":     {"", 0, false},
		"resp_ab_x":  {"", 0, false},
	} {
		runID, n, ok := run.ParseTurnID(id)
		require.Equal(t, want.run, runID, id)
		require.Equal(t, want.n, n, id)
		require.Equal(t, want.ok, ok, id)
	}
}

// TestHTTPStatus: the caller's faults are 4xx, the upstream's 502, a
// refused request in the run's state 409, and a run's own outcome 0 (a 200
// with status failed).
func TestHTTPStatus(t *testing.T) {
	for code, want := range map[string]int{
		run.InvalidInput: http.StatusBadRequest, run.RenderFailed: http.StatusBadRequest,
		run.ModelNotFound: http.StatusNotFound, run.NoApprovalRequest: http.StatusNotFound,
		run.UpstreamRejected: http.StatusBadGateway, run.UpstreamUnavailable: http.StatusBadGateway,
		run.InvalidContinue: http.StatusConflict,
		run.InvalidOutput:   0, run.StepLimit: 0, run.ToolsUnavailable: 0, run.PauseTimeout: 0, run.ServerError: 0,
	} {
		require.Equal(t, want, run.HTTPStatus(code), code)
	}
}
