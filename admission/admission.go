// Package admission decides whether a request to a deployment may proceed:
// requests and tokens per minute, per deployment and per API key, and the
// deployment's concurrency. It is the one place the gateway asks, on every
// route that reaches a deployment.
//
// Rate limits are token buckets. A request bucket holds up to its burst
// (requests_per_minute when the burst is 0) and refills at
// requests_per_minute/60 per second; a request takes one. A token bucket
// holds up to tokens_per_minute, refills at tokens_per_minute/60 per
// second, refuses requests while it is empty or in debt, and is charged
// after the reply with the tokens its usage reports (Ticket.Done), down to
// at most one minute's worth of debt. A request passes only if every
// bucket it is subject to lets it; then it takes from all of them at once.
//
// With Redis (Config.Redis) the buckets and the concurrency slots are
// shared by every process: one Lua script refills, checks and takes them
// all in one round trip, using the Redis server's clock. Ending a request
// (charging its tokens, releasing its slot) takes no round trip of its
// own: the same script applies the requests this process ended since its
// last one before it decides, and a background flush applies them within
// a round trip when no decision comes. A slot is a lease in a
// sorted set, renewed while it is held, so the slots of a process that dies
// are free again within Config.SlotLease. Without Redis the same buckets
// and counts live in the process, exact within it.
//
// When Redis cannot be reached, rate limits fail open (requests pass,
// tokens are not charged, no rate headers are sent) and concurrency is
// counted in the process instead, so each process still holds at most
// max_concurrency; the outage is logged once when it begins and once when
// it ends, and Redis is tried again at most once a second meanwhile.
package admission

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Defaults of Config's zero values.
const (
	DefaultPrefix    = "bud:"
	DefaultSlotLease = 10 * time.Second
	// retryRedis is how long Admit leaves Redis alone after it failed.
	retryRedis = time.Second
)

// Config configures an Admitter.
type Config struct {
	// Redis holds the state shared by every process; nil keeps it in this
	// process. Its own timeouts (DialTimeout, ReadTimeout) bound how long
	// a decision waits on an unreachable Redis before it is taken without
	// it. A cluster client works when Prefix holds a hash tag ("{bud}:"),
	// which puts every key in one slot, as a script's keys must be.
	Redis redis.UniversalClient
	// Prefix starts every Redis key, so that several installations, or
	// tests, can share a Redis; "" means DefaultPrefix.
	Prefix string
	// Logger gets the start and the end of a Redis outage; nil logs
	// nothing.
	Logger *slog.Logger
	// Now is the clock of the in-process state; nil means time.Now. With
	// Redis, buckets run on the Redis server's clock, which every process
	// shares.
	Now func() time.Time
	// SlotLease is how long a concurrency slot in Redis outlives its
	// holder's last renewal; slots are renewed every third of it. 0 means
	// DefaultSlotLease.
	SlotLease time.Duration
}

// Rate is a rate limit: requests and tokens per minute. A zero field is
// no limit.
type Rate struct {
	// RequestsPerMinute refills the request bucket.
	RequestsPerMinute int
	// Burst is the request bucket's size: how many requests may pass at
	// once after a quiet spell. 0 means RequestsPerMinute, a minute's
	// worth, so that any N requests spread over a minute pass however
	// they are bunched.
	Burst int
	// TokensPerMinute refills the token bucket, which is also its size.
	TokensPerMinute int
}

// Limits are a deployment's limits: its rate and how many of its requests
// may be in flight at once.
type Limits struct {
	Rate
	// MaxConcurrency bounds the requests in flight; 0 is no bound.
	MaxConcurrency int
	// QueueTimeout is how long a request waits for a free slot before it
	// is refused; 0 refuses it at once.
	QueueTimeout time.Duration
}

// Request names what a request is subject to: its deployment's limits and
// its API key's own rate. A zero ID or zero limits leave that subject out.
type Request struct {
	DeploymentID uuid.UUID
	Deployment   Limits
	KeyID        uuid.UUID
	Key          Rate
}

func (r Rate) on() bool { return r.RequestsPerMinute > 0 || r.TokensPerMinute > 0 }

// capacity is the request bucket's size.
func (r Rate) capacity() int64 {
	if r.Burst > 0 {
		return int64(r.Burst)
	}
	return int64(r.RequestsPerMinute)
}

func (r *Request) deploymentRate() bool { return r.DeploymentID != uuid.Nil && r.Deployment.Rate.on() }
func (r *Request) keyRate() bool        { return r.KeyID != uuid.Nil && r.Key.on() }
func (r *Request) concurrency() bool {
	return r.DeploymentID != uuid.Nil && r.Deployment.MaxConcurrency > 0
}

// Admitter admits requests. It is safe for concurrent use.
type Admitter struct {
	log   *slog.Logger
	now   func() time.Time
	local *local
	// remote is nil without Redis.
	remote *remote

	// down is set while Redis is unreachable; retryAt (unix ns) is when
	// Admit tries it again.
	down    atomic.Bool
	retryAt atomic.Int64

	stop     context.CancelFunc
	stopped  chan struct{}
	stopOnce sync.Once
}

// New returns an Admitter. With Redis it renews the slots it holds in the
// background until Close.
func New(cfg Config) *Admitter {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.SlotLease <= 0 {
		cfg.SlotLease = DefaultSlotLease
	}
	// A nil client in the interface is no client.
	switch c := cfg.Redis.(type) {
	case *redis.Client:
		if c == nil {
			cfg.Redis = nil
		}
	case *redis.ClusterClient:
		if c == nil {
			cfg.Redis = nil
		}
	}
	a := &Admitter{log: cfg.Logger, now: cfg.Now, local: newLocal(cfg.Now), stopped: make(chan struct{})}
	if cfg.Redis == nil {
		close(a.stopped)
		return a
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	a.remote = newRemote(cfg.Redis, cfg.Prefix, cfg.SlotLease, hex.EncodeToString(id[:]))
	ctx, cancel := context.WithCancel(context.Background())
	a.stop = cancel
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		a.renewSlots(ctx, cfg.SlotLease/3)
	}()
	go func() {
		defer wg.Done()
		a.flushEnded(ctx)
	}()
	go func() {
		wg.Wait()
		// What ended meanwhile is applied once more before Close returns.
		fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = a.remote.flush(fctx)
		close(a.stopped)
	}()
	return a
}

// Close stops renewing the Redis slots this Admitter holds, and applies
// the requests ended before it. Tickets still held keep working, and
// release their slots at the next decision of this Admitter, if any; a
// slot whose release is never applied expires after the lease, as when a
// process dies.
func (a *Admitter) Close() {
	a.stopOnce.Do(func() {
		if a.stop != nil {
			a.stop()
		}
	})
	<-a.stopped
}

// Admit decides whether req may proceed. It returns a Ticket to be ended
// with Done once the reply is complete, or an error: a *Refused when a
// limit says no, or ctx's error when ctx ends while the request waits for
// a concurrency slot. When no limit applies the Ticket is nil, whose
// methods do nothing: a request without limits costs no work.
func (a *Admitter) Admit(ctx context.Context, req Request) (*Ticket, error) {
	if !req.deploymentRate() && !req.keyRate() && !req.concurrency() {
		return nil, nil
	}
	if a.remote == nil || (a.down.Load() && time.Now().UnixNano() < a.retryAt.Load()) {
		return a.local.admit(ctx, a, &req, a.remote == nil)
	}
	t, err := a.remote.admit(ctx, a, &req)
	if err == nil {
		a.redisUp()
		return t, nil
	}
	if _, ok := errors.AsType[*Refused](err); ok {
		a.redisUp()
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	a.redisDown(err)
	return a.local.admit(ctx, a, &req, false)
}

// redisDown records that Redis failed, logging it when an outage begins.
func (a *Admitter) redisDown(err error) {
	a.retryAt.Store(time.Now().Add(retryRedis).UnixNano())
	if a.down.CompareAndSwap(false, true) {
		a.log.Error("redis is unreachable: rate limits are not enforced and concurrency is counted per process until it is back", "err", err)
	}
}

// redisUp records that Redis answered, logging the end of an outage.
func (a *Admitter) redisUp() {
	if a.down.Load() && a.down.CompareAndSwap(true, false) {
		a.log.Info("redis is reachable again: rate limits and concurrency are shared again")
	}
}

// flushEnded applies in Redis the requests ended here that no decision
// has carried (remote.done), each time one ends, until ctx ends. While
// Redis is unreachable it tries at most once per retryRedis.
func (a *Admitter) flushEnded(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.remote.kick:
		}
		if err := a.remote.flush(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			a.redisDown(err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(retryRedis):
			}
		}
	}
}

// renewSlots renews the leases of the slots held in Redis every interval
// until ctx ends.
func (a *Admitter) renewSlots(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := a.remote.renew(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			a.redisDown(err)
		}
	}
}
