package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/budhq/bud"
	"github.com/budhq/bud/admission"
	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/deployment"
	"github.com/budhq/bud/egress"
	"github.com/budhq/bud/replycache"
)

// chatRequest is a chat completion request as the gateway needs it: the
// caller's JSON object as it came, so every field, known or not, reaches
// the upstream untouched, and what routing reads of it. It is read
// without decoding the object (members), since the gateway needs two of
// its fields and a decode costs an allocation per field.
type chatRequest struct {
	// body is the caller's object, valid JSON. It is the request's read
	// buffer, not a copy: it is valid only until the buffer is put back.
	body  []byte
	model string
	// modelWhole is false when model is only the start of one too long to
	// name any deployment.
	modelWhole bool
	stream     bool
	// streamAt and streamOptionsAt are the offsets in body of the last
	// "stream" and "stream_options" members' values, the ones the
	// gateway reads as encoding/json does (-1: none): earlier repeats
	// are not sent, so that no upstream can read another one.
	streamAt, streamOptionsAt int
}

// parse reads what routing needs and checks only that: body is a JSON
// object, `model` a non-empty string and `stream` a boolean, read as
// encoding/json reads them (escaped keys decoded; of repeated keys, the
// last). The upstream validates the rest, as it would for a direct call.
// req keeps body (see chatRequest.body).
func (req *chatRequest) parse(body []byte) *apiError {
	if !json.Valid(body) {
		return errJSON(json.Unmarshal(body, new(json.RawMessage)))
	}
	req.body = body
	req.streamAt, req.streamOptionsAt = -1, -1
	var model []byte
	m := newMembers(body)
	for {
		k, v, ok := m.next()
		if !ok {
			break
		}
		switch {
		case keyIs(k, "model"):
			model = v
		case keyIs(k, "stream"):
			req.streamAt = offset(body, v)
		case keyIs(k, "stream_options"):
			req.streamOptionsAt = offset(body, v)
		}
	}
	if model == nil || string(model) == "null" {
		return errInvalid("model", codeMissingParameter, "You must provide a model parameter.")
	}
	if model[0] != '"' {
		return errInvalid("model", codeInvalidType, "Invalid type for 'model': expected a string.")
	}
	req.model, req.modelWhole = decodeModel(model)
	if req.model == "" && req.modelWhole {
		return errInvalid("model", codeMissingParameter, "You must provide a model parameter.")
	}
	if req.streamAt >= 0 {
		switch v := body[req.streamAt:]; {
		case hasLiteral(v, "true"):
			req.stream = true
		case hasLiteral(v, "false"), hasLiteral(v, "null"):
		default:
			return errInvalid("stream", codeInvalidType, "Invalid type for 'stream': expected a boolean.")
		}
	}
	return nil
}

// parseBody is parseJSON for a chat completion, without the interface
// that would put req on the heap.
func (req *chatRequest) parseBody(body []byte) *apiError {
	body, aerr := objectBody(body)
	if aerr != nil {
		return aerr
	}
	return req.parse(body)
}

// offset is where v, a subslice of b, begins in b.
func offset(b, v []byte) int { return cap(b) - cap(v) }

// hasLiteral reports whether the value at the start of v is lit.
func hasLiteral(v []byte, lit string) bool {
	return len(v) >= len(lit) && string(v[:len(lit)]) == lit && valueEnd(v, 0) == len(lit)
}

// maxModelJSON bounds the JSON text of a model that can name a
// deployment: a name is at most bud.MaxNameLen ASCII characters, each at
// most six bytes escaped (\u0041).
const maxModelJSON = 6*bud.MaxNameLen + 2

// decodeModel decodes a model, a JSON string. One too long to name a
// deployment is decoded only as far as an error message repeats it
// (echoed), with whole false, so that a caller's megabytes are not copied.
func decodeModel(raw []byte) (model string, whole bool) {
	if len(raw) > maxModelJSON {
		cut := 1
		for cut < len(raw)-1 && cut < 6*maxEchoed {
			switch {
			case raw[cut] != '\\':
				cut++
			case raw[cut+1] == 'u':
				cut += 6
			default:
				cut += 2
			}
		}
		prefix := make([]byte, 0, cut+1)
		prefix = append(append(prefix, raw[:cut]...), '"')
		_ = json.Unmarshal(prefix, &model) // cut between characters
		return model, false
	}
	if inner := raw[1 : len(raw)-1]; plainString(inner) {
		return string(inner), true
	}
	_ = json.Unmarshal(raw, &model) // valid JSON string
	return model, true
}

// appendUpstreamBody appends the request as the upstream gets it: the
// upstream's model name, the caller's members, and the deployment's
// defaults for the fields the caller left out. No spelling of `model` is
// taken from the caller or the defaults, and a pinned field only under its
// exact name (bud.Respelled): an upstream that decodes JSON
// case-insensitively would take "Model" over the deployment's model, or
// stream a reply on "Stream" that the gateway reads whole. Members are
// copied as written: every value is valid JSON already, so there is
// nothing to re-encode, only to join.
//
// With forceUsage, a streamed reply is asked for its usage
// (stream_options.include_usage), which a token limit needs to charge the
// request; the caller's other stream options stay.
func (req *chatRequest) appendUpstreamBody(buf []byte, d *deployment.Deployment, forceUsage bool) []byte {
	buf = append(buf, `{"model":`...)
	buf = append(buf, d.UpstreamModelJSON...)
	// The caller's keys the defaults name, to leave those defaults out.
	var set [16][]byte
	nset, overflow := 0, false
	m := newMembers(req.body)
	for {
		k, v, ok := m.next()
		if !ok {
			break
		}
		key := k
		if !plainString(k) {
			key = []byte(decodeKey(k))
		}
		switch {
		case string(key) == "model" || bud.Respelled(string(key)):
			continue
		case string(key) == "stream" && offset(req.body, v) != req.streamAt,
			string(key) == "stream_options" && offset(req.body, v) != req.streamOptionsAt:
			continue
		}
		if _, ok := d.Defaults[string(key)]; ok {
			if nset < len(set) {
				set[nset] = key
				nset++
			} else {
				overflow = true
			}
		}
		buf = append(buf, ',', '"')
		buf = append(buf, k...)
		buf = append(buf, '"', ':')
		if forceUsage && string(key) == "stream_options" {
			buf = appendWithUsage(buf, v)
			continue
		}
		buf = append(buf, v...)
	}
	if forceUsage && req.streamOptionsAt < 0 {
		buf = append(buf, `,"stream_options":{"include_usage":true}`...)
	}
	for k, v := range d.Defaults {
		if k == "model" || k == "stream" || k == "stream_options" || bud.Respelled(k) || req.sets(k, set[:nset], overflow) {
			continue
		}
		buf = append(buf, ',')
		buf = appendJSONString(buf, k)
		buf = append(buf, ':')
		buf = append(buf, v...)
	}
	return append(buf, '}')
}

// appendWithUsage appends stream options v with include_usage true, in
// place of any spelling of it the caller sent. A v that is not an object
// is appended as it is, for the upstream to refuse, as it would directly.
func appendWithUsage(buf, v []byte) []byte {
	switch v[0] {
	case 'n':
		return append(buf, `{"include_usage":true}`...)
	case '{':
	default:
		return append(buf, v...)
	}
	buf = append(buf, `{"include_usage":true`...)
	m := newMembers(v)
	for {
		k, mv, ok := m.next()
		if !ok {
			break
		}
		if keyFolds(k, "include_usage") {
			continue
		}
		buf = append(buf, ',', '"')
		buf = append(buf, k...)
		buf = append(buf, '"', ':')
		buf = append(buf, mv...)
	}
	return append(buf, '}')
}

// asksUsage reports whether the caller asked for the usage of a streamed
// reply (stream_options.include_usage: true).
func (req *chatRequest) asksUsage() bool {
	if req.streamOptionsAt < 0 || req.body[req.streamOptionsAt] != '{' {
		return false
	}
	asks := false
	m := newMembers(req.body[req.streamOptionsAt:])
	for {
		k, v, ok := m.next()
		if !ok {
			return asks
		}
		if keyIs(k, "include_usage") {
			asks = hasLiteral(v, "true")
		}
	}
}

// sets reports whether the caller's object has key k: among set, the keys
// already seen, unless there were more than set holds.
func (req *chatRequest) sets(k string, set [][]byte, overflow bool) bool {
	for _, s := range set {
		if string(s) == k {
			return true
		}
	}
	if !overflow {
		return false
	}
	m := newMembers(req.body)
	for {
		key, _, ok := m.next()
		if !ok {
			return false
		}
		if keyIs(key, k) {
			return true
		}
	}
}

// appendJSONString quotes s as a JSON string. Keys come out of
// encoding/json, so they are valid UTF-8; only quotes, backslashes and
// control characters need escaping.
func appendJSONString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			buf = append(buf, '\\', c)
		case c < 0x20:
			buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			buf = append(buf, c)
		}
	}
	return append(buf, '"')
}

// modelRoute is one of the routes that forward a request to a model
// deployment's upstream, all alike but for the upstream endpoint.
type modelRoute struct {
	// endpoint labels the route's metrics (endpointChat…).
	endpoint string
	// cacheKind keeps the route's cached replies apart
	// (replycache.KindChat…).
	cacheKind string
	// url is the deployment's upstream endpoint for the route.
	url func(d *deployment.Deployment) string
	// streams says the route relays `stream: true` as server-sent events;
	// without it `stream` is one more field passed to the upstream, and
	// the reply is relayed whole.
	streams bool
}

var (
	routeChat = modelRoute{endpoint: endpointChat, cacheKind: replycache.KindChat, streams: true,
		url: func(d *deployment.Deployment) string { return d.ChatURL }}
	routeCompletions = modelRoute{endpoint: endpointCompletions, cacheKind: replycache.KindCompletions, streams: true,
		url: func(d *deployment.Deployment) string { return d.CompletionsURL }}
	routeEmbeddings = modelRoute{endpoint: endpointEmbeddings, cacheKind: replycache.KindEmbeddings,
		url: func(d *deployment.Deployment) string { return d.EmbeddingsURL }}
)

// chatCompletions routes a chat completion to the upstream of the caller's
// model deployment and relays the reply, streamed or whole, counting its
// tokens.
func (g *Gateway) chatCompletions(w http.ResponseWriter, r *http.Request) {
	g.forward(w, r, routeChat)
}

// completions routes a (legacy) completion as chatCompletions routes a
// chat completion, streamed or whole.
func (g *Gateway) completions(w http.ResponseWriter, r *http.Request) {
	g.forward(w, r, routeCompletions)
}

// embeddings routes an embeddings request as chatCompletions routes a
// chat completion; its reply is always whole.
func (g *Gateway) embeddings(w http.ResponseWriter, r *http.Request) {
	g.forward(w, r, routeEmbeddings)
}

// forward routes a request of route to the upstream of the caller's model
// deployment and relays the reply, streamed or whole, counting its tokens.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, route modelRoute) {
	c := callerFrom(r.Context())
	// series are the deployment's once the request names one. A request
	// refused before that counts under no deployment, a series made only
	// then: a request that is routed looks up one series, and a project
	// whose requests all are has no series without a deployment.
	var series *chatSeries
	counted := func() *chatSeries {
		if series == nil {
			series = g.metrics.model(c.projectID, "", route.endpoint)
		}
		return series
	}
	status := 0
	// u is the request's usage once it names a deployment.
	var u *served
	defer func() {
		s := counted()
		s.requests(status).Inc()
		s.latency.Observe(time.Since(c.arrived).Seconds())
		if u != nil {
			u.status = status
			g.recordUsage(u)
		}
	}()
	fail := func(e *apiError, typ string) {
		status = e.Status
		counted().failed(typ)
		writeAPIError(w, e)
	}

	// The request keeps its body (chatRequest.body) in in until the
	// upstream's is written, and gives the buffer back then rather than at
	// the end: an upstream may take minutes to answer, and the reply
	// (relayBody) can reuse it.
	in := g.buffers.get()
	defer func() {
		if in != nil {
			g.buffers.put(in)
		}
	}()
	var req chatRequest
	aerr := g.readBody(w, r, in)
	if aerr == nil {
		aerr = req.parseBody(in.Bytes())
	}
	if aerr != nil {
		typ := "invalid_request"
		switch aerr.Status {
		case http.StatusRequestEntityTooLarge:
			typ = "request_too_large"
		case http.StatusServiceUnavailable:
			typ = "server_busy"
		}
		fail(aerr, typ)
		return
	}
	var d *deployment.Deployment
	err := deployment.ErrNotFound
	if req.modelWhole {
		d, err = g.deployments.Model(r.Context(), c.projectID, req.model)
	}
	switch {
	case errors.Is(err, deployment.ErrNotFound):
		fail(errModelNotFound(req.model), "model_not_found")
		return
	case err != nil:
		g.log.Error("load deployment", "err", err, "project", c.projectID, "model", echoed(req.model))
		fail(errInternal(), "internal")
		return
	}
	series = g.metrics.model(c.projectID, d.Name, route.endpoint)
	us := serving(c, d, "")
	u = &us

	// The response cache is looked up before admission: a hit counts
	// against the rate limits but takes no concurrency slot (admit).
	if !route.streams {
		// stream is then a field like any other, for the upstream.
		req.stream, req.streamAt, req.streamOptionsAt = false, -1, -1
	}
	q := g.chatCache(route.cacheKind, d, req.body)
	cached, hit := q.Lookup(r.Context())
	ticket, aerr := g.admit(r, w.Header(), c, d, hit, u)
	if aerr == errClientGone {
		status = 499
		series.failed("client_closed")
		return
	}
	if aerr != nil {
		fail(aerr, "rate_limited")
		return
	}
	// The reply's end calls Done with its usage; this one covers the paths
	// that end before.
	defer ticket.Done(0)
	if hit {
		ticket.Done(0)
		u.cacheHit = true
		status = http.StatusOK
		replycache.Serve(w, cached)
		return
	}
	if q != nil {
		replycache.MarkMiss(w)
	}

	// A token limit charges a stream from its usage, which only a stream
	// asked for it reports; the caller gets the usage chunk only if it
	// asked too.
	forceUsage := req.stream && tokenLimited(d, c)
	dropUsage := forceUsage && !req.asksUsage()
	if dropUsage {
		// The upstream's stream then carries a usage chunk this caller
		// did not ask for, and another may not want: it is not kept.
		q = nil
	}
	// Not pooled: the transport may still be writing it after the reply
	// is in, when an upstream answers before reading the whole request.
	upBody := req.appendUpstreamBody(make([]byte, 0, len(req.body)+len(d.UpstreamModelJSON)+64*len(d.Defaults)+48), d, forceUsage)
	g.buffers.put(in)
	in, req.body = nil, nil
	// The caller's context: a client that goes away cancels the upstream
	// request at once.
	upURL := route.url(d)
	ureq, err := http.NewRequestWithContext(r.Context(), http.MethodPost, upURL, bytes.NewReader(upBody))
	if err != nil {
		g.log.Error("build upstream request", "err", err, "url", bud.RedactURLs(upURL))
		fail(errInternal(), "internal")
		return
	}
	chat.SetHeaders(ureq.Header, req.stream, d.APIKey)
	upStart := time.Now()
	resp, err := g.client.Do(ureq)
	if err != nil {
		if r.Context().Err() != nil {
			status = 499 // the client closed the request
			series.failed("client_closed")
			return
		}
		if isTimeout(err) {
			fail(&apiError{Status: http.StatusGatewayTimeout, Type: typeUpstream, Code: codeUpstreamTimeout,
				Message: "The upstream of model '" + req.model + "' did not answer in time."}, "upstream_timeout")
			return
		}
		if egress.IsRefused(err) {
			// The error names the address, never the URL with its
			// userinfo or query.
			g.log.Warn("upstream refused by egress policy", "err", errors.Unwrap(err), "project", series.project, "deployment", series.deployment)
			fail(&apiError{Status: http.StatusBadGateway, Type: typeUpstream, Code: codeUpstreamRefused,
				Message: "The upstream of model '" + req.model + "' resolves to an address the egress policy refuses."}, "upstream_refused")
			return
		}
		g.log.Warn("upstream unreachable", "err", err, "project", series.project, "deployment", series.deployment)
		fail(&apiError{Status: http.StatusBadGateway, Type: typeUpstream, Code: codeUpstreamUnreachable,
			Message: "The upstream of model '" + req.model + "' could not be reached."}, "upstream_unreachable")
		return
	}
	defer resp.Body.Close()
	series.upstream.Observe(time.Since(upStart).Seconds())
	status = resp.StatusCode
	if resp.StatusCode >= 400 {
		series.failed("upstream_" + strconv.Itoa(resp.StatusCode/100) + "xx")
	}

	q.Watch(resp)
	if req.stream && resp.StatusCode < 300 && isEventStream(resp.Header.Get("Content-Type")) {
		u.in, u.out = g.relayStream(w, resp, series, ticket, dropUsage)
	} else {
		u.in, u.out = g.relayBody(w, resp, series, ticket)
	}
	q.Store(r.Context(), w)
}

// tokenLimited reports whether a token limit applies to the caller's
// requests to d.
func tokenLimited(d *deployment.Deployment, c caller) bool {
	return c.rate.TokensPerMinute > 0 || (d.Settings.RateLimit.Enabled && d.Settings.RateLimit.TokensPerMinute > 0)
}

// relayBody passes a whole response back with its status, counting tokens.
// The ticket is done, with the reply's tokens, before the reply is
// written: a client that sends its next request on reading this one finds
// the slot free.
//
// It returns the reply's input and output tokens.
func (g *Gateway) relayBody(w http.ResponseWriter, resp *http.Response, series *chatSeries, ticket *admission.Ticket) (in, out int64) {
	buf := g.buffers.get()
	defer g.buffers.put(buf)
	buf.Grow(presize(resp.ContentLength))
	_, err := buf.ReadFrom(io.LimitReader(resp.Body, maxUpstreamBody))
	b := buf.Bytes()
	if err != nil {
		series.failed("upstream_read")
		writeAPIError(w, &apiError{Status: http.StatusBadGateway, Type: typeUpstream, Code: codeUpstreamUnreachable,
			Message: "The upstream closed the connection before its reply was complete."})
		return 0, 0
	}
	if resp.StatusCode < 300 {
		in, out = countUsage(b, series)
	}
	ticket.Done(tokenSum(in, out))
	h := w.Header()
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/json"
	}
	h.Set("Content-Type", ct)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	copyHeader(h, resp.Header, "X-Request-Id", "Openai-Processing-Ms", "Retry-After")
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(b)
	return in, out
}

// relayStream passes server-sent events through one event at a time,
// flushing after each, and counts the usage chunk if the upstream sends one.
// The ticket is done with its tokens before the closing `data: [DONE]`
// is passed on (as relayBody does before the reply), or when the stream
// ends without one. With dropUsage the usage chunk, which the gateway
// asked for and the caller did not, is counted and not passed on. It
// returns the input and output tokens of the last usage chunk.
func (g *Gateway) relayStream(w http.ResponseWriter, resp *http.Response, series *chatSeries, ticket *admission.Ticket, dropUsage bool) (in, out int64) {
	defer func() { ticket.Done(tokenSum(in, out)) }()
	h := w.Header()
	h.Set("Content-Type", resp.Header.Get("Content-Type"))
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	copyHeader(h, resp.Header, "X-Request-Id")
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	_ = rc.Flush()

	br := bufio.NewReaderSize(resp.Body, 32<<10)
	dataPrefix := []byte("data:")
	// dropping is set from a dropped usage chunk to the blank line that
	// ends its event, which goes too.
	dropping := false
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// An event line longer than the buffer: pass the piece on and
			// keep reading the rest of the line.
			if _, werr := w.Write(line); werr != nil {
				return
			}
			continue
		}
		if len(line) > 0 {
			if data, ok := bytes.CutPrefix(line, dataPrefix); ok {
				if i, o := countUsage(data, series); i > 0 || o > 0 {
					in, out = i, o
					dropping = dropUsage && noChoices(data)
				}
				if string(bytes.TrimSpace(data)) == "[DONE]" {
					ticket.Done(tokenSum(in, out))
				}
			}
			if dropping {
				dropping = len(bytes.TrimSpace(line)) != 0
				continue
			}
			if _, werr := w.Write(line); werr != nil {
				return // the client went away; returning closes the upstream
			}
			// A blank line ends an event.
			if len(bytes.TrimSpace(line)) == 0 {
				if rc.Flush() != nil {
					return
				}
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				series.failed("upstream_stream")
			}
			_ = rc.Flush()
			return
		}
	}
}

// countUsage counts the tokens of a reply or a chunk that reports its
// usage, and returns them: prompt and completion, 0 when it reports none.
func countUsage(b []byte, series *chatSeries) (in, out int64) {
	u, ok := findUsage(b)
	if !ok {
		return 0, 0
	}
	if u.PromptTokens > 0 {
		series.tokensIn.Add(float64(u.PromptTokens))
	}
	if u.CompletionTokens > 0 {
		series.tokensOut.Add(float64(u.CompletionTokens))
	}
	return int64(max(u.PromptTokens, 0)), int64(max(u.CompletionTokens, 0))
}

// tokenSum is what a reply's tokens charge a token limit.
func tokenSum(in, out int64) int { return int(min(in+out, 1<<31)) }

// noChoices reports whether a stream chunk's choices are empty, as in the
// chunk that only reports usage.
func noChoices(data []byte) bool {
	data = trimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return false
	}
	empty := false
	m := newMembers(data)
	for {
		k, v, ok := m.next()
		if !ok {
			return empty
		}
		if keyIs(k, "choices") {
			empty = len(v) >= 2 && v[0] == '[' && len(trimSpace(v[1:len(v)-1])) == 0
		}
	}
}

func copyHeader(dst, src http.Header, names ...string) {
	for _, n := range names {
		if v := src.Get(n); v != "" {
			dst.Set(n, v)
		}
	}
}

func isEventStream(ct string) bool {
	return len(ct) >= 17 && ct[:17] == "text/event-stream"
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
