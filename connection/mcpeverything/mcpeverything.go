// Package mcpeverything runs mcp-server-everything, the MCP project's
// reference server (npm @modelcontextprotocol/server-everything, pinned by
// the repository's package-lock.json), for tests that need a real MCP
// server nobody here wrote. `make test` installs it into node_modules.
package mcpeverything

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the server's command, below the repository root.
const binary = "node_modules/.bin/mcp-server-everything"

// readyLine is what the server prints to stderr once it listens.
const readyLine = "MCP Streamable HTTP Server listening on port"

// startTimeout bounds the wait for the server to listen.
const startTimeout = 60 * time.Second

// Start runs the server with its streamable HTTP transport on a free
// loopback port and returns its MCP endpoint, http://127.0.0.1:PORT/mcp.
// The server (its whole process group) is killed when t ends. Start fails
// t when the server is not installed or does not come up.
func Start(t testing.TB) (url string) {
	t.Helper()
	bin := find(t)
	port := freePort(t)

	out := &output{ready: make(chan struct{})}
	cmd := exec.Command(bin, "streamableHttp")
	// Only what node needs: the server has a tool (get-env) that returns
	// its environment to any client.
	cmd.Env = []string{"PORT=" + strconv.Itoa(port), "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	cmd.Stdout = out
	cmd.Stderr = out
	// Its own process group, so cleanup ends node and anything it starts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("mcpeverything: starting %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-out.ready:
	case err := <-exited:
		exited <- err // for the cleanup
		t.Fatalf("mcpeverything: %s exited before listening (%v); its output:\n%s", bin, err, out.String())
	case <-timer.C:
		t.Fatalf("mcpeverything: %s did not listen within %s; its output:\n%s", bin, startTimeout, out.String())
	}
	return fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
}

// find walks up from the working directory (the package under test) to
// the repository root's node_modules.
func find(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("mcpeverything: %v", err)
	}
	for {
		candidate := filepath.Join(dir, binary)
		if _, err := os.Stat(candidate); err == nil {
			return candidate
		}
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			t.Fatalf("mcpeverything: %s is not installed at the repository root %s: run `make test` (it runs npm ci), or `make %s`", binary, dir, binary)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("mcpeverything: no %s above the working directory, and no go.mod: run the tests from the repository with `make test`", binary)
		}
		dir = parent
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mcpeverything: finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// output collects the server's output and closes ready when it says it
// listens.
type output struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
	seen  bool
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	if !o.seen && strings.Contains(o.buf.String(), readyLine) {
		o.seen = true
		close(o.ready)
	}
	return len(p), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}
