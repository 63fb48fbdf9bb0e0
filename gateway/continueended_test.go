package gateway_test

import (
	"encoding/json"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/upstreamtest"
)

// TestContinueEndedResponse: previous_response_id naming a completed
// response starts a new run, and the model gets the earlier conversation
// (the first input, the earlier answer) before the new input.
func TestContinueEndedResponse(t *testing.T) {
	b := setupRuns(t, setupOpts{})
	project := b.project(randomName("contend-"))
	_, secret := b.key(project)
	name := promptDeployment(b, project, b.up, nil, false)
	c := b.client(secret)

	b.up.Script(upstreamtest.Text("Oslo is snowy."))
	first, err := c.Responses.New(ctx(t), responses.ResponseNewParams{
		Prompt: responses.ResponsePromptParam{ID: name},
		Input:  responses.ResponseNewParamsInputUnion{OfString: openai.String("Weather in Oslo?")},
	})
	require.NoError(t, err)
	require.Equal(t, responses.ResponseStatusCompleted, first.Status)

	b.up.Script(upstreamtest.Text("Bergen is rainy."))
	second, err := c.Responses.New(ctx(t), responses.ResponseNewParams{
		PreviousResponseID: openai.String(first.ID),
		Input:              responses.ResponseNewParamsInputUnion{OfString: openai.String("And Bergen?")},
	})
	require.NoError(t, err)
	require.Equal(t, responses.ResponseStatusCompleted, second.Status)
	require.Equal(t, "Bergen is rainy.", second.OutputText())
	require.NotEqual(t, first.ID, second.ID, "a new run")

	reqs, err := b.up.WaitRequests(ctx(t), 2)
	require.NoError(t, err)
	var body struct {
		Messages []struct {
			Role    string `json:"role"`
			Content any    `json:"content"`
		} `json:"messages"`
	}
	require.NoError(t, json.Unmarshal(reqs[1].Body, &body))
	var got []string
	for _, m := range body.Messages {
		s, _ := json.Marshal(m.Content)
		got = append(got, m.Role+":"+string(s))
	}
	n := len(got)
	require.GreaterOrEqual(t, n, 3, "%v", got)
	require.Contains(t, got[n-3], "Weather in Oslo?")
	require.Equal(t, `assistant:"Oslo is snowy."`, got[n-2])
	require.Contains(t, got[n-1], "And Bergen?")
}

// TestContinueEndedRunOfTwoTurns: continuing the second turn of an ended
// run carries its function call, the output the caller sent for it and
// the text that followed, before the new input.
func TestContinueEndedRunOfTwoTurns(t *testing.T) {
	b := setupRuns(t, setupOpts{})
	project := b.project(randomName("contend2-"))
	_, secret := b.key(project)
	name := promptDeployment(b, project, b.up, nil, true)
	b.up.Script(upstreamtest.ToolCalls(upstreamtest.ToolCall{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Oslo"}`}))
	res, err := b.post(ctx(t), t, "/v1/responses", secret, map[string]any{"prompt": map[string]any{"id": name}, "input": "Oslo?"})
	require.NoError(t, err)
	prev, _ := responseOf(t, res.body)
	b.up.Script(upstreamtest.Text("Snowy."))
	res, err = b.post(ctx(t), t, "/v1/responses", secret, map[string]any{"previous_response_id": prev,
		"input": []any{map[string]any{"type": "function_call_output", "call_id": "call_1", "output": "snow"}}})
	require.NoError(t, err)
	second, _ := responseOf(t, res.body)
	require.Equal(t, prev+"_2", second)

	b.up.Script(upstreamtest.Text("Rainy."))
	res, err = b.post(ctx(t), t, "/v1/responses", secret, map[string]any{"previous_response_id": second, "input": "And Bergen?"})
	require.NoError(t, err)
	require.Equal(t, 200, res.status, "%s", res.body)
	reqs, err := b.up.WaitRequests(ctx(t), 3)
	require.NoError(t, err)
	msgs, _ := reqs[2].JSON["messages"].([]any)
	require.GreaterOrEqual(t, len(msgs), 4)
	tail := msgs[len(msgs)-4:]
	calls, _ := tail[0].(map[string]any)["tool_calls"].([]any)
	require.Len(t, calls, 1)
	require.Equal(t, map[string]any{"role": "tool", "tool_call_id": "call_1", "content": "snow"}, tail[1])
	require.Equal(t, map[string]any{"role": "assistant", "content": "Snowy."}, tail[2])
	require.Equal(t, "user", tail[3].(map[string]any)["role"])
}
