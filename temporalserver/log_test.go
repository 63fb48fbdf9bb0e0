package temporalserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"go.temporal.io/server/common/log/tag"
)

// TestCancelledErrorsAreQuietOnceStopping: the server's errors about
// operations a stop cancels go to debug once Stop has begun, and only then;
// other errors stay errors.
func TestCancelledErrorsAreQuietOnceStopping(t *testing.T) {
	var buf bytes.Buffer
	stopping := new(atomic.Bool)
	l := slogLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})), stopping}
	wrapped := fmt.Errorf("update: %w", context.Canceled)

	l.Error("update failed", tag.Error(wrapped))
	stopping.Store(true)
	l.Error("update failed while stopping", tag.Error(wrapped))
	l.Error("as text while stopping", tag.Error(errors.New("rpc error: code = Canceled desc = context canceled")))
	l.Error("disk full while stopping", tag.Error(errors.New("disk full")))

	out := buf.String()
	for _, want := range []string{"update failed", "disk full while stopping"} {
		if !strings.Contains(out, "msg=\""+want+"\"") {
			t.Errorf("%q not logged as an error:\n%s", want, out)
		}
	}
	for _, quiet := range []string{"update failed while stopping", "as text while stopping"} {
		if strings.Contains(out, quiet) {
			t.Errorf("%q logged as an error:\n%s", quiet, out)
		}
	}
}
