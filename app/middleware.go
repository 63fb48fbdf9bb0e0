package app

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/google/uuid"

	"github.com/budhq/bud"
)

// RequestIDHeader carries a request's id in both directions: a valid id sent
// by the caller (a proxy, say) is kept so that logs line up across hops,
// otherwise a fresh one is made.
const RequestIDHeader = "X-Request-Id"

// maxRequestIDLen bounds a caller's request id; it lands in every log line.
const maxRequestIDLen = 128

type requestIDKey struct{}

func (s *server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !validRequestID(id) {
			id = uuid.NewString()
		}
		w.Header().Set(RequestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

// validRequestID accepts only short ids of plain characters, so a caller
// cannot forge log lines or fill them.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.:", c)
		if !ok {
			return false
		}
	}
	return true
}

func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// recoverer turns a panic into a logged internal error, so a bug in one
// handler costs one request a 500 instead of costing the caller an
// unexplained dropped connection.
func (s *server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			rec := recover()
			if rec == nil {
				return
			}
			if rec == http.ErrAbortHandler {
				// A deliberate abort: let net/http drop the connection quietly.
				panic(rec)
			}
			s.writeError(w, r, bud.Internal("panic", fmt.Errorf("%v\n%s", rec, debug.Stack())))
		}()
		next.ServeHTTP(w, r)
	})
}

// requireAdmin lets a request through only with the admin bearer token.
func (s *server) requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r)
		sum := sha256.Sum256([]byte(token))
		if !ok || subtle.ConstantTimeCompare(sum[:], s.adminToken[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bud"`)
			s.writeError(w, r, bud.Errorf(bud.EUNAUTHORIZED, "a valid admin token is required (Authorization: Bearer <token>)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header; the scheme is case-insensitive, as RFC 9110 says.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func (s *server) notFound(w http.ResponseWriter, r *http.Request) {
	if s.console != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		r.URL.Path != "/api" && !strings.HasPrefix(r.URL.Path, "/api/") {
		s.console.ServeHTTP(w, r)
		return
	}
	s.writeError(w, r, bud.Errorf(bud.ENOTFOUND, "no route for %s %s", r.Method, r.URL.Path))
}

// methodNotAllowed answers in the envelope like every other error; it has
// a status of its own because no bud code fits a wrong method.
func (s *server) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: errorDetail{
		Code:    codeMethodNotAllowed,
		Message: fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path),
	}})
}
