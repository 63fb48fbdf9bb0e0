package console_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/console"
)

// TestHandler: the application's routes get index.html with the
// addresses it shows; a missing file and the services' own endpoints get
// no page.
func TestHandler(t *testing.T) {
	h := console.Handler(console.Options{GatewayURL: "http://gw.example"})
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	for _, p := range []string{"/", "/projects/abc", "/runs/resp_1"} {
		rec := get(p)
		require.Equal(t, http.StatusOK, rec.Code, p)
		require.True(t, strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html"), p)
		require.Contains(t, rec.Body.String(), `content="http://gw.example"`, p)
	}
	for _, p := range []string{"/metrics", "/healthz", "/readyz", "/missing.js", "/projects/x.png"} {
		require.Equal(t, http.StatusNotFound, get(p).Code, p)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/projects/abc", nil))
	require.Equal(t, http.StatusMethodNotAllowed, rec.Code)
}
