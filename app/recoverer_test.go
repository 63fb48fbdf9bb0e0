package app

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

// A panic is answered like any internal error, and its value and stack go
// to the log only.
func TestRecovererAnswersInternalError(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	s := &server{log: slog.New(slog.NewTextHandler(&logs, nil))}
	h := s.requestID(s.recoverer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("dsn=postgres://secret@db")
	})))

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/projects", nil))

	require.Equal(t, http.StatusInternalServerError, rec.Code)
	id := rec.Header().Get(RequestIDHeader)
	require.NotEmpty(t, id)
	var body errorBody
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	require.Equal(t, errorDetail{Code: "internal", Message: "internal error (request id " + id + ")", RequestID: id}, body.Error)
	require.NotContains(t, rec.Body.String(), "secret")
	require.Contains(t, logs.String(), "secret@db")
	require.Contains(t, logs.String(), "request_id="+id)
	require.Contains(t, logs.String(), "recoverer_test.go", "the stack is logged")
}

// An abort is not an error to report: net/http drops the connection.
func TestRecovererLetsAbortThrough(t *testing.T) {
	t.Parallel()
	s := &server{log: slog.New(slog.DiscardHandler)}
	h := s.recoverer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }))
	require.PanicsWithValue(t, http.ErrAbortHandler, func() {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	})
}
