package admission

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

var (
	//go:embed bucket.lua
	bucketLua string
	//go:embed admit.lua
	admitLua string
	//go:embed done.lua
	doneLua string
	//go:embed renew.lua
	renewLua string
)

// Waits between two tries for a slot in Redis. A release in this process
// wakes its waiters at once; one in another process is seen at the next
// try.
const (
	firstPause = 2 * time.Millisecond
	maxPause   = 50 * time.Millisecond
)

// remote is the state in Redis.
type remote struct {
	c       redis.UniversalClient
	prefix  string
	lease   time.Duration
	process string
	seq     atomic.Uint64

	admitScript, doneScript, renewScript *redis.Script

	mu sync.Mutex
	// held maps each slot this process holds to its set, for renewal.
	held map[string]string
	// wake is closed by the next release of a slot here; nil when no
	// request waits.
	wake chan struct{}
}

func newRemote(c redis.UniversalClient, prefix string, lease time.Duration, process string) *remote {
	return &remote{
		c: c, prefix: prefix, lease: lease, process: process,
		admitScript: redis.NewScript(bucketLua + admitLua),
		doneScript:  redis.NewScript(bucketLua + doneLua),
		renewScript: redis.NewScript(bucketLua + renewLua),
		held:        map[string]string{},
	}
}

// rateBucket is one rate bucket a request is subject to.
type rateBucket struct {
	key       string
	limit     Limit
	scope     Scope
	size      int64 // requests or tokens
	perMinute int64
}

// buckets lists the rate buckets of req.
func (r *remote) buckets(req *Request) []rateBucket {
	var out []rateBucket
	add := func(kind string, id uuid.UUID, rate Rate, scope Scope) {
		if rate.RequestsPerMinute > 0 {
			out = append(out, rateBucket{key: r.key(kind, id, ":requests"), limit: LimitRequests, scope: scope,
				size: rate.capacity(), perMinute: int64(rate.RequestsPerMinute)})
		}
		if rate.TokensPerMinute > 0 {
			out = append(out, rateBucket{key: r.key(kind, id, ":tokens"), limit: LimitTokens, scope: scope,
				size: int64(rate.TokensPerMinute), perMinute: int64(rate.TokensPerMinute)})
		}
	}
	if req.deploymentRate() {
		add("rate:deployment:", req.DeploymentID, req.Deployment.Rate, ScopeDeployment)
	}
	if req.keyRate() {
		add("rate:key:", req.KeyID, req.Key, ScopeKey)
	}
	return out
}

func (r *remote) key(kind string, id uuid.UUID, suffix string) string {
	return r.prefix + kind + id.String() + suffix
}

// admit decides req in Redis, waiting for a slot up to its queue time. An
// error other than a *Refused or ctx's is Redis's.
func (r *remote) admit(ctx context.Context, a *Admitter, req *Request) (*Ticket, error) {
	bs := r.buckets(req)
	keys := make([]string, 0, len(bs)+1)
	args := make([]any, 0, 3*len(bs)+4)
	args = append(args, len(bs))
	for _, b := range bs {
		cost := int64(0)
		if b.limit == LimitRequests {
			cost = unit
		}
		keys = append(keys, b.key)
		args = append(args, b.size*unit, b.perMinute, cost)
	}
	var member, slots string
	if req.concurrency() {
		member = r.process + "-" + strconv.FormatUint(r.seq.Add(1), 36)
		slots = r.key("slots:deployment:", req.DeploymentID, "")
		keys = append(keys, slots)
		args = append(args, req.Deployment.MaxConcurrency, r.lease.Milliseconds(), member)
	} else {
		args = append(args, 0, 0, "")
	}
	queue := req.concurrency() && req.Deployment.QueueTimeout > 0
	deadline := time.Now().Add(req.Deployment.QueueTimeout)
	pause := firstPause
	for {
		var wake <-chan struct{}
		if queue {
			// Taken before the try, so that a release after it is not
			// missed.
			wake = r.wakeOn()
		}
		res, err := r.admitScript.Run(ctx, r.c, keys, args...).Int64Slice()
		if err == nil && (len(res) < 1 || (res[0] == 1 && len(res) != 1+len(bs)) || (res[0] != 1 && len(res) != 3+len(bs))) {
			err = fmt.Errorf("unexpected reply %v", res)
		}
		if err != nil {
			return nil, fmt.Errorf("admission: redis: %w", err)
		}
		if res[0] == 1 {
			t := &Ticket{a: a, req: *req, remote: true, headers: headersOfLevels(bs, res[1:]), buckets: bs}
			if member != "" {
				t.member, t.slotKey = member, slots
				r.hold(member, slots)
			}
			return t, nil
		}
		h := headersOfLevels(bs, res[3:])
		if i := int(res[1]); i <= len(bs) {
			b := bs[i-1]
			return nil, &Refused{Limit: b.limit, Scope: b.scope, Allowed: b.perMinute, RetryAfter: time.Duration(res[2]) * time.Millisecond, headers: h}
		}
		left := time.Until(deadline)
		if !queue || left <= 0 {
			return nil, refusedConcurrency(req, h)
		}
		timer := time.NewTimer(min(pause, left))
		select {
		case <-wake:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		}
		timer.Stop()
		pause = min(2*pause, maxPause)
	}
}

// headersOfLevels describes buckets bs at levels.
func headersOfLevels(bs []rateBucket, levels []int64) headers {
	var h headers
	for i, b := range bs {
		w := windowOf(levels[i], b.size, b.perMinute)
		if b.limit == LimitRequests {
			h.addRequests(w)
		} else {
			h.addTokens(w)
		}
	}
	return h
}

// done charges t's tokens and releases its slot in one round trip.
func (r *remote) done(ctx context.Context, t *Ticket, tokens int64) error {
	var bs []rateBucket
	if tokens > 0 {
		for _, b := range t.buckets {
			if b.limit == LimitTokens {
				bs = append(bs, b)
			}
		}
	}
	if len(bs) == 0 && t.member == "" {
		return nil
	}
	if t.member != "" {
		// Dropped first: a slot whose release fails is no longer renewed,
		// and expires.
		r.unhold(t.member)
		defer r.woken()
	}
	keys := make([]string, 0, len(bs)+1)
	args := make([]any, 0, 2*len(bs)+3)
	// Bounded so that the units stay exact in Lua; a bucket's debt is
	// bounded far below anyway.
	args = append(args, len(bs), min(tokens, 1<<31)*unit, t.member)
	for _, b := range bs {
		keys = append(keys, b.key)
		args = append(args, b.size*unit, b.perMinute)
	}
	if t.member != "" {
		keys = append(keys, t.slotKey)
	}
	if err := r.doneScript.Run(ctx, r.c, keys, args...).Err(); err != nil {
		return fmt.Errorf("admission: redis: %w", err)
	}
	return nil
}

// renew extends the leases of every slot held here, in one round trip.
func (r *remote) renew(ctx context.Context) error {
	r.mu.Lock()
	if len(r.held) == 0 {
		r.mu.Unlock()
		return nil
	}
	keys := make([]string, 0, len(r.held))
	args := make([]any, 0, len(r.held)+1)
	args = append(args, r.lease.Milliseconds())
	for member, slots := range r.held {
		keys = append(keys, slots)
		args = append(args, member)
	}
	r.mu.Unlock()
	if err := r.renewScript.Run(ctx, r.c, keys, args...).Err(); err != nil {
		return fmt.Errorf("admission: redis: renew slots: %w", err)
	}
	return nil
}

func (r *remote) hold(member, slots string) {
	r.mu.Lock()
	r.held[member] = slots
	r.mu.Unlock()
}

func (r *remote) unhold(member string) {
	r.mu.Lock()
	delete(r.held, member)
	r.mu.Unlock()
}

// wakeOn returns a channel that the next release here closes.
func (r *remote) wakeOn() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.wake == nil {
		r.wake = make(chan struct{})
	}
	return r.wake
}

// woken wakes the requests that wait for a slot here.
func (r *remote) woken() {
	r.mu.Lock()
	if r.wake != nil {
		close(r.wake)
		r.wake = nil
	}
	r.mu.Unlock()
}
