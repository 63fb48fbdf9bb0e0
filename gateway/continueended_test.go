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
