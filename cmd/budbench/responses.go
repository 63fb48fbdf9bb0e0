package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/budhq/bud/upstreamtest"
)

// runResponses measures what a prompt run adds over the model it calls: a
// non-streaming, single-call run through /v1/responses on `bud dev`'s
// embedded defaults (Temporal, daprd, worker), against the stand-in's own
// latency for the same chat call, sequentially and with concurrent callers.
// It measures each way of starting a run and waiting for it (waits, see
// BUD_RUN_WAIT) on its own fresh `bud dev`, one after another in the same
// run, and the time to a stream's first delta with the first of them.
func runResponses(ctx context.Context, budPath, serverURL string, sequential, concurrency int, duration time.Duration, waits []string) error {
	up, err := standIn()
	if err != nil {
		return err
	}
	defer up.Close()
	fmt.Printf("budbench responses: single-call prompt runs on bud dev's embedded defaults, %d cores\n", runtimeCPUs())
	if l := loadAverage(); l != "" {
		fmt.Printf("load average (1 min) before the runs: %s; each busy core of other work adds about a third to the sequential figures\n", l)
	}
	for i, wait := range waits {
		if err := measureWait(ctx, up, budPath, serverURL, wait, i == 0, sequential, concurrency, duration); err != nil {
			return fmt.Errorf("BUD_RUN_WAIT=%s: %w", wait, err)
		}
	}
	return nil
}

// standIn is the upstream the runs call: one short fixed reply, not
// recorded.
func standIn() (*upstreamtest.Server, error) {
	up, err := upstreamtest.Listen("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	up.SetRecording(false)
	up.SetDefault(upstreamtest.Text("Hello! This is a short fixed reply from the stand-in."))
	return up, nil
}

// compareBinaries measures two bud binaries alternately, each on a fresh
// bud dev in the same run, so that the machine's drift over minutes falls on
// both alike: a ratio of their figures is what to read, not either alone.
func compareBinaries(ctx context.Context, budPath, otherPath, serverURL string, rounds, sequential, concurrency int, duration time.Duration) error {
	up, err := standIn()
	if err != nil {
		return err
	}
	defer up.Close()
	fmt.Printf("budbench responses: %s against %s, alternately, %d rounds\n", budPath, otherPath, rounds)
	for i := range rounds {
		for _, path := range []string{budPath, otherPath} {
			fmt.Printf("round %d, %s: ", i+1, path)
			if err := measureWait(ctx, up, path, serverURL, "start", false, sequential, concurrency, duration); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
	}
	return nil
}

func measureWait(ctx context.Context, up *upstreamtest.Server, budPath, serverURL, wait string, streaming bool, sequential, concurrency int, duration time.Duration) error {
	dbURL, dropDB, err := createDatabase(ctx, serverURL)
	if err != nil {
		return err
	}
	defer dropDB()
	dev, err := startDev(ctx, budPath, dbURL, "BUD_RUN_WAIT="+wait)
	if err != nil {
		return err
	}
	defer dev.stop()

	secret, err := dev.seedPrompt(up.URL())
	if err != nil {
		return err
	}
	c := newClient()
	direct := target{name: "stand-in", url: up.URL() + "/chat/completions",
		body: []byte(`{"model":"bench","messages":[{"role":"system","content":"You greet people."},{"role":"user","content":"Greet Ada."}]}`)}
	run := target{name: "responses", url: "http://" + dev.gateway + "/v1/responses", key: secret,
		body: []byte(`{"prompt":{"id":"greeter","variables":{"name":"Ada"}}}`)}
	for _, t := range []target{direct, run} {
		if err := t.once(ctx, c); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	// Warm up: the first runs compile the prompt and fill caches.
	sequentialRuns(ctx, c, run, 20)

	fmt.Printf("BUD_RUN_WAIT=%s\n", wait)
	d := sequentialRuns(ctx, c, direct, sequential)
	r := sequentialRuns(ctx, c, run, sequential)
	fmt.Printf("  sequential (%d each):   stand-in p50 %s p99 %s max %s | run p50 %s p99 %s max %s | added p50 %s p99 %s ms | %.0f runs/s\n",
		sequential, ms(d.p50), ms(d.p99), ms(d.max), ms(r.p50), ms(r.p99), ms(r.max), ms(r.p50-d.p50), ms(r.p99-d.p99), r.achieved)
	if streaming {
		// A background run answers once it has started, whatever the run
		// then takes: its create-to-queued time beside the blocking run's.
		bg := run
		bg.body = []byte(`{"prompt":{"id":"greeter","variables":{"name":"Ada"}},"background":true}`)
		b := sequentialRuns(ctx, c, bg, sequential/3)
		fmt.Printf("  background create (%d): queued p50 %s p99 %s ms | blocking run above p50 %s p99 %s ms | %d errors\n",
			sequential/3, ms(b.p50), ms(b.p99), ms(r.p50), ms(r.p99), b.errors)
		// Let the background runs finish before the next figures.
		time.Sleep(3 * time.Second)
	}
	if err := timeline(ctx, c, run, dev.temporal); err != nil {
		fmt.Printf("  timeline: %v\n", err)
	}
	if streaming {
		// Time to the first delta of a stream, against the stand-in's own
		// time to its first content chunk for the same chat call.
		directStream := direct
		directStream.body = []byte(`{"model":"bench","stream":true,"messages":[{"role":"system","content":"You greet people."},{"role":"user","content":"Greet Ada."}]}`)
		runStream := run
		runStream.body = []byte(`{"prompt":{"id":"greeter","variables":{"name":"Ada"}},"stream":true}`)
		df, derr := firstDeltas(ctx, c, directStream, `"content":"`, sequential/3)
		rf, rerr := firstDeltas(ctx, c, runStream, "response.output_text.delta", sequential/3)
		if derr != nil || rerr != nil {
			fmt.Printf("  streaming: not measured (%v %v)\n", derr, rerr)
		} else {
			fmt.Printf("  first delta (%d each):   stand-in p50 %s p99 %s | run p50 %s p99 %s | added p50 %s p99 %s ms\n",
				sequential/3, ms(df.p50), ms(df.p99), ms(rf.p50), ms(rf.p99), ms(rf.p50-df.p50), ms(rf.p99-df.p99))
		}
	}
	dc := concurrentRuns(ctx, c, direct, concurrency, duration)
	rc := concurrentRuns(ctx, c, run, concurrency, duration)
	fmt.Printf("  %d concurrent (%s): stand-in p50 %s p99 %s | run p50 %s p99 %s max %s ms | %.0f runs/s, %d errors\n",
		concurrency, duration, ms(dc.p50), ms(dc.p99), ms(rc.p50), ms(rc.p99), ms(rc.max), rc.achieved, rc.errors)
	return nil
}

// sequentialRuns sends n requests one after another.
func sequentialRuns(ctx context.Context, c *http.Client, t target, n int) stats {
	lat := make([]time.Duration, 0, n)
	errs := 0
	start := time.Now()
	for range n {
		s := time.Now()
		if err := t.once(ctx, c); err != nil {
			errs++
			continue
		}
		lat = append(lat, time.Since(s))
	}
	return summarize(lat, errs, n, time.Since(start))
}

// firstDeltas sends n streaming requests one after another and measures
// the time from sending each to the first line that contains marker.
func firstDeltas(ctx context.Context, c *http.Client, t target, marker string, n int) (stats, error) {
	lat := make([]time.Duration, 0, n)
	start := time.Now()
	for range n {
		s := time.Now()
		resp, err := c.Do(t.request(ctx))
		if err != nil {
			return stats{}, err
		}
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return stats{}, fmt.Errorf("%s: status %d: %s", t.name, resp.StatusCode, b)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		found := false
		for sc.Scan() {
			if !found && strings.Contains(sc.Text(), marker) {
				lat = append(lat, time.Since(s))
				found = true
			}
		}
		resp.Body.Close()
		if !found {
			return stats{}, fmt.Errorf("%s: no %q in the stream", t.name, marker)
		}
	}
	return summarize(lat, 0, n, time.Since(start)), nil
}

// concurrentRuns keeps `workers` requests in flight for d (a closed loop:
// this measures capacity, runs per second, not latency under a fixed rate).
func concurrentRuns(ctx context.Context, c *http.Client, t target, workers int, d time.Duration) stats {
	var mu sync.Mutex
	var lat []time.Duration
	var errs, sent atomic.Int64
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				sent.Add(1)
				s := time.Now()
				if err := t.once(ctx, c); err != nil {
					errs.Add(1)
					continue
				}
				l := time.Since(s)
				mu.Lock()
				lat = append(lat, l)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return summarize(lat, int(errs.Load()), int(sent.Load()), time.Since(start))
}

func summarize(lat []time.Duration, errs, sent int, elapsed time.Duration) stats {
	slices.Sort(lat)
	s := stats{errors: errs, sent: sent, okay: len(lat), achieved: float64(len(lat)) / elapsed.Seconds()}
	if len(lat) > 0 {
		s.p50, s.p99, s.p999 = pct(lat, 0.50), pct(lat, 0.99), pct(lat, 0.999)
		s.max = lat[len(lat)-1]
	}
	return s
}

// devProcess is a `bud dev` started for a benchmark.
type devProcess struct {
	cmd          *exec.Cmd
	gateway, app string
	temporal     string
	token        string
	dir          string
}

func startDev(ctx context.Context, budPath, dbURL string, env ...string) (*devProcess, error) {
	dir, err := os.MkdirTemp("", "budbench-")
	if err != nil {
		return nil, err
	}
	addrs := make([]string, 5)
	for i := range addrs {
		if addrs[i], err = freeAddr(); err != nil {
			return nil, err
		}
	}
	d := &devProcess{gateway: addrs[0], app: addrs[1], temporal: addrs[3], dir: dir}
	d.cmd = exec.Command(budPath, "dev")
	d.cmd.Env = append(os.Environ(),
		"DATABASE_URL="+dbURL, "BUD_DATA_DIR="+dir,
		"BUD_GATEWAY_ADDR="+addrs[0], "BUD_APP_ADDR="+addrs[1], "BUD_WORKER_ADDR="+addrs[2],
		"TEMPORAL_ADDRESS="+addrs[3], "TEMPORAL_UI_ADDRESS=", "BUD_LOG_LEVEL=error",
	)
	d.cmd.Env = append(d.cmd.Env, env...)
	out, err := d.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	d.cmd.Stderr = os.Stderr
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w (run `make build` first)", budPath, err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Press Ctrl-C to stop.") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(2 * time.Minute):
		d.stop()
		return nil, fmt.Errorf("bud dev did not start")
	case <-ctx.Done():
		d.stop()
		return nil, ctx.Err()
	}
	tok, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil {
		d.stop()
		return nil, err
	}
	d.token = strings.TrimSpace(string(tok))
	return d, nil
}

func (d *devProcess) stop() {
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
	}
	_ = os.RemoveAll(d.dir)
}

func (d *devProcess) api(method, path string, body any) (map[string]any, error) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, "http://"+d.app+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+d.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	out := map[string]any{}
	return out, json.Unmarshal(raw, &out)
}

// seedPrompt creates a project, a model deployment on the stand-in, a
// deployed prompt and a key, and returns the key's secret.
func (d *devProcess) seedPrompt(upstreamURL string) (string, error) {
	p, err := d.api("POST", "/api/projects", map[string]any{"name": "bench"})
	if err != nil {
		return "", err
	}
	base := "/api/projects/" + p["id"].(string)
	if _, err := d.api("POST", base+"/deployments", map[string]any{"name": "bench", "upstream": map[string]any{"base_url": upstreamURL, "model": "stand-in"}}); err != nil {
		return "", err
	}
	if _, err := d.api("POST", base+"/deployments", map[string]any{"kind": "prompt", "prompt": map[string]any{"name": "greeter", "document": map[string]any{
		"deployment":    "bench",
		"system_prompt": "You greet people.",
		"messages":      []any{map[string]any{"role": "user", "content": "Greet {{ name }}."}},
		"input":         map[string]any{"type": "structured", "variables": []any{map[string]any{"name": "name", "type": "string", "required": true}}},
	}}}); err != nil {
		return "", err
	}
	k, err := d.api("POST", base+"/api-keys", map[string]any{"name": "bench"})
	if err != nil {
		return "", err
	}
	return k["secret"].(string), nil
}

// timeline makes one more run and prints where its time went: the
// request's wall time, and each event of the run's history after the
// workflow started, with its time since the start.
func timeline(ctx context.Context, c *http.Client, t target, temporalAddr string) error {
	start := time.Now()
	resp, err := c.Do(t.request(ctx))
	if err != nil {
		return err
	}
	var body struct {
		ID string `json:"id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	wall := time.Since(start)
	if err != nil {
		return err
	}
	tc, err := client.Dial(client.Options{HostPort: temporalAddr, Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		return err
	}
	defer tc.Close()
	it := tc.GetWorkflowHistory(ctx, body.ID, "", false, 0)
	var first time.Time
	var parts []string
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return err
		}
		at := ev.GetEventTime().AsTime()
		if first.IsZero() {
			first = at
		}
		name := strings.TrimPrefix(ev.GetEventType().String(), "EVENT_TYPE_")
		parts = append(parts, fmt.Sprintf("%s +%.1f", strings.ToLower(name), float64(at.Sub(first).Microseconds())/1000))
	}
	fmt.Printf("  one run, %s ms at the client; its history in ms from the start: %s\n", ms(wall), strings.Join(parts, ", "))
	return nil
}
