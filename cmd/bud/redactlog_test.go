package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	sdklog "go.temporal.io/sdk/log"
)

// secretURL is a URL whose userinfo and query are secrets.
const secretURL = "https://user:secret@host/p?token=abc"

// urlValuer is a slog.LogValuer that resolves to a URL.
type urlValuer struct{}

func (urlValuer) LogValue() slog.Value { return slog.StringValue("at " + secretURL) }

// TestLoggerRedactsURLs logs a URL with userinfo and a query every way a
// service's line can carry one, in both log formats: neither the password
// nor the token is printed, and the rest of the line is.
func TestLoggerRedactsURLs(t *testing.T) {
	t.Parallel()
	urlErr := &url.Error{Op: "Post", URL: secretURL, Err: errors.New("connection refused")}
	parsed, err := url.Parse(secretURL)
	require.NoError(t, err)
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			cfg := config{LogLevel: "debug", LogFormat: format}
			log, err := cfg.logger(&buf)
			require.NoError(t, err)

			lines := []func(){
				func() { log.Error("upstream unreachable", "err", urlErr) },
				func() { log.Warn("wrapped", "err", fmt.Errorf("load: %w", urlErr)) },
				func() { log.Info("calling " + secretURL) },
				func() { log.Info("a string", "url", secretURL) },
				func() { log.Info("a Stringer", "url", parsed) },
				func() { log.Info("a LogValuer", "where", urlValuer{}) },
				func() { log.With("url", secretURL).Info("With") },
				func() { log.WithGroup("g").With("err", urlErr).Info("WithGroup, then With") },
				func() {
					log.Info("a group", slog.Group("upstream", "err", urlErr, slog.Group("deeper", "url", secretURL)))
				},
				// The Temporal SDK's and net/http's lines take the same logger.
				func() { sdklog.NewStructuredLogger(log).Error("temporal", "Error", urlErr) },
				func() { slog.NewLogLogger(log.Handler(), slog.LevelWarn).Printf("http: %v", urlErr) },
			}
			for _, line := range lines {
				line()
			}
			log.Info("untouched", "err", errors.New("plain failure"), "n", 3)

			out := buf.String()
			require.NotContains(t, out, "secret", out)
			require.NotContains(t, out, "token", out)
			require.NotContains(t, out, "abc", out)
			require.GreaterOrEqual(t, strings.Count(out, "https://REDACTED@host/p?REDACTED"), len(lines), out)
			require.Contains(t, out, "connection refused")
			require.Contains(t, out, "plain failure")
		})
	}
}

// TestRedactAttrKeepsNilStringer: a nil pointer whose String would panic
// is printed as fmt prints it.
func TestRedactAttrKeepsNilStringer(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(newRedactingHandler(slog.NewTextHandler(&buf, nil)))
	var u *url.URL
	log.Info("nil", "url", u)
	require.Contains(t, buf.String(), "url=<nil>")
}
