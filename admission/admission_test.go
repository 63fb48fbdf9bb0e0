package admission_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/admission"
)

// redisAddr is the machine's Redis, which the tests share, each under a
// key prefix of its own.
const redisAddr = "127.0.0.1:6379"

// clock is a settable clock for the in-process state.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newRedis returns a client of the machine's Redis and a fresh key prefix,
// whose keys are deleted when the test ends.
func newRedis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: redisAddr})
	require.NoError(t, c.Ping(t.Context()).Err(), "Redis on %s", redisAddr)
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "budtest:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := c.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			_ = c.Del(ctx, keys...).Err()
		}
		_ = c.Close()
	})
	return c, prefix
}

// newAdmitter returns an Admitter on Redis (redis set) or in process.
func newAdmitter(t testing.TB, useRedis bool, cfg admission.Config) *admission.Admitter {
	t.Helper()
	if useRedis {
		cfg.Redis, cfg.Prefix = newRedis(t)
	}
	a := admission.New(cfg)
	t.Cleanup(a.Close)
	return a
}

func refusal(t testing.TB, err error) *admission.Refused {
	t.Helper()
	var r *admission.Refused
	require.True(t, errors.As(err, &r), "want a refusal, got %v", err)
	return r
}

func header(t *admission.Ticket) http.Header {
	h := http.Header{}
	t.Headers(h)
	return h
}

// TestNilClientIsInProcess: a nil *redis.Client, as a caller without a
// Redis may pass, keeps the state in the process.
func TestNilClientIsInProcess(t *testing.T) {
	t.Parallel()
	var c *redis.Client
	a := admission.New(admission.Config{Redis: c})
	t.Cleanup(a.Close)
	req := admission.Request{DeploymentID: uuid.New(), Deployment: admission.Limits{MaxConcurrency: 1}}
	tk, err := a.Admit(t.Context(), req)
	require.NoError(t, err)
	_, err = a.Admit(t.Context(), req)
	refusal(t, err)
	tk.Done(0)
}

func TestNoLimitsCostNothing(t *testing.T) {
	for _, useRedis := range []bool{false, true} {
		a := newAdmitter(t, useRedis, admission.Config{})
		req := admission.Request{DeploymentID: uuid.New(), KeyID: uuid.New(), Deployment: admission.Limits{QueueTimeout: time.Second}}
		tk, err := a.Admit(t.Context(), req)
		require.NoError(t, err)
		require.Nil(t, tk, "no limit, no ticket")
		tk.Done(100)
		require.Empty(t, header(tk))
		allocs := testing.AllocsPerRun(100, func() {
			tk, _ := a.Admit(context.Background(), req)
			tk.Done(10)
		})
		require.Zero(t, allocs)
	}
}

// TestRequestsPerMinuteExact: a request bucket lets burst requests through
// at once, then one per 60/rpm seconds, to the millisecond.
func TestRequestsPerMinuteExact(t *testing.T) {
	t.Parallel()
	clk := newClock()
	a := newAdmitter(t, false, admission.Config{Now: clk.Now})
	dep := uuid.New()
	req := admission.Request{DeploymentID: dep, Deployment: admission.Limits{Rate: admission.Rate{RequestsPerMinute: 60, Burst: 10}}}
	for i := range 10 {
		tk, err := a.Admit(t.Context(), req)
		require.NoError(t, err, "request %d", i)
		h := header(tk)
		require.Equal(t, "60", h.Get("x-ratelimit-limit-requests"))
		require.Equal(t, strconv.Itoa(9-i), h.Get("x-ratelimit-remaining-requests"))
		require.Equal(t, strconv.Itoa(i+1)+"s", h.Get("x-ratelimit-reset-requests"))
		require.Empty(t, h.Get("x-ratelimit-limit-tokens"), "no token limit, no token headers")
		tk.Done(0)
	}
	_, err := a.Admit(t.Context(), req)
	r := refusal(t, err)
	require.Equal(t, admission.LimitRequests, r.Limit)
	require.Equal(t, admission.ScopeDeployment, r.Scope)
	require.Equal(t, int64(60), r.Allowed)
	require.Equal(t, time.Second, r.RetryAfter)
	require.Equal(t, 1, r.RetryAfterSeconds())
	h := http.Header{}
	r.Headers(h)
	require.Equal(t, "0", h.Get("x-ratelimit-remaining-requests"))
	require.Equal(t, "10s", h.Get("x-ratelimit-reset-requests"))

	clk.Advance(999 * time.Millisecond)
	_, err = a.Admit(t.Context(), req)
	require.Equal(t, time.Millisecond, refusal(t, err).RetryAfter)
	clk.Advance(time.Millisecond)
	_, err = a.Admit(t.Context(), req)
	require.NoError(t, err, "one request a second")
	_, err = a.Admit(t.Context(), req)
	refusal(t, err)

	// A long quiet spell refills to the burst, no further.
	clk.Advance(time.Hour)
	for range 10 {
		_, err := a.Admit(t.Context(), req)
		require.NoError(t, err)
	}
	_, err = a.Admit(t.Context(), req)
	refusal(t, err)

	// Without a burst, the bucket holds a minute's worth.
	req.DeploymentID = uuid.New()
	req.Deployment.Burst = 0
	for range 60 {
		_, err := a.Admit(t.Context(), req)
		require.NoError(t, err)
	}
	_, err = a.Admit(t.Context(), req)
	refusal(t, err)
}

// TestRequestsPerMinuteInRedis: the same bucket in Redis, on its clock: a
// rate of one a minute refills nothing while the test runs.
func TestRequestsPerMinuteInRedis(t *testing.T) {
	t.Parallel()
	a := newAdmitter(t, true, admission.Config{})
	req := admission.Request{DeploymentID: uuid.New(), Deployment: admission.Limits{Rate: admission.Rate{RequestsPerMinute: 1, Burst: 10}}}
	for i := range 10 {
		tk, err := a.Admit(t.Context(), req)
		require.NoError(t, err, "request %d", i)
		h := header(tk)
		require.Equal(t, "1", h.Get("x-ratelimit-limit-requests"))
		require.Equal(t, strconv.Itoa(9-i), h.Get("x-ratelimit-remaining-requests"))
		tk.Done(0)
	}
	_, err := a.Admit(t.Context(), req)
	r := refusal(t, err)
	require.Equal(t, admission.LimitRequests, r.Limit)
	require.InDelta(t, time.Minute, r.RetryAfter, float64(5*time.Second))
	require.Equal(t, 60, r.RetryAfterSeconds())

	// A bucket a minute's worth of requests: 600 a minute is 10 a second.
	req = admission.Request{DeploymentID: uuid.New(), Deployment: admission.Limits{Rate: admission.Rate{RequestsPerMinute: 600}}}
	start := time.Now()
	admitted := 0
	for range 700 {
		if _, err := a.Admit(t.Context(), req); err == nil {
			admitted++
		} else {
			refusal(t, err)
		}
	}
	refill := int(time.Since(start).Milliseconds()/100) + 1
	require.GreaterOrEqual(t, admitted, 600)
	require.LessOrEqual(t, admitted, 600+refill)
}

// TestTokensPerMinute: a token bucket lets requests through while it has
// tokens, is charged after the reply, and refuses while in debt.
func TestTokensPerMinute(t *testing.T) {
	t.Parallel()
	clk := newClock()
	a := newAdmitter(t, false, admission.Config{Now: clk.Now})
	req := admission.Request{DeploymentID: uuid.New(), Deployment: admission.Limits{Rate: admission.Rate{TokensPerMinute: 1000}}}
	tk, err := a.Admit(t.Context(), req)
	require.NoError(t, err)
	h := header(tk)
	require.Equal(t, "1000", h.Get("x-ratelimit-limit-tokens"))
	require.Equal(t, "1000", h.Get("x-ratelimit-remaining-tokens"))
	require.Equal(t, "0s", h.Get("x-ratelimit-reset-tokens"))
	require.Empty(t, h.Get("x-ratelimit-limit-requests"))
	tk.Done(600)
	tk.Done(600) // only the first Done counts

	tk, err = a.Admit(t.Context(), req)
	require.NoError(t, err, "400 tokens left")
	require.Equal(t, "400", header(tk).Get("x-ratelimit-remaining-tokens"))
	require.Equal(t, "36s", header(tk).Get("x-ratelimit-reset-tokens"))
	tk.Done(900) // 500 in debt

	_, err = a.Admit(t.Context(), req)
	r := refusal(t, err)
	require.Equal(t, admission.LimitTokens, r.Limit)
	require.Equal(t, int64(1000), r.Allowed)
	// 500 tokens at 1000 a minute is 30 s; the bucket must then go above 0.
	require.Equal(t, 30*time.Second+time.Millisecond, r.RetryAfter)
	require.Equal(t, 31, r.RetryAfterSeconds())
	clk.Advance(30 * time.Second)
	_, err = a.Admit(t.Context(), req)
	refusal(t, err)
	clk.Advance(time.Millisecond)
	tk, err = a.Admit(t.Context(), req)
	require.NoError(t, err)

	// A huge reply puts the bucket a minute in debt, no more.
	tk.Done(1 << 40)
	_, err = a.Admit(t.Context(), req)
	require.Equal(t, time.Minute+time.Millisecond, refusal(t, err).RetryAfter)
}

func TestTokensPerMinuteInRedis(t *testing.T) {
	t.Parallel()
	a := newAdmitter(t, true, admission.Config{})
	req := admission.Request{DeploymentID: uuid.New(), Deployment: admission.Limits{Rate: admission.Rate{TokensPerMinute: 1000}}}
	tk, err := a.Admit(t.Context(), req)
	require.NoError(t, err)
	require.Equal(t, "1000", header(tk).Get("x-ratelimit-remaining-tokens"))
	tk.Done(600)
	tk, err = a.Admit(t.Context(), req)
	require.NoError(t, err)
	remaining := header(tk).Get("x-ratelimit-remaining-tokens")
	require.Contains(t, []string{"400", "401", "402"}, remaining, "600 charged, refilled by 1000 a minute since")
	tk.Done(900)
	_, err = a.Admit(t.Context(), req)
	r := refusal(t, err)
	require.Equal(t, admission.LimitTokens, r.Limit)
	require.InDelta(t, 30*time.Second, r.RetryAfter, float64(time.Second))
}

// TestKeyAndDeploymentLimits: a key's limit spans the deployments it
// calls; a deployment's spans the keys that call it; a refused request
// takes from no bucket.
func TestKeyAndDeploymentLimits(t *testing.T) {
	t.Parallel()
	for _, useRedis := range []bool{false, true} {
		a := newAdmitter(t, useRedis, admission.Config{})
		key, otherKey := uuid.New(), uuid.New()
		d1, d2 := uuid.New(), uuid.New()
		loose := admission.Limits{Rate: admission.Rate{RequestsPerMinute: 1, Burst: 100}}
		keyRate := admission.Rate{RequestsPerMinute: 1, Burst: 2}
		for _, d := range []uuid.UUID{d1, d2} {
			_, err := a.Admit(t.Context(), admission.Request{DeploymentID: d, Deployment: loose, KeyID: key, Key: keyRate})
			require.NoError(t, err)
		}
		_, err := a.Admit(t.Context(), admission.Request{DeploymentID: d1, Deployment: loose, KeyID: key, Key: keyRate})
		r := refusal(t, err)
		require.Equal(t, admission.ScopeKey, r.Scope)
		require.Equal(t, admission.LimitRequests, r.Limit)
		h := http.Header{}
		r.Headers(h)
		require.Equal(t, "0", h.Get("x-ratelimit-remaining-requests"), "the headers name the tighter bucket")

		tk, err := a.Admit(t.Context(), admission.Request{DeploymentID: d1, Deployment: loose, KeyID: otherKey, Key: keyRate})
		require.NoError(t, err, "another key has its own bucket")
		require.Equal(t, "1", header(tk).Get("x-ratelimit-remaining-requests"), "the key's bucket, tighter than the deployment's 98")
		tk, err = a.Admit(t.Context(), admission.Request{DeploymentID: d1, Deployment: loose})
		require.NoError(t, err)
		require.Equal(t, "97", header(tk).Get("x-ratelimit-remaining-requests"), "the refused request took nothing from the deployment")

		tight := admission.Limits{Rate: admission.Rate{RequestsPerMinute: 1, Burst: 1}}
		d3 := uuid.New()
		_, err = a.Admit(t.Context(), admission.Request{DeploymentID: d3, Deployment: tight, KeyID: key})
		require.NoError(t, err)
		_, err = a.Admit(t.Context(), admission.Request{DeploymentID: d3, Deployment: tight, KeyID: otherKey})
		require.Equal(t, admission.ScopeDeployment, refusal(t, err).Scope)

		// Key tokens: charged on whichever deployment, refused on any.
		tokenKey := uuid.New()
		keyTokens := admission.Rate{TokensPerMinute: 100}
		tk, err = a.Admit(t.Context(), admission.Request{DeploymentID: d1, Deployment: loose, KeyID: tokenKey, Key: keyTokens})
		require.NoError(t, err)
		tk.Done(500)
		_, err = a.Admit(t.Context(), admission.Request{DeploymentID: d2, Deployment: loose, KeyID: tokenKey, Key: keyTokens})
		r = refusal(t, err)
		require.Equal(t, admission.ScopeKey, r.Scope)
		require.Equal(t, admission.LimitTokens, r.Limit)
	}
}

// TestConcurrency: at most MaxConcurrency requests hold a slot; one more
// waits up to its queue time for a release, then is refused.
func TestConcurrency(t *testing.T) {
	t.Parallel()
	for _, useRedis := range []bool{false, true} {
		a := newAdmitter(t, useRedis, admission.Config{})
		dep := uuid.New()
		req := admission.Request{DeploymentID: dep, Deployment: admission.Limits{MaxConcurrency: 2}}
		t1, err := a.Admit(t.Context(), req)
		require.NoError(t, err)
		t2, err := a.Admit(t.Context(), req)
		require.NoError(t, err)
		_, err = a.Admit(t.Context(), req)
		r := refusal(t, err)
		require.Equal(t, admission.LimitConcurrency, r.Limit)
		require.Equal(t, int64(2), r.Allowed)
		require.Equal(t, 1, r.RetryAfterSeconds())
		t2.Done(0)
		t2.Done(0) // a second Done releases nothing more
		t3, err := a.Admit(t.Context(), req)
		require.NoError(t, err)
		_, err = a.Admit(t.Context(), req)
		refusal(t, err)

		// A request that waits gets the slot a release frees.
		req.Deployment.QueueTimeout = 30 * time.Second
		var released atomic.Bool
		got := make(chan error, 1)
		go func() {
			tk, err := a.Admit(t.Context(), req)
			if err == nil && !released.Load() {
				err = errors.New("admitted before a slot was released")
			}
			tk.Done(0)
			got <- err
		}()
		if !useRedis {
			require.Eventually(t, func() bool { return a.Waiting(dep) == 1 }, 10*time.Second, time.Millisecond)
		}
		released.Store(true)
		t1.Done(0)
		require.NoError(t, <-got)

		// One that waits in vain is refused after its queue time.
		req.Deployment.QueueTimeout = 100 * time.Millisecond
		t4, err := a.Admit(t.Context(), req)
		require.NoError(t, err)
		start := time.Now()
		_, err = a.Admit(t.Context(), req)
		require.Equal(t, admission.LimitConcurrency, refusal(t, err).Limit)
		require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)

		// One whose caller goes away stops waiting.
		ctx, cancel := context.WithCancel(t.Context())
		req.Deployment.QueueTimeout = time.Minute
		go func() {
			if !useRedis {
				for a.Waiting(dep) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			cancel()
		}()
		_, err = a.Admit(ctx, req)
		require.ErrorIs(t, err, context.Canceled)
		if !useRedis {
			require.Zero(t, a.Waiting(dep))
		}
		t3.Done(0)
		t4.Done(0)
		tk, err := a.Admit(t.Context(), req)
		require.NoError(t, err, "every slot was released")
		tk.Done(0)
	}
}

// TestWaitersServedInOrder: in a process, released slots go to waiting
// requests first come, first served.
func TestWaitersServedInOrder(t *testing.T) {
	t.Parallel()
	a := newAdmitter(t, false, admission.Config{})
	dep := uuid.New()
	req := admission.Request{DeploymentID: dep, Deployment: admission.Limits{MaxConcurrency: 1, QueueTimeout: time.Minute}}
	held, err := a.Admit(t.Context(), req)
	require.NoError(t, err)
	order := make(chan int, 3)
	for i := range 3 {
		go func() {
			tk, err := a.Admit(t.Context(), req)
			if err == nil {
				order <- i
				tk.Done(0)
			}
		}()
		require.Eventually(t, func() bool { return a.Waiting(dep) == i+1 }, 10*time.Second, time.Millisecond)
	}
	held.Done(0)
	for i := range 3 {
		require.Equal(t, i, <-order)
	}
}

// TestRatesSharedByProcesses: two Admitters on one Redis, as two gateway
// processes, admit together no more than the burst and the rate's refill.
func TestRatesSharedByProcesses(t *testing.T) {
	t.Parallel()
	c, prefix := newRedis(t)
	procs := []*admission.Admitter{admission.New(admission.Config{Redis: c, Prefix: prefix}), admission.New(admission.Config{Redis: c, Prefix: prefix})}
	for _, a := range procs {
		t.Cleanup(a.Close)
	}
	const rpm, burst = 600, 20
	req := admission.Request{DeploymentID: uuid.New(), Deployment: admission.Limits{Rate: admission.Rate{RequestsPerMinute: rpm, Burst: burst}}}
	var admitted, refused atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for _, a := range procs {
		for range 4 {
			wg.Go(func() {
				for time.Since(start) < 300*time.Millisecond {
					if _, err := a.Admit(context.Background(), req); err == nil {
						admitted.Add(1)
					} else {
						refusal(t, err)
						refused.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	allowed := burst + int64(elapsed.Milliseconds())*rpm/60_000
	t.Logf("admitted %d, refused %d in %s; limit + burst allows %d", admitted.Load(), refused.Load(), elapsed, allowed)
	require.GreaterOrEqual(t, admitted.Load(), int64(burst))
	require.LessOrEqual(t, admitted.Load(), allowed)
	require.Positive(t, refused.Load())
}

// TestConcurrencySharedByProcesses: two Admitters on one Redis never hold
// more than MaxConcurrency slots between them.
func TestConcurrencySharedByProcesses(t *testing.T) {
	t.Parallel()
	c, prefix := newRedis(t)
	procs := []*admission.Admitter{admission.New(admission.Config{Redis: c, Prefix: prefix}), admission.New(admission.Config{Redis: c, Prefix: prefix})}
	for _, a := range procs {
		t.Cleanup(a.Close)
	}
	const most = 3
	req := admission.Request{DeploymentID: uuid.New(), Deployment: admission.Limits{MaxConcurrency: most, QueueTimeout: 5 * time.Second}}
	var inFlight, peak, admitted atomic.Int64
	var wg sync.WaitGroup
	for _, a := range procs {
		for range 5 {
			wg.Go(func() {
				for range 20 {
					tk, err := a.Admit(context.Background(), req)
					if err != nil {
						refusal(t, err)
						continue
					}
					admitted.Add(1)
					n := inFlight.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					time.Sleep(time.Millisecond) // the request's work
					inFlight.Add(-1)
					tk.Done(0)
				}
			})
		}
	}
	wg.Wait()
	t.Logf("admitted %d, peak in flight %d", admitted.Load(), peak.Load())
	require.LessOrEqual(t, peak.Load(), int64(most))
	require.Equal(t, int64(most), peak.Load(), "the slots were used")
	require.Equal(t, int64(200), admitted.Load(), "every request got a slot within its queue time")
}

// TestSlotsOfADeadProcessExpire: a slot whose holder stops renewing it
// (its process died) is free again after the lease; one whose holder
// lives is renewed past it.
func TestSlotsOfADeadProcessExpire(t *testing.T) {
	t.Parallel()
	c, prefix := newRedis(t)
	const lease = 300 * time.Millisecond
	live := admission.New(admission.Config{Redis: c, Prefix: prefix, SlotLease: lease})
	t.Cleanup(live.Close)
	dying := admission.New(admission.Config{Redis: c, Prefix: prefix, SlotLease: lease})
	other := admission.New(admission.Config{Redis: c, Prefix: prefix, SlotLease: lease})
	t.Cleanup(other.Close)

	req := admission.Request{DeploymentID: uuid.New(), Deployment: admission.Limits{MaxConcurrency: 1}}
	held, err := live.Admit(t.Context(), req)
	require.NoError(t, err)
	req.Deployment.QueueTimeout = 3 * lease
	_, err = other.Admit(t.Context(), req)
	require.Equal(t, admission.LimitConcurrency, refusal(t, err).Limit, "a live holder keeps its slot past the lease")
	held.Done(0)

	req.DeploymentID = uuid.New()
	req.Deployment.QueueTimeout = 0
	_, err = dying.Admit(t.Context(), req)
	require.NoError(t, err)
	dying.Close() // it dies: no renewal, no release
	_, err = other.Admit(t.Context(), req)
	refusal(t, err)
	req.Deployment.QueueTimeout = 10 * lease
	start := time.Now()
	tk, err := other.Admit(t.Context(), req)
	require.NoError(t, err, "the dead holder's slot expired")
	require.Less(t, time.Since(start), 2*lease)
	tk.Done(0)
}

// logLines counts the records logged at warn or above.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		l.mu.Lock()
		l.lines = append(l.lines, r.Message)
		l.mu.Unlock()
	}
	return nil
}
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logLines) WithGroup(string) slog.Handler      { return l }

func (l *logLines) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// refusingRedis is an address where connections are accepted and closed
// at once, as by a Redis that is going down; it counts them.
func refusingRedis(t *testing.T) (addr string, dials *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	dials = &atomic.Int64{}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			_ = conn.Close()
		}
	}()
	return ln.Addr().String(), dials
}

// TestRedisDown: without Redis, rate limits let requests through and
// concurrency is counted in the process; the outage is logged once,
// however many requests and retries of Redis it lasts.
func TestRedisDown(t *testing.T) {
	t.Parallel()
	addr, dials := refusingRedis(t)
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	logs := &logLines{}
	a := admission.New(admission.Config{Redis: c, Logger: slog.New(logs)})
	t.Cleanup(a.Close)

	req := admission.Request{
		DeploymentID: uuid.New(), Deployment: admission.Limits{Rate: admission.Rate{RequestsPerMinute: 1, Burst: 1, TokensPerMinute: 1}, MaxConcurrency: 1},
		KeyID: uuid.New(), Key: admission.Rate{RequestsPerMinute: 1, Burst: 1},
	}
	held, err := a.Admit(t.Context(), req)
	require.NoError(t, err)
	require.Empty(t, header(held), "no rate is known")
	_, err = a.Admit(t.Context(), req)
	require.Equal(t, admission.LimitConcurrency, refusal(t, err).Limit, "concurrency is counted in the process")
	held.Done(1000)
	tried := dials.Load()
	require.Positive(t, tried)
	for range 50 {
		tk, err := a.Admit(t.Context(), req)
		require.NoError(t, err, "rate limits fail open")
		tk.Done(1000)
	}
	require.Equal(t, tried, dials.Load(), "Redis is left alone for a while after it failed")
	// Admit until Redis has been tried again, and failed again.
	require.Eventually(t, func() bool {
		tk, err := a.Admit(t.Context(), req)
		require.NoError(t, err)
		tk.Done(0)
		return dials.Load() > tried
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, logs.count(), "%q", logs.lines)
}

// TestIdleStateIsDropped: the in-process state of a deployment or key
// that holds nothing is dropped, and one that holds a slot, a debt or a
// spent bucket is kept; a request after the drop starts from a full
// bucket, which is what the dropped one had become.
func TestIdleStateIsDropped(t *testing.T) {
	t.Parallel()
	clk := newClock()
	a := newAdmitter(t, false, admission.Config{Now: clk.Now})
	limited := admission.Limits{Rate: admission.Rate{RequestsPerMinute: 1, Burst: 1, TokensPerMinute: 100}, MaxConcurrency: 1}
	held := admission.Request{DeploymentID: uuid.New(), Deployment: limited}
	spent := admission.Request{DeploymentID: uuid.New(), Deployment: limited, KeyID: uuid.New(), Key: admission.Rate{RequestsPerMinute: 1}}
	slot, err := a.Admit(t.Context(), held)
	require.NoError(t, err)
	tk, err := a.Admit(t.Context(), spent)
	require.NoError(t, err)
	tk.Done(1000)
	require.Equal(t, 3, a.Sweep(), "nothing is idle yet")

	clk.Advance(90 * time.Second)
	require.Equal(t, 3, a.Sweep(), "a bucket a minute in debt takes two to fill")
	clk.Advance(31 * time.Second)
	require.Equal(t, 1, a.Sweep(), "only the held slot is left")
	_, err = a.Admit(t.Context(), held)
	require.Equal(t, admission.LimitConcurrency, refusal(t, err).Limit)
	slot.Done(0)
	_, err = a.Admit(t.Context(), spent)
	require.NoError(t, err, "the dropped buckets were full again")
}

// TestEndedBeforeNextDecision: with Redis, ending a request takes no
// round trip of its own, yet a caller that sends its next request once
// the previous one ended always finds the slot free and its tokens
// charged (the next decision applies what ended first), and another
// process sees the slot free soon after (the flush).
func TestEndedBeforeNextDecision(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rc, prefix := newRedis(t)
	a := admission.New(admission.Config{Redis: rc, Prefix: prefix})
	t.Cleanup(a.Close)
	b := admission.New(admission.Config{Redis: rc, Prefix: prefix})
	t.Cleanup(b.Close)
	req := admission.Request{DeploymentID: uuid.New(), Deployment: admission.Limits{
		MaxConcurrency: 1, Rate: admission.Rate{TokensPerMinute: 1_000_000}}}

	for i := range 200 {
		tk, err := a.Admit(ctx, req)
		require.NoError(t, err, "request %d: the slot its predecessor ended is free", i)
		tk.Done(1000)
	}
	tk, err := a.Admit(ctx, req)
	require.NoError(t, err)
	left, err := strconv.Atoi(header(tk).Get("X-Ratelimit-Remaining-Tokens"))
	require.NoError(t, err)
	// 200,000 tokens charged, less what refilled meanwhile (16,667 a
	// second).
	require.Less(t, left, 900_000, "every ended request's tokens were charged before this decision")

	_, err = b.Admit(ctx, req)
	require.Equal(t, admission.LimitConcurrency, refusal(t, err).Limit, "the slot is held")
	tk.Done(0)
	require.Eventually(t, func() bool {
		other, err := b.Admit(ctx, req)
		if err != nil {
			return false
		}
		other.Done(0)
		return true
	}, 2*time.Second, time.Millisecond, "another process sees the slot free once flushed")
}
