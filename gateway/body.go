package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
)

// jsonBody is a request body the gateway reads with readJSON. parse decodes
// body, a JSON object, into it; body is reused once parse returns, so
// parse copies what it keeps (as encoding/json does, RawMessage included).
type jsonBody interface {
	parse(body []byte) *apiError
}

// readJSON reads r's body, at most MaxBodyBytes (413 beyond), and parses
// it into v (parseJSON). On failure it returns the error to answer with.
func (g *Gateway) readJSON(w http.ResponseWriter, r *http.Request, v jsonBody) *apiError {
	buf := g.buffers.get()
	defer g.buffers.put(buf)
	if n := r.ContentLength; n > 0 && n <= g.cfg.MaxBodyBytes {
		buf.Grow(int(n) + 1)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes)); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return errTooLarge()
		}
		return errInvalid("", codeInvalidBody, "Could not read the request body.")
	}
	return parseJSON(buf.Bytes(), v)
}

// parseJSON checks that body is a JSON object and parses it into v.
func parseJSON(body []byte, v jsonBody) *apiError {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return errInvalid("", codeInvalidJSON, "The request body is empty; send a JSON object.")
	}
	if body[0] != '{' {
		return errInvalid("", codeInvalidJSON, "The request body must be a JSON object.")
	}
	return v.parse(body)
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
