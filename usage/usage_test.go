package usage_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/usage"
)

// writes counts the statements that write usage_hourly and announces each
// one's end.
type writes struct {
	n    atomic.Int64
	done chan error
}

func (w *writes) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if strings.Contains(data.SQL, "INSERT INTO usage_hourly") {
		w.n.Add(1)
		return context.WithValue(ctx, usageWrite{}, true)
	}
	return ctx
}

func (w *writes) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	if ctx.Value(usageWrite{}) == nil {
		return
	}
	select {
	case w.done <- data.Err:
	default:
	}
}

type usageWrite struct{}

// bundle is what a test works with: a fresh schema, a pool on it that
// counts usage writes, a project and a recorder.
type bundle struct {
	pool    *pgxpool.Pool
	writes  *writes
	project uuid.UUID
	reg     *prometheus.Registry
	rec     *usage.Recorder
}

func setup(t *testing.T, cfg usage.Config) *bundle {
	t.Helper()
	ctx := context.Background()
	_, schema := dbtest.NewSchema(t)
	pcfg, err := pgxpool.ParseConfig(dbtest.URL())
	require.NoError(t, err)
	pcfg.ConnConfig.RuntimeParams["search_path"] = schema
	pcfg.MaxConns = 4
	w := &writes{done: make(chan error, 64)}
	pcfg.ConnConfig.Tracer = w
	pool, err := db.OpenConfig(ctx, pcfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	p, err := dbsqlc.New(pool).CreateProject(ctx, dbsqlc.CreateProjectParams{Name: "p-" + uuid.NewString()[:8]})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	cfg.Pool, cfg.Registry = pool, reg
	rec, err := usage.New(cfg)
	require.NoError(t, err)
	return &bundle{pool: pool, writes: w, project: p.ID, reg: reg, rec: rec}
}

// sums are what a test sent, or what the rollups hold, for one group.
type sums struct {
	Requests, InputTokens, OutputTokens, Errors, CacheHits, RateLimited, Timed int64
}

func (s *sums) add(e usage.Event) {
	s.Requests++
	s.InputTokens += e.InputTokens
	s.OutputTokens += e.OutputTokens
	if e.Error {
		s.Errors++
	}
	if e.CacheHit {
		s.CacheHits++
	}
	if e.RateLimited {
		s.RateLimited++
	} else {
		s.Timed++
	}
}

// stored sums the rollups of project by column (deployment_id, api_key_id,
// an expression of hour), read with SQL of the test's own.
func stored(t *testing.T, pool *pgxpool.Pool, project uuid.UUID, column string) map[string]sums {
	t.Helper()
	rows, err := pool.Query(context.Background(), fmt.Sprintf(`
		SELECT coalesce(%[1]s::text, ''), sum(requests)::bigint, sum(input_tokens)::bigint, sum(output_tokens)::bigint,
		       sum(errors)::bigint, sum(cache_hits)::bigint, sum(rate_limited)::bigint,
		       sum((SELECT sum(b) FROM unnest(latency_buckets) AS b))::bigint
		FROM usage_hourly WHERE project_id = $1 GROUP BY %[1]s`, column), project)
	require.NoError(t, err)
	out := map[string]sums{}
	for rows.Next() {
		var k string
		var s sums
		require.NoError(t, rows.Scan(&k, &s.Requests, &s.InputTokens, &s.OutputTokens, &s.Errors, &s.CacheHits, &s.RateLimited, &s.Timed))
		out[k] = s
	}
	require.NoError(t, rows.Err())
	return out
}

func TestConcurrentRecordsAddUp(t *testing.T) {
	t.Parallel()
	b := setup(t, usage.Config{})
	ctx := context.Background()
	deployments := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	keys := []uuid.UUID{uuid.New(), uuid.New(), uuid.New(), uuid.New(), uuid.Nil}
	prompt := uuid.New()
	base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

	const workers, perWorker = 10, 1000
	var mu sync.Mutex
	byKey, byDeployment, byHour := map[string]sums{}, map[string]sums{}, map[string]sums{}
	var wg sync.WaitGroup
	var flushes atomic.Int64
	var flushErr atomic.Pointer[error]
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, d, h := map[string]sums{}, map[string]sums{}, map[string]sums{}
			for i := range perWorker {
				n := w*perWorker + i
				dep := deployments[n%len(deployments)]
				e := usage.Event{
					ProjectID: b.project, DeploymentID: dep, Deployment: "dep-" + dep.String()[:4],
					APIKeyID:    keys[n%len(keys)],
					InputTokens: int64(n % 97), OutputTokens: int64(n % 31),
					Error: n%7 == 0, CacheHit: n%11 == 0, RateLimited: n%13 == 0,
					Latency: time.Duration(n%5000) * time.Millisecond,
					At:      base.Add(time.Duration(n%3)*time.Hour + time.Duration(n%60)*time.Minute),
				}
				if n%2 == 0 {
					e.PromptID, e.PromptVersion = prompt, int32(1+n%3)
				}
				b.rec.Record(e)
				// Flushes run while the other workers record: each
				// takes what is there.
				if i%250 == 249 {
					flushes.Add(1)
					if err := b.rec.Flush(ctx); err != nil {
						flushErr.CompareAndSwap(nil, &err)
					}
				}
				kk := ""
				if e.APIKeyID != uuid.Nil {
					kk = e.APIKeyID.String()
				}
				s := k[kk]
				s.add(e)
				k[kk] = s
				s = d[dep.String()]
				s.add(e)
				d[dep.String()] = s
				hour := e.At.UTC().Format("2006-01-02T15")
				s = h[hour]
				s.add(e)
				h[hour] = s
			}
			mu.Lock()
			defer mu.Unlock()
			for _, m := range []struct{ from, to map[string]sums }{{k, byKey}, {d, byDeployment}, {h, byHour}} {
				for id, s := range m.from {
					acc := m.to[id]
					acc.Requests += s.Requests
					acc.InputTokens += s.InputTokens
					acc.OutputTokens += s.OutputTokens
					acc.Errors += s.Errors
					acc.CacheHits += s.CacheHits
					acc.RateLimited += s.RateLimited
					acc.Timed += s.Timed
					m.to[id] = acc
				}
			}
		}()
	}
	wg.Wait()
	if p := flushErr.Load(); p != nil {
		require.NoError(t, *p)
	}
	flushes.Add(1)
	require.NoError(t, b.rec.Flush(ctx))

	require.Equal(t, byKey, stored(t, b.pool, b.project, "api_key_id"))
	require.Equal(t, byDeployment, stored(t, b.pool, b.project, "deployment_id"))
	require.Equal(t, byHour, stored(t, b.pool, b.project, `to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24')`))
	var total int64
	for _, s := range byKey {
		total += s.Requests
	}
	require.EqualValues(t, workers*perWorker, total)
	// At most one statement per flush, and never one per request.
	require.LessOrEqual(t, b.writes.n.Load(), flushes.Load())
	t.Logf("%d requests written in %d statements over %d flushes", total, b.writes.n.Load(), flushes.Load())

	// Each row's latency is in its histogram and its maximum bounds it.
	var bad int
	require.NoError(t, b.pool.QueryRow(ctx, `
		SELECT count(*) FROM usage_hourly
		WHERE (SELECT sum(x) FROM unnest(latency_buckets) AS x) <> requests - rate_limited
		   OR latency_us_max * (requests - rate_limited) < latency_us_sum`).Scan(&bad))
	require.Zero(t, bad)
}

func TestOneStatementPerFlush(t *testing.T) {
	t.Parallel()
	b := setup(t, usage.Config{})
	ctx := context.Background()
	at := time.Now()
	for i := range 10_000 {
		b.rec.Record(usage.Event{ProjectID: b.project, DeploymentID: uuid.New(), InputTokens: 1, At: at.Add(-time.Duration(i%48) * time.Hour)})
	}
	require.Zero(t, b.writes.n.Load(), "Record wrote to the database")
	require.NoError(t, b.rec.Flush(ctx))
	require.EqualValues(t, 1, b.writes.n.Load())
	var rows, requests int64
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*), sum(requests)::bigint FROM usage_hourly`).Scan(&rows, &requests))
	require.EqualValues(t, 10_000, rows)
	require.EqualValues(t, 10_000, requests)

	// A flush with nothing recorded writes nothing.
	require.NoError(t, b.rec.Flush(ctx))
	require.EqualValues(t, 1, b.writes.n.Load())
}

func TestFailedFlushKeepsCounts(t *testing.T) {
	t.Parallel()
	b := setup(t, usage.Config{})
	ctx := context.Background()
	dep := uuid.New()
	record := func(n int) {
		for range n {
			b.rec.Record(usage.Event{ProjectID: b.project, DeploymentID: dep, Deployment: "d", InputTokens: 3, OutputTokens: 2, Latency: time.Millisecond})
		}
	}

	// A flush cut short by its context.
	record(100)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	require.Error(t, b.rec.Flush(cancelled))
	require.Empty(t, stored(t, b.pool, b.project, "deployment_id"))

	// A database that refuses the write: the table is not there.
	_, err := b.pool.Exec(ctx, `ALTER TABLE usage_hourly RENAME TO usage_hourly_away`)
	require.NoError(t, err)
	record(50)
	err = b.rec.Flush(ctx)
	require.ErrorContains(t, err, "kept for the next flush")
	require.EqualValues(t, 1, value(t, b.reg, "bud_usage_pending_rows"))
	_, err = b.pool.Exec(ctx, `ALTER TABLE usage_hourly_away RENAME TO usage_hourly`)
	require.NoError(t, err)

	record(25)
	require.NoError(t, b.rec.Flush(ctx))
	require.Equal(t, map[string]sums{dep.String(): {Requests: 175, InputTokens: 525, OutputTokens: 350, Timed: 175}},
		stored(t, b.pool, b.project, "deployment_id"))
	require.Zero(t, value(t, b.reg, "bud_usage_pending_rows"))
}

func TestPendingRowsAreBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, usage.Config{MaxPendingRows: 2})
	ctx := context.Background()
	deps := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	_, err := b.pool.Exec(ctx, `ALTER TABLE usage_hourly RENAME TO usage_hourly_away`)
	require.NoError(t, err)
	for _, d := range deps[:2] {
		b.rec.Record(usage.Event{ProjectID: b.project, DeploymentID: d})
	}
	require.Error(t, b.rec.Flush(ctx))
	// The bound is reached: a third row has no room, but rows already
	// kept still count.
	for range 5 {
		b.rec.Record(usage.Event{ProjectID: b.project, DeploymentID: deps[2]})
		b.rec.Record(usage.Event{ProjectID: b.project, DeploymentID: deps[0]})
	}
	require.Error(t, b.rec.Flush(ctx))
	require.EqualValues(t, 5, value(t, b.reg, "bud_usage_dropped_requests_total"))
	require.EqualValues(t, 2, value(t, b.reg, "bud_usage_pending_rows"))

	_, err = b.pool.Exec(ctx, `ALTER TABLE usage_hourly_away RENAME TO usage_hourly`)
	require.NoError(t, err)
	require.NoError(t, b.rec.Flush(ctx))
	got := stored(t, b.pool, b.project, "deployment_id")
	require.Len(t, got, 2)
	require.EqualValues(t, 6, got[deps[0].String()].Requests)
	require.EqualValues(t, 1, got[deps[1].String()].Requests)
}

func TestDeletedProjectDoesNotBlockTheRest(t *testing.T) {
	t.Parallel()
	b := setup(t, usage.Config{})
	ctx := context.Background()
	q := dbsqlc.New(b.pool)
	gone, err := q.CreateProject(ctx, dbsqlc.CreateProjectParams{Name: "gone"})
	require.NoError(t, err)
	b.rec.Record(usage.Event{ProjectID: gone.ID})
	b.rec.Record(usage.Event{ProjectID: b.project})
	_, err = q.DeleteProject(ctx, gone.ID)
	require.NoError(t, err)
	require.NoError(t, b.rec.Flush(ctx))
	require.EqualValues(t, 1, stored(t, b.pool, b.project, "project_id")[b.project.String()].Requests)
	require.Empty(t, stored(t, b.pool, gone.ID, "project_id"))

	// Deleting a project deletes its usage.
	_, err = q.DeleteProject(ctx, b.project)
	require.NoError(t, err)
	require.Empty(t, stored(t, b.pool, b.project, "project_id"))
}

func TestRunWritesEveryIntervalAndAtShutdown(t *testing.T) {
	t.Parallel()
	b := setup(t, usage.Config{FlushInterval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.rec.Run(ctx) }()

	b.rec.Record(usage.Event{ProjectID: b.project})
	select {
	case err := <-b.writes.done:
		require.NoError(t, err, "Run wrote on its own")
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not write within 10 s")
	}
	require.EqualValues(t, 1, stored(t, b.pool, b.project, "project_id")[b.project.String()].Requests)

	b.rec.Record(usage.Event{ProjectID: b.project})
	cancel()
	require.NoError(t, <-done)
	require.EqualValues(t, 2, stored(t, b.pool, b.project, "project_id")[b.project.String()].Requests)
}

func TestPrometheusSeries(t *testing.T) {
	t.Parallel()
	b := setup(t, usage.Config{})
	p := b.project.String()
	for i := range 10 {
		b.rec.Record(usage.Event{
			ProjectID: b.project, DeploymentID: uuid.New(), Deployment: "chat", APIKeyID: uuid.New(),
			InputTokens: 10, OutputTokens: 5, Error: i == 0, CacheHit: i < 3, RateLimited: i == 9,
			Latency: 20 * time.Millisecond,
		})
	}
	require.EqualValues(t, 10, value(t, b.reg, "bud_usage_requests_total", "project", p, "deployment", "chat"))
	require.EqualValues(t, 1, value(t, b.reg, "bud_usage_errors_total", "project", p, "deployment", "chat"))
	require.EqualValues(t, 3, value(t, b.reg, "bud_usage_cache_hits_total", "project", p, "deployment", "chat"))
	require.EqualValues(t, 1, value(t, b.reg, "bud_usage_rate_limited_total", "project", p, "deployment", "chat"))
	require.EqualValues(t, 100, value(t, b.reg, "bud_usage_tokens_total", "project", p, "deployment", "chat", "direction", "in"))
	require.EqualValues(t, 50, value(t, b.reg, "bud_usage_tokens_total", "project", p, "deployment", "chat", "direction", "out"))
	// The rate-limited request is not timed.
	require.EqualValues(t, 9, value(t, b.reg, "bud_usage_request_duration_seconds", "project", p, "deployment", "chat"))
	// One series per project and deployment: keys are not a label.
	mfs, err := b.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "bud_usage_requests_total" {
			require.Len(t, mf.GetMetric(), 1)
		}
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	b := setup(t, usage.Config{})
	e := usage.Event{ProjectID: b.project, DeploymentID: uuid.New(), Deployment: "chat", APIKeyID: uuid.New(),
		InputTokens: 100, OutputTokens: 20, Latency: 300 * time.Millisecond, At: time.Now()}
	b.rec.Record(e)
	allocs := testing.AllocsPerRun(1000, func() { b.rec.Record(e) })
	require.Zero(t, allocs)
	// Nor after a flush, which keeps the row's entry for its next request.
	require.NoError(t, b.rec.Flush(context.Background()))
	allocs = testing.AllocsPerRun(1000, func() { b.rec.Record(e) })
	require.Zero(t, allocs)
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	_, err := usage.New(usage.Config{})
	require.ErrorContains(t, err, "Pool is required")
	b := setup(t, usage.Config{})
	_, err = usage.New(usage.Config{Pool: b.pool, FlushInterval: -time.Second})
	require.ErrorContains(t, err, "FlushInterval")
	_, err = usage.New(usage.Config{Pool: b.pool, MaxPendingRows: -1})
	require.ErrorContains(t, err, "MaxPendingRows")
	// A registry holds one recorder's metrics.
	_, err = usage.New(usage.Config{Pool: b.pool, Registry: b.reg})
	require.ErrorContains(t, err, "register metrics")
}

// value is the value of reg's metric name whose labels include the pairs
// given (name, value, …): a counter's or gauge's value, a histogram's
// sample count.
func value(t *testing.T, reg *prometheus.Registry, name string, pairs ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(pairs); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == pairs[i] && l.GetValue() == pairs[i+1]
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("no metric %s%v", name, pairs)
	return 0
}
