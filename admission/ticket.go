package admission

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Ticket is an admitted request. Done ends it; Headers describes the rate
// limits it passed. A nil Ticket (no limit applied) does nothing.
type Ticket struct {
	a       *Admitter
	req     Request
	headers headers
	done    atomic.Bool

	// remote: the rates and the slot are in Redis. Otherwise they are in
	// this process, rates only when localRates (no Redis configured).
	remote     bool
	localRates bool
	// slot is the in-process slot held, if any; dep and key are the
	// in-process states charged with tokens.
	slot     *subject
	dep, key *subject
	// buckets are the request's buckets in Redis; member is the Redis slot
	// held, if any, in the set slotKey.
	buckets         []rateBucket
	member, slotKey string
}

// Done ends the request: it releases its concurrency slot and charges the
// tokens its reply used (prompt and completion) to the token limits. Only
// the first call counts, so a deferred Done(0) can guard the paths that
// end early. With Redis it takes one round trip.
func (t *Ticket) Done(tokens int) {
	if t == nil || !t.done.CompareAndSwap(false, true) {
		return
	}
	if t.remote {
		if err := t.a.remote.done(context.Background(), t, int64(max(tokens, 0))); err != nil {
			t.a.redisDown(err)
		}
		return
	}
	if t.slot != nil {
		t.a.local.release(t.slot)
	}
	if t.localRates && tokens > 0 {
		t.a.local.charge(t, int64(tokens))
	}
}

// Headers writes OpenAI's x-ratelimit-* headers for the limits the request
// passed (nothing when none applies).
func (t *Ticket) Headers(h http.Header) {
	if t != nil {
		t.headers.write(h)
	}
}

// Limit names what refused a request.
type Limit string

// Limits that refuse requests.
const (
	LimitRequests    Limit = "requests"
	LimitTokens      Limit = "tokens"
	LimitConcurrency Limit = "concurrency"
)

// Scope names whose limit refused a request.
type Scope string

// Scopes of a limit.
const (
	ScopeDeployment Scope = "deployment"
	ScopeKey        Scope = "key"
)

// Refused is the error of a request a limit refuses.
type Refused struct {
	Limit Limit
	Scope Scope
	// Allowed is the limit's value: requests or tokens per minute, or the
	// most requests in flight.
	Allowed int64
	// RetryAfter is when the limit lets a request through again, as far
	// as is known: for concurrency, a guess.
	RetryAfter time.Duration
	headers    headers
}

func (e *Refused) Error() string {
	return "admission: the " + string(e.Scope) + "'s " + string(e.Limit) + " limit (" + strconv.FormatInt(e.Allowed, 10) +
		") is reached; retry after " + e.RetryAfter.String()
}

// RetryAfterSeconds is RetryAfter for a Retry-After header: whole seconds,
// rounded up, at least 1.
func (e *Refused) RetryAfterSeconds() int {
	return int(max((e.RetryAfter+time.Second-1)/time.Second, 1))
}

// Headers writes OpenAI's x-ratelimit-* headers for the request's limits
// as they stood when it was refused.
func (e *Refused) Headers(h http.Header) { e.headers.write(h) }

// concurrencyRetry is the RetryAfter of a request refused for want of a
// slot: nothing says when one frees.
const concurrencyRetry = time.Second

// headers are the x-ratelimit-* values of a decision: per kind, the
// bucket with the fewest left among the deployment's and the key's.
type headers struct {
	requests, tokens       window
	hasRequests, hasTokens bool
}

func (h *headers) addRequests(w window) {
	if !h.hasRequests || w.remaining < h.requests.remaining {
		h.requests, h.hasRequests = w, true
	}
}

func (h *headers) addTokens(w window) {
	if !h.hasTokens || w.remaining < h.tokens.remaining {
		h.tokens, h.hasTokens = w, true
	}
}

// write sets the headers. The names are set as stored (canonical) to
// spare a canonicalization per header.
func (h *headers) write(hdr http.Header) {
	if h.hasRequests {
		hdr["X-Ratelimit-Limit-Requests"] = []string{strconv.FormatInt(h.requests.limit, 10)}
		hdr["X-Ratelimit-Remaining-Requests"] = []string{strconv.FormatInt(h.requests.remaining, 10)}
		hdr["X-Ratelimit-Reset-Requests"] = []string{resetText(h.requests.resetMS)}
	}
	if h.hasTokens {
		hdr["X-Ratelimit-Limit-Tokens"] = []string{strconv.FormatInt(h.tokens.limit, 10)}
		hdr["X-Ratelimit-Remaining-Tokens"] = []string{strconv.FormatInt(h.tokens.remaining, 10)}
		hdr["X-Ratelimit-Reset-Tokens"] = []string{resetText(h.tokens.resetMS)}
	}
}

// resetText writes a reset time as OpenAI does: "1s", "6m0s", "20ms".
func resetText(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() }
