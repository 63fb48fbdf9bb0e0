package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
)

// jsonBody is a request body the gateway reads with readJSON. parse decodes
// body, a JSON object, into it; body is reused once parse returns, so
// parse copies what it keeps (as encoding/json does, RawMessage included).
// A chat completion is read otherwise (chatRequest), to keep the body
// without a copy.
type jsonBody interface {
	parse(body []byte) *apiError
}

// maxPresize bounds how much of a declared Content-Length is reserved
// before the bytes arrive: a client may declare 32 MiB and send one byte,
// so the buffer grows with what is received beyond this.
const maxPresize = 64 << 10

// presize is how much a buffer reserves for a body that declares n bytes.
func presize(n int64) int {
	if n <= 0 {
		return 0
	}
	return int(min(n, maxPresize)) + 1
}

// readJSON reads r's body, at most MaxBodyBytes (413 beyond), and parses
// it into v (parseJSON). On failure it returns the error to answer with;
// 503 when the gateway already holds MaxBodyBytesInFlight of bodies.
func (g *Gateway) readJSON(w http.ResponseWriter, r *http.Request, v jsonBody) *apiError {
	buf := g.buffers.get()
	defer g.buffers.put(buf)
	if aerr := g.readBody(w, r, buf); aerr != nil {
		return aerr
	}
	return parseJSON(buf.Bytes(), v)
}

// readBody reads r's body into buf, at most MaxBodyBytes (413 beyond); 503
// when the gateway already holds MaxBodyBytesInFlight of bodies.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer) *apiError {
	buf.Grow(presize(r.ContentLength))
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes)); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return errTooLarge()
		}
		if errors.Is(err, errBodiesFull) {
			// The condition lasts as long as other requests are in flight.
			w.Header().Set("Retry-After", "1")
			return errBodiesBusy()
		}
		return errInvalid("", codeInvalidBody, "Could not read the request body.")
	}
	return nil
}

// bodyBudget counts the bytes of request bodies the gateway holds, across
// all requests, and refuses bytes beyond its limit. Bytes are counted as
// they arrive, not as declared, so a client that declares a large body and
// sends little holds little; they are held until the handler returns,
// since the parsed request keeps a copy of them that long.
type bodyBudget struct {
	limit int64
	held  atomic.Int64
}

// errBodiesFull is the error a budgeted body's Read returns when its bytes
// would take the gateway past its limit.
var errBodiesFull = errors.New("gateway: request bodies in flight are at their limit")

// take counts n more bytes, or reports false (counting nothing) when they
// would exceed the limit.
func (b *bodyBudget) take(n int64) bool {
	if b.held.Add(n) > b.limit {
		b.held.Add(-n)
		return false
	}
	return true
}

// bound wraps each request's body so that what it reads is counted
// against the budget, and gives the count back when the handler returns.
func (b *bodyBudget) bound(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		body := &budgetedBody{ReadCloser: r.Body, budget: b}
		defer body.release()
		r.Body = body
		next.ServeHTTP(w, r)
	})
}

// budgetedBody is a request body whose bytes are counted in budget.
type budgetedBody struct {
	io.ReadCloser
	budget *bodyBudget
	held   int64
}

func (b *budgetedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		if !b.budget.take(int64(n)) {
			return 0, errBodiesFull
		}
		b.held += int64(n)
	}
	return n, err
}

func (b *budgetedBody) release() {
	b.budget.held.Add(-b.held)
	b.held = 0
}

// parseJSON checks that body is a JSON object and parses it into v.
func parseJSON(body []byte, v jsonBody) *apiError {
	body, aerr := objectBody(body)
	if aerr != nil {
		return aerr
	}
	return v.parse(body)
}

// objectBody is body without surrounding whitespace, or the error of a body
// that does not begin as a JSON object.
func objectBody(body []byte) ([]byte, *apiError) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errInvalid("", codeInvalidJSON, "The request body is empty; send a JSON object.")
	}
	if body[0] != '{' {
		return nil, errInvalid("", codeInvalidJSON, "The request body must be a JSON object.")
	}
	return body, nil
}

// errJSON answers a body that encoding/json could not decode, with the
// offset of a syntax error.
func errJSON(err error) *apiError {
	msg := "We could not parse the JSON body of your request."
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		msg += " Invalid JSON at offset " + strconv.FormatInt(se.Offset, 10) + "."
	}
	return errInvalid("", codeInvalidJSON, msg)
}

// buffers recycles request and response buffers: most of what the gateway
// would otherwise allocate per request, and so most of its collections.
type buffers struct{ pool sync.Pool }

// maxPooled keeps one huge request from pinning its buffer forever.
const maxPooled = 1 << 20

func (b *buffers) get() *bytes.Buffer {
	if v, ok := b.pool.Get().(*bytes.Buffer); ok {
		return v
	}
	return new(bytes.Buffer)
}

func (b *buffers) put(buf *bytes.Buffer) {
	if buf.Cap() > maxPooled {
		return
	}
	buf.Reset()
	b.pool.Put(buf)
}
