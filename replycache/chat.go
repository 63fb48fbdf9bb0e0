package replycache

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/budhq/bud"
)

// ChatRequest is a chat completion that the cache may answer or keep the
// answer of. A nil *ChatRequest is a request the cache has nothing to do
// with (caching off, or a sampling request): all its methods do nothing,
// so a route calls them unconditionally and a request without caching
// costs one nil check per call.
type ChatRequest struct {
	c      *Cache
	key    string
	ttl    time.Duration
	stream bool
	rec    *recording
}

// Chat returns the cacheable request for body, a chat completion as the
// caller sent it to the model deployment g, whose default parameters are
// defaults and cache settings s; nil when the request is not cacheable
// (Cacheable) or body is not a JSON object. It reads body and keeps
// nothing of it, so the body's buffer may be reused once it returns.
func (c *Cache) Chat(s bud.CacheSettings, g Generation, body []byte, defaults map[string]json.RawMessage) *ChatRequest {
	return c.Model(KindChat, s, g, body, defaults)
}

// The kinds of model request a cache keeps apart: the same body sent to
// two endpoints is two requests.
const (
	KindChat        = "chat"
	KindCompletions = "completions"
	KindEmbeddings  = "embeddings"
)

// Model is Chat for a request of kind (KindChat, KindCompletions,
// KindEmbeddings) to the model deployment's endpoint of that kind: the
// kind is part of the key, and the same rules say what is cacheable (an
// embedding, which sets no temperature, always is).
func (c *Cache) Model(kind string, s bud.CacheSettings, g Generation, body []byte, defaults map[string]json.RawMessage) *ChatRequest {
	if !s.Enabled || s.TTLSeconds <= 0 {
		return nil
	}
	key, stream, deterministic, ok := chatKey(c.prefix, kind, g, body, defaults)
	if !ok || !deterministic && !s.Nondeterministic {
		return nil
	}
	return &ChatRequest{c: c, key: key, ttl: time.Duration(s.TTLSeconds) * time.Second, stream: stream}
}

// Key is the request's cache key; empty for nil.
func (q *ChatRequest) Key() string {
	if q == nil {
		return ""
	}
	return q.key
}

// Entry is a cached answer to a chat completion, as the upstream sent it.
type Entry struct {
	// Stream says Body is server-sent events (data: chunks ending with
	// data: [DONE]), else one chat.completion JSON object.
	Stream bool
	// ContentType is the upstream's Content-Type.
	ContentType string
	// Body is the answer; it may be shared with the store and must not be
	// modified.
	Body []byte
}

// Lookup returns the request's cached answer; ok is false on a miss, and
// for nil.
func (q *ChatRequest) Lookup(ctx context.Context) (e Entry, ok bool) {
	if q == nil {
		return Entry{}, false
	}
	v, ok := q.c.get(ctx, q.key)
	if !ok {
		return Entry{}, false
	}
	kind, ct, body, ok := decodeEntry(v)
	if !ok || kind != kindJSON && kind != kindStream || (kind == kindStream) != q.stream {
		return Entry{}, false
	}
	return Entry{Stream: kind == kindStream, ContentType: ct, Body: body}, true
}

// Answer answers the request from the cache when it can and reports
// whether it did; on a miss it marks the answer to come "miss" (Header).
// It does nothing for nil.
func (q *ChatRequest) Answer(ctx context.Context, w http.ResponseWriter) bool {
	if q == nil {
		return false
	}
	if e, ok := q.Lookup(ctx); ok {
		Serve(w, e)
		return true
	}
	MarkMiss(w)
	return false
}

// Serve answers with e, marked "hit" (Header): the body whole, or the
// events as one write, flushed.
func Serve(w http.ResponseWriter, e Entry) {
	h := w.Header()
	h.Set("Content-Type", e.ContentType)
	MarkHit(w)
	if e.Stream {
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
	} else {
		h.Set("Content-Length", strconv.Itoa(len(e.Body)))
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(e.Body)
	if e.Stream {
		_ = http.NewResponseController(w).Flush()
	}
}

// Watch records the upstream's answer while the route relays it: for a
// 200 of the form the request asked for (events for a stream, else a
// body), it replaces resp.Body with a reader that keeps a copy of what is
// read, up to the store's MaxEntryBytes. The route reads and relays
// resp.Body as it would without the cache, then calls Store. It does
// nothing for nil.
func (q *ChatRequest) Watch(resp *http.Response) {
	if q == nil || resp.StatusCode != http.StatusOK || q.rec != nil {
		return
	}
	ct := resp.Header.Get("Content-Type")
	if isEventStream(ct) != q.stream {
		return
	}
	kind := byte(kindJSON)
	if q.stream {
		kind = kindStream
	} else if ct == "" {
		ct = "application/json"
	}
	rec := newRecording(resp.Body, q.c.store.MaxEntryBytes())
	rec.buf = appendEntryHead(rec.buf, kind, ct)
	if !q.stream && resp.ContentLength > 0 && resp.ContentLength <= int64(rec.max) {
		rec.buf = slices.Grow(rec.buf, int(resp.ContentLength))
	}
	q.rec = rec
	resp.Body = rec
}

// Store stores the recorded answer when it is complete: the body read to
// its end, or a stream read to its end after data: [DONE], within the
// store's MaxEntryBytes. It reports whether it stored it. It flushes w
// first, so that the caller has the whole answer before the store is
// written to. Every Watch needs its Store, which gives the recording's
// buffer back; it does nothing for nil.
func (q *ChatRequest) Store(ctx context.Context, w http.ResponseWriter) bool {
	if q == nil || q.rec == nil {
		return false
	}
	rec := q.rec
	q.rec = nil
	defer rec.release()
	if !rec.complete(q.stream) {
		return false
	}
	if w != nil {
		_ = http.NewResponseController(w).Flush()
	}
	// A whole answer is worth keeping even when its caller has gone.
	return q.c.set(context.WithoutCancel(ctx), q.key, rec.buf, q.ttl)
}

// recordBuffers recycle the buffers answers are copied into: a store
// copies what it keeps, so a buffer is free again once Set returns.
var recordBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledRecording keeps one huge answer from pinning its buffer.
const maxPooledRecording = 1 << 20

// recording is an upstream body that keeps a copy of what is read from
// it, after an entry's head. It is the route's resp.Body until the route
// closes it, so it is never reused; only its buffer is.
type recording struct {
	body io.ReadCloser
	// pooled holds buf's storage; nil once released.
	pooled *[]byte
	buf    []byte
	max    int
	// over is set when the answer outgrew max, or the recording was
	// released: nothing more is copied.
	over bool
	eof  bool
}

func newRecording(body io.ReadCloser, limit int) *recording {
	p := recordBuffers.Get().(*[]byte)
	return &recording{body: body, pooled: p, buf: (*p)[:0], max: limit}
}

// Read reads from the upstream's body, copying what it reads.
func (r *recording) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	if n > 0 && !r.over {
		if len(r.buf)+n > r.max {
			r.over = true
		} else {
			r.buf = append(r.buf, p[:n]...)
		}
	}
	if err == io.EOF {
		r.eof = true
	}
	return n, err
}

// Close closes the upstream's body.
func (r *recording) Close() error { return r.body.Close() }

// complete reports whether the whole answer was read and copied; a stream
// must end with its data: [DONE] event.
func (r *recording) complete(stream bool) bool {
	if !r.eof || r.over {
		return false
	}
	if !stream {
		return true
	}
	_, _, body, _ := decodeEntry(r.buf)
	return endsWithDone(body)
}

// release gives the buffer back; what is read afterwards is not copied.
func (r *recording) release() {
	p := r.pooled
	r.pooled, r.over = nil, true
	if p == nil || cap(r.buf) > maxPooledRecording {
		r.buf = nil
		return
	}
	*p = r.buf[:0]
	r.buf = nil
	recordBuffers.Put(p)
}

// endsWithDone reports whether the events' last data line is
// "data: [DONE]" (the space after the colon is optional, as in SSE).
func endsWithDone(events []byte) bool {
	events = bytes.TrimRight(events, " \t\r\n")
	i := bytes.LastIndexByte(events, '\n')
	line, ok := bytes.CutPrefix(events[i+1:], []byte("data:"))
	return ok && string(bytes.TrimLeft(line, " ")) == "[DONE]"
}

func isEventStream(ct string) bool {
	return len(ct) >= 17 && ct[:17] == "text/event-stream"
}
