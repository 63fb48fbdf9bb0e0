package admission

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Kinds of subject, so that a key and a deployment never share state.
const (
	kindDeployment byte = iota
	kindKey
)

// shards splits the in-process subjects so that requests to different
// deployments rarely share a lock.
const shards = 32

// sweepEvery is how often a shard drops its idle subjects.
const sweepEvery = time.Minute

// local is the in-process state: each deployment's and key's buckets, and
// each deployment's slots.
type local struct {
	now    func() time.Time
	shards [shards]shard
}

type shard struct {
	mu        sync.RWMutex
	subjects  map[subjectKey]*subject
	lastSweep time.Time
}

type subjectKey struct {
	kind byte
	id   uuid.UUID
}

// subject is one deployment's or key's state. Locks are taken deployment
// first, then key.
type subject struct {
	mu       sync.Mutex
	requests bucket
	tokens   bucket
	inflight int
	// waiters wait for a slot, first come first served: a release hands
	// its slot to the first instead of freeing it.
	waiters []chan struct{}
	// dead is set when a sweep dropped the subject from its shard; whoever
	// still holds it looks it up again.
	dead bool
}

func newLocal(now func() time.Time) *local {
	l := &local{now: now}
	for i := range l.shards {
		l.shards[i].subjects = map[subjectKey]*subject{}
	}
	return l
}

// get returns the state of (kind, id), made on first use.
func (l *local) get(kind byte, id uuid.UUID) *subject {
	k := subjectKey{kind, id}
	sh := &l.shards[id[0]%shards]
	sh.mu.RLock()
	s := sh.subjects[k]
	sh.mu.RUnlock()
	if s != nil {
		return s
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if s = sh.subjects[k]; s == nil {
		if now := time.Now(); now.Sub(sh.lastSweep) >= sweepEvery {
			sh.lastSweep = now
			l.sweep(sh)
		}
		s = &subject{}
		sh.subjects[k] = s
	}
	return s
}

// sweep drops the subjects of sh that hold nothing: no slot, no waiter,
// buckets full. Dropping one loses nothing, since a new one starts full.
// sh.mu is held, and it locks subjects: get must not be called with a
// subject locked.
func (l *local) sweep(sh *shard) {
	now := l.now().UnixMilli()
	for k, s := range sh.subjects {
		s.mu.Lock()
		idle := s.inflight == 0 && len(s.waiters) == 0 && full(&s.requests, now) && full(&s.tokens, now)
		if idle {
			s.dead = true
			delete(sh.subjects, k)
		}
		s.mu.Unlock()
	}
}

// fillMS is the longest any bucket takes to fill: a token bucket a full
// minute in debt takes two.
const fillMS = 2 * 60_000

// full reports whether b would be full at now, whatever its size: the
// size is not kept, so a bucket counts as full once it has been left
// alone for as long as any bucket takes to fill.
func full(b *bucket, now int64) bool { return !b.set || now-b.at >= fillMS }

// admit decides req in this process: with its rates when rates is set,
// else its concurrency only (Redis is down).
func (l *local) admit(ctx context.Context, a *Admitter, req *Request, rates bool) (*Ticket, error) {
	useDep := req.concurrency() || (rates && req.deploymentRate())
	useKey := rates && req.keyRate()
	if !useDep && !useKey {
		return nil, nil
	}
	holding := false
	for {
		// Both looked up before either is locked (see sweep).
		var d, k *subject
		if useDep {
			d = l.get(kindDeployment, req.DeploymentID)
		}
		if useKey {
			k = l.get(kindKey, req.KeyID)
		}
		if d != nil {
			d.mu.Lock()
		}
		if k != nil {
			k.mu.Lock()
		}
		if (d != nil && d.dead) || (k != nil && k.dead) {
			unlock(d, k)
			continue
		}
		now := l.now().UnixMilli()
		if rates {
			if refused := check(req, d, k, now); refused != nil {
				if holding {
					d.releaseLocked()
				}
				refused.headers = headersOf(req, d, k)
				unlock(d, k)
				return nil, refused
			}
		}
		if req.concurrency() && !holding {
			if d.inflight >= req.Deployment.MaxConcurrency {
				var h headers
				if rates {
					h = headersOf(req, d, k)
				}
				if req.Deployment.QueueTimeout <= 0 {
					unlock(d, k)
					return nil, refusedConcurrency(req, h)
				}
				w := make(chan struct{}, 1)
				d.waiters = append(d.waiters, w)
				unlock(d, k)
				got, err := l.wait(ctx, d, w, req.Deployment.QueueTimeout)
				if err != nil {
					return nil, err
				}
				if !got {
					return nil, refusedConcurrency(req, h)
				}
				// The slot is ours; the rates are checked again, as time
				// has passed.
				holding = true
				continue
			}
			d.inflight++
		}
		var h headers
		if rates {
			take(req, d, k)
			h = headersOf(req, d, k)
		}
		unlock(d, k)
		t := &Ticket{a: a, req: *req, headers: h, localRates: rates, dep: d, key: k, admitted: now}
		if req.concurrency() {
			t.slot = d
		}
		return t, nil
	}
}

func unlock(d, k *subject) {
	if k != nil {
		k.mu.Unlock()
	}
	if d != nil {
		d.mu.Unlock()
	}
}

// check refills the buckets req is subject to and returns the limit that
// refuses it, the one that lets it through last, or nil. The subjects are
// locked.
func check(req *Request, d, k *subject, now int64) *Refused {
	var worst *Refused
	if req.deploymentRate() {
		worst = checkRate(worst, &d.requests, &d.tokens, req.Deployment.Rate, ScopeDeployment, now)
	}
	if req.keyRate() {
		worst = checkRate(worst, &k.requests, &k.tokens, req.Key, ScopeKey, now)
	}
	return worst
}

// checkRate is check for one subject's buckets; worst is the refusal so
// far.
func checkRate(worst *Refused, requests, tokens *bucket, r Rate, scope Scope, now int64) *Refused {
	later := func(wait int64) bool { return wait > 0 && (worst == nil || wait > worst.RetryAfter.Milliseconds()) }
	if r.RequestsPerMinute > 0 {
		rpm := int64(r.RequestsPerMinute)
		requests.refill(now, r.capacity(), rpm)
		if wait := requestWait(requests.level, rpm); later(wait) {
			worst = &Refused{Limit: LimitRequests, Scope: scope, Allowed: rpm, RetryAfter: time.Duration(wait) * time.Millisecond}
		}
	}
	if r.TokensPerMinute > 0 {
		tpm := int64(r.TokensPerMinute)
		tokens.refill(now, tpm, tpm)
		if wait := tokenWait(tokens.level, tpm); later(wait) {
			worst = &Refused{Limit: LimitTokens, Scope: scope, Allowed: tpm, RetryAfter: time.Duration(wait) * time.Millisecond}
		}
	}
	return worst
}

// take takes one request from the request buckets req is subject to,
// which check let it through.
func take(req *Request, d, k *subject) {
	if req.deploymentRate() && req.Deployment.RequestsPerMinute > 0 {
		d.requests.level -= unit
	}
	if req.keyRate() && req.Key.RequestsPerMinute > 0 {
		k.requests.level -= unit
	}
}

// headersOf describes the buckets req is subject to as they stand.
func headersOf(req *Request, d, k *subject) headers {
	var h headers
	if req.deploymentRate() {
		h.add(&d.requests, &d.tokens, req.Deployment.Rate)
	}
	if req.keyRate() {
		h.add(&k.requests, &k.tokens, req.Key)
	}
	return h
}

// add adds one subject's buckets of rate r.
func (h *headers) add(requests, tokens *bucket, r Rate) {
	if r.RequestsPerMinute > 0 {
		h.addRequests(windowOf(requests.level, r.capacity(), int64(r.RequestsPerMinute)))
	}
	if r.TokensPerMinute > 0 {
		h.addTokens(windowOf(tokens.level, int64(r.TokensPerMinute), int64(r.TokensPerMinute)))
	}
}

// refusedConcurrency is the refusal of a request that found no free slot.
func refusedConcurrency(req *Request, h headers) *Refused {
	return &Refused{Limit: LimitConcurrency, Scope: ScopeDeployment, Allowed: int64(req.Deployment.MaxConcurrency),
		RetryAfter: concurrencyRetry, headers: h}
}

// wait waits up to timeout for a release to hand d's slot to w, which is
// queued. It reports whether the slot came; ctx's error when ctx ended
// first.
func (l *local) wait(ctx context.Context, d *subject, w chan struct{}, timeout time.Duration) (bool, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	select {
	case <-w:
		return true, nil
	case <-timer.C:
	case <-ctx.Done():
		err = ctx.Err()
	}
	d.mu.Lock()
	queued := d.dropWaiter(w)
	d.mu.Unlock()
	if queued {
		return false, err
	}
	// A release handed the slot over meanwhile.
	<-w
	if err != nil {
		l.release(d)
		return false, err
	}
	return true, nil
}

// dropWaiter takes w out of the queue, reporting whether it was there.
// s.mu is held.
func (s *subject) dropWaiter(w chan struct{}) bool {
	for i, q := range s.waiters {
		if q == w {
			s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
			return true
		}
	}
	return false
}

// release frees a slot of d, or hands it to the first waiter.
func (l *local) release(d *subject) {
	d.mu.Lock()
	d.releaseLocked()
	d.mu.Unlock()
}

func (s *subject) releaseLocked() {
	if len(s.waiters) > 0 {
		w := s.waiters[0]
		s.waiters[0] = nil
		s.waiters = s.waiters[1:]
		w <- struct{}{}
		return
	}
	s.inflight--
}

// charge takes tokens from the token buckets of t's request. It refills
// them no further than the request's admission: the next refill adds
// what has come since, and the hot path reads the clock once.
func (l *local) charge(t *Ticket, tokens int64) {
	now := t.admitted
	if t.req.deploymentRate() && t.req.Deployment.TokensPerMinute > 0 {
		l.chargeOne(t.dep, kindDeployment, t.req.DeploymentID, int64(t.req.Deployment.TokensPerMinute), tokens, now)
	}
	if t.req.keyRate() && t.req.Key.TokensPerMinute > 0 {
		l.chargeOne(t.key, kindKey, t.req.KeyID, int64(t.req.Key.TokensPerMinute), tokens, now)
	}
}

// chargeOne charges s, the state of (kind, id) when it was admitted, or
// the state that replaced it if a sweep dropped it since.
func (l *local) chargeOne(s *subject, kind byte, id uuid.UUID, tpm, tokens, now int64) {
	for {
		s.mu.Lock()
		if !s.dead {
			break
		}
		s.mu.Unlock()
		s = l.get(kind, id)
	}
	s.tokens.refill(now, tpm, tpm)
	s.tokens.level = charged(s.tokens.level, tokens, tpm)
	s.mu.Unlock()
}
