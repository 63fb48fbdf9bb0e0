package temporalserver

import (
	"fmt"
	"log/slog"
	"os"

	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
)

// slogLogger forwards the server's errors to slog. The server's info and
// warning lines are start-up chatter for a single-node dev server, so they
// go to debug.
type slogLogger struct{ l *slog.Logger }

var _ log.Logger = slogLogger{}

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
func (s slogLogger) Error(msg string, tags ...tag.Tag) { s.l.Error(msg, attrs(tags)...) }
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
