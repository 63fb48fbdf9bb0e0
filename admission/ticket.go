package admission

import (
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
	// admitted is when an in-process decision was taken, ms.
	admitted int64
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
// end early. With Redis it takes no round trip of its own: the next
// decision this process takes applies it first, or a background flush
// within one round trip when none comes.
func (t *Ticket) Done(tokens int) {
	if t == nil || !t.done.CompareAndSwap(false, true) {
		return
	}
	if t.remote {
		t.a.remote.done(t, int64(max(tokens, 0)))
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

// write sets the headers. The values share one string and the headers'
// slices one array, so that six headers cost two allocations; the names
// are set as stored (canonical) to spare a canonicalization each.
func (h *headers) write(hdr http.Header) {
	if !h.hasRequests && !h.hasTokens {
		return
	}
	var buf [128]byte
	b := buf[:0]
	var ends [6]int
	n := 0
	add := func(w window) {
		b = strconv.AppendInt(b, w.limit, 10)
		ends[n] = len(b)
		b = strconv.AppendInt(b, w.remaining, 10)
		ends[n+1] = len(b)
		b = appendReset(b, w.resetMS)
		ends[n+2] = len(b)
		n += 3
	}
	if h.hasRequests {
		add(h.requests)
	}
	if h.hasTokens {
		add(h.tokens)
	}
	all := string(b)
	values := make([]string, n)
	start := 0
	for i := range n {
		values[i] = all[start:ends[i]]
		start = ends[i]
	}
	names := [...]string{"X-Ratelimit-Limit-Requests", "X-Ratelimit-Remaining-Requests", "X-Ratelimit-Reset-Requests"}
	if h.hasRequests {
		for i, name := range names {
			hdr[name] = values[i : i+1 : i+1]
		}
		values = values[3:]
	}
	if h.hasTokens {
		names = [...]string{"X-Ratelimit-Limit-Tokens", "X-Ratelimit-Remaining-Tokens", "X-Ratelimit-Reset-Tokens"}
		for i, name := range names {
			hdr[name] = values[i : i+1 : i+1]
		}
	}
}

// appendReset appends a reset time of ms milliseconds as OpenAI writes
// it: "20ms", "1s", "17.28s", "6m0s", time.Duration's form, without the
// string its String method allocates.
func appendReset(b []byte, ms int64) []byte {
	switch {
	case ms <= 0:
		return append(b, "0s"...)
	case ms < 1000:
		return append(strconv.AppendInt(b, ms, 10), "ms"...)
	}
	if h := ms / 3_600_000; h > 0 {
		b = append(strconv.AppendInt(b, h, 10), 'h')
		b = append(strconv.AppendInt(b, ms/60_000%60, 10), 'm')
	} else if m := ms / 60_000; m > 0 {
		b = append(strconv.AppendInt(b, m, 10), 'm')
	}
	b = strconv.AppendInt(b, ms/1000%60, 10)
	if frac := ms % 1000; frac > 0 {
		digits := [3]byte{byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
		end := 3
		for digits[end-1] == '0' {
			end--
		}
		b = append(append(b, '.'), digits[:end]...)
	}
	return append(b, 's')
}
