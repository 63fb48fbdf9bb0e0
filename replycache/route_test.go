package replycache_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
	"github.com/budhq/bud/replycache"
	"github.com/budhq/bud/upstreamtest"
)

// route is a chat completions route as the gateway wires the cache into
// one: look up, mark the miss, watch the upstream's body while relaying
// it unchanged (a body whole, a stream event by event), store. Each
// answered request is reported on done, when set, once the handler has
// returned.
type route struct {
	cache    *replycache.Cache
	settings bud.CacheSettings
	upstream string // the chat completions URL
	done     chan struct{}
}

func (rt *route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rt.done != nil {
		defer func() { rt.done <- struct{}{} }()
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}

	q := rt.cache.Chat(rt.settings, gen, body, nil)
	if q.Answer(r.Context(), w) {
		return
	}
	ureq, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, rt.upstream, bytes.NewReader(body))
	ureq.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(ureq)
	if err != nil {
		http.Error(w, "upstream", http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	q.Watch(resp)
	relay(w, resp)
	q.Store(r.Context(), w)
}

// relay passes the upstream's answer on as the gateway does: a stream
// line by line, flushed after each event; a body read whole first (502
// when it breaks off).
func relay(w http.ResponseWriter, resp *http.Response) {
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		w.WriteHeader(resp.StatusCode)
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadSlice('\n')
			if _, werr := w.Write(line); werr != nil {
				return
			}
			if len(bytes.TrimSpace(line)) == 0 {
				_ = http.NewResponseController(w).Flush()
			}
			if err != nil {
				return
			}
		}
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, "upstream broke off", http.StatusBadGateway)
		return
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(b)
}

// harness is a route on a store of one kind in front of an upstream
// stand-in.
type harness struct {
	t        *testing.T
	upstream *upstreamtest.Server
	route    *route
	server   *httptest.Server
	store    replycache.Store
}

func newHarness(t *testing.T, kind storeKind, maxEntry int, settings bud.CacheSettings) *harness {
	t.Helper()
	store, o := kind.make(t, maxEntry)
	up := upstreamtest.Start(t)
	rt := &route{cache: replycache.New(store, o), settings: settings, upstream: up.URL() + "/chat/completions", done: make(chan struct{}, 16)}
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	return &harness{t: t, upstream: up, route: rt, server: srv, store: store}
}

// answer is one answer of the route, read to its end.
type answer struct {
	status int
	cache  string // the X-Bud-Cache header
	ct     string
	body   string
	err    error // a body that broke off
}

// post sends body and reads the answer, then waits for the route to have
// returned, so that what it stores is stored.
func (h *harness) post(body string) answer {
	h.t.Helper()
	resp, err := http.Post(h.server.URL, "application/json", strings.NewReader(body))
	require.NoError(h.t, err)
	b, rerr := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	<-h.route.done
	return answer{status: resp.StatusCode, cache: resp.Header.Get(replycache.Header), ct: resp.Header.Get("Content-Type"), body: string(b), err: rerr}
}

// events splits a stream into its events (the text between blank lines).
func events(t *testing.T, stream string) []string {
	t.Helper()
	var out []string
	for ev := range strings.SplitSeq(strings.TrimSpace(stream), "\n\n") {
		out = append(out, ev)
	}
	require.True(t, strings.HasSuffix(stream, "data: [DONE]\n\n"), "a whole stream: %q", stream)
	return out
}

const (
	question       = `{"model":"m","messages":[{"role":"user","content":"What is 2+2?"}],"temperature":0}`
	streamQuestion = `{"model":"m","messages":[{"role":"user","content":"What is 2+2?"}],"temperature":0,"stream":true,"stream_options":{"include_usage":true}}`
)

// TestRouteAnswersRepeatsFromTheCache: on both stores, the second identical
// request is answered from the cache, byte for byte, without reaching the
// upstream; a streamed request gets the same events again, and is an
// entry of its own.
func TestRouteAnswersRepeatsFromTheCache(t *testing.T) {
	t.Parallel()
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, kind, 1<<20, cacheOn)
			h.upstream.SetDefault(upstreamtest.Text("Two plus two is four."))

			first := h.post(question)
			require.Equal(t, http.StatusOK, first.status)
			require.Equal(t, "miss", first.cache)
			require.Contains(t, first.body, "Two plus two is four.")
			// The same request written otherwise.
			second := h.post(`{"temperature":0, "messages":[{"content":"What is 2+2?","role":"user"}], "model":"m", "user":"another"}`)
			require.Equal(t, "hit", second.cache)
			require.Equal(t, first.body, second.body, "the upstream's answer, its id included")
			require.Equal(t, first.ct, second.ct)
			require.Equal(t, 1, h.upstream.Received())

			live := h.post(streamQuestion)
			require.Equal(t, "miss", live.cache, "a stream is not answered from a whole answer")
			require.Equal(t, 2, h.upstream.Received())
			replayed := h.post(streamQuestion)
			require.Equal(t, "hit", replayed.cache)
			require.True(t, strings.HasPrefix(replayed.ct, "text/event-stream"), replayed.ct)
			liveEvents := events(t, live.body)
			require.Greater(t, len(liveEvents), 5, "word by word, a usage chunk and [DONE]")
			require.Contains(t, liveEvents[len(liveEvents)-2], `"usage":{`)
			require.Equal(t, liveEvents, events(t, replayed.body), "the same events")
			require.Equal(t, 2, h.upstream.Received())

			// Without the usage chunk the stream is another answer.
			require.Equal(t, "miss", h.post(strings.Replace(streamQuestion, `"include_usage":true`, `"include_usage":false`, 1)).cache)
		})
	}
}

// TestRouteStoresOnlyWholeAnswers: an error, a stream cut before [DONE], a
// body cut before its end and an answer over the entry cap are relayed
// and never stored, on both stores.
func TestRouteStoresOnlyWholeAnswers(t *testing.T) {
	t.Parallel()
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, kind, 4096, cacheOn)

			h.upstream.Script(upstreamtest.Error(http.StatusInternalServerError, "server_error", "boom"))
			failed := h.post(question)
			require.Equal(t, http.StatusInternalServerError, failed.status)
			require.Equal(t, "miss", failed.cache)
			require.Equal(t, "miss", h.post(question).cache, "the error was not stored")
			require.Equal(t, "hit", h.post(question).cache, "the 200 was")

			h.upstream.Script(upstreamtest.Reply{Content: "one two three four five", DropAfter: 3})
			cut := h.post(streamQuestion)
			require.Equal(t, "miss", cut.cache)
			require.NotContains(t, cut.body, "[DONE]")
			whole := h.post(streamQuestion)
			require.Equal(t, "miss", whole.cache, "the cut stream was not stored")
			require.Contains(t, whole.body, "data: [DONE]")
			require.Equal(t, "hit", h.post(streamQuestion).cache)

			big := strings.Repeat("word ", 1000)
			h.upstream.SetDefault(upstreamtest.Text(big))
			large := `{"model":"m","messages":[{"role":"user","content":"Say a lot"}]}`
			first := h.post(large)
			require.Equal(t, "miss", first.cache)
			require.Contains(t, first.body, big, "relayed whole")
			second := h.post(large)
			require.Equal(t, "miss", second.cache, "over the entry cap: not stored")
			require.Equal(t, len(first.body), len(second.body))
			n := h.upstream.Received()

			// A body that breaks off: Content-Length promises more than comes.
			broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", "100")
				_, _ = w.Write([]byte(`{"id":"chatcmpl-cut","choices":[`))
				panic(http.ErrAbortHandler)
			}))
			defer broken.Close()
			h.route.upstream = broken.URL
			brokenQuestion := `{"model":"m","messages":[{"role":"user","content":"Cut me off"}]}`
			require.Equal(t, http.StatusBadGateway, h.post(brokenQuestion).status)
			h.route.upstream = h.upstream.URL() + "/chat/completions"
			require.Equal(t, "miss", h.post(brokenQuestion).cache, "the broken body was not stored")
			require.Equal(t, n+1, h.upstream.Received())
		})
	}
}

// TestRouteLeavesSamplingRequestsAlone: a request that samples is not
// cached, and its answer carries no cache header, unless the deployment
// says nondeterministic.
func TestRouteLeavesSamplingRequestsAlone(t *testing.T) {
	t.Parallel()
	sampling := `{"model":"m","messages":[{"role":"user","content":"A poem"}],"temperature":0.9}`
	h := newHarness(t, storeKinds[0], 1<<20, cacheOn)
	for range 2 {
		a := h.post(sampling)
		require.Equal(t, http.StatusOK, a.status)
		require.Empty(t, a.cache)
	}
	require.Equal(t, 2, h.upstream.Received())

	h.route.settings.Nondeterministic = true
	require.Equal(t, "miss", h.post(sampling).cache)
	require.Equal(t, "hit", h.post(sampling).cache)
	require.Equal(t, 3, h.upstream.Received())
}

// TestRouteMissAfterTTL: an entry answers until its TTL has passed, and a
// request after it goes to the upstream again.
func TestRouteMissAfterTTL(t *testing.T) {
	t.Parallel()
	clk := newClock()
	m := replycache.NewMemory(1 << 20)
	replycache.SetMemoryClock(m, clk.now)
	up := upstreamtest.Start(t)
	rt := &route{cache: replycache.New(m, replycache.Options{}), settings: bud.CacheSettings{Enabled: true, TTLSeconds: 30},
		upstream: up.URL() + "/chat/completions", done: make(chan struct{}, 16)}
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	h := &harness{t: t, upstream: up, route: rt, server: srv, store: m}

	require.Equal(t, "miss", h.post(question).cache)
	clk.advance(29 * time.Second)
	require.Equal(t, "hit", h.post(question).cache)
	clk.advance(time.Second)
	require.Equal(t, "miss", h.post(question).cache)
	require.Equal(t, 2, up.Received())
}

// TestRouteClientGoneNotStored: a stream the client leaves is not read to
// its end, and is not stored.
func TestRouteClientGoneNotStored(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storeKinds[0], 1<<20, cacheOn)
	h.upstream.Script(upstreamtest.Reply{Content: "one two three four five six", ChunkDelay: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.server.URL, strings.NewReader(streamQuestion))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, line, "chat.completion.chunk")
	cancel()
	_ = resp.Body.Close()
	<-h.route.done
	require.Equal(t, "miss", h.post(streamQuestion).cache)
}

// TestCacheOffCostsNothing: a request without caching allocates nothing in
// the cache, and every call on its nil request does nothing.
func TestCacheOffCostsNothing(t *testing.T) {
	c := replycache.New(replycache.NewMemory(0), replycache.Options{})
	body := []byte(question)
	w := httptest.NewRecorder()
	upstreamBody := io.NopCloser(strings.NewReader("{}"))
	resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: upstreamBody}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		q := c.Chat(bud.CacheSettings{}, gen, body, nil)
		if q.Answer(ctx, w) {
			t.Fatal("answered")
		}
		q.Watch(resp)
		q.Store(ctx, w)
	})
	require.Zero(t, allocs)
	require.Empty(t, w.Header().Get(replycache.Header))
	require.True(t, resp.Body == upstreamBody, "the upstream's body is relayed as it is")
}
