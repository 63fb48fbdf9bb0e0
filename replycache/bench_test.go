package replycache_test

import (
	"bytes"
	"context"
	"fmt"
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

// BenchmarkStore measures a Get (a hit) and a Set of a typical answer
// (2 KiB) on each store; Redis on loopback.
func BenchmarkStore(b *testing.B) {
	value := bytes.Repeat([]byte("a"), 2<<10)
	for _, kind := range storeKinds {
		store, o := kind.make(b, 1<<20)
		ctx := context.Background()
		key := o.Prefix + "bench"
		require.NoError(b, store.Set(ctx, key, value, time.Minute))
		b.Run(kind.name+"/get", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok, err := store.Get(ctx, key); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
		b.Run(kind.name+"/set", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := store.Set(ctx, key, value, time.Minute); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchBody is a chat completion as clients send them: a system prompt, a
// few turns, parameters (about 1.5 KiB).
var benchBody = []byte(`{"model":"qwen3-32b","messages":[{"role":"system","content":"` + strings.Repeat("You are a helpful assistant. ", 20) +
	`"},{"role":"user","content":"` + strings.Repeat("Tell me about caching. ", 10) + `"},{"role":"assistant","content":"` +
	strings.Repeat("Caching keeps answers. ", 10) + `"},{"role":"user","content":"And in a gateway?"}],"temperature":0,"max_tokens":256,"user":"u-42"}`)

// BenchmarkChatRequest measures what the cache adds to a request before
// any store is asked: its key (canonical JSON and SHA-256 of benchBody),
// and nothing at all with caching off.
func BenchmarkChatRequest(b *testing.B) {
	c := replycache.New(replycache.NewMemory(0), replycache.Options{})
	b.Run("key", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(benchBody)))
		for b.Loop() {
			if c.Chat(cacheOn, gen, benchBody, nil) == nil {
				b.Fatal("not cacheable")
			}
		}
	})
	b.Run("off", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if c.Chat(bud.CacheSettings{}, gen, benchBody, nil) != nil {
				b.Fatal("cacheable")
			}
		}
	})
}

// BenchmarkHitVersusUpstream answers the same request over loopback HTTP
// three ways, each line printed: from the upstream stand-in directly,
// and through a route whose cache holds the answer, in process and in
// Redis; for a whole answer and for a stream. The stand-in answers at
// once (no scripted delay), so the comparison is with the fastest
// upstream there can be.
func BenchmarkHitVersusUpstream(b *testing.B) {
	up := upstreamtest.Start(b)
	up.SetRecording(false)
	up.SetDefault(upstreamtest.Text(strings.Repeat("Caching keeps answers close. ", 12)))
	stream := strings.Replace(string(benchBody), `"temperature":0`, `"temperature":0,"stream":true,"stream_options":{"include_usage":true}`, 1)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	b.Cleanup(client.CloseIdleConnections)
	post := func(b *testing.B, url, body string) {
		resp, err := client.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatal(err, resp.StatusCode)
		}
	}
	for _, form := range []struct{ name, body string }{{"json", string(benchBody)}, {"stream", stream}} {
		b.Run(fmt.Sprintf("%s/upstream-direct", form.name), func(b *testing.B) {
			for b.Loop() {
				post(b, up.URL()+"/chat/completions", form.body)
			}
		})
		for _, kind := range storeKinds {
			store, o := kind.make(b, 1<<20)
			rt := &route{cache: replycache.New(store, o), settings: cacheOn, upstream: up.URL() + "/chat/completions"}
			srv := httptest.NewServer(rt)
			b.Cleanup(srv.Close)
			post(b, srv.URL, form.body) // the miss that stores it
			b.Run(fmt.Sprintf("%s/cache-hit-%s", form.name, kind.name), func(b *testing.B) {
				for b.Loop() {
					post(b, srv.URL, form.body)
				}
			})
		}
	}
}
