package gateway_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/upstreamtest"
)

// TestContinueRefusesNewInstructionsAndMetadata: a continue that sends
// instructions or metadata other than the run's is a 400 naming the
// field, never silently dropped; the same values, or none, continue.
func TestContinueRefusesNewInstructionsAndMetadata(t *testing.T) {
	b := setupRuns(t, setupOpts{})
	project := b.project(randomName("cont-"))
	_, secret := b.key(project)
	name := promptDeployment(b, project, b.up, nil, true)
	b.up.Script(upstreamtest.ToolCalls(upstreamtest.ToolCall{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Oslo"}`}))
	res, err := b.post(ctx(t), t, "/v1/responses", secret, map[string]any{
		"prompt": map[string]any{"id": name}, "input": "Oslo?", "instructions": "Be brief.", "metadata": map[string]string{"team": "a"}})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.status, "%s", res.body)
	prev, _ := responseOf(t, res.body)
	output := []any{map[string]any{"type": "function_call_output", "call_id": "call_1", "output": "snow"}}

	for field, value := range map[string]any{"instructions": "Be long.", "metadata": map[string]string{"team": "b"}} {
		res, err := b.post(ctx(t), t, "/v1/responses", secret, map[string]any{"previous_response_id": prev, "input": output, field: value})
		require.NoError(t, err)
		require.Equal(t, http.StatusBadRequest, res.status, "%s", res.body)
		var e struct {
			Error struct{ Param, Message string }
		}
		require.NoError(t, json.Unmarshal(res.body, &e))
		require.Equal(t, field, e.Error.Param)
		require.Contains(t, e.Error.Message, "keeps the "+field)
	}
	require.Equal(t, 1, b.up.Received(), "a refused continue reaches no model")

	b.up.Script(upstreamtest.Text("Snowy."))
	res, err = b.post(ctx(t), t, "/v1/responses", secret, map[string]any{
		"previous_response_id": prev, "input": output, "instructions": "Be brief.", "metadata": map[string]string{"team": "a"}})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.status, "the same values continue: %s", res.body)
}
