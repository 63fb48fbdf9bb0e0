package connection

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultTimeout bounds one request of the HTTP client Open makes when
// Options.HTTPClient is nil. An MCP connection over SSE bounds the wait for
// response headers instead: its event stream stays open for the session.
const DefaultTimeout = 30 * time.Second

// Open checks c (its name aside: a connection is opened for what it is, not
// what it is called) and returns a client for it. An MCP client connects and
// initialises its session here, so an MCP server that cannot be reached
// fails Open; the other kinds make no request until Tools or Call. Every
// error is an *Error.
func Open(ctx context.Context, c Connection, o Options) (Client, error) {
	c.Normalize()
	red := newRedactor(c.Credentials)
	p := c.problems()
	delete(p, "name")
	if len(p) > 0 {
		return nil, red.errorf(ReasonRejected, 0, "the %s connection is not valid: %s", c.Kind, p.String())
	}
	switch c.Kind {
	case KindMCP:
		m, err := openMCP(ctx, c, o, red)
		if err != nil {
			return nil, err
		}
		return m, nil
	case KindSlack:
		return newSlack(c, o, red), nil
	case KindNotion:
		return newNotion(c, o, red), nil
	default: // KindHTTP: problems() accepts no other kind
		h, err := newHTTPAPI(c, o, red)
		if err != nil {
			return nil, err
		}
		return h, nil
	}
}

// newHTTPClient returns a client that adds headers to every request for the
// origin of baseURL, and to no other (a redirect elsewhere does not carry
// the credentials). hc is the caller's client or nil for a default one with
// DefaultTimeout; it is copied, never changed.
func newHTTPClient(hc *http.Client, baseURL string, headers http.Header) (*http.Client, *credentialTransport) {
	var client http.Client
	if hc != nil {
		client = *hc
	} else {
		client = http.Client{Timeout: DefaultTimeout}
	}
	base := client.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	u, _ := url.Parse(baseURL) // checked by Check
	t := &credentialTransport{base: base, scheme: u.Scheme, host: u.Host, headers: headers, shared: base == http.DefaultTransport}
	client.Transport = t
	return &client, t
}

// credentialTransport adds a connection's credential headers to requests
// for its origin, and remembers the status of the last response (the MCP
// SDK reports an HTTP failure as text; the status tells its reason).
type credentialTransport struct {
	base    http.RoundTripper
	scheme  string
	host    string
	headers http.Header
	status  atomic.Int64
	// shared is set when base is http.DefaultTransport, whose idle
	// connections serve the whole process and are not ours to close.
	shared bool
	// postsStayHome is set for an MCP SSE connection: the server's
	// endpoint event names where messages are POSTed, and the SDK follows
	// it wherever it points, so a POST to another origin is refused here.
	postsStayHome bool
	// refused is the origin of the last POST refused for postsStayHome.
	refused atomic.Pointer[string]
}

// errOtherOrigin is the failure of a request refused for going to another
// origin than the connection's.
var errOtherOrigin = errors.New("refused: another origin than the connection's")

// RoundTrip implements http.RoundTripper.
func (t *credentialTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if len(t.headers) > 0 && req.URL.Scheme == t.scheme && strings.EqualFold(req.URL.Host, t.host) {
		req = req.Clone(req.Context())
		for name, values := range t.headers {
			req.Header[name] = values
		}
	}
	t.status.Store(0)
	if t.postsStayHome && req.Method == http.MethodPost && !sameOrigin(req.URL, t.scheme, t.host) {
		o := req.URL.Scheme + "://" + req.URL.Host
		t.refused.Store(&o)
		return nil, errOtherOrigin
	}
	resp, err := t.base.RoundTrip(req)
	if err == nil {
		t.status.Store(int64(resp.StatusCode))
	}
	return resp, err
}

// sameOrigin reports whether u has scheme and host (a host[:port]), a
// missing port standing for the scheme's default.
func sameOrigin(u *url.URL, scheme, host string) bool {
	if !strings.EqualFold(u.Scheme, scheme) {
		return false
	}
	withPort := func(h string) string {
		if _, _, err := net.SplitHostPort(h); err == nil {
			return strings.ToLower(h)
		}
		port := "80"
		if strings.EqualFold(scheme, "https") {
			port = "443"
		}
		return strings.ToLower(net.JoinHostPort(strings.Trim(h, "[]"), port))
	}
	return withPort(u.Host) == withPort(host)
}

// refusedOrigin is the origin of the last POST refused for
// postsStayHome, "" when none was.
func (t *credentialTransport) refusedOrigin() string {
	if o := t.refused.Load(); o != nil {
		return *o
	}
	return ""
}

// lastStatus is the status of the last response, 0 when the last request
// got none.
func (t *credentialTransport) lastStatus() int { return int(t.status.Load()) }

// closeIdle closes the idle connections of the transport below, unless
// it is shared.
func (t *credentialTransport) closeIdle() {
	if t.shared {
		return
	}
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// headerMap turns credential headers into canonical http.Header.
func headerMap(headers map[string]string) http.Header {
	h := make(http.Header, len(headers))
	for name, value := range headers {
		h.Set(name, value)
	}
	return h
}

// transportText says in a few words why a request got no answer.
func transportText(err error) string {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return "no such host " + dnsErr.Name
		}
		return "DNS lookup of " + dnsErr.Name + " failed"
	case errors.As(err, &certErr):
		return "its TLS certificate is not trusted"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timed out"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection was closed"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// isTransportError reports whether err is a failure to reach the far end
// at all, rather than a failure of what it answered.
func isTransportError(err error) bool {
	var ue *url.Error
	var opErr *net.OpError
	var dnsErr *net.DNSError
	return errors.As(err, &ue) || errors.As(err, &opErr) || errors.As(err, &dnsErr) || errors.Is(err, syscall.ECONNREFUSED)
}

// apiCaller sends the requests of the kinds that speak plain HTTP (slack,
// notion, http) and turns failures to get an answer into an *Error.
type apiCaller struct {
	client *http.Client
	t      *credentialTransport
	red    redactor
	// where names the far end in messages, e.g. "Slack at https://slack.com/api".
	where string
}

// newRequest builds a request to u with query; a body is sent as JSON with
// contentType, and with no body contentType (if any) goes with an empty
// one. Its failures are rejections: the arguments cannot be sent.
func (a apiCaller) newRequest(ctx context.Context, method, u string, query url.Values, body any, contentType string) (*http.Request, error) {
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var payload io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, a.red.errorf(ReasonRejected, 0, "encoding the request %s %s: %v", method, u, err)
		}
		payload = bytes.NewReader(b)
	} else if contentType != "" {
		payload = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, method, u, payload)
	if err != nil {
		return nil, a.red.errorf(ReasonRejected, 0, "building the request %s %s: %v", method, u, err)
	}
	if payload != nil {
		req.Header.Set("Content-Type", contentType)
	}
	return req, nil
}

// reply is a response read whole (up to a limit).
type reply struct {
	status    int
	header    http.Header
	body      []byte
	truncated bool
}

// send does req and reads at most limit bytes of the body.
func (a apiCaller) send(req *http.Request, limit int64) (reply, error) {
	resp, err := a.client.Do(req)
	if err != nil {
		if e := a.red.contextError(req.Context(), a.where+" did not answer"); e != nil {
			return reply{}, e
		}
		return reply{}, a.red.errorf(ReasonUnreachable, 0, "%s could not be reached: %s", a.where, transportText(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		if e := a.red.contextError(req.Context(), a.where+" did not finish its answer"); e != nil {
			return reply{}, e
		}
		return reply{}, a.red.errorf(ReasonUnavailable, resp.StatusCode, "%s broke off its answer: %s", a.where, transportText(err))
	}
	r := reply{status: resp.StatusCode, header: resp.Header, body: body}
	if int64(len(body)) > limit {
		r.body, r.truncated = body[:limit], true
	}
	return r, nil
}

// retryAfterText is " (retry after N s)" from a Retry-After header, or "".
func retryAfterText(h http.Header) string {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return ""
	}
	if _, err := strconv.Atoi(v); err == nil {
		return fmt.Sprintf(" (retry after %s s)", v)
	}
	return fmt.Sprintf(" (retry after %s)", v)
}

// joinURL appends path to base, whatever slashes they carry.
func joinURL(base, path string) string {
	return strings.TrimSuffix(base, "/") + "/" + strings.TrimPrefix(path, "/")
}
