package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/budhq/bud/upstreamtest"
)

// BenchmarkChatCompletion measures one non-streaming request through the
// gateway's handler (recorded in memory) to the stand-in over loopback, and
// the same request sent to the stand-in directly; the difference is what
// the gateway adds. `make bench-gateway` measures the same under load.
func BenchmarkChatCompletion(b *testing.B) {
	bb := setupBench(b)
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}`)
	b.Run("direct", func(b *testing.B) {
		c := &http.Client{}
		b.ReportAllocs()
		for b.Loop() {
			req, _ := http.NewRequest("POST", bb.up.URL()+"/chat/completions", bytes.NewReader(body))
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.Run("gateway", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			req := httptest.NewRequest("POST", "/v1/chat/completions", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+bb.secret)
			rec := httptest.NewRecorder()
			bb.gateway.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatal(rec.Code, rec.Body.String())
			}
		}
	})
}

type benchBundle struct {
	*bundle
	secret string
}

func setupBench(b *testing.B) benchBundle {
	bun := setup(b)
	bun.up.SetRecording(false)
	bun.up.SetDefault(upstreamtest.Text("Hello! This is a short fixed reply."))
	p := bun.project("bench")
	bun.deployment(p, "m", map[string]any{"default_params": map[string]any{"temperature": 0.2}})
	_, secret := bun.key(p)
	return benchBundle{bundle: bun, secret: secret}
}
