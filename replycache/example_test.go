package replycache_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/budhq/bud"
	"github.com/budhq/bud/replycache"
	"github.com/budhq/bud/upstreamtest"
)

// A chat completions route with the cache: look up (a hit is answered,
// a miss marked), call the upstream, watch its body while relaying it,
// store. The second identical request never reaches the upstream.
func Example() {
	upstream, err := upstreamtest.Listen("127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer upstream.Close()
	cache := replycache.New(replycache.NewMemory(replycache.DefaultMemoryBytes), replycache.Options{})
	settings := bud.CacheSettings{Enabled: true, TTLSeconds: 300}
	deployment := replycache.Generation{ID: uuid.New(), UpdatedAt: time.Now()}

	route := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		q := cache.Chat(settings, deployment, body, nil) // nil: caching does not apply
		if q.Answer(r.Context(), w) {
			return
		}
		resp, err := http.Post(upstream.URL()+"/chat/completions", "application/json", bytes.NewReader(body))
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		q.Watch(resp)
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		q.Store(r.Context(), w)
	})
	srv := httptest.NewServer(route)
	defer srv.Close()

	for range 2 {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"Hi"}]}`))
		if err != nil {
			fmt.Println(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Println(resp.Header.Get(replycache.Header), upstream.Received())
	}
	// Output:
	// miss 1
	// hit 1
}
