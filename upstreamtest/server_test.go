package upstreamtest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/upstreamtest"
)

// waitLimit bounds each wait for an event, so that a broken server fails
// the test instead of hanging it.
const waitLimit = 10 * time.Second

func TestRequireAPIKey(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.RequireAPIKey("sk-upstream")
	s.Script(upstreamtest.Text("authorized"))

	missing, missingBody := post(t, s, "/chat/completions", chatRequest("m", "hi"))
	wrong, wrongBody := post(t, s, "/chat/completions", chatRequest("m", "hi"), "Authorization", "Bearer sk-other")
	models, _ := do(t, t.Context(), http.MethodGet, s.URL()+"/models", nil)
	right, rightBody := post(t, s, "/chat/completions", chatRequest("m", "hi"), "Authorization", "Bearer sk-upstream")

	require.Equal(t, http.StatusUnauthorized, missing.StatusCode)
	e := decode[apiError](t, missingBody)
	require.Equal(t, "invalid_request_error", e.Error.Type)
	require.Contains(t, e.Error.Message, "API key")
	require.Equal(t, http.StatusUnauthorized, wrong.StatusCode)
	require.Equal(t, "invalid_api_key", *decode[apiError](t, wrongBody).Error.Code)
	require.Equal(t, http.StatusUnauthorized, models.StatusCode)
	require.Equal(t, http.StatusOK, right.StatusCode)
	require.Equal(t, "authorized", *decode[completion](t, rightBody).Choices[0].Message.Content,
		"rejected requests use no scripted reply")

	recs := s.Requests()
	require.Len(t, recs, 4, "rejected requests are recorded too")
	require.Equal(t, http.StatusUnauthorized, recs[0].Status)
	require.Equal(t, "Bearer sk-upstream", recs[3].Header.Get("Authorization"))

	s.RequireAPIKey("")
	lifted, _ := post(t, s, "/chat/completions", chatRequest("m", "hi"))
	require.Equal(t, http.StatusOK, lifted.StatusCode)
}

func TestClientDisconnectMidStreamIsCancelled(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	// The pause between chunks outlasts any test: only the client going away
	// ends this stream.
	s.Script(upstreamtest.Text("never finished").WithChunkDelay(time.Hour))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	resp := open(t, ctx, http.MethodPost, s.URL()+"/chat/completions", streamRequest("m", "hi"))
	defer resp.Body.Close()
	first, ok := readEvent(t, bufio.NewReader(resp.Body))
	require.True(t, ok)
	require.Contains(t, first.Data, `"role":"assistant"`)
	cancel()

	waitCtx, stop := context.WithTimeout(t.Context(), waitLimit)
	defer stop()
	cancelled, err := s.WaitCancelled(waitCtx, 1)
	require.NoError(t, err)
	require.Len(t, cancelled, 1)
	require.True(t, cancelled[0].Cancelled)
	require.Equal(t, "/v1/chat/completions", cancelled[0].Path)
	require.True(t, cancelled[0].Stream)
	require.Equal(t, http.StatusOK, cancelled[0].Status)
	require.True(t, s.Requests()[0].Cancelled, "the recorded request is marked too")
}

func TestClientGivingUpDuringDelayIsCancelled(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.Script(upstreamtest.Text("too late").WithDelay(time.Hour))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			done <- err
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()

	waitCtx, stop := context.WithTimeout(t.Context(), waitLimit)
	defer stop()
	_, err := s.WaitRequests(waitCtx, 1)
	require.NoError(t, err)
	cancel()
	cancelled, err := s.WaitCancelled(waitCtx, 1)
	require.NoError(t, err)
	require.Zero(t, cancelled[0].Status, "no headers were sent")
	require.ErrorIs(t, <-done, context.Canceled)
}

func TestCancellationIsSeenWithRecordingOff(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.SetRecording(false)
	s.Script(upstreamtest.Text("a b c").WithChunkDelay(time.Hour))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	resp := open(t, ctx, http.MethodPost, s.URL()+"/chat/completions", streamRequest("m", "hi"))
	defer resp.Body.Close()
	_, ok := readEvent(t, bufio.NewReader(resp.Body))
	require.True(t, ok)
	cancel()

	waitCtx, stop := context.WithTimeout(t.Context(), waitLimit)
	defer stop()
	cancelled, err := s.WaitCancelled(waitCtx, 1)
	require.NoError(t, err)
	require.Equal(t, "m", cancelled[0].Model)
	require.Empty(t, s.Requests())
	require.Equal(t, 1, s.Received())
}

func TestWaitRequestsEndsWithItsContext(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	post(t, s, "/chat/completions", chatRequest("m", "hi"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	got, err := s.WaitRequests(ctx, 2)

	require.ErrorIs(t, err, context.Canceled)
	require.Len(t, got, 1, "those recorded so far")
}

func TestCloseEndsStreamsWithoutMarkingThemCancelled(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.Script(upstreamtest.Text("a b").WithChunkDelay(time.Hour))
	resp := open(t, t.Context(), http.MethodPost, s.URL()+"/chat/completions", streamRequest("m", "hi"))
	defer resp.Body.Close()
	_, ok := readEvent(t, bufio.NewReader(resp.Body))
	require.True(t, ok)

	require.NoError(t, s.Close())

	require.False(t, s.Requests()[0].Cancelled)
	require.NoError(t, s.Close(), "closing twice is harmless")
}

func TestConcurrentRequests(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	const n = 64
	for i := range n {
		s.Script(upstreamtest.Text(fmt.Sprintf("reply %d", i)))
	}

	var wg sync.WaitGroup
	contents := make([]string, n)
	failures := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			body := chatRequest("m", "hi")
			if i%2 == 1 {
				body["stream"] = true
			}
			resp, b := post(t, s, "/chat/completions", body)
			if resp.StatusCode != http.StatusOK {
				failures <- fmt.Sprintf("request %d: %d %s", i, resp.StatusCode, b)
				return
			}
			if i%2 == 1 {
				var text strings.Builder
				for _, c := range chunks(t, b) {
					if d := c.Choices[0].Delta.Content; d != nil {
						text.WriteString(*d)
					}
				}
				contents[i] = text.String()
				return
			}
			contents[i] = *decode[completion](t, b).Choices[0].Message.Content
		})
		// Reading while requests are served is part of what must be safe.
		wg.Go(func() { _ = s.Requests(); _ = s.Pending() })
	}
	wg.Wait()
	close(failures)

	for f := range failures {
		t.Error(f)
	}
	seen := map[string]bool{}
	for _, c := range contents {
		require.False(t, seen[c], "reply %q was sent twice", c)
		seen[c] = true
	}
	for i := range n {
		require.True(t, seen[fmt.Sprintf("reply %d", i)], "reply %d was never sent", i)
	}
	require.Len(t, s.Requests(), n)
	require.Zero(t, s.Pending())
}

func TestModels(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	type modelList struct {
		Object string `json:"object"`
		Data   []struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			OwnedBy string `json:"owned_by"`
		} `json:"data"`
	}
	ids := func() []string {
		resp, body := do(t, t.Context(), http.MethodGet, s.URL()+"/models", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		l := decode[modelList](t, body)
		require.Equal(t, "list", l.Object)
		out := []string{}
		for _, m := range l.Data {
			require.Equal(t, "model", m.Object)
			out = append(out, m.ID)
		}
		return out
	}

	require.Empty(t, ids())
	post(t, s, "/chat/completions", chatRequest("b-model", "hi"))
	post(t, s, "/chat/completions", chatRequest("a-model", "hi"))
	post(t, s, "/chat/completions", chatRequest("b-model", "hi"))
	require.Equal(t, []string{"b-model", "a-model"}, ids(), "the models requested so far")

	s.SetModels("served-1", "served-2")
	require.Equal(t, []string{"served-1", "served-2"}, ids())
	resp, body := post(t, s, "/chat/completions", chatRequest("other", "hi"))
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Equal(t, "model_not_found", *decode[apiError](t, body).Error.Code)
	resp, _ = post(t, s, "/chat/completions", chatRequest("served-2", "hi"))
	require.Equal(t, http.StatusOK, resp.StatusCode)

	resp, body = do(t, t.Context(), http.MethodGet, s.URL()+"/models/served-1", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.JSONEq(t, `"served-1"`, string(decode[map[string]json.RawMessage](t, body)["id"]))
	resp, _ = do(t, t.Context(), http.MethodGet, s.URL()+"/models/other", nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	s.SetModels()
	resp, body = do(t, t.Context(), http.MethodGet, s.URL()+"/models/Qwen/Qwen3-32B", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "without a model list every model is there")
	require.JSONEq(t, `"Qwen/Qwen3-32B"`, string(decode[map[string]json.RawMessage](t, body)["id"]))
}

func TestUnknownPathAndMethod(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)

	notFound, notFoundBody := post(t, s, "/images/generations", map[string]any{"model": "m", "prompt": "x"})
	wrongMethod, wrongMethodBody := do(t, t.Context(), http.MethodGet, s.URL()+"/chat/completions", nil)

	require.Equal(t, http.StatusNotFound, notFound.StatusCode)
	require.Equal(t, "unknown_url", *decode[apiError](t, notFoundBody).Error.Code)
	require.Equal(t, http.StatusMethodNotAllowed, wrongMethod.StatusCode)
	require.Equal(t, http.MethodPost, wrongMethod.Header.Get("Allow"))
	require.Equal(t, "method_not_allowed", *decode[apiError](t, wrongMethodBody).Error.Code)
}

func TestReset(t *testing.T) {
	t.Parallel()
	s := upstreamtest.Start(t)
	s.SetDefault(upstreamtest.Text("configured"))
	s.Script(upstreamtest.Text("scripted"), upstreamtest.Text("dropped"))
	post(t, s, "/chat/completions", chatRequest("m", "hi"))

	s.Reset()

	require.Empty(t, s.Requests())
	require.Zero(t, s.Received())
	require.Zero(t, s.Pending())
	_, body := post(t, s, "/chat/completions", chatRequest("m", "hi"))
	require.Equal(t, "configured", *decode[completion](t, body).Choices[0].Message.Content, "configuration survives Reset")
	require.Len(t, s.Requests(), 1)
}

func TestListen(t *testing.T) {
	t.Parallel()
	s, err := upstreamtest.Listen("127.0.0.1:0")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(s.URL(), "http://127.0.0.1:"), s.URL())
	require.True(t, strings.HasSuffix(s.URL(), "/v1"), s.URL())

	resp, body := post(t, s, "/chat/completions", chatRequest("m", "hi"))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, upstreamtest.DefaultContent, *decode[completion](t, body).Choices[0].Message.Content)

	require.NoError(t, s.Close())
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL()+"/models", nil)
	require.NoError(t, err)
	_, err = (&http.Client{Transport: &http.Transport{}}).Do(req)
	require.Error(t, err, "nothing listens after Close")
}

func TestListenOnEveryInterfaceGivesALoopbackURL(t *testing.T) {
	t.Parallel()
	s, err := upstreamtest.Listen(":0")
	require.NoError(t, err)
	defer s.Close()

	require.True(t, strings.HasPrefix(s.URL(), "http://127.0.0.1:"), s.URL())
	resp, _ := do(t, t.Context(), http.MethodGet, s.URL()+"/models", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestHandlerWithoutListener(t *testing.T) {
	t.Parallel()
	s := upstreamtest.New()
	require.Empty(t, s.URL())
	require.NoError(t, s.Close(), "closing a server that never listened is harmless")

	rec := httptest.NewRecorder()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	require.NoError(t, err)
	s.Handler().ServeHTTP(rec, req)

	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, upstreamtest.DefaultContent, *decode[completion](t, rec.Body.Bytes()).Choices[0].Message.Content)
}
