package mcpeverything_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/connection/mcpeverything"
)

// fatalRecorder records the first Fatalf and ends the goroutine, as
// testing.T does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestStartFailsWhenNotInstalled(t *testing.T) {
	// A repository without node_modules.
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/x\n"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "pkg"), 0o755))
	t.Chdir(filepath.Join(dir, "pkg"))

	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		mcpeverything.Start(rec)
	}()
	<-done
	require.Contains(t, rec.msg, "node_modules/.bin/mcp-server-everything is not installed")
	require.Contains(t, rec.msg, "make test")
}
