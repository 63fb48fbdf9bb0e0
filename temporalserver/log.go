package temporalserver

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"

	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
)

// slogLogger forwards the server's errors to slog. The server's info and
// warning lines are start-up chatter for a single-node dev server, so they
// go to debug, as do, once the server is stopping, its errors about
// operations the stop cancelled: runs in flight then (their answers may
// already be out) finish on the next start, and nothing is lost.
type slogLogger struct {
	l        *slog.Logger
	stopping *atomic.Bool
}

var _ log.Logger = slogLogger{}

// cancelled reports whether tags carry an error of a cancelled operation.
func cancelled(tags []tag.Tag) bool {
	for _, t := range tags {
		// tag.Error's value is the error's text.
		if v, ok := t.Value().(string); ok && t.Key() == "error" && strings.Contains(v, context.Canceled.Error()) {
			return true
		}
	}
	return false
}

func attrs(tags []tag.Tag) []any {
	out := make([]any, 0, len(tags)+1)
	out = append(out, "component", "temporal")
	for _, t := range tags {
		out = append(out, slog.Any(t.Key(), t.Value()))
	}
	return out
}

func (s slogLogger) Debug(msg string, tags ...tag.Tag) {}
func (s slogLogger) Info(msg string, tags ...tag.Tag)  { s.l.Debug(msg, attrs(tags)...) }
func (s slogLogger) Warn(msg string, tags ...tag.Tag)  { s.l.Debug(msg, attrs(tags)...) }
func (s slogLogger) Error(msg string, tags ...tag.Tag) {
	if s.stopping != nil && s.stopping.Load() && cancelled(tags) {
		s.l.Debug(msg, attrs(tags)...)
		return
	}
	s.l.Error(msg, attrs(tags)...)
}
func (s slogLogger) DPanic(msg string, tags ...tag.Tag) {
	s.l.Error(msg, attrs(tags)...)
}
func (s slogLogger) Panic(msg string, tags ...tag.Tag) {
	s.l.Error(msg, attrs(tags)...)
	panic(msg)
}
func (s slogLogger) Fatal(msg string, tags ...tag.Tag) {
	s.l.Error(msg, attrs(tags)...)
	fmt.Fprintln(os.Stderr, "temporal server: fatal:", msg)
	os.Exit(1)
}

// quietSDKLogger drops the SDK client's own logging while polling readiness.
type quietSDKLogger struct{}

func (quietSDKLogger) Debug(string, ...any) {}
func (quietSDKLogger) Info(string, ...any)  {}
func (quietSDKLogger) Warn(string, ...any)  {}
func (quietSDKLogger) Error(string, ...any) {}
