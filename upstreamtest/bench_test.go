package upstreamtest_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/budhq/bud/upstreamtest"
)

// BenchmarkDefaultChatCompletion measures the server's own cost of the
// default non-streaming answer, without the network.
func BenchmarkDefaultChatCompletion(b *testing.B) {
	s := upstreamtest.New()
	s.SetRecording(false)
	h := s.Handler()
	body := []byte(`{"model":"Qwen/Qwen3-32B","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write one sentence about the sea."}],"max_tokens":64}`)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
		w := &discardWriter{header: http.Header{}}
		r := bytes.NewReader(body)
		for pb.Next() {
			r.Reset(body)
			req.Body = io.NopCloser(r)
			clear(w.header)
			h.ServeHTTP(w, req)
			if w.status != http.StatusOK {
				b.Fatalf("status %d", w.status)
			}
		}
	})
}

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
