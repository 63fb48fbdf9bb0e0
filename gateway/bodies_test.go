package gateway_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/upstreamtest"
)

// firstRead wraps h so that it learns when each request's body is first
// read: by then the gateway has made whatever room it makes for the body.
func firstRead(h http.Handler, reading chan<- struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = &signalingBody{ReadCloser: r.Body, reading: reading}
		h.ServeHTTP(w, r)
	})
}

type signalingBody struct {
	io.ReadCloser
	reading chan<- struct{}
	once    sync.Once
}

func (b *signalingBody) Read(p []byte) (int, error) {
	b.once.Do(func() { b.reading <- struct{}{} })
	return b.ReadCloser.Read(p)
}

// Not parallel: it measures the process's heap.
func TestDeclaredBodyLengthIsNotReserved(t *testing.T) {
	const (
		conns    = 50
		declared = 32 << 20
	)
	b := setup(t)
	p := b.project("acme")
	b.deployment(p, "m", nil)
	_, secret := b.key(p)

	reading := make(chan struct{}, conns)
	srv := httptest.NewServer(firstRead(b.gateway, reading))
	t.Cleanup(srv.Close)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	for range conns {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		_, err = fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n{", secret, declared)
		require.NoError(t, err)
	}
	for range conns {
		select {
		case <-reading:
		case <-time.After(30 * time.Second):
			t.Fatal("the gateway never read the bodies")
		}
	}

	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	require.Less(t, grew, int64(64<<20),
		"%d bodies declaring %d MiB and sending one byte grew the heap by %d MiB", conns, declared>>20, grew>>20)

	// The stalled bodies hold one byte each; others are still served.
	b.up.Script(upstreamtest.Text("still here"))
	c := openai.NewClient(option.WithBaseURL(srv.URL+"/v1/"), option.WithAPIKey(secret), option.WithMaxRetries(0))
	resp, err := c.Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{
		Model:    "m",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	require.NoError(t, err)
	require.Equal(t, "still here", resp.Choices[0].Message.Content)
}

func TestBodiesInFlightBeyondTheLimitAre503(t *testing.T) {
	t.Parallel()
	const limit = 4 << 10
	b := setup(t, setupOpts{maxBodyBytesInFlight: limit})
	p := b.project("acme")
	b.deployment(p, "m", nil)
	_, secret := b.key(p)

	post := func(body []byte) (*http.Response, []byte) {
		req, err := http.NewRequest("POST", b.gw.URL+"/v1/chat/completions", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+secret)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, raw
	}
	chat := func(content string) []byte {
		return []byte(`{"model":"m","messages":[{"role":"user","content":"` + content + `"}]}`)
	}

	// Smaller bodies, one after another, each fit: what a request held is
	// given back when it is answered.
	for range 8 {
		b.up.Script(upstreamtest.Text("ok"))
		resp, raw := post(chat(strings.Repeat("a", limit/2)))
		require.Equal(t, http.StatusOK, resp.StatusCode, string(raw))
	}

	resp, raw := post(chat(strings.Repeat("a", 4*limit)))
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(raw))
	require.JSONEq(t, `{"error":{"message":"The server is receiving too many requests at once; try again shortly.","type":"server_error","param":null,"code":"server_busy"}}`, string(raw))
	require.Equal(t, "1", resp.Header.Get("Retry-After"))

}
