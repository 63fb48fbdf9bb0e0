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
	//go:embed flush.lua
	flushLua string
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

// maxEnded bounds the ended requests waiting to be applied while Redis
// cannot be reached; beyond it the oldest are dropped: their tokens go
// uncharged, as during any outage, and their slots expire with their
// leases.
const maxEnded = 10_000

// remote is the state in Redis.
type remote struct {
	c       redis.UniversalClient
	prefix  string
	lease   time.Duration
	process string
	seq     atomic.Uint64

	admitScript, flushScript, renewScript *redis.Script

	mu sync.Mutex
	// held maps each slot this process holds to its set, for renewal.
	held map[string]string
	// wake is closed by the next release of a slot here; nil when no
	// request waits.
	wake chan struct{}
	// ended are the requests ended here (Ticket.Done) and not yet applied
	// in Redis. The next script this process runs applies them first: the
	// next decision's, or the flusher's, which is kicked at each Done.
	// So Done takes no round trip of its own on the request's path, and a
	// decision here always sees the requests ended here before it.
	ended []endedRequest
	kick  chan struct{}
	// releasing are the slot releases that a script in flight carries
	// (holder → slots): every other script carries them too, which is
	// harmless (a release is the same done twice), so that no decision
	// runs ahead of a release taken before it by another script, whose
	// round trip may end after the decision's.
	releasing map[string]string
}

// endedRequest is what Done leaves to apply in Redis: tokens to charge to
// token buckets, and a slot to release.
type endedRequest struct {
	tokens          int64
	buckets         []rateBucket
	member, slotKey string
}

func newRemote(c redis.UniversalClient, prefix string, lease time.Duration, process string) *remote {
	return &remote{
		c: c, prefix: prefix, lease: lease, process: process,
		admitScript: redis.NewScript(bucketLua + doneLua + admitLua),
		flushScript: redis.NewScript(bucketLua + doneLua + flushLua),
		renewScript: redis.NewScript(bucketLua + renewLua),
		held:        map[string]string{},
		kick:        make(chan struct{}, 1),
		releasing:   map[string]string{},
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
		own, carried := r.takeEnded()
		allKeys, allArgs := appendEnded(carried, len(keys), len(args))
		allKeys, allArgs = append(allKeys, keys...), append(allArgs, args...)
		res, err := r.admitScript.Run(ctx, r.c, allKeys, allArgs...).Int64Slice()
		if err == nil && (len(res) < 1 || (res[0] == 1 && len(res) != 1+len(bs)) || (res[0] != 1 && len(res) != 3+len(bs))) {
			err = fmt.Errorf("unexpected reply %v", res)
		}
		if err != nil {
			r.requeue(own)
			r.settled(own)
			return nil, fmt.Errorf("admission: redis: %w", err)
		}
		r.settled(own)
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

// done leaves t's tokens and slot to the next script this process runs
// (see ended), and kicks the flusher so that it runs at once when no
// decision does. Requests waiting for a slot here are woken at once: their
// next try applies the release before it decides.
func (r *remote) done(t *Ticket, tokens int64) {
	e := endedRequest{member: t.member, slotKey: t.slotKey}
	if tokens > 0 {
		for _, b := range t.buckets {
			if b.limit == LimitTokens {
				e.buckets = append(e.buckets, b)
			}
		}
		if len(e.buckets) > 0 {
			// Bounded so that the units stay exact in Lua; a bucket's
			// debt is bounded far below anyway.
			e.tokens = min(tokens, 1<<31) * unit
		}
	}
	if len(e.buckets) == 0 && e.member == "" {
		return
	}
	r.mu.Lock()
	if e.member != "" {
		// A slot released is no longer renewed: should its release be
		// lost, it expires.
		delete(r.held, e.member)
	}
	r.ended = append(r.ended, e)
	if len(r.ended) > maxEnded {
		r.ended = r.ended[len(r.ended)-maxEnded:]
	}
	if e.member != "" && r.wake != nil {
		close(r.wake)
		r.wake = nil
	}
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// takeEnded takes the ended requests for a script to apply (own), and
// returns them with the releases other scripts in flight carry (carried,
// what the script sends). The script's caller calls settled(own) once it
// has its answer.
func (r *remote) takeEnded() (own, carried []endedRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	own = r.ended
	r.ended = nil
	carried = own[:len(own):len(own)]
	for member, slots := range r.releasing {
		carried = append(carried, endedRequest{member: member, slotKey: slots})
	}
	for _, e := range own {
		if e.member != "" {
			r.releasing[e.member] = e.slotKey
		}
	}
	return own, carried
}

// settled ends what takeEnded began for own, once its script has
// answered (or failed, after requeue).
func (r *remote) settled(own []endedRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range own {
		if e.member != "" {
			delete(r.releasing, e.member)
		}
	}
}

// requeue puts back the ended requests of a script that failed. Whether
// it ran is unknown, so only their slots' releases, which are the same
// done twice, are applied again; their tokens go uncharged, as rate
// limits fail open.
func (r *remote) requeue(ended []endedRequest) {
	var again []endedRequest
	for _, e := range ended {
		if e.member != "" {
			again = append(again, endedRequest{member: e.member, slotKey: e.slotKey})
		}
	}
	if len(again) == 0 {
		return
	}
	r.mu.Lock()
	r.ended = append(again, r.ended...)
	if len(r.ended) > maxEnded {
		r.ended = r.ended[len(r.ended)-maxEnded:]
	}
	r.mu.Unlock()
}

// appendEnded returns the keys and arguments that describe ended to the
// script's ended function, with room for more after them.
func appendEnded(ended []endedRequest, moreKeys, moreArgs int) ([]string, []any) {
	nk, na := 0, 1
	for _, e := range ended {
		nk += len(e.buckets) + 1
		na += 3 + 2*len(e.buckets)
	}
	keys := make([]string, 0, nk+moreKeys)
	args := make([]any, 0, na+moreArgs)
	args = append(args, len(ended))
	for _, e := range ended {
		args = append(args, len(e.buckets), e.tokens, e.member)
		for _, b := range e.buckets {
			keys = append(keys, b.key)
			args = append(args, b.size*unit, b.perMinute)
		}
		if e.member != "" {
			keys = append(keys, e.slotKey)
		}
	}
	return keys, args
}

// flush applies the ended requests no decision has carried.
func (r *remote) flush(ctx context.Context) error {
	own, carried := r.takeEnded()
	if len(own) == 0 {
		return nil
	}
	keys, args := appendEnded(carried, 0, 0)
	err := r.flushScript.Run(ctx, r.c, keys, args...).Err()
	if err != nil {
		r.requeue(own)
	}
	r.settled(own)
	if err != nil {
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

// wakeOn returns a channel that the next release here closes.
func (r *remote) wakeOn() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.wake == nil {
		r.wake = make(chan struct{})
	}
	return r.wake
}
