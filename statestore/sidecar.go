package statestore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	daprdeploy "github.com/budhq/bud/deploy/dapr"
)

// EnvDaprd names the daprd executable when SidecarOptions.Binary is empty.
const EnvDaprd = "BUD_DAPRD"

// DefaultTablePrefix prefixes the state table of a sidecar started without a
// TablePrefix: documents live in table dapr_state, next to dapr_metadata.
const DefaultTablePrefix = "dapr_"

const (
	defaultStartTimeout = 60 * time.Second
	// daprd shuts down gracefully in under two seconds; the rest is margin.
	stopGrace = 10 * time.Second
	tailLines = 20
)

// SidecarOptions configure a daprd child process.
type SidecarOptions struct {
	// Binary is the daprd executable. Empty means $BUD_DAPRD, else daprd
	// next to the running executable, else bin/daprd of the module above the
	// working directory, where `make daprd` builds it (see FindDaprd).
	Binary string
	// AppID is daprd's app id (default "bud"). The state store does not
	// prefix keys with it, so sidecars with different ids share documents.
	AppID string
	// HTTPPort and GRPCPort are the ports of daprd's HTTP and gRPC APIs on
	// 127.0.0.1; 0 picks a free port.
	HTTPPort, GRPCPort int
	// ComponentsDir is the resources directory daprd loads. Empty means the
	// components embedded from deploy/dapr, written to a temporary directory
	// that Stop removes.
	ComponentsDir string
	// DatabaseURL is the state store's Postgres connection string, given to
	// daprd as BUD_STATESTORE_DATABASE_URL. Required with the embedded
	// components.
	DatabaseURL string
	// TablePrefix prefixes the state table's name (default
	// DefaultTablePrefix), given to daprd as BUD_STATESTORE_TABLE_PREFIX.
	TablePrefix string
	// StartTimeout bounds the wait for daprd to become healthy (default 60s).
	StartTimeout time.Duration
	// Logger receives daprd's log lines (warnings and worse) at their level;
	// nil discards them.
	Logger *slog.Logger
	// Stdout and Stderr, when set, receive daprd's raw output.
	Stdout, Stderr io.Writer
}

// Sidecar is a running daprd child process with no app channel and no
// actors: Bud uses it for the state API only.
type Sidecar struct {
	cmd      *exec.Cmd
	httpAddr string
	grpcAddr string
	tempDir  string
	tail     *lineTail

	done    chan struct{} // closed when daprd has exited
	waitErr error         // how daprd exited; set before done is closed

	stopOnce sync.Once
	stopErr  error
}

// StartSidecar starts daprd and waits until GET /v1.0/healthz/outbound
// answers 204, that is until its components are loaded and its APIs serve.
// If daprd exits first, or does not get healthy within StartTimeout, the
// error quotes daprd's last log lines. Cancelling ctx aborts the start; once
// started, the process lives until Stop.
func StartSidecar(ctx context.Context, o SidecarOptions) (*Sidecar, error) {
	binary := o.Binary
	if binary == "" {
		b, err := FindDaprd()
		if err != nil {
			return nil, err
		}
		binary = b
	} else if err := checkExecutable(binary); err != nil {
		return nil, err
	}
	if o.AppID == "" {
		o.AppID = "bud"
	}
	if o.TablePrefix == "" {
		o.TablePrefix = DefaultTablePrefix
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = defaultStartTimeout
	}
	if o.ComponentsDir == "" && o.DatabaseURL == "" {
		return nil, errors.New("statestore: start sidecar: DatabaseURL is required")
	}
	resources := o.ComponentsDir
	var tempDir string
	if resources == "" {
		dir, err := writeComponents()
		if err != nil {
			return nil, err
		}
		tempDir, resources = dir, dir
	}

	// A port picked here is free when picked, not necessarily when daprd
	// binds it: another process may take it in between. With picked ports,
	// a start that fails on a taken port is retried on new ones.
	picked := o.HTTPPort == 0 || o.GRPCPort == 0
	for attempt := 1; ; attempt++ {
		s, err := launch(ctx, o, binary, resources)
		if err == nil {
			s.tempDir = tempDir
			return s, nil
		}
		if !picked || attempt == 3 || !errors.Is(err, errPortTaken) {
			if tempDir != "" {
				_ = os.RemoveAll(tempDir)
			}
			return nil, err
		}
	}
}

// errPortTaken marks a start that failed because daprd could not bind a port.
var errPortTaken = errors.New("port taken")

// launch starts one daprd and waits until it is healthy.
func launch(ctx context.Context, o SidecarOptions, binary, resources string) (*Sidecar, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	if o.HTTPPort == 0 {
		o.HTTPPort = ports[0]
	}
	if o.GRPCPort == 0 {
		o.GRPCPort = ports[1]
	}
	s := &Sidecar{
		httpAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(o.HTTPPort)),
		grpcAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(o.GRPCPort)),
		tail:     &lineTail{max: tailLines},
		done:     make(chan struct{}),
	}
	s.cmd = exec.Command(binary,
		"--app-id", o.AppID,
		"--dapr-http-port", strconv.Itoa(o.HTTPPort),
		"--dapr-grpc-port", strconv.Itoa(o.GRPCPort),
		"--dapr-internal-grpc-port", strconv.Itoa(ports[2]),
		"--dapr-listen-addresses", "127.0.0.1",
		"--dapr-internal-grpc-listen-address", "127.0.0.1",
		"--resources-path", resources,
		"--placement-host-address", "",
		"--enable-metrics=false",
		"--log-level", "warn",
		"--log-as-json",
	)
	s.cmd.Env = append(os.Environ(),
		daprdeploy.EnvDatabaseURL+"="+o.DatabaseURL,
		daprdeploy.EnvTablePrefix+"="+o.TablePrefix,
	)
	s.cmd.Stdout = &lineSink{tail: s.tail, raw: o.Stdout, logger: o.Logger}
	s.cmd.Stderr = &lineSink{tail: s.tail, raw: o.Stderr, logger: o.Logger}
	s.cmd.SysProcAttr = sysProcAttr()
	started := make(chan error, 1)
	go func() {
		// The parent-death signal fires when the thread that forked exits,
		// not the process: hold that thread while daprd runs.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := s.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("statestore: start daprd: %w", err)
	}
	if err := s.waitHealthy(ctx, o.StartTimeout); err != nil {
		_ = s.Stop()
		if s.tail.contains("address already in use") {
			return nil, fmt.Errorf("%w (%w)", err, errPortTaken)
		}
		return nil, err
	}
	return s, nil
}

// waitHealthy polls daprd's outbound health endpoint until it answers 204.
func (s *Sidecar) waitHealthy(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := "http://" + s.httpAddr + "/v1.0/healthz/outbound"
	client := &http.Client{Timeout: time.Second}
	last := errors.New("no answer yet")
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("statestore: health request: %w", err)
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
			last = fmt.Errorf("healthz/outbound answered %d", resp.StatusCode)
		} else {
			last = err
		}
		select {
		case <-s.done:
			return fmt.Errorf("statestore: daprd exited during start-up (%v); its last lines:\n%s", s.waitErr, s.tail.String())
		case <-ctx.Done():
			return fmt.Errorf("statestore: daprd not healthy after %s (%v); its last lines:\n%s", timeout, last, s.tail.String())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// GRPCAddr is the address of daprd's gRPC API, for NewStore.
func (s *Sidecar) GRPCAddr() string { return s.grpcAddr }

// HTTPAddr is the address of daprd's HTTP API.
func (s *Sidecar) HTTPAddr() string { return s.httpAddr }

// Done is closed when daprd has exited, whether stopped or not.
func (s *Sidecar) Done() <-chan struct{} { return s.done }

// Stop sends daprd SIGTERM, waits for it to exit, and kills it if it has not
// within 10 seconds. It returns an error when daprd had to be killed or
// exited with a failure; later calls return the same result.
func (s *Sidecar) Stop() error {
	s.stopOnce.Do(func() {
		s.stopErr = s.stop()
		s.removeTemp()
	})
	return s.stopErr
}

func (s *Sidecar) stop() error {
	select {
	case <-s.done:
		if s.waitErr != nil {
			return fmt.Errorf("statestore: daprd had exited: %w; its last lines:\n%s", s.waitErr, s.tail.String())
		}
		return nil
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("statestore: stop daprd: %w", err)
	}
	select {
	case <-s.done:
		if s.waitErr != nil {
			return fmt.Errorf("statestore: daprd stopped with %w", s.waitErr)
		}
		return nil
	case <-time.After(stopGrace):
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	return fmt.Errorf("statestore: daprd did not stop within %s and was killed", stopGrace)
}

func (s *Sidecar) removeTemp() {
	if s.tempDir != "" {
		_ = os.RemoveAll(s.tempDir)
	}
}

// FindDaprd returns the daprd executable StartSidecar uses when no Binary is
// given: $BUD_DAPRD if set, else daprd next to the running executable (bin/
// holds both bud and daprd), else bin/daprd of the github.com/budhq/bud
// module at or above the working directory. The error says how to get one.
func FindDaprd() (string, error) {
	if p := os.Getenv(EnvDaprd); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("%w (from $%s)", err, EnvDaprd)
		}
		return p, nil
	}
	var tried []string
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "daprd")
		if checkExecutable(p) == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	if root, ok := moduleRoot(); ok {
		p := filepath.Join(root, "bin", "daprd")
		err := checkExecutable(p)
		if err == nil {
			return p, nil
		}
		return "", err
	}
	return "", fmt.Errorf("statestore: daprd not found (looked for %s and for the module's bin/daprd): run `make daprd` in the repository, or set %s: %w",
		strings.Join(tried, ", "), EnvDaprd, fs.ErrNotExist)
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("statestore: daprd not found at %s: run `make daprd`, or set %s: %w", path, EnvDaprd, err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("statestore: %s is not an executable daprd: run `make daprd`, or set %s", path, EnvDaprd)
	}
	return nil
}

// moduleRoot walks up from the working directory to the directory whose
// go.mod declares github.com/budhq/bud (not a nested module's).
func moduleRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && declaresBud(b) {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

func declaresBud(gomod []byte) bool {
	for _, line := range bytes.Split(gomod, []byte("\n")) {
		if f := strings.Fields(string(line)); len(f) == 2 && f[0] == "module" {
			return f[1] == "github.com/budhq/bud"
		}
	}
	return false
}

// writeComponents copies the embedded components into a new temporary
// directory. They hold no secrets: the connection string reaches daprd
// through its environment.
func writeComponents() (string, error) {
	dir, err := os.MkdirTemp("", "bud-dapr-")
	if err != nil {
		return "", fmt.Errorf("statestore: components directory: %w", err)
	}
	err = fs.WalkDir(daprdeploy.Components, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(daprdeploy.Components, path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, filepath.Base(path)), b, 0o600)
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("statestore: write components: %w", err)
	}
	return dir, nil
}

// freePorts asks the kernel for n distinct free ports on 127.0.0.1. The
// listeners are held until all are chosen so the ports differ.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("statestore: free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// lineTail keeps daprd's last lines for error messages.
type lineTail struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (t *lineTail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == t.max {
		t.lines = append(t.lines[:0], t.lines[1:]...)
	}
	t.lines = append(t.lines, line)
}

func (t *lineTail) contains(sub string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range t.lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

func (t *lineTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return "  (no output)"
	}
	return "  " + strings.Join(t.lines, "\n  ")
}

// lineSink receives one of daprd's output streams. exec copies the stream
// into it from a single goroutine, so a sink needs no lock of its own.
type lineSink struct {
	tail    *lineTail
	raw     io.Writer
	logger  *slog.Logger
	partial []byte
}

func (w *lineSink) Write(p []byte) (int, error) {
	if w.raw != nil {
		_, _ = w.raw.Write(p)
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.line(w.partial[:i])
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > 64<<10 { // a line this long is not a log line; flush it
		w.line(w.partial)
		w.partial = nil
	}
	return len(p), nil
}

// daprdLine is one line of daprd's --log-as-json output.
type daprdLine struct {
	Level string `json:"level"`
	Msg   string `json:"msg"`
	Scope string `json:"scope"`
}

// benign reports the warnings every daprd without mTLS, app or metrics
// configuration prints at start; they say nothing about Bud's setup, so they
// are logged at debug.
func benign(msg string) bool {
	return strings.Contains(msg, "mTLS is disabled") ||
		strings.Contains(msg, "increasedCardinality") ||
		strings.Contains(msg, "App channel is not initialized")
}

func (w *lineSink) line(b []byte) {
	b = bytes.TrimRight(b, "\r")
	if len(bytes.TrimSpace(b)) == 0 {
		return
	}
	var l daprdLine
	if err := json.Unmarshal(b, &l); err != nil || l.Msg == "" {
		// Not a log line: a panic, or output before the logger is set up.
		w.tail.add(string(b))
		if w.logger != nil {
			w.logger.Warn(string(b), "from", "daprd")
		}
		return
	}
	w.tail.add(l.Level + ": " + l.Msg)
	if w.logger == nil {
		return
	}
	level := slog.LevelWarn
	switch l.Level {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	case "error", "fatal":
		level = slog.LevelError
	}
	if benign(l.Msg) {
		level = slog.LevelDebug
	}
	w.logger.Log(context.Background(), level, l.Msg, "from", "daprd", "scope", l.Scope)
}
