// Package replycache answers a repeated request from the answer given to
// the first, without calling the model or starting a run, when the
// deployment's cache settings allow it (bud.CacheSettings, Cacheable).
//
// A route uses it in a few lines (see the package example): Cache.Chat
// makes the request's key, nil when caching does not apply; Answer
// serves a hit, or marks the miss; Watch wraps the upstream's body while
// the route relays it as it always does; Store keeps the answer when it
// came whole. A nil request does nothing, so caching off costs nothing.
//
// What is cached. For a model deployment, the upstream's answer to a chat
// completion, as it sent it: the JSON body, or the server-sent events of
// a stream, byte for byte. A streamed request is answered from the cache
// with the same events; a request that does not stream, with the same
// body. The key tells the two apart (`stream` and `stream_options` are
// part of it) rather than rendering one form from the other: a stream
// carries what a whole answer does not (the events' boundaries, the usage
// chunk only when stream_options asked for it, fields an upstream adds to
// chunks), so an answer rendered across forms would not be what the
// upstream sends. A stream and a whole answer to the same messages are
// two entries.
//
// For a prompt deployment, the first turn of a run that ended
// (Reusable): its run.Turn, from which the gateway renders the Response,
// and streams it, with the renderers it uses for a run it has just
// awaited. The turn keeps its response id: the cached answer names the
// run it reuses (MetadataCachedFrom), and GET /v1/responses/{id} finds
// that run.
//
// Keys. A chat completion's key is its deployment's Generation and its
// body: canonical JSON (keys sorted and unique, no insignificant
// whitespace, strings in one spelling, numbers as written) without the
// fields that do not change the answer: model (the generation stands for
// it), user and safety_identifier (who the end user is), metadata and
// store (what the provider keeps for its dashboards), prompt_cache_key (a
// hint for the provider's own cache). A prompt run's key is its project,
// prompt version, input, instructions and the generations of its prompt
// and model deployments. Each is a SHA-256 in hex after the cache's
// prefix.
//
// What is never stored: an answer other than 200, a body the upstream
// did not send to its end, a stream that did not end with data: [DONE], a
// turn that failed, was cut short or paused for the caller, and an answer
// larger than the store's MaxEntryBytes (it is relayed, not kept).
//
// Where entries live. In Memory, an LRU bounded in bytes within one
// process, or in Redis, shared by every process, with a Memory in front
// of it (Tiered) that keeps the entries this process has used for the
// rest of their time in Redis. A store that fails (Redis
// down) makes every lookup a miss and every store a no-op: requests are
// answered by the upstream as without a cache (the cache fails open). The
// Cache logs the outage once and its end once, and asks the store again
// only every RetryAfter, so an outage costs requests no timeouts.
package replycache

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"
)

// Header marks every answer of a cacheable request: "hit" when the cache
// answered, "miss" when the upstream did.
const Header = "X-Bud-Cache"

// DefaultRetryAfter is how long a Cache leaves a failed store alone
// before it asks again.
const DefaultRetryAfter = time.Second

// Cache looks answers up and stores them in a Store under keys with a
// prefix. It is safe for concurrent use; one serves every route.
type Cache struct {
	store      Store
	prefix     string
	log        *slog.Logger
	retryAfter time.Duration
	now        func() time.Time

	// down is set from a store's failure until its next success; retryAt
	// (Unix nanoseconds) is when the store is asked again.
	down    atomic.Bool
	retryAt atomic.Int64
}

// Options configure a Cache; zero values take the defaults.
type Options struct {
	// Prefix starts every key, so that several Buds, or tests, can share
	// one Redis; "bud:cache:" when empty.
	Prefix string
	// Logger gets the store's outages; slog.Default() when nil.
	Logger *slog.Logger
	// RetryAfter is how long a failed store is left alone
	// (DefaultRetryAfter).
	RetryAfter time.Duration
}

// New returns a cache on store.
func New(store Store, o Options) *Cache {
	if o.Prefix == "" {
		o.Prefix = "bud:cache:"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = DefaultRetryAfter
	}
	return &Cache{store: store, prefix: o.Prefix, log: o.Logger, retryAfter: o.RetryAfter, now: time.Now}
}

// get reads key's value; a store that fails, or is being left alone
// after failing, reads as a miss.
func (c *Cache) get(ctx context.Context, key string) ([]byte, bool) {
	if c.resting() {
		return nil, false
	}
	v, ok, err := c.store.Get(ctx, key)
	if err != nil {
		c.failed(ctx, err)
		return nil, false
	}
	c.succeeded()
	return v, ok
}

// set stores value under key for ttl and reports whether it did.
func (c *Cache) set(ctx context.Context, key string, value []byte, ttl time.Duration) bool {
	if c.resting() {
		return false
	}
	err := c.store.Set(ctx, key, value, ttl)
	switch {
	case errors.Is(err, ErrTooLarge):
		return false
	case err != nil:
		c.failed(ctx, err)
		return false
	}
	c.succeeded()
	return true
}

// resting reports whether the store failed less than retryAfter ago.
func (c *Cache) resting() bool {
	return c.down.Load() && c.now().UnixNano() < c.retryAt.Load()
}

// failed notes a store's failure, logging it when it starts an outage. A
// call whose caller went away is no outage.
func (c *Cache) failed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	c.retryAt.Store(c.now().Add(c.retryAfter).UnixNano())
	if c.down.CompareAndSwap(false, true) {
		c.log.Warn("response cache unavailable: requests are answered without it until it is back", "err", err, "retry_after", c.retryAfter)
	}
}

func (c *Cache) succeeded() {
	if c.down.Load() && c.down.CompareAndSwap(true, false) {
		c.log.Info("response cache available again")
	}
}

// MarkHit marks an answer as coming from the cache. Serve marks its own;
// a route that renders a cached prompt turn itself calls it.
func MarkHit(w http.ResponseWriter) { w.Header().Set(Header, "hit") }

// MarkMiss marks an answer to a cacheable request as coming from the
// upstream.
func MarkMiss(w http.ResponseWriter) { w.Header().Set(Header, "miss") }

// Entry kinds: the first byte of an encoded entry after the format.
const (
	kindJSON   = 'j'
	kindStream = 's'
	kindTurn   = 't'
)

// entryFormat is the first byte of every encoded entry: a value of
// another format (another release's) reads as a miss.
const entryFormat = 1

// appendEntryHead starts an encoded entry: the format, the kind, and the
// content type (at most 255 bytes), before the body.
func appendEntryHead(b []byte, kind byte, contentType string) []byte {
	if len(contentType) > 255 {
		contentType = contentType[:255]
	}
	b = append(b, entryFormat, kind, byte(len(contentType)))
	return append(b, contentType...)
}

// decodeEntry splits an encoded entry; ok is false for a value that is
// not one.
func decodeEntry(v []byte) (kind byte, contentType string, body []byte, ok bool) {
	if len(v) < 3 || v[0] != entryFormat || len(v) < 3+int(v[2]) {
		return 0, "", nil, false
	}
	n := int(v[2])
	return v[1], string(v[3 : 3+n]), v[3+n:], true
}
