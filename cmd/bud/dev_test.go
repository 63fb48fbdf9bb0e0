package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/temporalserver"
)

// budBinary is built once by TestMain so the end-to-end tests run the real
// binary, as a user would.
var budBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bud-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	budBinary = filepath.Join(dir, "bud")
	out, err := exec.Command("go", "build", "-o", budBinary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback address nobody listens on, for a process the
// test starts, picked as the embedded Temporal picks its own (below the
// kernel's ephemeral range). No port is handed out twice in one test
// binary, since the process a port was meant for may not listen on it yet.
func freePort(t *testing.T) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		port, err := temporalserver.FreePort("127.0.0.1")
		require.NoError(t, err)
		if !portsGiven[port] {
			portsGiven[port] = true
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		}
	}
	t.Fatal("no free port found")
	return ""
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// devProcess is a running `bud dev`.
type devProcess struct {
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
	done   chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type devEnv struct {
	dbURL, dataDir                         string
	gateway, app, worker, temporal, uiAddr string
	standIn, nats, metrics                 string
	// env is more of the environment of `bud dev`, after the rest: it wins.
	env []string
}

func newDevEnv(t *testing.T) devEnv {
	return devEnv{
		dbURL:    dbtest.NewDatabase(t),
		dataDir:  t.TempDir(),
		gateway:  freePort(t),
		app:      freePort(t),
		worker:   freePort(t),
		temporal: freePort(t),
		uiAddr:   freePort(t),
		standIn:  freePort(t),
		nats:     freePort(t),
		metrics:  freePort(t),
	}
}

// start runs `bud dev` and waits until it prints "Press Ctrl-C to stop."
func (e devEnv) start(t *testing.T) *devProcess {
	t.Helper()
	cmd := exec.Command(budBinary, "dev")
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+e.dbURL,
		"BUD_DATA_DIR="+e.dataDir,
		"BUD_GATEWAY_ADDR="+e.gateway,
		"BUD_APP_ADDR="+e.app,
		"BUD_WORKER_ADDR="+e.worker,
		"BUD_METRICS_ADDR="+e.metrics,
		"TEMPORAL_ADDRESS="+e.temporal,
		"TEMPORAL_UI_ADDRESS="+e.uiAddr,
		"BUD_STAND_IN_ADDR="+e.standIn,
		"BUD_NATS_ADDR="+e.nats, "BUD_NATS_URL=",
		"BUD_ADMIN_TOKEN=", "BUD_ENCRYPTION_KEY=",
	)
	cmd.Env = append(cmd.Env, e.env...)
	p := &devProcess{cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan error, 1)}
	pr, pw := io.Pipe()
	cmd.Stdout = io.MultiWriter(p.stdout, pw)
	cmd.Stderr = p.stderr
	require.NoError(t, cmd.Start())
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Press Ctrl-C to stop.") {
				close(ready)
				break
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		p.done <- cmd.Wait()
		pw.Close()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	select {
	case <-ready:
	case err := <-p.done:
		t.Fatalf("bud dev exited before it was ready: %v\nstdout:\n%s\nstderr:\n%s", err, p.stdout, p.stderr)
	case <-time.After(2 * time.Minute):
		t.Fatalf("bud dev not ready after 2 minutes\nstdout:\n%s\nstderr:\n%s", p.stdout, p.stderr)
	}
	return p
}

// stop sends Ctrl-C and requires a clean exit within a few seconds.
func (p *devProcess) stop(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
	select {
	case err := <-p.done:
		require.NoError(t, err, "stderr:\n%s", p.stderr)
	case <-time.After(20 * time.Second):
		t.Fatalf("bud dev did not stop within 20s after Ctrl-C\nstderr:\n%s", p.stderr)
	}
	return time.Since(start)
}

type apiClient struct {
	t     *testing.T
	base  string
	token string
}

func (c apiClient) do(method, path string, body any, want int, out any) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(c.t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	require.NoError(c.t, err)
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	require.Equal(c.t, want, resp.StatusCode, "%s %s: %s", method, path, raw)
	if out != nil {
		require.NoError(c.t, json.Unmarshal(raw, out), "%s", raw)
	}
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// TestDevEndToEnd runs the built binary as a user would: `bud dev` on
// ephemeral ports and a fresh database, creates a project, a deployment and
// a key over HTTP, stops it with Ctrl-C, starts it again and finds them.
func TestDevEndToEnd(t *testing.T) {
	env := newDevEnv(t)
	p := env.start(t)

	out := p.stdout.String()
	for _, want := range []string{"BudGateway", "Dapr", "nats://bud:xxxxx@" + env.nats, "http://" + env.gateway, "http://" + env.app, "http://" + env.metrics + "/metrics", env.temporal, "http://" + env.uiAddr, "Admin token"} {
		require.Contains(t, out, want)
	}
	token, err := os.ReadFile(filepath.Join(env.dataDir, "admin-token"))
	require.NoError(t, err)
	api := apiClient{t: t, base: "http://" + env.app, token: strings.TrimSpace(string(token))}
	require.Contains(t, out, api.token, "the banner prints the generated admin token")

	for _, u := range []string{"http://" + env.app, "http://" + env.gateway, "http://" + env.worker} {
		require.Equal(t, http.StatusOK, get(t, u+"/healthz"), u)
		require.Equal(t, http.StatusOK, get(t, u+"/readyz"), u)
	}
	require.Equal(t, http.StatusOK, get(t, "http://"+env.uiAddr+"/"), "Temporal UI")

	// Without the token: 401.
	apiClient{t: t, base: api.base, token: "wrong"}.do("GET", "/api/projects", nil, http.StatusUnauthorized, nil)

	var project struct{ ID, Name string }
	api.do("POST", "/api/projects", map[string]any{"name": "demo", "description": "end to end"}, http.StatusCreated, &project)
	var dep struct {
		ID, Name string
		Upstream struct {
			BaseURL   string `json:"base_url"`
			APIKeySet bool   `json:"api_key_set"`
		}
	}
	api.do("POST", "/api/projects/"+project.ID+"/deployments", map[string]any{
		"name": "qwen3-32b", "kind": "model",
		"upstream":       map[string]any{"base_url": "http://127.0.0.1:9/v1", "model": "Qwen/Qwen3-32B", "api_key": "sk-upstream"},
		"default_params": map[string]any{"temperature": 0.2},
	}, http.StatusCreated, &dep)
	require.True(t, dep.Upstream.APIKeySet)
	var key struct{ ID, Secret string }
	api.do("POST", "/api/projects/"+project.ID+"/api-keys", map[string]any{"name": "ci"}, http.StatusCreated, &key)
	require.True(t, strings.HasPrefix(key.Secret, "bud-"), key.Secret)

	// The README's offline quickstart: a deployment on the stand-in, called
	// through the gateway with the project's key.
	api.do("POST", "/api/projects/"+project.ID+"/deployments", map[string]any{
		"name": "echo", "kind": "model", "upstream": map[string]any{"base_url": "http://" + env.standIn + "/v1", "model": "stand-in"},
	}, http.StatusCreated, nil)
	chat := apiClient{t: t, base: "http://" + env.gateway, token: key.Secret}
	var completion struct {
		Model   string
		Choices []struct{ Message struct{ Content string } }
	}
	chat.do("POST", "/v1/chat/completions", map[string]any{
		"model": "echo", "messages": []map[string]string{{"role": "user", "content": "hello bud"}},
	}, http.StatusOK, &completion)
	require.Equal(t, "hello bud", completion.Choices[0].Message.Content)

	// A prompt: metadata in Postgres, its document in the Dapr state store.
	var pr struct {
		ID       string
		Document map[string]any
	}
	api.do("POST", "/api/projects/"+project.ID+"/prompts", map[string]any{
		"name": "greeter",
		"document": map[string]any{
			"deployment": "echo",
			"messages":   []any{map[string]any{"role": "user", "content": "Say hello to {{ input }}"}},
		},
	}, http.StatusCreated, &pr)
	require.Equal(t, "echo", pr.Document["deployment"])

	took := p.stop(t)
	t.Logf("bud dev stopped %s after Ctrl-C", took)

	// A second start finds everything: same token, same key, same rows.
	p = env.start(t)
	defer p.stop(t)
	var gotProject struct{ ID, Name string }
	api.do("GET", "/api/projects/"+project.ID, nil, http.StatusOK, &gotProject)
	require.Equal(t, "demo", gotProject.Name)
	var gotDep struct {
		Name     string
		Upstream struct {
			APIKeySet bool `json:"api_key_set"`
		}
	}
	api.do("GET", "/api/projects/"+project.ID+"/deployments/"+dep.ID, nil, http.StatusOK, &gotDep)
	require.Equal(t, "qwen3-32b", gotDep.Name)
	require.True(t, gotDep.Upstream.APIKeySet)
	var keys struct {
		Data []struct {
			ID      string
			Revoked bool
		}
	}
	api.do("GET", "/api/projects/"+project.ID+"/api-keys", nil, http.StatusOK, &keys)
	require.Len(t, keys.Data, 1)
	require.Equal(t, key.ID, keys.Data[0].ID)
	var gotPrompt struct{ Document map[string]any }
	api.do("GET", "/api/prompts/"+pr.ID, nil, http.StatusOK, &gotPrompt)
	require.Equal(t, pr.Document, gotPrompt.Document)
}

// TestDevMetricsPrivate checks that `bud dev` serves every service's
// metrics on the metrics listener alone: they name every project and
// deployment, so the public listeners answer 404.
func TestDevMetricsPrivate(t *testing.T) {
	env := newDevEnv(t)
	p := env.start(t)
	defer p.stop(t)

	for _, u := range []string{"http://" + env.gateway, "http://" + env.app, "http://" + env.worker} {
		require.Equal(t, http.StatusOK, get(t, u+"/healthz"), u)
		require.Equal(t, http.StatusNotFound, get(t, u+"/metrics"), u)
	}
	resp, err := http.Get("http://" + env.metrics + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	for _, want := range []string{"bud_gateway_http_requests_total", "bud_app_http_requests_total", "go_goroutines"} {
		require.Contains(t, string(body), want)
	}
	// The worker's slots and pollers, as the SDK reports them.
	for _, want := range []string{
		`(?m)^temporal_worker_task_slots_available\{[^}]*task_queue="bud-prompt",worker_type="ActivityWorker"[^}]*\} 1000$`,
		`(?m)^temporal_worker_task_slots_used\{[^}]*task_queue="bud-prompt",worker_type="ActivityWorker"[^}]*\} 0$`,
		`(?m)^temporal_num_pollers\{[^}]*poller_type="activity_task",task_queue="bud-prompt"[^}]*\} 2$`,
	} {
		// The SDK sets its gauges as its pollers start: asked again until
		// they have.
		re := regexp.MustCompile(want)
		require.Eventually(t, func() bool {
			resp, err := http.Get("http://" + env.metrics + "/metrics")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			return err == nil && re.Match(b)
		}, 10*time.Second, 50*time.Millisecond, "%s", want)
	}
	// The runs' task queue backlog, once the worker has asked the server.
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + env.metrics + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return err == nil && strings.Contains(string(body), `bud_worker_task_queue_backlog{task_queue="bud-prompt",task_type="activity"} 0`)
	}, 20*time.Second, 100*time.Millisecond)
	require.Equal(t, http.StatusNotFound, get(t, "http://"+env.metrics+"/healthz"), "the metrics listener serves /metrics only")
}

// TestDevPortTaken checks that a busy port stops `bud dev` at once with a
// message that names it.
func TestDevPortTaken(t *testing.T) {
	env := newDevEnv(t)
	l, err := net.Listen("tcp", env.app)
	require.NoError(t, err)
	defer l.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, budBinary, "dev")
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+env.dbURL, "BUD_DATA_DIR="+env.dataDir,
		"BUD_GATEWAY_ADDR="+env.gateway, "BUD_APP_ADDR="+env.app, "BUD_WORKER_ADDR="+env.worker, "BUD_METRICS_ADDR="+env.metrics,
		"TEMPORAL_ADDRESS="+env.temporal, "TEMPORAL_UI_ADDRESS="+env.uiAddr,
		"BUD_NATS_ADDR="+env.nats, "BUD_NATS_URL=",
	)
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "app: cannot listen on "+env.app)
}
