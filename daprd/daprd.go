// Package daprd runs daprd, the Dapr sidecar, as a child process for `bud
// dev` and the tests. In production daprd is deployed next to Bud instead;
// either way package statestore is the client of its state API.
package daprd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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

// EnvBinary names the daprd executable when Config.Binary is empty.
const EnvBinary = "BUD_DAPRD"

// DefaultTablePrefix prefixes the state table of a sidecar started without a
// TablePrefix: documents live in table dapr_state, next to dapr_metadata.
const DefaultTablePrefix = "dapr_"

const (
	defaultStartTimeout = 60 * time.Second
	// daprd shuts down gracefully in under two seconds; the rest is margin.
	stopGrace = 10 * time.Second
	tailLines = 20
)

// Config configures a daprd child process.
type Config struct {
	// Binary is the daprd executable. Empty means $BUD_DAPRD, else daprd
	// next to the running executable, else bin/daprd of the module above the
	// working directory, where `make daprd` builds it (see FindBinary).
	Binary string
	// AppID is daprd's app id (default "bud"). The state store does not
	// prefix keys with it, so sidecars with different ids share documents.
	AppID string
	// HTTPPort and GRPCPort are the ports of daprd's HTTP and gRPC APIs on
	// 127.0.0.1; 0 picks a free port.
	HTTPPort, GRPCPort int
	// ComponentsDir is the resources directory daprd loads. Empty means the
	// components embedded from deploy/dapr, written to a temporary directory
	// that Stop removes. With a directory of your own, start-up waits for
	// daprd's health endpoint only, not for each component.
	ComponentsDir string
	// DatabaseURL is the state store's Postgres connection string, given to
	// daprd as BUD_STATESTORE_DATABASE_URL. Required with the embedded
	// components.
	DatabaseURL string
	// TablePrefix prefixes the state table's name (default
	// DefaultTablePrefix), given to daprd as BUD_STATESTORE_TABLE_PREFIX.
	TablePrefix string
	// APIToken is the token daprd requires on every call to its APIs, in
	// the dapr-api-token header or gRPC metadata (daprd reads it from
	// DAPR_API_TOKEN). Empty means a random one per Start, which
	// Sidecar.APIToken returns: without one, any local process could read
	// and write the state store.
	APIToken string
	// StartTimeout bounds the wait for daprd to become healthy (default 60s).
	StartTimeout time.Duration
	// Logger receives daprd's log lines: warnings and errors at their
	// level, its start-up narration at debug. Nil discards them.
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
	apiToken string
	tempDir  string
	out      *output

	done    chan struct{} // closed when daprd has exited
	waitErr error         // how daprd exited; set before done is closed

	stopOnce sync.Once
	stopErr  error
}

// Start starts daprd and waits until GET /v1.0/healthz/outbound answers 204
// and, with the embedded components, the state store is loaded. If daprd
// exits first, or does not get healthy within StartTimeout, the error quotes
// daprd's last log lines. Cancelling ctx aborts the start; once started, the
// process lives until Stop.
func Start(ctx context.Context, cfg Config) (*Sidecar, error) {
	binary := cfg.Binary
	if binary == "" {
		b, err := FindBinary()
		if err != nil {
			return nil, err
		}
		binary = b
	} else if err := checkExecutable(binary); err != nil {
		return nil, err
	}
	if cfg.AppID == "" {
		cfg.AppID = "bud"
	}
	if cfg.TablePrefix == "" {
		cfg.TablePrefix = DefaultTablePrefix
	}
	if cfg.APIToken == "" {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("daprd: start: API token: %w", err)
		}
		cfg.APIToken = hex.EncodeToString(b[:])
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = defaultStartTimeout
	}
	if cfg.ComponentsDir == "" && cfg.DatabaseURL == "" {
		return nil, errors.New("daprd: start: DatabaseURL is required")
	}
	resources := cfg.ComponentsDir
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
	picked := cfg.HTTPPort == 0 || cfg.GRPCPort == 0
	for attempt := 1; ; attempt++ {
		s, err := launch(ctx, cfg, binary, resources)
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
func launch(ctx context.Context, cfg Config, binary, resources string) (*Sidecar, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = ports[0]
	}
	if cfg.GRPCPort == 0 {
		cfg.GRPCPort = ports[1]
	}
	s := &Sidecar{
		httpAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.HTTPPort)),
		grpcAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.GRPCPort)),
		apiToken: cfg.APIToken,
		out:      &output{listening: map[string]bool{}},
		done:     make(chan struct{}),
	}
	s.cmd = exec.Command(binary,
		"--app-id", cfg.AppID,
		"--dapr-http-port", strconv.Itoa(cfg.HTTPPort),
		"--dapr-grpc-port", strconv.Itoa(cfg.GRPCPort),
		"--dapr-internal-grpc-port", strconv.Itoa(ports[2]),
		"--dapr-listen-addresses", "127.0.0.1",
		"--dapr-internal-grpc-listen-address", "127.0.0.1",
		"--resources-path", resources,
		"--placement-host-address", "",
		"--enable-metrics=false",
		// Info, not warn: the lines saying which addresses this daprd
		// listens on tell it apart from another daprd that took the port.
		"--log-level", "info",
		"--log-as-json",
	)
	s.cmd.Env = append(os.Environ(),
		daprdeploy.EnvDatabaseURL+"="+cfg.DatabaseURL,
		daprdeploy.EnvTablePrefix+"="+cfg.TablePrefix,
		// Last, so it wins over a DAPR_API_TOKEN of the environment.
		daprdeploy.EnvAPIToken+"="+cfg.APIToken,
	)
	s.cmd.Stdout = &lineSink{out: s.out, raw: cfg.Stdout, logger: cfg.Logger}
	s.cmd.Stderr = &lineSink{out: s.out, raw: cfg.Stderr, logger: cfg.Logger}
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
		return nil, fmt.Errorf("daprd: start: %w", err)
	}
	var want []string
	if cfg.ComponentsDir == "" {
		want = []string{daprdeploy.StateStoreName}
	}
	if err := s.waitHealthy(ctx, cfg.StartTimeout, want); err != nil {
		_ = s.Stop()
		if s.out.contains("address already in use") {
			return nil, fmt.Errorf("%w (%w)", err, errPortTaken)
		}
		return nil, err
	}
	return s, nil
}

// waitHealthy polls daprd until it has said it listens on its HTTP and gRPC
// addresses, its outbound health endpoint answers 204 and its metadata
// lists every component in want. The last is needed because daprd reports
// healthy even when a component failed to initialise, and exits only a
// moment later.
func (s *Sidecar) waitHealthy(ctx context.Context, timeout time.Duration, want []string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	var last error
	for {
		last = s.ready(ctx, client, want)
		if last == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("daprd: start: daprd exited during start-up (%v); its last lines:\n%s", s.waitErr, s.out.String())
		case <-ctx.Done():
			return fmt.Errorf("daprd: start: daprd not healthy after %s (%v); its last lines:\n%s", timeout, last, s.out.String())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func (s *Sidecar) ready(ctx context.Context, client *http.Client, want []string) error {
	// A port picked free may have been taken by another daprd starting at
	// the same time, which would answer in this one's place; only this
	// process's own output says it listens there.
	for _, addr := range []string{s.httpAddr, s.grpcAddr} {
		if !s.out.isListening(addr) {
			return fmt.Errorf("not yet listening on %s", addr)
		}
	}
	resp, err := s.get(ctx, client, "/v1.0/healthz/outbound")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("healthz/outbound answered %d", resp.StatusCode)
	}
	if len(want) == 0 {
		return nil
	}
	resp, err = s.get(ctx, client, "/v1.0/metadata")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var md struct {
		Components []struct {
			Name string `json:"name"`
		} `json:"components"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	loaded := map[string]bool{}
	for _, c := range md.Components {
		loaded[c.Name] = true
	}
	for _, name := range want {
		if !loaded[name] {
			return fmt.Errorf("component %s not loaded", name)
		}
	}
	return nil
}

func (s *Sidecar) get(ctx context.Context, client *http.Client, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.httpAddr+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(daprdeploy.APITokenHeader, s.apiToken)
	return client.Do(req)
}

// APIToken is the token daprd requires on every API call; pass it to
// statestore.WithAPIToken.
func (s *Sidecar) APIToken() string { return s.apiToken }

// GRPCAddr is the address of daprd's gRPC API, for statestore.NewStore.
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
			return fmt.Errorf("daprd: stop: daprd had exited: %w; its last lines:\n%s", s.waitErr, s.out.String())
		}
		return nil
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("daprd: stop: %w", err)
	}
	select {
	case <-s.done:
		if s.waitErr != nil {
			return fmt.Errorf("daprd: stop: daprd stopped with %w", s.waitErr)
		}
		return nil
	case <-time.After(stopGrace):
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	return fmt.Errorf("daprd: stop: daprd did not stop within %s and was killed", stopGrace)
}

func (s *Sidecar) removeTemp() {
	if s.tempDir != "" {
		_ = os.RemoveAll(s.tempDir)
	}
}

// FindBinary returns the daprd executable Start uses when Config.Binary is
// empty: $BUD_DAPRD if set, else daprd next to the running executable (bin/
// holds both bud and daprd), else bin/daprd of the github.com/budhq/bud
// module at or above the working directory. The error says how to get one.
func FindBinary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("%w (from $%s)", err, EnvBinary)
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
	return "", fmt.Errorf("daprd: not found (looked for %s and for the module's bin/daprd): run `make daprd` in the repository, or set %s: %w",
		strings.Join(tried, ", "), EnvBinary, fs.ErrNotExist)
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("daprd: not found at %s: run `make daprd`, or set %s: %w", path, EnvBinary, err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("daprd: %s is not an executable daprd: run `make daprd`, or set %s", path, EnvBinary)
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
		return "", fmt.Errorf("daprd: components directory: %w", err)
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
		return "", fmt.Errorf("daprd: write components: %w", err)
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
			return nil, fmt.Errorf("daprd: free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// output is what Sidecar keeps of daprd's output: the last warnings
// and errors, for error messages, and the addresses it said it listens on.
type output struct {
	mu        sync.Mutex
	tail      []string
	listening map[string]bool
}

func (o *output) add(line string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.tail) == tailLines {
		o.tail = append(o.tail[:0], o.tail[1:]...)
	}
	o.tail = append(o.tail, line)
}

func (o *output) listen(addr string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.listening[addr] = true
}

func (o *output) isListening(addr string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.listening[addr]
}

func (o *output) contains(sub string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, l := range o.tail {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.tail) == 0 {
		return "  (no warnings or errors)"
	}
	return "  " + strings.Join(o.tail, "\n  ")
}

// lineSink receives one of daprd's output streams. exec copies the stream
// into it from a single goroutine, so a sink needs no lock of its own.
type lineSink struct {
	out     *output
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

// logLine is one line of daprd's --log-as-json output.
type logLine struct {
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

// listeningPrefix starts daprd's line for each server it has bound
// ("HTTP server listening on TCP address: 127.0.0.1:3500", likewise gRPC).
const listeningPrefix = "server listening on TCP address: "

func (w *lineSink) line(b []byte) {
	b = bytes.TrimRight(b, "\r")
	if len(bytes.TrimSpace(b)) == 0 {
		return
	}
	var l logLine
	if err := json.Unmarshal(b, &l); err != nil || l.Msg == "" {
		// Not a log line: a panic, or output before the logger is set up.
		w.out.add(string(b))
		if w.logger != nil {
			w.logger.Warn(string(b), "from", "daprd")
		}
		return
	}
	if _, addr, ok := strings.Cut(l.Msg, listeningPrefix); ok {
		w.out.listen(strings.TrimSpace(addr))
	}
	// daprd's info lines narrate its start-up (some forty lines); they go
	// to the logger at debug and stay out of error messages.
	level := slog.LevelDebug
	switch l.Level {
	case "warning":
		level = slog.LevelWarn
		if benign(l.Msg) {
			level = slog.LevelDebug
		}
	case "error", "fatal":
		level = slog.LevelError
	}
	if level > slog.LevelDebug {
		w.out.add(l.Level + ": " + l.Msg)
	}
	if w.logger != nil {
		w.logger.Log(context.Background(), level, l.Msg, "from", "daprd", "scope", l.Scope)
	}
}
