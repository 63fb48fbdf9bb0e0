// Command budbench measures what BudGateway adds to a request. It starts
// the upstream stand-in with a fixed small reply, in a process of its own
// as a model server is, and a real `bud gateway` process on a fresh
// database, then drives the stand-in directly and
// through the gateway at the same fixed arrival rates (open loop: requests
// are sent on schedule whether or not earlier ones have returned, and
// latency counts from the scheduled time, so a slow response cannot hide
// behind a closed loop), and prints latency percentiles, the gateway's
// added latency, throughput, errors and the gateway's memory: the largest
// resident set and its anonymous part (heap and stacks), sampled every
// 100 ms while the gateway is measured at each rate.
//
//	go run ./cmd/budbench -bud bin/bud -rates 500,1000,2000 -duration 10s
//
// `budbench responses` measures prompt runs through /v1/responses instead
// (see runResponses).
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/secrets"
	"github.com/budhq/bud/upstreamtest"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "stand-in" {
		serveStandIn(os.Args[2])
		return
	}
	mode := "gateway"
	if len(os.Args) > 1 && (os.Args[1] == "responses" || os.Args[1] == "evaluate") {
		mode = os.Args[1]
		os.Args = append(os.Args[:1], os.Args[2:]...)
	}
	evalRows := flag.Int("rows", 1000, "evaluate: dataset rows")
	evalCandidates := flag.Int("candidates", 2, "evaluate: candidate prompts")
	evalParallelism := flag.Int("parallelism", 32, "evaluate: runs at once")
	evalRounds := flag.Int("eval-rounds", 2, "evaluate: evaluations run one after another on the same bud dev")
	sequential := flag.Int("sequential", 1000, "responses: runs sent one after another (1,000 span ~15 s, so a few seconds of other load on the machine move the p50 little)")
	concurrency := flag.Int("concurrency", 50, "responses: concurrent callers")
	waits := flag.String("waits", "start,update", "responses: ways to start and await a run to compare (BUD_RUN_WAIT values), the first also streamed")
	budPath := flag.String("bud", "bin/bud", "path of the bud binary to benchmark")
	compare := flag.String("compare", "", "responses: a second bud binary to measure against -bud, alternately on fresh bud devs (BUD_RUN_WAIT=start, sequential and concurrent)")
	rounds := flag.Int("rounds", 2, "responses: rounds of the -compare alternation")
	dbURL := flag.String("database-url", envOr("BUD_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"), "server to create the benchmark database on")
	ratesFlag := flag.String("rates", "500,1000,2000", "fixed arrival rates to measure, requests/s")
	duration := flag.Duration("duration", 10*time.Second, "how long each rate runs, per target")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured load before each measurement")
	blocks := flag.Int("blocks", 5, "gateway: each rate's duration is measured in this many blocks, every target in turn in each, so that drift falls on all alike")
	maxSearch := flag.Bool("max", true, "also search for the highest rate the gateway sustains")
	redisURL := flag.String("redis", envOr("BUD_TEST_REDIS_URL", "redis://127.0.0.1:6379"), "gateway: the Redis the gateway shares its limits and cache through, for the rows with every policy on and with cache hits (\"\" measures without those rows)")
	flag.Parse()
	// An open loop past saturation holds thousands of connections at once.
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	// The load generator's own collections would add pauses to both
	// targets' figures; it runs for minutes, so memory is no concern.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	// One core's worth of threads for the load generator and the stand-in,
	// so that on a small machine they do not starve the gateway under test
	// (which keeps the runtime's defaults) and the comparison stays fair:
	// both targets are driven by the same generator.
	if os.Getenv("BUDBENCH_PROCS") == "" {
		runtime.GOMAXPROCS(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if mode == "evaluate" {
		err = runEvaluate(ctx, *budPath, *dbURL, *evalRows, *evalCandidates, *evalParallelism, *evalRounds)
	} else if mode == "responses" {
		err = runResponses(ctx, *budPath, *dbURL, *sequential, *concurrency, *duration, strings.Split(*waits, ","))
		if err == nil && *compare != "" {
			err = compareBinaries(ctx, *budPath, *compare, *dbURL, *rounds, *sequential, *concurrency, *duration)
		}
	} else {
		err = run(ctx, *budPath, *dbURL, *redisURL, *ratesFlag, *duration, *warmup, *blocks, *maxSearch)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "budbench:", err)
		os.Exit(1)
	}
}

// serveStandIn serves the upstream stand-in on addr, with a fixed small
// reply and no recording, until it is signalled: `budbench stand-in ADDR`,
// which the gateway benchmark starts as a process of its own.
func serveStandIn(addr string) {
	up, err := upstreamtest.Listen(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "budbench stand-in:", err)
		os.Exit(1)
	}
	up.SetRecording(false)
	up.SetDefault(upstreamtest.Text("Hello! This is a short fixed reply from the stand-in.").WithUsage(upstreamtest.Usage{PromptTokens: 12, CompletionTokens: 11, TotalTokens: 23}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	_ = up.Close()
}

// startStandIn starts this program as the stand-in (which keeps Go's
// default threads), a process of its own, and waits until it answers.
func startStandIn(ctx context.Context) (p *process, url string, err error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(self, "stand-in", addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start the stand-in: %w", err)
	}
	p = &process{cmd: cmd}
	err = p.awaitUp(ctx, "the stand-in", 10*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return p, "http://" + addr, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, budPath, serverURL, redisURL, ratesFlag string, duration, warmup time.Duration, blocks int, maxSearch bool) error {
	var rates []int
	for _, s := range strings.Split(ratesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("-rates: %q is not a positive integer", s)
		}
		rates = append(rates, n)
	}

	// The stand-in, in a process of its own as a model server is: the
	// direct path and the gateway's cross a process boundary alike.
	up, upURL, err := startStandIn(ctx)
	if err != nil {
		return err
	}
	defer up.stop()

	// A fresh database with one project, deployment and key.
	dbURL, dropDB, err := createDatabase(ctx, serverURL)
	if err != nil {
		return err
	}
	defer dropDB()
	keys, err := seed(ctx, dbURL, upURL)
	if err != nil {
		return err
	}

	// The gateway, as its own process so its memory is its own. With
	// Redis, every gateway process would share its limits and its cache
	// through it: the rows with policies on measure that, the costlier
	// case; a prefix of this run's own keeps them apart from anything
	// else in that Redis.
	gwAddr, err := freeAddr()
	if err != nil {
		return err
	}
	var env []string
	if redisURL != "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		env = append(env, "BUD_REDIS_URL="+redisURL, "BUD_REDIS_PREFIX=budbench-"+hex.EncodeToString(b[:])+":")
	}
	gw, err := startGateway(ctx, budPath, dbURL, gwAddr, env...)
	if err != nil {
		return err
	}
	defer gw.stop()

	chat := func(model string) []byte {
		return []byte(`{"model":"` + model + `","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}`)
	}
	gwURL := "http://" + gwAddr + "/v1/chat/completions"
	direct := target{name: "direct", url: upURL + "/chat/completions", body: chat("bench")}
	via := target{name: "gateway", url: gwURL, body: chat("bench"), key: keys.plain}
	targets := []target{direct, via}
	if redisURL != "" {
		targets = append(targets,
			target{name: "policies", url: gwURL, body: chat(benchPolicies), key: keys.limited},
			target{name: "cache hit", url: gwURL, body: chat(benchCached), key: keys.plain, wantHit: true})
	}
	client := newClient()

	// Check each answers before measuring; the first request to the
	// cached deployment fills its cache.
	for _, t := range targets {
		if err := t.once(ctx, client); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}

	if blocks < 1 {
		return fmt.Errorf("-blocks: must be at least 1")
	}
	fmt.Printf("budbench: %d cores, duration %s per rate and target in %d alternating blocks, warm-up %s, open loop, load average %s\n", runtimeCPUs(), duration, blocks, warmup, loadAverage())
	var rows []row
	printHeader()
	for _, rate := range rates {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r, err := measure(ctx, client, targets, rate, duration, warmup, blocks, gw)
		if err != nil {
			return err
		}
		r.print()
		rows = append(rows, r)
	}
	if redisURL != "" {
		printPolicies(rows)
		// One request at a time, where the load generator's own
		// scheduling does not blur what a request costs: a whole answer,
		// and a stream (the stand-in's arrives word by word, a hit's at
		// once).
		streamed := func(t target) target {
			t.name += ", streamed"
			t.body = bytes.Replace(t.body, []byte(`"max_tokens":16`), []byte(`"max_tokens":16,"stream":true`), 1)
			return t
		}
		hitStream := streamed(targets[3])
		if err := hitStream.once(ctx, client); err != nil { // the miss that stores it
			return fmt.Errorf("%s: %w", hitStream.name, err)
		}
		compareSequentially(ctx, client, direct, targets[3])
		compareSequentially(ctx, client, streamed(direct), hitStream)
		fmt.Println()
	}
	if maxSearch {
		printHeader()
		best := 0
		for rate := max(slices.Max(rates)*3/2, 3000); ctx.Err() == nil; rate = rate * 3 / 2 {
			row, err := measure(ctx, client, targets[:2], rate, duration/2, warmup/2, 1, gw)
			if err != nil {
				return err
			}
			row.print()
			if gwStats := row.stats[1]; gwStats.errors > 0 || gwStats.achieved < 0.97*float64(rate) || gwStats.p99 > 10*time.Millisecond {
				break
			}
			best = rate
			if rate > 20000 {
				break
			}
		}
		fmt.Printf("open-loop maximum: the gateway sustained %d requests/s (no errors, >= 97%% of the rate, p99 <= 10 ms)\n", best)
	}
	return nil
}

// loadAverage is the machine's 1-minute load average as /proc/loadavg
// gives it, "" where there is none: the figures of a machine busy with
// other work are slower, and say so next to them.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func runtimeCPUs() int {
	n := 0
	b, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		n = bytes.Count(b, []byte("processor\t:"))
	}
	return n
}

type target struct {
	name, url string
	body      []byte
	key       string
	// wantHit: every answer must come from the gateway's response cache.
	wantHit bool
}

func (t target) request(ctx context.Context) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(t.body))
	req.Header.Set("Content-Type", "application/json")
	if t.key != "" {
		req.Header.Set("Authorization", "Bearer "+t.key)
	}
	return req
}

func (t target) once(ctx context.Context, c *http.Client) error {
	resp, err := c.Do(t.request(ctx))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return nil
}

// check is the error of a response t does not accept.
func (t target) check(resp *http.Response) error {
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	if t.wantHit && resp.Header.Get("X-Bud-Cache") != "hit" {
		return fmt.Errorf("x-bud-cache %q, not a hit", resp.Header.Get("X-Bud-Cache"))
	}
	return nil
}

func newClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        8192,
			MaxIdleConnsPerHost: 4096,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

type stats struct {
	achieved           float64
	p50, p99, p999     time.Duration
	max                time.Duration
	errors, sent, okay int
}

// sample is the outcome of load: the latencies of the requests answered
// (sorted by stats), how many failed and were sent, and over how long.
type sample struct {
	lat          []time.Duration
	errors, sent int
	elapsed      time.Duration
}

// add pools o into s.
func (s *sample) add(o sample) {
	s.lat = append(s.lat, o.lat...)
	s.errors += o.errors
	s.sent += o.sent
	s.elapsed += o.elapsed
}

// stats are s's latency statistics.
func (s sample) stats() stats {
	slices.Sort(s.lat)
	st := stats{errors: s.errors, sent: s.sent, okay: len(s.lat)}
	if s.elapsed > 0 {
		st.achieved = float64(len(s.lat)) / s.elapsed.Seconds()
	}
	if len(s.lat) > 0 {
		st.p50, st.p99, st.p999 = pct(s.lat, 0.50), pct(s.lat, 0.99), pct(s.lat, 0.999)
	}
	return st
}

// load sends requests at a fixed rate for d and returns their latencies,
// counted from each request's scheduled time.
func load(ctx context.Context, c *http.Client, t target, rate int, d time.Duration) sample {
	n := int(float64(rate) * d.Seconds())
	interval := time.Second / time.Duration(rate)
	lat := make([]time.Duration, n)
	var errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; {
		if ctx.Err() != nil {
			break
		}
		now := time.Now()
		// Send everything that is due; sleeping per request would drift.
		for ; i < n && !start.Add(time.Duration(i)*interval).After(now); i++ {
			sched := start.Add(time.Duration(i) * interval)
			wg.Add(1)
			go func(i int, sched time.Time) {
				defer wg.Done()
				resp, err := c.Do(t.request(ctx))
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil {
						err = t.check(resp)
					}
				}
				if err != nil {
					errs.Add(1)
					lat[i] = -1
					return
				}
				lat[i] = time.Since(sched)
			}(i, sched)
		}
		if i < n {
			time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	ok := lat[:0:0]
	for _, l := range lat {
		if l > 0 {
			ok = append(ok, l)
		}
	}
	return sample{lat: ok, errors: int(errs.Load()), sent: n, elapsed: elapsed}
}

// compareSequentially measures a and b one request at a time, in
// alternate blocks so that the machine's drift falls on both alike, and
// prints both and their difference.
func compareSequentially(ctx context.Context, c *http.Client, a, b target) {
	const blocks, n = 10, 500
	var la, lb []time.Duration
	var ea, eb int
	for range blocks {
		la, ea = sequentially(ctx, c, a, n, la, ea)
		lb, eb = sequentially(ctx, c, b, n, lb, eb)
	}
	sa := sample{lat: la, errors: ea, sent: len(la) + ea}.stats()
	sb := sample{lat: lb, errors: eb, sent: len(lb) + eb}.stats()
	fmt.Printf("one request at a time (%d each, alternate blocks of %d): %s p50 / p99 / p99.9 %s, %s %s, difference %s (errors %d/%d)\n",
		blocks*n, n, a.name, three(sa), b.name, three(sb), minus(sb, sa), sa.errors, sb.errors)
}

// sequentially sends n requests to t one after another, and appends
// their latencies to lat and their errors to errs.
func sequentially(ctx context.Context, c *http.Client, t target, n int, lat []time.Duration, errs int) ([]time.Duration, int) {
	for range n {
		if ctx.Err() != nil {
			break
		}
		sent := time.Now()
		resp, err := c.Do(t.request(ctx))
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil {
				err = t.check(resp)
			}
		}
		if err != nil {
			errs++
			continue
		}
		lat = append(lat, time.Since(sent))
	}
	return lat, errs
}

func pct(sorted []time.Duration, p float64) time.Duration {
	i := int(float64(len(sorted))*p+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// row is one rate's measurements: each target's, in the order given to
// measure (direct first, then through the gateway).
type row struct {
	rate  int
	stats []stats
	// mem is the most the gateway held while it was measured at rate.
	mem memory
}

// measure drives the targets at rate for d each, after an unmeasured
// warm-up of each: in blocks, each target in turn in every block, so that
// the machine's drift over the minutes falls on every target alike; each
// target's latencies are pooled over its blocks.
func measure(ctx context.Context, c *http.Client, targets []target, rate int, d, warmup time.Duration, blocks int, gw *process) (row, error) {
	r := row{rate: rate}
	if warmup > 0 {
		for _, t := range targets {
			load(ctx, c, t, rate, warmup)
		}
	}
	pooled := make([]sample, len(targets))
	for range blocks {
		for i, t := range targets {
			var stop func() memory
			if i > 0 {
				stop = gw.sampleMemory(100 * time.Millisecond)
			}
			pooled[i].add(load(ctx, c, t, rate, d/time.Duration(blocks)))
			if stop != nil {
				m := stop()
				r.mem.rss, r.mem.anon = max(r.mem.rss, m.rss), max(r.mem.anon, m.anon)
			}
		}
	}
	for _, p := range pooled {
		r.stats = append(r.stats, p.stats())
	}
	return r, ctx.Err()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// three is p50 / p99 / p99.9 of s.
func three(s stats) string { return ms(s.p50) + " / " + ms(s.p99) + " / " + ms(s.p999) + " ms" }

// minus is a's percentiles less b's.
func minus(a, b stats) string {
	return ms(a.p50-b.p50) + " / " + ms(a.p99-b.p99) + " / " + ms(a.p999-b.p999) + " ms"
}

func printHeader() {
	fmt.Printf("%-8s | %-28s | %-28s | %-26s | %-16s | %s\n", "rate", "direct p50 / p99 / p99.9", "gateway p50 / p99 / p99.9", "added p50 / p99 / p99.9", "rps direct/gw", "errors d/gw  gw RSS max (anon)")
}

// print prints the gateway with every policy off against the stand-in.
func (r row) print() {
	d, g := r.stats[0], r.stats[1]
	fmt.Printf("%-8d | %-28s | %-28s | %-26s | %-16s | %d/%d  %d MiB (%d MiB)\n",
		r.rate, three(d), three(g), minus(g, d),
		fmt.Sprintf("%.0f/%.0f", d.achieved, g.achieved),
		d.errors, g.errors, r.mem.rss>>20, r.mem.anon>>20)
}

// printPolicies prints, per rate, what every policy on (through Redis)
// adds to the gateway with every policy off, and a cache hit against the
// stand-in answering directly.
func printPolicies(rows []row) {
	fmt.Println()
	fmt.Println("every policy on (deployment rate limit with tokens per minute, the key's own rate limit, max_concurrency with a queue; through Redis), against every policy off:")
	fmt.Printf("%-8s | %-28s | %-28s | %-26s | %s\n", "rate", "off p50 / p99 / p99.9", "on p50 / p99 / p99.9", "added by policies", "errors off/on")
	for _, r := range rows {
		off, on := r.stats[1], r.stats[2]
		fmt.Printf("%-8d | %-28s | %-28s | %-26s | %d/%d\n", r.rate, three(off), three(on), minus(on, off), off.errors, on.errors)
	}
	fmt.Println()
	fmt.Println("a cache hit (x-bud-cache: hit, cache in Redis), against the stand-in answering directly:")
	fmt.Printf("%-8s | %-28s | %-28s | %-26s | %s\n", "rate", "direct p50 / p99 / p99.9", "cache hit p50 / p99 / p99.9", "hit less direct", "errors d/hit")
	for _, r := range rows {
		d, hit := r.stats[0], r.stats[3]
		fmt.Printf("%-8d | %-28s | %-28s | %-26s | %d/%d\n", r.rate, three(d), three(hit), minus(hit, d), d.errors, hit.errors)
	}
	fmt.Println()
}

func createDatabase(ctx context.Context, serverURL string) (string, func(), error) {
	cfg, err := pgx.ParseConfig(serverURL)
	if err != nil {
		return "", nil, err
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "bud_bench_" + hex.EncodeToString(b[:])
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	drop := func() {
		c, err := pgx.ConnectConfig(context.Background(), cfg)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", cfg.User, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), name), drop, nil
}

// The deployments seed creates besides "bench", the plain one.
const (
	// benchPolicies has every policy on, with limits high enough never
	// to refuse: requests and tokens per minute, and max_concurrency
	// with a queue time.
	benchPolicies = "bench-policies"
	// benchCached caches its replies; its default temperature is 0, so
	// that replies are cacheable without cache.nondeterministic.
	benchCached = "bench-cached"
)

// benchKeys are the secrets of seed's keys: plain has no limit of its
// own, limited a rate limit high enough never to refuse.
type benchKeys struct{ plain, limited string }

// seed migrates the database and creates a project, its model deployments
// on the stand-in (bench, benchPolicies and benchCached) and its keys.
func seed(ctx context.Context, dbURL, upstreamURL string) (benchKeys, error) {
	var keys benchKeys
	pool, err := db.Open(ctx, dbURL)
	if err != nil {
		return keys, err
	}
	defer pool.Close()
	if err := db.Migrate(ctx, pool, nil); err != nil {
		return keys, err
	}
	q := dbsqlc.New(pool)
	p, err := q.CreateProject(ctx, dbsqlc.CreateProjectParams{Name: "bench"})
	if err != nil {
		return keys, err
	}
	for _, d := range []struct{ name, params, settings string }{
		{"bench", `{"temperature":0.2}`, `{}`},
		{benchPolicies, `{"temperature":0.2}`, `{"max_concurrency":100000,"queue_timeout_ms":1000,` +
			`"rate_limit":{"enabled":true,"requests_per_minute":100000000,"burst":100000000,"tokens_per_minute":1000000000}}`},
		{benchCached, `{"temperature":0}`, `{"cache":{"enabled":true,"ttl_seconds":3600}}`},
	} {
		if _, err := q.CreateDeployment(ctx, dbsqlc.CreateDeploymentParams{
			ProjectID: p.ID, Name: d.name, Kind: bud.KindModel, BaseURL: upstreamURL, UpstreamModel: "stand-in",
			DefaultParams: []byte(d.params), Settings: []byte(d.settings),
		}); err != nil {
			return keys, err
		}
	}
	for _, k := range []struct {
		secret *string
		rpm    int32
		tpm    int64
	}{{&keys.plain, 0, 0}, {&keys.limited, 100_000_000, 1_000_000_000}} {
		secret, prefix, hash := bud.NewAPIKeySecret()
		if _, err := q.CreateAPIKey(ctx, dbsqlc.CreateAPIKeyParams{ProjectID: p.ID, Name: "bench", Prefix: prefix, SecretHash: hash,
			RateRequestsPerMinute: k.rpm, RateBurst: k.rpm, RateTokensPerMinute: k.tpm}); err != nil {
			return keys, err
		}
		*k.secret = secret
	}
	return keys, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// process is a child process budbench measures or serves from.
type process struct {
	cmd *exec.Cmd
}

func startGateway(ctx context.Context, budPath, dbURL, addr string, env ...string) (*process, error) {
	cmd := exec.Command(budPath, "gateway")
	cmd.Env = append(append(os.Environ(), env...),
		"DATABASE_URL="+dbURL,
		"BUD_GATEWAY_ADDR="+addr,
		"BUD_ENCRYPTION_KEY="+secrets.NewKey(),
		"TEMPORAL_ADDRESS=127.0.0.1:1", // not used by chat completions
		"BUD_LOG_LEVEL=error",
	)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w (run `make build` first)", budPath, err)
	}
	g := &process{cmd: cmd}
	err := g.awaitUp(ctx, "gateway on "+addr, 30*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// awaitUp tries up until it succeeds; past timeout, or when ctx ends, it
// stops the process and says why.
func (p *process) awaitUp(ctx context.Context, what string, timeout time.Duration, up func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := up()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.stop()
			return fmt.Errorf("%s did not come up: %w", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *process) stop() {
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = g.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = g.cmd.Process.Kill()
	}
}

// memory is what a process holds in RAM, from /proc/<pid>/status: its
// resident set (VmRSS), and the anonymous part of it (RssAnon: heap and
// stacks, where the rest is the binary's pages).
type memory struct{ rss, anon int64 }

// processMemory reads process pid's memory now (zero when it cannot).
func processMemory(pid int) memory {
	var m memory
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			m.rss = kb << 10
		case "RssAnon:":
			m.anon = kb << 10
		}
	}
	return m
}

// processCPU is the CPU time process pid has used, user and system,
// from /proc (0 where there is none).
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after it. utime and stime are the 14th and 15th fields.
	rest := string(b)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	// Linux counts them in clock ticks of 1/100 s (USER_HZ).
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// sampleMemory reads the gateway's memory every interval until the
// returned stop is called, which returns the most it held: the largest
// resident set, and the largest anonymous part.
func (g *process) sampleMemory(interval time.Duration) (stop func() memory) {
	done := make(chan struct{})
	result := make(chan memory, 1)
	go func() {
		var most memory
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			m := processMemory(g.cmd.Process.Pid)
			most.rss, most.anon = max(most.rss, m.rss), max(most.anon, m.anon)
			select {
			case <-done:
				result <- most
				return
			case <-t.C:
			}
		}
	}()
	return func() memory {
		close(done)
		return <-result
	}
}
