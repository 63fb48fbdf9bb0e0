// Package upstreamtest is a stand-in for an OpenAI-compatible model server
// such as vLLM or OpenAI itself. It speaks their wire format, so the gateway
// can be tested, benchmarked and demonstrated where no real model runs: each
// reply can be scripted, and every request received is recorded.
//
// It serves, under /v1 and also without that prefix:
//
//	POST /v1/chat/completions   chat.completion, or a stream of chat.completion.chunk
//	POST /v1/responses          a Responses API response, or its event stream
//	POST /v1/completions        text_completion, or a stream of them
//	POST /v1/embeddings         a list of embeddings, one per input
//	GET  /v1/models             the configured models, or those requested so far
//	GET  /v1/models/{id}        one model
//
// Errors come in OpenAI's envelope. Requests are checked as a real server
// checks them (401 without the required API key; 400 for a body that is not
// JSON, lacks model or messages, or has stream_options without stream; 404
// for a model not served) before a reply is taken from the script, so a
// rejected request does not use up a scripted reply.
package upstreamtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Server is an OpenAI-compatible stand-in. Its methods are safe for
// concurrent use, also while it serves requests.
type Server struct {
	handler http.Handler
	// idPrefix keeps IDs of different servers apart.
	idPrefix string
	idSeq    atomic.Uint64
	// created is reported as the models' creation time.
	created  int64
	received atomic.Int64

	// closing is closed by Close so that delays and streams in progress end
	// instead of holding the listener's shutdown up.
	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error
	// url and stop are set before the server is shared and never change.
	url  string
	stop func() error

	mu           sync.Mutex
	defaultReply *prepared
	script       []*prepared
	modelScripts map[string][]*prepared
	recording    bool
	// bearer is the Authorization header required, empty when none is.
	bearer string
	// strict refuses strict response formats that break strict mode.
	strict bool
	// models is the configured model list; served is its set, nil when any
	// model is served.
	models     []string
	served     map[string]bool
	seen       map[string]bool
	seenModels []string
	requests   []*Recorded
	cancelled  []*Recorded
	// changed is closed, and cleared, when requests or cancelled change; it
	// is made only when someone waits, so a busy server allocates nothing.
	changed chan struct{}
}

// Recorded is one request as the server received it. A request is recorded
// when it arrives, before it is answered, so a test can wait for a request
// that is still being answered. Header, Body and JSON are shared by all
// copies and must not be modified.
type Recorded struct {
	Method string
	// Path is the URL path as received, such as /v1/chat/completions, and
	// RawQuery the query after the "?".
	Path     string
	RawQuery string
	// Header is the request's headers, Authorization included.
	Header http.Header
	// Body is the request body as received.
	Body []byte
	// JSON is Body decoded, nil when Body is not a JSON object.
	JSON map[string]any
	// Model and Stream are the request's `model` and `stream`.
	Model  string
	Stream bool
	// Status is the HTTP status sent, 0 while the response headers have not
	// been sent.
	Status int
	// Cancelled reports that the client went away before the response was
	// complete.
	Cancelled bool
}

// maxRequestBytes bounds a request body; larger ones get 413.
const maxRequestBytes = 32 << 20

// New returns a server that is not listening; serve it with Handler. Its
// default reply is Text(DefaultContent) and it records requests.
func New() *Server {
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails, see crypto/rand.Read
	s := &Server{
		idPrefix:     hex.EncodeToString(b[:]),
		created:      time.Now().Unix(),
		closing:      make(chan struct{}),
		defaultReply: prepare(Text(DefaultContent)),
		recording:    true,
	}
	s.handler = http.HandlerFunc(s.serveHTTP)
	return s
}

// Start starts a server on a loopback port for the duration of the test and
// closes it when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s := New()
	ts := httptest.NewServer(s.handler)
	s.url = ts.URL + "/v1"
	s.stop = func() error {
		ts.Close()
		return nil
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// Listen starts a server on addr (such as "127.0.0.1:8000" or ":0") that
// serves until Close. It returns once it is listening, so URL can be used
// right away.
func Listen(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("upstreamtest: listen on %s: %w", addr, err)
	}
	s := New()
	hs := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	s.url = "http://" + dialAddr(ln.Addr()) + "/v1"
	s.stop = func() error {
		err := hs.Close()
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			return fmt.Errorf("upstreamtest: serve: %w", serr)
		}
		if err != nil {
			return fmt.Errorf("upstreamtest: close: %w", err)
		}
		return nil
	}
	return s, nil
}

// dialAddr is where a client reaches a listener: a listener on every
// interface is reached on loopback.
func dialAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp.Port))
}

// Handler returns the server's HTTP handler, for mounting it in a server of
// one's own. It expects paths as a client sends them (/v1/chat/completions
// or /chat/completions); wrap it in http.StripPrefix to mount it deeper.
func (s *Server) Handler() http.Handler {
	return s.handler
}

// URL returns the base URL clients are configured with, ending in /v1, such
// as http://127.0.0.1:41234/v1. It is empty for a server made by New.
func (s *Server) URL() string {
	return s.url
}

// Close ends the delays and streams in progress, without marking them
// cancelled, and stops the listener started by Start or Listen. Calling it
// again returns the first result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		if s.stop != nil {
			s.closeErr = s.stop()
		}
	})
	return s.closeErr
}

// Script queues replies, each answering one request, in order. Requests are
// answered from the model's script (ScriptModel) first, then from this one,
// and with the default reply once both are empty.
func (s *Server) Script(replies ...Reply) {
	ps := prepareAll(replies)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = append(s.script, ps...)
}

// ScriptModel queues replies for requests whose model is model; they are
// used before those queued by Script.
func (s *Server) ScriptModel(model string, replies ...Reply) {
	ps := prepareAll(replies)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.modelScripts == nil {
		s.modelScripts = map[string][]*prepared{}
	}
	s.modelScripts[model] = append(s.modelScripts[model], ps...)
}

func prepareAll(replies []Reply) []*prepared {
	ps := make([]*prepared, len(replies))
	for i, r := range replies {
		ps[i] = prepare(r)
	}
	return ps
}

// Pending returns how many scripted replies have not been used yet.
func (s *Server) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.script)
	for _, q := range s.modelScripts {
		n += len(q)
	}
	return n
}

// SetDefault sets the reply used when no scripted reply is waiting. It
// starts as Text(DefaultContent); Echo() makes the server repeat the last
// user message.
func (s *Server) SetDefault(r Reply) {
	p := prepare(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.defaultReply = p
}

// SetRecording turns recording of requests on (the default) or off. Off, a
// benchmark's requests cost no memory; Requests and WaitRequests then see
// only what was recorded before, while Received still counts and cancelled
// requests are still recorded for WaitCancelled.
func (s *Server) SetRecording(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recording = on
}

// RequireAPIKey makes the server answer 401, in OpenAI's envelope, to
// requests without the header `Authorization: Bearer <key>`. An empty key
// lifts the requirement.
func (s *Server) RequireAPIKey(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bearer = ""
	if key != "" {
		s.bearer = "Bearer " + key
	}
}

// RequireStrictSchemas makes the server check, as OpenAI does, a chat
// request whose response_format is a json_schema with "strict": true: a
// schema that breaks strict mode's rules (package strictschema) is answered
// 400 invalid_request_error, param response_format, with a message naming
// the first problem ("Invalid schema for response_format 'output': In
// context=(), 'required' is required to be supplied and to be an array
// including every key in properties. Missing 'nickname'."). A schema sent
// with strict false is taken as it is. Off by default, as vLLM takes any
// schema.
func (s *Server) RequireStrictSchemas(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.strict = on
}

// SetModels makes the server serve only the given models, answering 404
// model_not_found for others, and list them on GET /v1/models. With no
// models, any model is served and the list holds those requested so far.
func (s *Server) SetModels(models ...string) {
	served := make(map[string]bool, len(models))
	for _, m := range models {
		served[m] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.models = slices.Clone(models)
	s.served = served
	if len(models) == 0 {
		s.served = nil
	}
}

// Received returns how many requests arrived since New or Reset, whether or
// not they were recorded.
func (s *Server) Received() int {
	return int(s.received.Load())
}

// Requests returns the requests recorded since New or Reset, in the order
// they arrived.
func (s *Server) Requests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copyRecorded(s.requests)
}

// WaitRequests waits until at least n requests have been recorded and
// returns them all. When ctx ends first it returns those recorded so far
// and an error wrapping ctx's.
func (s *Server) WaitRequests(ctx context.Context, n int) ([]Recorded, error) {
	got, err := s.wait(ctx, func() []*Recorded { return s.requests }, n)
	if err != nil {
		return got, fmt.Errorf("upstreamtest: waiting for %d requests, %d recorded: %w", n, len(got), err)
	}
	return got, nil
}

// WaitCancelled waits until at least n requests have been cancelled by their
// client (it went away before the response was complete) and returns them.
// That is how a test proves that the gateway passes a caller's cancellation
// upstream. When ctx ends first it returns those cancelled so far and an
// error wrapping ctx's.
func (s *Server) WaitCancelled(ctx context.Context, n int) ([]Recorded, error) {
	got, err := s.wait(ctx, func() []*Recorded { return s.cancelled }, n)
	if err != nil {
		return got, fmt.Errorf("upstreamtest: waiting for %d cancelled requests, %d so far: %w", n, len(got), err)
	}
	return got, nil
}

func (s *Server) wait(ctx context.Context, list func() []*Recorded, n int) ([]Recorded, error) {
	for {
		s.mu.Lock()
		if recs := list(); len(recs) >= n {
			s.mu.Unlock()
			return copyRecorded(recs), nil
		}
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			s.mu.Lock()
			defer s.mu.Unlock()
			return copyRecorded(list()), ctx.Err()
		}
	}
}

// notify wakes the waiters; s.mu must be held.
func (s *Server) notify() {
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

func copyRecorded(recs []*Recorded) []Recorded {
	out := make([]Recorded, len(recs))
	for i, r := range recs {
		out[i] = *r
	}
	return out
}

// Reset forgets what happened, not how the server is configured: it drops
// the scripted replies not yet used, the recorded and cancelled requests,
// the models seen and the Received count, and keeps the default reply, API
// key, model list and recording switch.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = nil
	s.modelScripts = nil
	s.requests = nil
	s.cancelled = nil
	s.seen = nil
	s.seenModels = nil
	s.received.Store(0)
	s.notify()
}

// newID returns a fresh ID such as chatcmpl-1a2b3c4d7.
func (s *Server) newID(prefix string) string {
	return string(s.appendID(nil, prefix))
}

func (s *Server) appendID(b []byte, prefix string) []byte {
	b = append(b, prefix...)
	b = append(b, s.idPrefix...)
	return strconv.AppendUint(b, s.idSeq.Add(1), 36)
}

// settings is what a request needs of the server's configuration, read once
// when it arrives.
type settings struct {
	bearer string
	served map[string]bool
	strict bool
}

// arrive counts and, when recording is on, records a request.
func (s *Server) arrive(r *http.Request, body []byte, req *request) (settings, *Recorded) {
	s.received.Add(1)
	s.mu.Lock()
	cfg := settings{bearer: s.bearer, served: s.served, strict: s.strict}
	recording := s.recording
	s.mu.Unlock()
	if !recording {
		return cfg, nil
	}
	rec := &Recorded{
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Header:   r.Header.Clone(),
		Body:     body,
		Model:    req.Model,
		Stream:   req.Stream,
	}
	if err := json.Unmarshal(body, &rec.JSON); err != nil {
		rec.JSON = nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, rec)
	s.notify()
	return cfg, rec
}

// nextReply takes the reply to a valid request for model from the scripts,
// or returns the default.
func (s *Server) nextReply(model string) *prepared {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.seen[model] {
		if s.seen == nil {
			s.seen = map[string]bool{}
		}
		s.seen[model] = true
		s.seenModels = append(s.seenModels, model)
	}
	if q := s.modelScripts[model]; len(q) > 0 {
		s.modelScripts[model] = q[1:]
		return q[0]
	}
	if len(s.script) > 0 {
		p := s.script[0]
		s.script = s.script[1:]
		return p
	}
	return s.defaultReply
}

// listedModels is what GET /v1/models lists.
func (s *Server) listedModels() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.models) > 0 {
		return slices.Clone(s.models)
	}
	return slices.Clone(s.seenModels)
}

func (s *Server) setStatus(rec *Recorded, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec.Status = status
}

// markCancelled records that the client of a request went away.
func (s *Server) markCancelled(rec *Recorded, r *http.Request, req *request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec == nil {
		// Recording is off, but a cancellation is rare and a test waits
		// for it.
		rec = &Recorded{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Model: req.Model, Stream: req.Stream}
	}
	rec.Cancelled = true
	s.cancelled = append(s.cancelled, rec)
	s.notify()
}

func (s *Server) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}
