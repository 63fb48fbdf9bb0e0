package upstreamtest

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// exchange is one request being answered.
type exchange struct {
	s   *Server
	w   http.ResponseWriter
	r   *http.Request
	req *request
	// body is the request body as received.
	body []byte
	// rec is nil when recording is off.
	rec       *Recorded
	cancelled bool
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	req := &request{}
	decodeErr := errEmptyBody
	if len(body) > 0 {
		decodeErr = json.Unmarshal(body, req)
	}
	cfg, rec := s.arrive(r, body, req)
	x := &exchange{s: s, w: w, r: r, req: req, body: body, rec: rec}

	if readErr != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(readErr, &tooLarge) {
			x.fail(http.StatusRequestEntityTooLarge, APIError{Type: "invalid_request_error", Message: "Request body too large: the limit is " + strconv.Itoa(maxRequestBytes) + " bytes."})
			return
		}
		if r.Context().Err() != nil {
			x.gone()
			return
		}
		x.fail(http.StatusBadRequest, APIError{Type: "invalid_request_error", Message: "The request body could not be read."})
		return
	}
	if cfg.bearer != "" && r.Header.Get("Authorization") != cfg.bearer {
		x.unauthorized()
		return
	}

	path := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v1"), "/")
	var method string
	var serve func(settings, error)
	switch {
	case path == "/chat/completions":
		method, serve = http.MethodPost, x.chatCompletions
	case path == "/responses":
		method, serve = http.MethodPost, x.responses
	case path == "/completions":
		method, serve = http.MethodPost, x.completions
	case path == "/embeddings":
		method, serve = http.MethodPost, x.embeddings
	case path == "/models":
		method, serve = http.MethodGet, x.listModels
	case strings.HasPrefix(path, "/models/"):
		// Model IDs such as Qwen/Qwen3-32B contain slashes.
		id := strings.TrimPrefix(path, "/models/")
		method, serve = http.MethodGet, func(cfg settings, _ error) { x.retrieveModel(cfg, id) }
	default:
		x.fail(http.StatusNotFound, APIError{Type: "invalid_request_error", Code: "unknown_url", Message: "Unknown request URL: " + r.Method + " " + r.URL.Path + "."})
		return
	}
	if r.Method != method {
		x.w.Header().Set("Allow", method)
		x.fail(http.StatusMethodNotAllowed, APIError{Type: "invalid_request_error", Code: "method_not_allowed", Message: "Method " + r.Method + " is not allowed on " + r.URL.Path + "; use " + method + "."})
		return
	}
	serve(cfg, decodeErr)
}

// errEmptyBody stands for a POST without a body, which is not JSON either.
var errEmptyBody = errors.New("empty body")

// validRequest answers 400 or 404, as OpenAI does, to a request body that is
// not a valid request for a served model, and reports whether it was valid.
func (x *exchange) validRequest(cfg settings, decodeErr error) bool {
	if decodeErr != nil {
		x.badBody(decodeErr)
		return false
	}
	if x.req.Model == "" {
		x.fail(http.StatusBadRequest, APIError{Type: "invalid_request_error", Param: "model", Code: "missing_required_parameter", Message: "Missing required parameter: 'model'."})
		return false
	}
	if cfg.served != nil && !cfg.served[x.req.Model] {
		x.modelNotFound(x.req.Model)
		return false
	}
	return true
}

func (x *exchange) modelNotFound(model string) {
	x.fail(http.StatusNotFound, APIError{Type: "invalid_request_error", Param: "model", Code: "model_not_found", Message: "The model `" + model + "` does not exist or you do not have access to it."})
}

func (x *exchange) badBody(err error) {
	var typeErr *json.UnmarshalTypeError
	var shapeErr *paramError
	switch {
	case errors.As(err, &typeErr):
		x.fail(http.StatusBadRequest, APIError{Type: "invalid_request_error", Param: typeErr.Field, Code: "invalid_type", Message: "Invalid type for '" + typeErr.Field + "': expected " + typeErr.Type.String() + ", but got " + typeErr.Value + "."})
	case errors.As(err, &shapeErr):
		x.fail(http.StatusBadRequest, APIError{Type: "invalid_request_error", Param: shapeErr.Param, Code: "invalid_type", Message: shapeErr.Message})
	default:
		x.fail(http.StatusBadRequest, APIError{Type: "invalid_request_error", Message: "We could not parse the JSON body of your request. The API expects a JSON payload."})
	}
}

func (x *exchange) unauthorized() {
	msg := "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
	code := ""
	if x.r.Header.Get("Authorization") != "" {
		msg, code = "Incorrect API key provided.", "invalid_api_key"
	}
	x.fail(http.StatusUnauthorized, APIError{Type: "invalid_request_error", Code: code, Message: msg})
}

// fail answers with an error in OpenAI's envelope.
func (x *exchange) fail(status int, e APIError) {
	x.send(status, "application/json", nil, appendErrorEnvelope(nil, e))
}

// send answers with a whole body.
func (x *exchange) send(status int, contentType string, header http.Header, body []byte) {
	x.writeHeader(status, contentType, header)
	if _, err := x.w.Write(body); err != nil {
		x.gone()
	}
}

func (x *exchange) writeHeader(status int, contentType string, header http.Header) {
	h := x.w.Header()
	for k, vs := range header {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	h.Set("Content-Type", contentType)
	if x.rec != nil {
		x.s.setStatus(x.rec, status)
	}
	x.w.WriteHeader(status)
}

// begin applies a reply's delay and answers Error and RawBody replies; it
// reports whether an assistant answer is still to be sent.
func (x *exchange) begin(p *prepared) bool {
	if !x.pause(p.reply.Delay) {
		return false
	}
	switch {
	case p.reply.RawBody != nil:
		ct := p.reply.ContentType
		if ct == "" {
			ct = "application/json"
		}
		x.send(p.status(), ct, p.reply.Header, p.reply.RawBody)
		return false
	case p.reply.Error != nil:
		x.send(p.status(), "application/json", p.reply.Header, p.errorBody)
		return false
	}
	return true
}

// pause waits for d and reports whether to go on: not when the client went
// away, nor when the server is closing.
func (x *exchange) pause(d time.Duration) bool {
	ctx := x.r.Context()
	if d <= 0 {
		if ctx.Err() != nil {
			x.gone()
			return false
		}
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		x.gone()
		return false
	case <-x.s.closing:
		return false
	}
}

// gone records that the client went away, unless it was the server closing
// that broke the connection.
func (x *exchange) gone() {
	if x.cancelled || x.s.isClosing() {
		return
	}
	x.cancelled = true
	x.s.markCancelled(x.rec, x.r, x.req)
}

// listModels answers GET /v1/models.
func (x *exchange) listModels(settings, error) {
	models := x.s.listedModels()
	b := append([]byte(nil), `{"object":"list","data":[`...)
	for i, m := range models {
		if i > 0 {
			b = append(b, ',')
		}
		b = x.s.appendModel(b, m)
	}
	b = append(b, "]}\n"...)
	x.send(http.StatusOK, "application/json", nil, b)
}

// retrieveModel answers GET /v1/models/{id}: every model is there unless
// SetModels limited them.
func (x *exchange) retrieveModel(cfg settings, id string) {
	if cfg.served != nil && !cfg.served[id] {
		x.modelNotFound(id)
		return
	}
	x.send(http.StatusOK, "application/json", nil, append(x.s.appendModel(nil, id), '\n'))
}

func (s *Server) appendModel(b []byte, id string) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, id)
	b = append(b, `,"object":"model","created":`...)
	b = strconv.AppendInt(b, s.created, 10)
	return append(b, `,"owned_by":"upstreamtest"}`...)
}

// eventStream writes server-sent events, flushing each at once as a model
// server does.
type eventStream struct {
	x          *exchange
	rc         *http.ResponseController
	chunkDelay time.Duration
	dropAfter  int
	sent       int
}

func (x *exchange) startStream(p *prepared) *eventStream {
	x.w.Header().Set("Cache-Control", "no-cache")
	x.writeHeader(http.StatusOK, "text/event-stream; charset=utf-8", p.reply.Header)
	return &eventStream{
		x:          x,
		rc:         http.NewResponseController(x.w),
		chunkDelay: p.reply.ChunkDelay,
		dropAfter:  p.reply.DropAfter,
	}
}

// send writes one event, after the chunk delay unless it is the first, and
// reports whether the stream goes on.
func (es *eventStream) send(event []byte) bool {
	if es.sent > 0 && !es.x.pause(es.chunkDelay) {
		return false
	}
	if _, err := es.x.w.Write(event); err != nil {
		es.x.gone()
		return false
	}
	if err := es.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		es.x.gone()
		return false
	}
	es.sent++
	if es.dropAfter > 0 && es.sent >= es.dropAfter {
		// net/http closes the connection without logging for this panic.
		panic(http.ErrAbortHandler)
	}
	return true
}
