package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/secrets"
	"github.com/budhq/bud/upstreamtest"
)

// TestGatewayMemoryUnderExhaustion runs a real `bud gateway` on its
// defaults (Go's collector settings as they come) while 200 connections
// each declare a 32 MiB chat completion and send one byte of it, and 100
// requests each name a model of 4 MB, unique: the gateway's resident set
// grows by less than 100 MiB, every huge name is a 404, and ordinary
// requests sent all along are all answered.
func TestGatewayMemoryUnderExhaustion(t *testing.T) {
	const (
		slowConns   = 200
		hugeNames   = 100
		hugeNameLen = 4 << 20
		maxGrowth   = 100 << 20
	)
	gw := startGateway(t)
	ordinary := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":16}`)
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	post := func(body []byte) (int, error) {
		req, _ := http.NewRequest(http.MethodPost, gw.url+"/v1/chat/completions", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+gw.secret)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, err
	}
	// Warm: the caches hold the key and the deployment, the pools are up.
	for range 50 {
		status, err := post(ordinary)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status)
	}
	before := gw.rss(t)
	sampling := gw.sampleRSS(t)

	// Ordinary traffic, all along.
	var answered, failed atomic.Int64
	var firstFailure atomic.Value
	stopTraffic := make(chan struct{})
	var traffic sync.WaitGroup
	for range 2 {
		traffic.Go(func() {
			for {
				select {
				case <-stopTraffic:
					return
				default:
				}
				status, err := post(ordinary)
				if err == nil && status != http.StatusOK {
					err = fmt.Errorf("status %d", status)
				}
				if err != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				answered.Add(1)
			}
		})
	}

	// Connections that declare 32 MiB and send one byte.
	head := "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer " + gw.secret +
		"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(32<<20) + "\r\n\r\n{"
	slow := make([]net.Conn, 0, slowConns)
	t.Cleanup(func() {
		for _, c := range slow {
			_ = c.Close()
		}
	})
	for range slowConns {
		c, err := net.Dial("tcp", gw.addr)
		require.NoError(t, err)
		slow = append(slow, c)
		_, err = io.WriteString(c, head)
		require.NoError(t, err)
	}

	// Huge names, one after another while the rest goes on.
	var notFound atomic.Int64
	var hugeErrs []error
	for i := range hugeNames {
		status, err := post(hugeBody(i, hugeNameLen))
		if err == nil && status != http.StatusNotFound {
			err = fmt.Errorf("status %d", status)
		}
		if err != nil {
			hugeErrs = append(hugeErrs, err)
			continue
		}
		notFound.Add(1)
	}

	// The slow connections are still held open, each waiting for the
	// rest of its body: none was answered or dropped.
	for _, c := range slow {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Millisecond)))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		require.True(t, errors.As(err, &ne) && ne.Timeout(), "a slow connection was answered or closed: %v", err)
	}
	close(stopTraffic)
	traffic.Wait()
	peak := sampling()
	after := gw.rss(t)

	t.Logf("gateway RSS: before %d MiB, peak %d MiB, after %d MiB; %d ordinary requests answered, %d failed; %d huge names 404",
		before>>20, peak>>20, after>>20, answered.Load(), failed.Load(), notFound.Load())
	require.Empty(t, hugeErrs)
	require.EqualValues(t, hugeNames, notFound.Load())
	require.Zero(t, failed.Load(), "first failure: %v", firstFailure.Load())
	require.Positive(t, answered.Load())
	require.Less(t, peak-before, int64(maxGrowth), "RSS grew from %d MiB to %d MiB", before>>20, peak>>20)
}

// hugeBody is a chat completion whose model is n bytes, unique to i.
func hugeBody(i, n int) []byte {
	var b bytes.Buffer
	b.Grow(n + 128)
	b.WriteString(`{"model":"`)
	var r [8]byte
	_, _ = rand.Read(r[:])
	b.WriteString(strconv.Itoa(i) + "-" + hex.EncodeToString(r[:]) + "-")
	for b.Len() < n+len(`{"model":"`) {
		b.WriteString("abcdefghijklmnopqrstuvwxyz0123456789")
	}
	b.WriteString(`","messages":[{"role":"user","content":"hi"}]}`)
	return b.Bytes()
}

// gatewayUnderTest is a running `bud gateway` with one project, a model
// deployment "m" on a stand-in, and a key.
type gatewayUnderTest struct {
	cmd    *exec.Cmd
	addr   string
	url    string
	secret string
}

// startGateway starts `bud gateway` on a fresh database, with the
// collector's settings the environment leaves to Go's defaults.
func startGateway(t *testing.T) *gatewayUnderTest {
	t.Helper()
	ctx := t.Context()
	dbURL := dbtest.NewDatabase(t)
	pool, err := db.Open(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, db.Migrate(ctx, pool, nil))
	up := upstreamtest.Start(t)
	up.SetRecording(false)
	up.SetDefault(upstreamtest.Text("ok"))
	q := dbsqlc.New(pool)
	p, err := q.CreateProject(ctx, dbsqlc.CreateProjectParams{Name: "exhaust"})
	require.NoError(t, err)
	_, err = q.CreateDeployment(ctx, dbsqlc.CreateDeploymentParams{
		ProjectID: p.ID, Name: "m", Kind: bud.KindModel, BaseURL: up.URL(), UpstreamModel: "stand-in",
		DefaultParams: []byte(`{}`), Settings: []byte(`{}`),
	})
	require.NoError(t, err)
	secret, prefix, hash := bud.NewAPIKeySecret()
	_, err = q.CreateAPIKey(ctx, dbsqlc.CreateAPIKeyParams{ProjectID: p.ID, Name: "k", Prefix: prefix, SecretHash: hash})
	require.NoError(t, err)
	gw := startGatewayOn(t, dbURL)
	gw.secret = secret
	return gw
}

// startGatewayOn starts `bud gateway` on the database at dbURL, with env
// added to its environment, and waits until it answers.
func startGatewayOn(t *testing.T, dbURL string, env ...string) *gatewayUnderTest {
	t.Helper()
	addr := freePort(t)
	cmd := exec.Command(budBinary, "gateway")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "GOMEMLIMIT=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		"DATABASE_URL="+dbURL, "BUD_GATEWAY_ADDR="+addr, "BUD_METRICS_ADDR="+freePort(t),
		"BUD_ENCRYPTION_KEY="+secrets.NewKey(), "BUD_NATS_URL=",
		"TEMPORAL_ADDRESS=127.0.0.1:1", // chat completions need no Temporal
		"BUD_LOG_LEVEL=error",
	)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, time.Minute, 20*time.Millisecond, "gateway up")
	return &gatewayUnderTest{cmd: cmd, addr: addr, url: "http://" + addr}
}

// rss is the gateway's resident set size now, from /proc.
func (g *gatewayUnderTest) rss(t *testing.T) int64 {
	t.Helper()
	n, err := residentSet(g.cmd.Process.Pid)
	require.NoError(t, err)
	return n
}

// residentSet is process pid's VmRSS.
func residentSet(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// sampleRSS reads the gateway's resident set every 10 ms until the
// returned stop is called, which returns the largest.
func (g *gatewayUnderTest) sampleRSS(t *testing.T) (stop func() int64) {
	ctx, cancel := context.WithCancel(t.Context())
	result := make(chan int64, 1)
	go func() {
		var most int64
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if n, err := residentSet(g.cmd.Process.Pid); err == nil {
				most = max(most, n)
			}
			select {
			case <-ctx.Done():
				result <- most
				return
			case <-tick.C:
			}
		}
	}()
	return func() int64 {
		cancel()
		return <-result
	}
}
