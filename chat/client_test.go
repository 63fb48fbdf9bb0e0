package chat_test

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/upstreamtest"
)

func endpoint(up *upstreamtest.Server) chat.Endpoint {
	return chat.Endpoint{URL: up.URL() + "/chat/completions", APIKey: "sk-provider"}
}

func hello() chat.Request {
	return chat.Request{Model: "upstream-model", Messages: []chat.Message{{Role: "user", Content: "hi"}}}
}

// TestCallSendsDefaultsThenParams: the caller's parameters win over the
// defaults, and what the call sets wins over both.
func TestCallSendsDefaultsThenParams(t *testing.T) {
	t.Parallel()
	up := upstreamtest.Start(t)
	up.RequireAPIKey("sk-provider")
	up.Script(upstreamtest.Text("Bonjour.").WithUsage(upstreamtest.Usage{PromptTokens: 12, CompletionTokens: 3}))
	req := hello()
	req.Defaults = map[string]json.RawMessage{"temperature": json.RawMessage(`0.9`), "max_tokens": json.RawMessage(`100`)}
	req.Params = json.RawMessage(`{"temperature": 0.2, "seed": 7, "stream": true, "response_format": {"type": "text"}}`)
	req.ResponseFormat = json.RawMessage(`{"type":"json_object"}`)
	req.Tools = []chat.Tool{{Type: "function", Function: chat.Function{Name: "lookup"}}}

	reply, err := chat.Client{}.Call(t.Context(), endpoint(up), req, nil)

	require.NoError(t, err)
	require.Equal(t, "Bonjour.", reply.Content)
	require.Equal(t, "stop", reply.FinishReason)
	require.Equal(t, chat.Usage{PromptTokens: 12, CompletionTokens: 3, TotalTokens: 15}, reply.Usage)
	r := up.Requests()[0]
	require.Equal(t, "Bearer sk-provider", r.Header.Get("Authorization"))
	require.Equal(t, "application/json", r.Header.Get("Accept"))
	require.JSONEq(t, `{
	  "model": "upstream-model",
	  "temperature": 0.2,
	  "max_tokens": 100,
	  "seed": 7,
	  "messages": [{"role": "user", "content": "hi"}],
	  "response_format": {"type": "json_object"},
	  "tools": [{"type": "function", "function": {"name": "lookup"}}]
	}`, string(r.Body), "the parameters' stream is not the call's")
}

// TestParamsCannotRenameCallFields: an upstream that decodes JSON
// case-insensitively would take "Model" for model, so the parameters and
// defaults reach it in no spelling of a field the call sets.
func TestParamsCannotRenameCallFields(t *testing.T) {
	t.Parallel()
	up := upstreamtest.Start(t)
	up.Script(upstreamtest.Text("ok"))
	req := hello()
	req.Defaults = map[string]json.RawMessage{"MODEL": json.RawMessage(`"default-other"`), "temperature": json.RawMessage(`0.5`)}
	req.Params = json.RawMessage(`{"Model": "other", "mOdEl": "another", "Messages": [], "Stream": true, "seed": 1}`)

	_, err := chat.Client{}.Call(t.Context(), endpoint(up), req, nil)

	require.NoError(t, err)
	require.JSONEq(t, `{
	  "model": "upstream-model",
	  "temperature": 0.5,
	  "seed": 1,
	  "messages": [{"role": "user", "content": "hi"}]
	}`, string(up.Requests()[0].Body))
}

// TestCallStreamHandsOnEachPiece: a streamed reply reaches delta piece by
// piece and is returned whole, as an unstreamed one.
func TestCallStreamHandsOnEachPiece(t *testing.T) {
	t.Parallel()
	up := upstreamtest.Start(t)
	up.Script(upstreamtest.Reply{Content: "one two three", ToolCalls: []upstreamtest.ToolCall{{ID: "call_1", Name: "f", Arguments: `{"a":1}`}}})
	req := hello()
	req.Stream = true
	var pieces []string

	reply, err := chat.Client{}.Call(t.Context(), endpoint(up), req, func(s string) { pieces = append(pieces, s) })

	require.NoError(t, err)
	require.Equal(t, []string{"one", " two", " three"}, pieces)
	require.Equal(t, "one two three", reply.Content)
	require.Equal(t, []chat.ToolCall{{ID: "call_1", Type: "function", Function: chat.ToolCallFunction{Name: "f", Arguments: `{"a":1}`}}}, reply.ToolCalls)
	r := up.Requests()[0]
	require.Equal(t, true, r.JSON["stream"])
	require.Equal(t, map[string]any{"include_usage": true}, r.JSON["stream_options"])
}

func TestCallFailures(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + l.Addr().String() + "/v1/chat/completions"
	require.NoError(t, l.Close())

	for name, tc := range map[string]struct {
		reply     *upstreamtest.Reply
		url       string
		stream    bool
		want      chat.Error
		retryable bool
	}{
		"rate limited": {
			reply:     ptr(upstreamtest.Error(http.StatusTooManyRequests, "rate_limit_error", "Rate limit reached.").WithHeader("Retry-After", "2")),
			want:      chat.Error{Kind: chat.ErrorStatus, Status: 429, Message: "Rate limit reached.", RetryAfter: 2 * time.Second},
			retryable: true,
		},
		"retry after capped": {
			reply:     ptr(upstreamtest.Error(http.StatusServiceUnavailable, "server_error", "Overloaded.").WithHeader("Retry-After", "3600")),
			want:      chat.Error{Kind: chat.ErrorStatus, Status: 503, Message: "Overloaded.", RetryAfter: time.Minute},
			retryable: true,
		},
		"bad request": {
			reply: ptr(upstreamtest.Error(http.StatusBadRequest, "invalid_request_error", "Invalid 'temperature'.")),
			want:  chat.Error{Kind: chat.ErrorStatus, Status: 400, Message: "Invalid 'temperature'."},
		},
		"html error page": {
			reply:     ptr(upstreamtest.Raw(http.StatusBadGateway, "text/html", []byte("<html>bad gateway</html>"))),
			want:      chat.Error{Kind: chat.ErrorStatus, Status: 502, Message: "Bad Gateway"},
			retryable: true,
		},
		"not a completion": {
			reply:     ptr(upstreamtest.Raw(http.StatusOK, "application/json", []byte(`{"choices": []}`))),
			want:      chat.Error{Kind: chat.BadReply, Status: 200, Message: "the model deployment sent a reply that is not a chat completion"},
			retryable: true,
		},
		"stream that breaks off": {
			reply:     ptr(upstreamtest.Text("one two three four").WithDropAfter(2)),
			stream:    true,
			want:      chat.Error{Kind: chat.BadReply, Status: 200, Message: "the model deployment's stream broke off"},
			retryable: true,
		},
		"unreachable": {
			url:       closed,
			want:      chat.Error{Kind: chat.Unreachable, Message: "the model deployment could not be reached"},
			retryable: true,
		},
		"unusable url": {
			url:  "http://bad host/v1/chat/completions",
			want: chat.Error{Kind: chat.InvalidURL, Message: "the endpoint's URL is unusable"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ep := chat.Endpoint{URL: tc.url}
			if tc.reply != nil {
				up := upstreamtest.Start(t)
				up.Script(*tc.reply)
				ep = endpoint(up)
			}
			req := hello()
			req.Stream = tc.stream

			_, err := chat.Client{}.Call(t.Context(), ep, req, nil)

			var ce *chat.Error
			require.True(t, errors.As(err, &ce), "not a *chat.Error: %v", err)
			require.Equal(t, tc.want.Kind, ce.Kind)
			require.Equal(t, tc.want.Status, ce.Status)
			require.Equal(t, tc.want.Message, ce.Message)
			require.Equal(t, tc.want.RetryAfter, ce.RetryAfter)
			require.Equal(t, tc.retryable, ce.Retryable())
			require.NotEmpty(t, ce.Error())
		})
	}
}

func ptr[T any](v T) *T { return &v }
