package upstreamtest_test

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/upstreamtest"
)

func TestEmbeddings(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	resp, body := post(t, s, "/embeddings", map[string]any{"model": "m", "input": []any{"a b", []int{1, 2}}, "dimensions": 3})
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	got := decode[struct {
		Object string
		Data   []struct {
			Index     int
			Embedding []float32
		}
		Usage struct{ PromptTokens, TotalTokens int } `json:"usage"`
	}](t, body)
	require.Equal(t, "list", got.Object)
	require.Len(t, got.Data, 2)
	require.Equal(t, upstreamtest.Embedding("a b", 3), got.Data[0].Embedding)
	require.Equal(t, upstreamtest.Embedding("1 2", 3), got.Data[1].Embedding)
	require.NotEqual(t, got.Data[0].Embedding, got.Data[1].Embedding)

	resp, body = post(t, s, "/embeddings", map[string]any{"model": "m", "input": "a b", "encoding_format": "base64"})
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	b64 := decode[struct{ Data []struct{ Embedding string } }](t, body).Data[0].Embedding
	raw, err := base64.StdEncoding.DecodeString(b64)
	require.NoError(t, err)
	want := upstreamtest.Embedding("a b", upstreamtest.DefaultDimensions)
	require.Len(t, raw, 4*len(want))
	for i, f := range want {
		require.Equal(t, f, math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])))
	}

	resp, _ = post(t, s, "/embeddings", map[string]any{"model": "m"})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

func TestCompletions(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.Script(upstreamtest.Text("so it goes"), upstreamtest.Echo())
	resp, body := post(t, s, "/completions", map[string]any{"model": "m", "prompt": "x"})
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	got := decode[struct {
		Object  string
		Choices []struct{ Text, FinishReason string } `json:"choices"`
	}](t, body)
	require.Equal(t, "text_completion", got.Object)
	require.Equal(t, "so it goes", got.Choices[0].Text)

	resp, body = post(t, s, "/completions", map[string]any{"model": "m", "prompt": []string{"first", "say this back"}, "stream": true, "stream_options": map[string]any{"include_usage": true}})
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	events := strings.Split(strings.TrimSpace(string(body)), "\n\n")
	require.Equal(t, "data: [DONE]", events[len(events)-1])
	require.Contains(t, events[len(events)-2], `"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":3`)
	var text strings.Builder
	for _, e := range events[:len(events)-2] {
		text.WriteString(decode[struct{ Choices []struct{ Text string } }](t, []byte(strings.TrimPrefix(e, "data: "))).Choices[0].Text)
	}
	require.Equal(t, "say this back", text.String())

	resp, _ = post(t, s, "/completions", map[string]any{"model": "m", "prompt": "x", "stream_options": map[string]any{"include_usage": true}})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
}
