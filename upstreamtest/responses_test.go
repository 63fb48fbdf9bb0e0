package upstreamtest_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/upstreamtest"
)

// response is a Responses API response as a client decodes it.
type response struct {
	ID                string `json:"id"`
	Object            string `json:"object"`
	CreatedAt         int64  `json:"created_at"`
	Status            string `json:"status"`
	Model             string `json:"model"`
	IncompleteDetails *struct {
		Reason string `json:"reason"`
	} `json:"incomplete_details"`
	Output []struct {
		Type    string `json:"type"`
		ID      string `json:"id"`
		Status  string `json:"status"`
		Role    string `json:"role"`
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
		CallID    string `json:"call_id"`
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"output"`
	Usage *struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

func TestResponsesText(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.Script(upstreamtest.Text("Paris is the capital."))

	resp, body := post(t, s, "/responses", map[string]any{"model": "gpt-x", "input": "What is the capital of France?", "instructions": "Be brief."})

	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
	r := decode[response](t, body)
	require.True(t, strings.HasPrefix(r.ID, "resp_"), r.ID)
	require.Equal(t, "response", r.Object)
	require.Equal(t, "completed", r.Status)
	require.Equal(t, "gpt-x", r.Model)
	require.NotZero(t, r.CreatedAt)
	require.Nil(t, r.IncompleteDetails)
	require.Len(t, r.Output, 1)
	msg := r.Output[0]
	require.Equal(t, "message", msg.Type)
	require.Equal(t, "assistant", msg.Role)
	require.Equal(t, "completed", msg.Status)
	require.Len(t, msg.Content, 1)
	require.Equal(t, "output_text", msg.Content[0].Type)
	require.Equal(t, "Paris is the capital.", msg.Content[0].Text)
	require.Equal(t, 6+2, r.Usage.InputTokens, "input and instructions count")
	require.Equal(t, 4, r.Usage.OutputTokens)
	require.Equal(t, 12, r.Usage.TotalTokens)
}

func TestResponsesFunctionCalls(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.Script(upstreamtest.ToolCalls(upstreamtest.Call("get_weather", `{"city":"Oslo"}`)))
	input := []map[string]any{{"role": "user", "content": []map[string]any{{"type": "input_text", "text": "Weather in Oslo?"}}}}

	_, body := post(t, s, "/responses", map[string]any{"model": "m", "input": input})

	r := decode[response](t, body)
	require.Len(t, r.Output, 1)
	call := r.Output[0]
	require.Equal(t, "function_call", call.Type)
	require.True(t, strings.HasPrefix(call.ID, "fc_"), call.ID)
	require.True(t, strings.HasPrefix(call.CallID, "call_"), call.CallID)
	require.Equal(t, "get_weather", call.Name)
	require.Equal(t, `{"city":"Oslo"}`, call.Arguments)
	require.Equal(t, 3, r.Usage.InputTokens)
}

func TestResponsesIncomplete(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.Script(upstreamtest.Text("cut").WithFinishReason("length"))

	_, body := post(t, s, "/responses", map[string]any{"model": "m", "input": "hi"})

	r := decode[response](t, body)
	require.Equal(t, "incomplete", r.Status)
	require.Equal(t, "max_output_tokens", r.IncompleteDetails.Reason)
}

func TestResponsesStream(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.Script(upstreamtest.Reply{Content: "Checking the sky.", ToolCalls: []upstreamtest.ToolCall{upstreamtest.Call("get_weather", `{"city":"Oslo","days":3}`)}})

	resp, body := post(t, s, "/responses", map[string]any{"model": "m", "input": "Weather?", "stream": true})

	require.Equal(t, "text/event-stream; charset=utf-8", resp.Header.Get("Content-Type"))
	events := readEvents(t, body)
	var types []string
	var text, arguments strings.Builder
	for i, ev := range events {
		var data struct {
			Type           string          `json:"type"`
			SequenceNumber int             `json:"sequence_number"`
			Delta          string          `json:"delta"`
			Response       json.RawMessage `json:"response"`
		}
		require.NoError(t, json.Unmarshal([]byte(ev.Data), &data))
		require.Equal(t, ev.Event, data.Type, "the event name repeats the type")
		require.Equal(t, i, data.SequenceNumber)
		switch data.Type {
		case "response.output_text.delta":
			text.WriteString(data.Delta)
		case "response.function_call_arguments.delta":
			arguments.WriteString(data.Delta)
		}
		if len(types) == 0 || types[len(types)-1] != data.Type {
			types = append(types, data.Type)
		}
	}
	require.Equal(t, []string{
		"response.created",
		"response.in_progress",
		"response.output_item.added",
		"response.content_part.added",
		"response.output_text.delta",
		"response.output_text.done",
		"response.content_part.done",
		"response.output_item.done",
		"response.output_item.added",
		"response.function_call_arguments.delta",
		"response.function_call_arguments.done",
		"response.output_item.done",
		"response.completed",
	}, types)
	require.Equal(t, "Checking the sky.", text.String())
	require.Equal(t, `{"city":"Oslo","days":3}`, arguments.String())

	var created, completed struct {
		Response response `json:"response"`
	}
	require.NoError(t, json.Unmarshal([]byte(events[0].Data), &created))
	require.NoError(t, json.Unmarshal([]byte(events[len(events)-1].Data), &completed))
	require.Equal(t, "in_progress", created.Response.Status)
	require.Empty(t, created.Response.Output)
	require.Equal(t, created.Response.ID, completed.Response.ID)
	require.Equal(t, "completed", completed.Response.Status)
	require.Len(t, completed.Response.Output, 2)
	require.Equal(t, 1, completed.Response.Usage.InputTokens)
}

func TestResponsesValidation(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)

	noModel, noModelBody := post(t, s, "/responses", map[string]any{"input": "hi"})
	badInput, badInputBody := post(t, s, "/responses", map[string]any{"model": "m", "input": 7})

	require.Equal(t, http.StatusBadRequest, noModel.StatusCode)
	require.Equal(t, "model", *decode[apiError](t, noModelBody).Error.Param)
	require.Equal(t, http.StatusBadRequest, badInput.StatusCode)
	require.Equal(t, "input", *decode[apiError](t, badInputBody).Error.Param)
}
