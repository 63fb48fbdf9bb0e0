package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/upstreamtest"
)

// TestDevPromptRunContinue pauses and continues prompt runs through `bud
// dev` with the official OpenAI client: a prompt with a function tool,
// whose model (the stand-in, scripted) first calls the function twice,
// then answers with text once it has both outputs. The first response
// returns the calls; a continue with previous_response_id and the
// function_call_output items answers with the text as the next turn; the
// model gets the calls and their outputs in order; a continue that leaves
// a call unanswered, or continues a response twice, is a 400; both turns
// can be read back; and the same round trip streams.
func TestDevPromptRunContinue(t *testing.T) {
	env := newDevEnv(t)
	p := env.start(t)
	defer p.stop(t)
	token, err := os.ReadFile(filepath.Join(env.dataDir, "admin-token"))
	require.NoError(t, err)
	api := apiClient{t: t, base: "http://" + env.app, token: strings.TrimSpace(string(token))}
	up := upstreamtest.Start(t)

	var project struct{ ID string }
	api.do("POST", "/api/projects", map[string]any{"name": "continues"}, http.StatusCreated, &project)
	api.do("POST", "/api/projects/"+project.ID+"/deployments", map[string]any{
		"name": "model", "kind": "model", "upstream": map[string]any{"base_url": up.URL(), "model": "stand-in"},
	}, http.StatusCreated, nil)
	api.do("POST", "/api/projects/"+project.ID+"/deployments", map[string]any{
		"kind": "prompt",
		"prompt": map[string]any{"name": "forecaster", "document": map[string]any{
			"deployment": "model",
			"messages":   []any{map[string]any{"role": "user", "content": "What is the weather in {{ input }}?"}},
			"tools": []any{map[string]any{
				"type": "function", "name": "get_weather", "description": "The weather in a city today.",
				"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []any{"city"}},
			}},
		}},
	}, http.StatusCreated, nil)
	var key struct{ Secret string }
	api.do("POST", "/api/projects/"+project.ID+"/api-keys", map[string]any{"name": "k"}, http.StatusCreated, &key)
	c := openai.NewClient(option.WithBaseURL("http://"+env.gateway+"/v1/"), option.WithAPIKey(key.Secret), option.WithMaxRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	start := func(cities string) responses.ResponseNewParams {
		return responses.ResponseNewParams{
			Prompt: responses.ResponsePromptParam{ID: "forecaster"},
			Input:  responses.ResponseNewParamsInputUnion{OfString: openai.String(cities)},
		}
	}
	outputs := func(previous string, callOutputs ...string) responses.ResponseNewParams {
		var items responses.ResponseInputParam
		for i := 0; i < len(callOutputs); i += 2 {
			items = append(items, responses.ResponseInputItemParamOfFunctionCallOutput(callOutputs[i], callOutputs[i+1]))
		}
		return responses.ResponseNewParams{
			PreviousResponseID: openai.String(previous),
			Input:              responses.ResponseNewParamsInputUnion{OfInputItemList: items},
		}
	}
	requireAPIError := func(t *testing.T, err error, status int, param string) *openai.Error {
		t.Helper()
		var apiErr *openai.Error
		require.True(t, errors.As(err, &apiErr), "%v", err)
		require.Equal(t, status, apiErr.StatusCode, "%s", apiErr.RawJSON())
		require.Equal(t, param, apiErr.Param, "%s", apiErr.RawJSON())
		return apiErr
	}
	requireFunctionCalls := func(t *testing.T, r *responses.Response, ids ...string) {
		t.Helper()
		require.Equal(t, responses.ResponseStatusCompleted, r.Status, "a paused turn is completed")
		require.Len(t, r.Output, len(ids), "%s", r.RawJSON())
		for i, id := range ids {
			require.Equal(t, "function_call", r.Output[i].Type)
			fc := r.Output[i].AsFunctionCall()
			require.Equal(t, "fc_"+id, fc.ID)
			require.Equal(t, id, fc.CallID)
			require.Equal(t, "get_weather", fc.Name)
		}
		require.Empty(t, r.OutputText())
	}

	var paused string // a response of the project, for another project to try
	t.Run("function outputs continue the run", func(t *testing.T) {
		up.Script(
			upstreamtest.ToolCalls(
				upstreamtest.ToolCall{ID: "call_paris", Name: "get_weather", Arguments: `{"city":"Paris"}`},
				upstreamtest.ToolCall{ID: "call_oslo", Name: "get_weather", Arguments: `{"city":"Oslo"}`},
			),
			upstreamtest.Text("Sunny in Paris, snow in Oslo."),
		)
		before := len(up.Requests())

		first, err := c.Responses.New(ctx, start("Paris and Oslo"))
		require.NoError(t, err)
		requireFunctionCalls(t, first, "call_paris", "call_oslo")
		require.Equal(t, `{"city":"Paris"}`, first.Output[0].AsFunctionCall().Arguments)
		require.Empty(t, first.PreviousResponseID)

		// One output short: refused, naming the call left out; the run
		// still waits.
		_, err = c.Responses.New(ctx, outputs(first.ID, "call_paris", `{"sky":"sunny"}`))
		apiErr := requireAPIError(t, err, http.StatusBadRequest, "input")
		require.Contains(t, apiErr.Message, "call_oslo")
		// A continue runs the run's prompt, no other.
		other := outputs(first.ID, "call_paris", "{}", "call_oslo", "{}")
		other.Prompt = responses.ResponsePromptParam{ID: "summarizer"}
		_, err = c.Responses.New(ctx, other)
		requireAPIError(t, err, http.StatusBadRequest, "prompt.id")
		paused = first.ID

		second, err := c.Responses.New(ctx, outputs(first.ID, "call_paris", `{"sky":"sunny"}`, "call_oslo", `{"sky":"snow"}`))
		require.NoError(t, err)
		require.Equal(t, first.ID+"_2", second.ID)
		require.Equal(t, first.ID, second.PreviousResponseID)
		require.Equal(t, responses.ResponseStatusCompleted, second.Status)
		require.Equal(t, "Sunny in Paris, snow in Oslo.", second.OutputText())
		require.Len(t, second.Output, 1)
		require.Equal(t, "msg_"+strings.TrimPrefix(second.ID, "resp_"), second.Output[0].ID)

		// The model's second request: the calls, then one tool message per
		// call with its output, in the calls' order.
		recs := up.Requests()[before:]
		require.Len(t, recs, 2)
		msgs, _ := recs[1].JSON["messages"].([]any)
		require.GreaterOrEqual(t, len(msgs), 3)
		tail := msgs[len(msgs)-3:]
		assistant := tail[0].(map[string]any)
		require.Equal(t, "assistant", assistant["role"])
		calls, _ := assistant["tool_calls"].([]any)
		require.Len(t, calls, 2)
		for i, id := range []string{"call_paris", "call_oslo"} {
			call := calls[i].(map[string]any)
			require.Equal(t, id, call["id"])
			require.Equal(t, "get_weather", call["function"].(map[string]any)["name"])
		}
		require.Equal(t, map[string]any{"role": "tool", "tool_call_id": "call_paris", "content": `{"sky":"sunny"}`}, tail[1])
		require.Equal(t, map[string]any{"role": "tool", "tool_call_id": "call_oslo", "content": `{"sky":"snow"}`}, tail[2])

		// The run has ended: continuing its first response starts a new
		// run, linked to it, whose model call carries the conversation.
		up.Script(upstreamtest.Text("Again."))
		third, err := c.Responses.New(ctx, outputs(first.ID, "call_paris", "{}", "call_oslo", "{}"))
		require.NoError(t, err)
		require.NotEqual(t, first.ID+"_3", third.ID)
		require.Equal(t, "Again.", third.OutputText())
		require.Len(t, up.Requests(), before+3, "the new run made one model call")

		// Both turns, read back.
		got, err := c.Responses.Get(ctx, first.ID, responses.ResponseGetParams{})
		require.NoError(t, err)
		requireFunctionCalls(t, got, "call_paris", "call_oslo")
		got, err = c.Responses.Get(ctx, second.ID, responses.ResponseGetParams{})
		require.NoError(t, err)
		require.Equal(t, second.ID, got.ID)
		require.Equal(t, first.ID, got.PreviousResponseID)
		require.Equal(t, second.OutputText(), got.OutputText())
		require.Equal(t, second.Output[0].ID, got.Output[0].ID)
		_, err = c.Responses.Get(ctx, first.ID+"_3", responses.ResponseGetParams{})
		requireAPIError(t, err, http.StatusNotFound, "")
	})

	t.Run("a continue names a response of the project", func(t *testing.T) {
		_, err := c.Responses.New(ctx, outputs("resp_0123456789abcdef", "call_x", "{}"))
		apiErr := requireAPIError(t, err, http.StatusNotFound, "previous_response_id")
		require.Equal(t, "response_not_found", apiErr.Code)
		_, err = c.Responses.New(ctx, outputs("not-a-response", "call_x", "{}"))
		requireAPIError(t, err, http.StatusBadRequest, "previous_response_id")

		// Another project's response is as absent as none.
		var other struct{ ID string }
		api.do("POST", "/api/projects", map[string]any{"name": "others"}, http.StatusCreated, &other)
		var otherKey struct{ Secret string }
		api.do("POST", "/api/projects/"+other.ID+"/api-keys", map[string]any{"name": "k"}, http.StatusCreated, &otherKey)
		oc := openai.NewClient(option.WithBaseURL("http://"+env.gateway+"/v1/"), option.WithAPIKey(otherKey.Secret), option.WithMaxRetries(0))
		require.NotEmpty(t, paused)
		_, err = oc.Responses.New(ctx, outputs(paused, "call_paris", "{}", "call_oslo", "{}"))
		apiErr = requireAPIError(t, err, http.StatusNotFound, "previous_response_id")
		require.Equal(t, "response_not_found", apiErr.Code)
		_, err = oc.Responses.Get(ctx, paused, responses.ResponseGetParams{})
		requireAPIError(t, err, http.StatusNotFound, "")
	})

	t.Run("a continue streams", func(t *testing.T) {
		up.Script(
			upstreamtest.ToolCalls(
				upstreamtest.ToolCall{ID: "call_rome", Name: "get_weather", Arguments: `{"city":"Rome"}`},
				upstreamtest.ToolCall{ID: "call_lima", Name: "get_weather", Arguments: `{"city":"Lima"}`},
			),
			upstreamtest.Text("Warm in Rome, grey in Lima."),
		)

		s := readStream(c.Responses.NewStreaming(ctx, start("Rome and Lima")))
		require.NoError(t, s.err)
		functionCall := []string{"response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done"}
		want := append([]string{"response.created", "response.in_progress"}, functionCall...)
		want = append(want, functionCall...)
		require.Equal(t, append(want, "response.completed"), s.types())
		for i, ev := range s.events {
			require.Equal(t, int64(i), ev.SequenceNumber)
		}
		for i, id := range []string{"call_rome", "call_lima"} {
			added, delta, done, itemDone := s.events[2+4*i], s.events[3+4*i], s.events[4+4*i], s.events[5+4*i]
			require.Equal(t, int64(i), added.OutputIndex)
			require.Equal(t, "fc_"+id, added.Item.ID)
			require.Equal(t, "in_progress", added.Item.Status)
			require.Equal(t, "fc_"+id, delta.ItemID)
			require.Equal(t, "fc_"+id, done.ItemID)
			require.Equal(t, "get_weather", done.Name)
			require.Equal(t, delta.Delta, done.Arguments)
			require.Equal(t, "completed", itemDone.Item.Status)
		}
		require.Equal(t, `{"city":"Rome"}`, s.events[4].Arguments)
		first := s.final(t)
		requireFunctionCalls(t, &first, "call_rome", "call_lima")

		// Refused before the stream starts: a plain 400.
		st := c.Responses.NewStreaming(ctx, outputs(first.ID, "call_lima", `{"sky":"grey"}`))
		require.False(t, st.Next())
		apiErr := requireAPIError(t, st.Err(), http.StatusBadRequest, "input")
		require.Contains(t, apiErr.Message, "call_rome")

		s = readStream(c.Responses.NewStreaming(ctx, outputs(first.ID, "call_rome", `{"sky":"warm"}`, "call_lima", `{"sky":"grey"}`)))
		require.NoError(t, s.err)
		requireTextEventOrder(t, s)
		require.Equal(t, first.ID+"_2", s.events[0].Response.ID)
		require.Equal(t, first.ID, s.events[0].Response.PreviousResponseID)
		text, items := s.text()
		require.Equal(t, "Warm in Rome, grey in Lima.", text)
		require.Equal(t, 1, items)
		// Streamed live, as the stand-in wrote it, word by word: not one
		// delta made up from the turn's result at its end.
		require.Equal(t, []string{"Warm", " in", " Rome,", " grey", " in", " Lima."}, s.deltas())
		second := s.final(t)
		require.Equal(t, first.ID+"_2", second.ID)
		require.Equal(t, first.ID, second.PreviousResponseID)
		require.Equal(t, text, second.OutputText())
		require.Equal(t, s.events[2].Item.ID, second.Output[0].ID, "the message as it was streamed")

		got, err := c.Responses.Get(ctx, second.ID, responses.ResponseGetParams{})
		require.NoError(t, err)
		require.Equal(t, second.Output[0].ID, got.Output[0].ID)
		require.Equal(t, text, got.OutputText())
	})
}
