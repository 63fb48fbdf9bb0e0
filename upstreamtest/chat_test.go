package upstreamtest_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/upstreamtest"
)

func TestDefaultReply(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)

	resp, body := post(t, s, "/chat/completions", chatRequest("Qwen/Qwen3-32B", "How are you today?"))

	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	c := decode[completion](t, body)
	require.True(t, strings.HasPrefix(c.ID, "chatcmpl-"), c.ID)
	require.Equal(t, "chat.completion", c.Object)
	require.NotZero(t, c.Created)
	require.Equal(t, "Qwen/Qwen3-32B", c.Model)
	require.Len(t, c.Choices, 1)
	require.Equal(t, "assistant", c.Choices[0].Message.Role)
	require.NotNil(t, c.Choices[0].Message.Content)
	require.Equal(t, upstreamtest.DefaultContent, *c.Choices[0].Message.Content)
	require.Equal(t, "stop", c.Choices[0].FinishReason)
	require.Equal(t, upstreamtest.Usage{PromptTokens: 4, CompletionTokens: 4, TotalTokens: 8}, c.Usage)
}

func TestEchoDefault(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.SetDefault(upstreamtest.Echo())

	req := map[string]any{
		"model": "m",
		"messages": []map[string]any{
			{"role": "system", "content": "Be brief."},
			{"role": "user", "content": []map[string]any{{"type": "text", "text": "first"}}},
			{"role": "assistant", "content": "ok"},
			{"role": "user", "content": []map[string]any{{"type": "text", "text": "say"}, {"type": "image_url", "image_url": map[string]any{"url": "data:,"}}, {"type": "text", "text": "this"}}},
		},
	}
	_, body := post(t, s, "/chat/completions", req)

	c := decode[completion](t, body)
	require.Equal(t, "say\nthis", *c.Choices[0].Message.Content)
	require.Equal(t, 2, c.Usage.CompletionTokens)
	require.Equal(t, 6, c.Usage.PromptTokens, "words of every message's text")
}

func TestScriptedRepliesInOrderThenDefault(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.Script(upstreamtest.Text("one"), upstreamtest.Text("two"))
	s.Script(upstreamtest.JSONContent(map[string]int{"answer": 42}))
	require.Equal(t, 3, s.Pending())

	var got []string
	for range 4 {
		_, body := post(t, s, "/chat/completions", chatRequest("m", "hi"))
		got = append(got, *decode[completion](t, body).Choices[0].Message.Content)
	}

	require.Equal(t, []string{"one", "two", `{"answer":42}`, upstreamtest.DefaultContent}, got)
	require.Zero(t, s.Pending())
}

func TestScriptModelComesFirst(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.Script(upstreamtest.Text("any model"))
	s.ScriptModel("big", upstreamtest.Text("big model"))

	_, small := post(t, s, "/chat/completions", chatRequest("small", "hi"))
	_, big := post(t, s, "/chat/completions", chatRequest("big", "hi"))
	_, big2 := post(t, s, "/chat/completions", chatRequest("big", "hi"))

	require.Equal(t, "any model", *decode[completion](t, small).Choices[0].Message.Content)
	require.Equal(t, "big model", *decode[completion](t, big).Choices[0].Message.Content)
	require.Equal(t, upstreamtest.DefaultContent, *decode[completion](t, big2).Choices[0].Message.Content)
}

func TestToolCalls(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.Script(upstreamtest.ToolCalls(
		upstreamtest.Call("get_weather", `{"city":"Zürich","unit":"celsius"}`),
		upstreamtest.ToolCall{ID: "call_fixed", Name: "get_time", Arguments: `{}`},
	))

	_, body := post(t, s, "/chat/completions", chatRequest("m", "weather?"))

	c := decode[completion](t, body)
	require.Equal(t, "tool_calls", c.Choices[0].FinishReason)
	require.Nil(t, c.Choices[0].Message.Content, "content is null when the assistant only calls tools")
	calls := c.Choices[0].Message.ToolCalls
	require.Len(t, calls, 2)
	require.True(t, strings.HasPrefix(calls[0].ID, "call_"), calls[0].ID)
	require.Equal(t, "function", calls[0].Type)
	require.Equal(t, "get_weather", calls[0].Function.Name)
	require.JSONEq(t, `{"city":"Zürich","unit":"celsius"}`, calls[0].Function.Arguments)
	require.Equal(t, "call_fixed", calls[1].ID)
	require.Equal(t, "get_time", calls[1].Function.Name)
	require.Equal(t, `{}`, calls[1].Function.Arguments)
}

func TestGeneratedToolCallIDsDifferPerRequest(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.SetDefault(upstreamtest.ToolCalls(upstreamtest.Call("f", `{}`)))

	_, first := post(t, s, "/chat/completions", chatRequest("m", "hi"))
	_, second := post(t, s, "/chat/completions", chatRequest("m", "hi"))

	require.NotEqual(t,
		decode[completion](t, first).Choices[0].Message.ToolCalls[0].ID,
		decode[completion](t, second).Choices[0].Message.ToolCalls[0].ID)
}

func TestStreamChunkOrderAndDone(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.Script(upstreamtest.Text("The quick  brown fox."))

	resp, body := post(t, s, "/chat/completions", streamRequest("m", "go"))

	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream; charset=utf-8", resp.Header.Get("Content-Type"))
	cs := chunks(t, body)
	require.Len(t, cs, 1+4+1, "role chunk, one chunk per word, finish chunk")
	for _, c := range cs {
		require.Equal(t, cs[0].ID, c.ID, "every chunk carries the same id")
		require.Equal(t, "chat.completion.chunk", c.Object)
		require.Equal(t, "m", c.Model)
		require.Nil(t, c.Usage, "no usage field unless include_usage was asked for")
		require.Len(t, c.Choices, 1)
	}
	require.True(t, strings.HasPrefix(cs[0].ID, "chatcmpl-"))
	first := cs[0].Choices[0]
	require.Equal(t, "assistant", first.Delta.Role)
	require.NotNil(t, first.Delta.Content)
	require.Empty(t, *first.Delta.Content)
	require.Nil(t, first.FinishReason)

	var words []string
	for _, c := range cs[1:5] {
		require.Nil(t, c.Choices[0].FinishReason)
		words = append(words, *c.Choices[0].Delta.Content)
	}
	require.Equal(t, []string{"The", " quick", "  brown", " fox."}, words)

	last := cs[5].Choices[0]
	require.NotNil(t, last.FinishReason)
	require.Equal(t, "stop", *last.FinishReason)
	require.Nil(t, last.Delta.Content)
}

func TestStreamIncludeUsage(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.Script(
		upstreamtest.Text("two words"),
		upstreamtest.Text("two words").WithUsage(upstreamtest.Usage{PromptTokens: 100, CompletionTokens: 7}),
	)
	req := streamRequest("m", "count these three")
	req["stream_options"] = map[string]any{"include_usage": true}

	_, computed := post(t, s, "/chat/completions", req)
	_, overridden := post(t, s, "/chat/completions", req)

	for _, tc := range []struct {
		body []byte
		want upstreamtest.Usage
	}{
		{computed, upstreamtest.Usage{PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5}},
		{overridden, upstreamtest.Usage{PromptTokens: 100, CompletionTokens: 7, TotalTokens: 107}},
	} {
		cs := chunks(t, tc.body)
		require.Len(t, cs, 1+2+1+1)
		for _, c := range cs[:len(cs)-1] {
			require.JSONEq(t, "null", string(c.Usage), "usage is null in every chunk but the last")
			require.Len(t, c.Choices, 1)
		}
		usageChunk := cs[len(cs)-1]
		require.NotNil(t, usageChunk.Choices, "choices is an empty array, not absent")
		require.Empty(t, usageChunk.Choices)
		require.Equal(t, tc.want, decode[upstreamtest.Usage](t, usageChunk.Usage))
	}
}

func TestStreamToolCallsReassemble(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	calls := []upstreamtest.ToolCall{
		upstreamtest.Call("search", `{"query":"naïve Bayes ✓ classifiers","limit":10}`),
		upstreamtest.Call("get_time", `{"tz":"Europe/Zurich"}`),
	}
	s.Script(upstreamtest.Reply{Content: "Let me look.", ToolCalls: calls})

	_, body := post(t, s, "/chat/completions", streamRequest("m", "go"))

	cs := chunks(t, body)
	var content strings.Builder
	var assembled []toolCall
	fragments := map[int]int{}
	for _, c := range cs[1 : len(cs)-1] {
		d := c.Choices[0].Delta
		if d.Content != nil {
			require.Empty(t, assembled, "content comes before tool calls")
			content.WriteString(*d.Content)
		}
		for _, tc := range d.ToolCalls {
			if tc.ID != "" {
				require.Equal(t, len(assembled), tc.Index, "a new call starts at the next index")
				require.Equal(t, "function", tc.Type)
				require.Empty(t, tc.Function.Arguments)
				assembled = append(assembled, tc)
				continue
			}
			require.Less(t, tc.Index, len(assembled))
			require.Empty(t, tc.Function.Name, "the name comes only with the id")
			assembled[tc.Index].Function.Arguments += tc.Function.Arguments
			fragments[tc.Index]++
		}
	}
	require.Equal(t, "Let me look.", content.String())
	require.Len(t, assembled, 2)
	for i, want := range calls {
		require.True(t, strings.HasPrefix(assembled[i].ID, "call_"))
		require.Equal(t, want.Name, assembled[i].Function.Name)
		require.Equal(t, want.Arguments, assembled[i].Function.Arguments)
		require.Greater(t, fragments[i], 1, "arguments arrive in several fragments")
	}
	require.Equal(t, "tool_calls", *cs[len(cs)-1].Choices[0].FinishReason)
}

func TestErrorReply(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	rateLimited := upstreamtest.Error(http.StatusTooManyRequests, "rate_limit_error", "Slow down.").WithHeader("Retry-After", "3")
	rateLimited.Error.Code = "rate_limit_exceeded"
	s.Script(rateLimited, upstreamtest.Error(http.StatusServiceUnavailable, "server_error", "Overloaded."))

	resp, body := post(t, s, "/chat/completions", chatRequest("m", "hi"))
	streamResp, streamBody := post(t, s, "/chat/completions", streamRequest("m", "hi"))

	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "3", resp.Header.Get("Retry-After"))
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	require.JSONEq(t, `{"error":{"message":"Slow down.","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}`, string(body))
	require.Equal(t, http.StatusServiceUnavailable, streamResp.StatusCode, "an error is sent before a stream starts")
	require.Equal(t, "application/json", streamResp.Header.Get("Content-Type"))
	require.JSONEq(t, `{"error":{"message":"Overloaded.","type":"server_error","param":null,"code":null}}`, string(streamBody))
}

func TestRawReply(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.Script(
		upstreamtest.Raw(http.StatusBadGateway, "text/html", []byte("<h1>502 Bad Gateway</h1>")),
		upstreamtest.Raw(http.StatusOK, "text/event-stream", []byte("data: {not json\n\n")),
	)

	resp, body := post(t, s, "/chat/completions", chatRequest("m", "hi"))
	streamResp, streamBody := post(t, s, "/chat/completions", streamRequest("m", "hi"))

	require.Equal(t, http.StatusBadGateway, resp.StatusCode)
	require.Equal(t, "text/html", resp.Header.Get("Content-Type"))
	require.Equal(t, "<h1>502 Bad Gateway</h1>", string(body))
	require.Equal(t, http.StatusOK, streamResp.StatusCode)
	require.Equal(t, "data: {not json\n\n", string(streamBody))
}

func TestFinishReasonLength(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.Script(upstreamtest.Text("cut short").WithFinishReason("length"))

	_, body := post(t, s, "/chat/completions", chatRequest("m", "hi"))

	require.Equal(t, "length", decode[completion](t, body).Choices[0].FinishReason)
}

func TestDelayHoldsHeadersBack(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	const delay = 150 * time.Millisecond
	s.Script(upstreamtest.Text("late").WithDelay(delay))

	start := time.Now()
	resp, body := post(t, s, "/chat/completions", chatRequest("m", "hi"))

	require.GreaterOrEqual(t, time.Since(start), delay)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "late", *decode[completion](t, body).Choices[0].Message.Content)
}

func TestDropAfterCutsTheStream(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.Script(upstreamtest.Text("one two three four").WithDropAfter(3))

	resp := open(t, t.Context(), http.MethodPost, s.URL()+"/chat/completions", streamRequest("m", "hi"))
	defer resp.Body.Close()
	body, err := readAllKept(resp)

	require.Error(t, err, "the connection is cut, not closed cleanly")
	require.Len(t, readEvents(t, body), 3)
	require.NotContains(t, string(body), "[DONE]")
}

// readAllKept reads a body to its end or error, keeping what arrived.
func readAllKept(resp *http.Response) ([]byte, error) {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			if errors.Is(err, io.EOF) {
				return []byte(b.String()), nil
			}
			return []byte(b.String()), err
		}
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.Script(upstreamtest.Text("kept for the valid request"))
	str := func(s string) *string { return &s }

	for _, tc := range []struct {
		name  string
		body  any
		param *string
		code  *string
	}{
		{"invalid JSON", `{"model": "m",`, nil, nil},
		{"empty body", "", nil, nil},
		{"missing model", map[string]any{"messages": []any{map[string]any{"role": "user", "content": "hi"}}}, str("model"), str("missing_required_parameter")},
		{"missing messages", map[string]any{"model": "m"}, str("messages"), str("missing_required_parameter")},
		{"null messages", map[string]any{"model": "m", "messages": nil}, str("messages"), str("missing_required_parameter")},
		{"empty messages", map[string]any{"model": "m", "messages": []any{}}, str("messages"), str("empty_array")},
		{"model of the wrong type", map[string]any{"model": 7, "messages": []any{}}, str("model"), str("invalid_type")},
		{"content of the wrong type", map[string]any{"model": "m", "messages": []any{map[string]any{"role": "user", "content": 7}}}, str("content"), str("invalid_type")},
		{"stream options without stream", map[string]any{"model": "m", "messages": []any{map[string]any{"role": "user", "content": "hi"}}, "stream_options": map[string]any{"include_usage": true}}, str("stream_options"), str("invalid_value")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, s, "/chat/completions", tc.body)

			require.Equal(t, http.StatusBadRequest, resp.StatusCode, "body: %s", body)
			e := decode[apiError](t, body)
			require.Equal(t, "invalid_request_error", e.Error.Type)
			require.NotEmpty(t, e.Error.Message)
			require.Equal(t, tc.param, e.Error.Param)
			require.Equal(t, tc.code, e.Error.Code)
		})
	}
	require.Equal(t, 1, s.Pending(), "an invalid request uses no scripted reply")
}

func TestRecordedRequests(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	body := chatRequest("m", "remember me")
	body["temperature"] = 0.2

	post(t, s, "/chat/completions?api-version=1", body, "Authorization", "Bearer sk-up", "X-Trace", "abc")
	do(t, t.Context(), http.MethodGet, s.URL()+"/models", nil)

	recs, err := s.WaitRequests(t.Context(), 2)
	require.NoError(t, err)
	require.Len(t, recs, 2)
	chat := recs[0]
	require.Equal(t, http.MethodPost, chat.Method)
	require.Equal(t, "/v1/chat/completions", chat.Path)
	require.Equal(t, "api-version=1", chat.RawQuery)
	require.Equal(t, "Bearer sk-up", chat.Header.Get("Authorization"))
	require.Equal(t, "abc", chat.Header.Get("X-Trace"))
	want, err := json.Marshal(body)
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(chat.Body))
	require.Equal(t, 0.2, chat.JSON["temperature"])
	require.Equal(t, "m", chat.Model)
	require.False(t, chat.Stream)
	require.Equal(t, http.StatusOK, chat.Status)
	require.False(t, chat.Cancelled)
	require.Equal(t, http.MethodGet, recs[1].Method)
	require.Equal(t, "/v1/models", recs[1].Path)
	require.Equal(t, recs, s.Requests())
	require.Equal(t, 2, s.Received())
}

func TestPathsWithoutV1Prefix(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	base := strings.TrimSuffix(s.URL(), "/v1")

	resp, body := do(t, t.Context(), http.MethodPost, base+"/chat/completions", chatRequest("m", "hi"))

	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, upstreamtest.DefaultContent, *decode[completion](t, body).Choices[0].Message.Content)
}

func TestEchoToolResults(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.Script(upstreamtest.EchoToolResults())
	body := `{"model":"m","messages":[
	  {"role":"user","content":"go"},
	  {"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]},
	  {"role":"tool","tool_call_id":"a","content":"Echo: hi"},
	  {"role":"tool","tool_call_id":"b","content":"5"}]}`
	resp, raw := post(t, s, "/chat/completions", body)
	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", raw)
	c := decode[completion](t, raw)
	require.Equal(t, "Echo: hi\n5", *c.Choices[0].Message.Content, "the tool results, one per line")
}
