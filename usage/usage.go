// Package usage counts what each project's callers use — requests, tokens,
// errors, cache hits, rate-limited requests and latency — per deployment,
// API key and prompt version, by the hour.
//
// A Recorder adds each request to counters in memory and to Prometheus
// series per project and deployment; Run writes the counters to the
// usage_hourly rollups in Postgres every second, in one statement. A
// request never waits on the database: Record takes one of several locks
// for a map lookup and a few additions, and does not allocate once its
// row has been seen.
package usage

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/budhq/bud/db/dbsqlc"
)

// Defaults for Config's zero values.
const (
	DefaultFlushInterval = time.Second
	// DefaultMaxPendingRows bounds the rows kept while the database is
	// unreachable. A kept row costs about 0.8 KB with the arrays it is
	// written from (measured at 100,000 rows: 82 MB), so this is about
	// 40 MB: some hours of a thousand deployment × key × version rows.
	DefaultMaxPendingRows = 50_000
	// flushTimeout bounds one write; a write cut short is retried.
	flushTimeout = 5 * time.Second
)

// Event is the usage of one request: a chat completion, a response, a
// playground or replay run.
type Event struct {
	// ProjectID owns the request. An event without one is not counted.
	ProjectID uuid.UUID
	// DeploymentID is the deployment the request named; uuid.Nil when it
	// named none that exists.
	DeploymentID uuid.UUID
	// Deployment is that deployment's name, the label of its Prometheus
	// series (the rollups key by DeploymentID, which a rename keeps).
	Deployment string
	// APIKeyID is the key that authenticated the request; uuid.Nil for a
	// request that came through BudApp (the playground, a replay).
	APIKeyID uuid.UUID
	// PromptID and PromptVersion are the prompt version that ran; uuid.Nil
	// and 0 for a chat completion or an unsaved document.
	PromptID      uuid.UUID
	PromptVersion int32
	// InputTokens and OutputTokens are the tokens the upstreams reported
	// (over all model calls of a run); negative counts are read as 0.
	InputTokens, OutputTokens int64
	// Error says the request failed, for any reason but a rate limit.
	Error bool
	// CacheHit says it was answered from the response cache.
	CacheHit bool
	// RateLimited says a rate or concurrency limit refused it. Its latency
	// is not timed: a refusal answered at once would hide how long the
	// admitted requests took.
	RateLimited bool
	// Latency is from the request's arrival to the end of its answer.
	Latency time.Duration
	// At places the request in its hour; the zero time means now.
	At time.Time
}

// Config configures a Recorder.
type Config struct {
	// Pool is the database that holds usage_hourly. Required.
	Pool *pgxpool.Pool
	// Registry receives the bud_usage_* metrics; nil keeps no Prometheus
	// series (the rollups are still written).
	Registry prometheus.Registerer
	// Logger receives failed and recovered writes; nil means
	// slog.Default().
	Logger *slog.Logger
	// FlushInterval is how often Run writes; 0 means
	// DefaultFlushInterval.
	FlushInterval time.Duration
	// MaxPendingRows bounds the rollup rows kept in memory while writes
	// fail; 0 means DefaultMaxPendingRows. Past it, requests of rows not
	// already kept are dropped and counted in bud_usage_dropped_requests_total.
	MaxPendingRows int
}

// Recorder aggregates Events in memory and writes them in batches; Run must
// be running for them to reach Postgres. Its methods are safe for
// concurrent use.
//
// A write that fails keeps its rows, and the next write adds them again,
// so an outage delays usage without losing it, up to MaxPendingRows rows.
// A write whose outcome is unknown (the connection dropped as it
// committed) is written again too: such rows can count twice, never zero
// times.
type Recorder struct {
	q        *dbsqlc.Queries
	log      *slog.Logger
	interval time.Duration
	metrics  *recorderMetrics // nil without a registry

	shards [numShards]shard

	// flushMu serializes flushes; it guards everything below.
	flushMu    sync.Mutex
	pending    map[key]*counts
	maxPending int
	// failing is how many flushes in a row have failed; a streak is
	// logged when it begins and when it ends, not every second.
	failing int
	// dropping says requests were dropped in this streak (logged once).
	dropping bool
	order    []key
	arg      dbsqlc.AddUsageParams
}

// numShards spreads Record over this many locks; a power of two.
const numShards = 32

type shard struct {
	mu sync.Mutex
	m  map[key]*entry
	// Keeps two shards' locks off one 64-byte cache line.
	_ [48]byte
}

// key is a rollup row: who and which hour.
type key struct {
	project, deployment, apiKey, prompt uuid.UUID
	version                             int32
	// hour is the start of the hour in Unix seconds.
	hour int64
}

// counts are the sums of a row.
type counts struct {
	requests, inputTokens, outputTokens, errors, cacheHits, rateLimited int64
	// latencyUS and latencyMaxUS are in microseconds.
	latencyUS, latencyMaxUS int64
	buckets                 [LatencyBuckets]int64
}

// entry is a row's counts since the last flush and the Prometheus series
// its requests go to, found once per row rather than per request.
type entry struct {
	counts
	series *series
}

// New returns a Recorder. It fails without a Pool, with a negative
// interval or bound, or when Registry already holds bud_usage_* metrics.
func New(cfg Config) (*Recorder, error) {
	switch {
	case cfg.Pool == nil:
		return nil, errors.New("usage: Config.Pool is required")
	case cfg.FlushInterval < 0:
		return nil, errors.New("usage: Config.FlushInterval must not be negative")
	case cfg.MaxPendingRows < 0:
		return nil, errors.New("usage: Config.MaxPendingRows must not be negative")
	}
	r := &Recorder{
		q:          dbsqlc.New(cfg.Pool),
		log:        cfg.Logger,
		interval:   cfg.FlushInterval,
		maxPending: cfg.MaxPendingRows,
		pending:    make(map[key]*counts),
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.interval == 0 {
		r.interval = DefaultFlushInterval
	}
	if r.maxPending == 0 {
		r.maxPending = DefaultMaxPendingRows
	}
	if cfg.Registry != nil {
		m, err := newRecorderMetrics(cfg.Registry)
		if err != nil {
			return nil, err
		}
		r.metrics = m
	}
	for i := range r.shards {
		r.shards[i].m = make(map[key]*entry)
	}
	return r, nil
}

// Record counts one request. It never blocks on I/O.
func (r *Recorder) Record(e Event) {
	if e.ProjectID == uuid.Nil {
		return
	}
	at := e.At
	if at.IsZero() {
		at = time.Now()
	}
	k := key{
		project: e.ProjectID, deployment: e.DeploymentID, apiKey: e.APIKeyID,
		prompt: e.PromptID, version: e.PromptVersion,
		hour: at.Truncate(time.Hour).Unix(),
	}
	in, out := max(e.InputTokens, 0), max(e.OutputTokens, 0)
	latency := max(e.Latency, 0)
	timed := !e.RateLimited
	bucket := latencyBucket(latency)
	us := int64(latency / time.Microsecond)

	s := &r.shards[k.shard()]
	s.mu.Lock()
	c := s.m[k]
	if c == nil {
		c = &entry{}
		s.m[k] = c
	}
	if r.metrics != nil && (c.series == nil || c.series.deployment != e.Deployment) {
		c.series = r.metrics.series(e.ProjectID, e.Deployment)
	}
	c.requests++
	c.inputTokens += in
	c.outputTokens += out
	if e.Error {
		c.errors++
	}
	if e.CacheHit {
		c.cacheHits++
	}
	if e.RateLimited {
		c.rateLimited++
	}
	if timed {
		c.latencyUS += us
		c.latencyMaxUS = max(c.latencyMaxUS, us)
		c.buckets[bucket]++
	}
	ser := c.series
	s.mu.Unlock()

	if ser != nil {
		ser.observe(e, in, out, latency, timed)
	}
}

// shard picks the key's shard from bits of its ids, which are random.
func (k *key) shard() uint64 {
	h := binary.LittleEndian.Uint64(k.project[8:]) ^
		binary.LittleEndian.Uint64(k.deployment[8:])*0x9e3779b97f4a7c15 ^
		binary.LittleEndian.Uint64(k.apiKey[8:])*0xbf58476d1ce4e5b9 ^
		binary.LittleEndian.Uint64(k.prompt[8:]) ^ uint64(k.version) ^ uint64(k.hour)
	h ^= h >> 32
	h ^= h >> 16
	return h % numShards
}

// Run writes what was recorded every FlushInterval until ctx ends, then
// writes what is left and returns that last write's error: what it could
// not write is lost.
func (r *Recorder) Run(ctx context.Context) error {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return r.flushDetached(ctx)
		case <-t.C:
			// Failures are logged and kept for the next tick.
			_ = r.flushDetached(ctx)
		}
	}
}

// flushDetached flushes with a deadline of its own: a write cut short by
// shutdown would be a write of unknown outcome.
func (r *Recorder) flushDetached(ctx context.Context) error {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
	defer cancel()
	return r.Flush(fctx)
}

// Flush writes everything recorded so far in one statement. When it
// fails, the rows stay for the next flush, and the error says so.
func (r *Recorder) Flush(ctx context.Context) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()

	dropped := r.take()
	if dropped > 0 {
		if r.metrics != nil {
			r.metrics.dropped.Add(float64(dropped))
		}
		if !r.dropping {
			r.dropping = true
			r.log.Error("usage: dropping requests: too many rows wait for the database", "max_pending_rows", r.maxPending, "dropped_requests", dropped)
		}
	}
	if len(r.pending) == 0 {
		return nil
	}
	r.fillArg()
	err := r.q.AddUsage(ctx, r.arg)
	if err != nil {
		r.failing++
		if r.metrics != nil {
			r.metrics.flushes.WithLabelValues("error").Inc()
			r.metrics.pending.Set(float64(len(r.pending)))
		}
		if r.failing == 1 {
			r.log.Warn("usage: write failed; keeping the rows for the next write", "rows", len(r.pending), "err", err)
		}
		return fmt.Errorf("usage: write %d rows (kept for the next flush): %w", len(r.pending), err)
	}
	if r.failing > 0 {
		r.log.Info("usage: writes recovered", "failed_writes", r.failing, "rows", len(r.pending))
	}
	r.failing, r.dropping = 0, false
	clear(r.pending)
	if r.metrics != nil {
		r.metrics.flushes.WithLabelValues("ok").Inc()
		r.metrics.pending.Set(0)
	}
	return nil
}

// take moves every shard's counts into pending and forgets rows that saw
// no request since the last flush, so past hours leave memory. It returns
// how many requests had no room in pending.
func (r *Recorder) take() (dropped int64) {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if e.requests == 0 {
				delete(s.m, k)
				continue
			}
			if p := r.pending[k]; p != nil {
				p.add(&e.counts)
			} else if len(r.pending) < r.maxPending {
				c := e.counts
				r.pending[k] = &c
			} else {
				dropped += e.requests
			}
			e.counts = counts{}
		}
		s.mu.Unlock()
	}
	return dropped
}

func (c *counts) add(o *counts) {
	c.requests += o.requests
	c.inputTokens += o.inputTokens
	c.outputTokens += o.outputTokens
	c.errors += o.errors
	c.cacheHits += o.cacheHits
	c.rateLimited += o.rateLimited
	c.latencyUS += o.latencyUS
	c.latencyMaxUS = max(c.latencyMaxUS, o.latencyMaxUS)
	for i, n := range o.buckets {
		c.buckets[i] += n
	}
}

// fillArg lays pending out as AddUsage's arrays, in key order: processes
// that write the same rows then lock them in the same order and cannot
// deadlock one another.
func (r *Recorder) fillArg() {
	r.order = r.order[:0]
	for k := range r.pending {
		r.order = append(r.order, k)
	}
	slices.SortFunc(r.order, compareKeys)
	a := &r.arg
	n := len(r.order)
	a.ProjectIds = resize(a.ProjectIds, n)
	a.DeploymentIds = resize(a.DeploymentIds, n)
	a.ApiKeyIds = resize(a.ApiKeyIds, n)
	a.PromptIds = resize(a.PromptIds, n)
	a.PromptVersions = resize(a.PromptVersions, n)
	a.Hours = resize(a.Hours, n)
	a.Requests = resize(a.Requests, n)
	a.InputTokens = resize(a.InputTokens, n)
	a.OutputTokens = resize(a.OutputTokens, n)
	a.Errors = resize(a.Errors, n)
	a.CacheHits = resize(a.CacheHits, n)
	a.RateLimited = resize(a.RateLimited, n)
	a.LatencyUsSums = resize(a.LatencyUsSums, n)
	a.LatencyUsMaxes = resize(a.LatencyUsMaxes, n)
	a.LatencyBuckets = resize(a.LatencyBuckets, n*LatencyBuckets)
	for i, k := range r.order {
		c := r.pending[k]
		a.ProjectIds[i], a.DeploymentIds[i], a.ApiKeyIds[i], a.PromptIds[i] = k.project, k.deployment, k.apiKey, k.prompt
		a.PromptVersions[i] = k.version
		a.Hours[i] = time.Unix(k.hour, 0).UTC()
		a.Requests[i], a.InputTokens[i], a.OutputTokens[i] = c.requests, c.inputTokens, c.outputTokens
		a.Errors[i], a.CacheHits[i], a.RateLimited[i] = c.errors, c.cacheHits, c.rateLimited
		a.LatencyUsSums[i], a.LatencyUsMaxes[i] = c.latencyUS, c.latencyMaxUS
		copy(a.LatencyBuckets[i*LatencyBuckets:], c.buckets[:])
	}
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func compareKeys(a, b key) int {
	return cmp.Or(
		slices.Compare(a.project[:], b.project[:]),
		cmp.Compare(a.hour, b.hour),
		slices.Compare(a.deployment[:], b.deployment[:]),
		slices.Compare(a.apiKey[:], b.apiKey[:]),
		slices.Compare(a.prompt[:], b.prompt[:]),
		cmp.Compare(a.version, b.version),
	)
}
