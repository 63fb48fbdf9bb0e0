package upstreamtest_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/upstreamtest"
)

// chatRequest is a minimal chat completions request for model saying text.
func chatRequest(model, text string) map[string]any {
	return map[string]any{
		"model":    model,
		"messages": []map[string]any{{"role": "user", "content": text}},
	}
}

func streamRequest(model, text string) map[string]any {
	req := chatRequest(model, text)
	req["stream"] = true
	return req
}

// do sends body (JSON-encoded unless it is a string) to path under the
// server's URL and returns the response with its body read.
func do(t *testing.T, ctx context.Context, method, url string, body any, header ...string) (*http.Response, []byte) {
	t.Helper()
	resp := open(t, ctx, method, url, body, header...)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

// open sends a request and returns the response with its body unread.
func open(t *testing.T, ctx context.Context, method, url string, body any, header ...string) *http.Response {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		require.NoError(t, err)
		r = bytes.NewReader(enc)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	require.NoError(t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	return resp
}

func post(t *testing.T, s *upstreamtest.Server, path string, body any, header ...string) (*http.Response, []byte) {
	t.Helper()
	return do(t, t.Context(), http.MethodPost, s.URL()+path, body, header...)
}

// completion is a chat.completion as a client decodes it.
type completion struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Role      string     `json:"role"`
			Content   *string    `json:"content"`
			ToolCalls []toolCall `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage upstreamtest.Usage `json:"usage"`
}

type toolCall struct {
	Index    int    `json:"index"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// chunk is a chat.completion.chunk as a client decodes it.
type chunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Role      string     `json:"role"`
			Content   *string    `json:"content"`
			ToolCalls []toolCall `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	// Usage is raw so that null and absent can be told apart.
	Usage json.RawMessage `json:"usage"`
}

// apiError is OpenAI's error envelope.
type apiError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(b, &v), "body: %s", b)
	return v
}

// sseEvent is one server-sent event.
type sseEvent struct {
	Event string
	Data  string
}

// readEvent reads the next event from a stream; ok is false at its end.
func readEvent(t *testing.T, r *bufio.Reader) (ev sseEvent, ok bool) {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF && line == "" {
			return ev, false
		}
		require.NoError(t, err)
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if ev.Data != "" || ev.Event != "" {
				return ev, true
			}
		case strings.HasPrefix(line, "event: "):
			ev.Event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.Data = strings.TrimPrefix(line, "data: ")
		default:
			t.Fatalf("unexpected stream line %q", line)
		}
	}
}

func readEvents(t *testing.T, body []byte) []sseEvent {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(body))
	var events []sseEvent
	for {
		ev, ok := readEvent(t, r)
		if !ok {
			return events
		}
		events = append(events, ev)
	}
}

// chunks decodes a chat stream, checking that it ends with [DONE] and
// nothing after it.
func chunks(t *testing.T, body []byte) []chunk {
	t.Helper()
	events := readEvents(t, body)
	require.NotEmpty(t, events)
	require.Equal(t, "[DONE]", events[len(events)-1].Data, "the stream must end with [DONE]")
	out := make([]chunk, 0, len(events)-1)
	for _, ev := range events[:len(events)-1] {
		out = append(out, decode[chunk](t, []byte(ev.Data)))
	}
	return out
}
