package gateway

import (
	"context"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/budhq/bud/admission"
	"github.com/budhq/bud/changes"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
)

// maxCachedKeys bounds the key cache: a flood of well-formed wrong keys
// evicts the least recently used instead of growing it.
const maxCachedKeys = 10_000

// keyEntry is what the gateway knows of an API key. A missing key is cached
// too (found=false), so a flood of wrong keys costs no database reads.
type keyEntry struct {
	found     bool
	id        uuid.UUID
	projectID uuid.UUID
	expiresAt *time.Time
	revoked   bool
	// rate is the key's own rate limit; zero for none.
	rate     admission.Rate
	loadedAt time.Time
}

// keyCache holds API keys by the hash of their secret. Entries are dropped
// by notifications from Postgres within milliseconds of a change (it is a
// changes.Subscriber), and reloaded after ttl in case a notification was
// missed. It holds at most maxCachedKeys keys, dropping the least recently
// used. Deployments have a cache of their own (package deployment).
type keyCache struct {
	q     *dbsqlc.Queries
	ttl   time.Duration
	now   func() time.Time
	group singleflight.Group

	// mu orders loads' stores after invalidations; keys locks itself, so a
	// hit takes only keys's lock.
	mu sync.Mutex
	// gen counts invalidations; a load stores its result only if none
	// happened while it ran, so a load racing a change never caches the
	// pre-change row.
	gen  uint64
	keys *lru.Cache[[32]byte, *keyEntry]
}

func newKeyCache(q *dbsqlc.Queries, ttl time.Duration, size int) *keyCache {
	keys, err := lru.New[[32]byte, *keyEntry](size)
	if err != nil {
		// New fails only for a size below 1.
		panic("gateway: key cache: " + err.Error())
	}
	return &keyCache{q: q, ttl: ttl, now: time.Now, keys: keys}
}

func (c *keyCache) fresh(loadedAt time.Time) bool { return c.now().Sub(loadedAt) < c.ttl }

// key returns the entry for a key hash, loading it on a miss.
func (c *keyCache) key(ctx context.Context, hash [32]byte) (*keyEntry, error) {
	e, _ := c.keys.Get(hash)
	if e != nil && c.fresh(e.loadedAt) {
		return e, nil
	}
	v, err, _ := c.group.Do(string(hash[:]), func() (any, error) {
		gen := c.generation()
		row, err := c.q.GetAPIKeyByHash(ctx, hash[:])
		e := &keyEntry{loadedAt: c.now()}
		switch {
		case db.IsNoRows(err):
		case err != nil:
			return nil, fmt.Errorf("load api key: %w", err)
		default:
			e.found, e.id, e.projectID, e.expiresAt, e.revoked = true, row.ID, row.ProjectID, row.ExpiresAt, row.RevokedAt != nil
			e.rate = admission.Rate{RequestsPerMinute: int(row.RateRequestsPerMinute), Burst: int(row.RateBurst), TokensPerMinute: int(row.RateTokensPerMinute)}
		}
		c.mu.Lock()
		if c.gen == gen {
			c.keys.Add(hash, e)
		}
		c.mu.Unlock()
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*keyEntry), nil
}

// Apply drops the key a change names; a change of a kind this build does
// not know drops them all. It implements changes.Subscriber.
func (c *keyCache) Apply(ch changes.Change) {
	switch ch.Kind {
	case changes.KindDeployment, changes.KindPrompt:
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if ch.Kind == changes.KindKey {
		var h [32]byte
		if b, err := hex.DecodeString(ch.KeyHash); err == nil && len(b) == len(h) {
			copy(h[:], b)
			c.keys.Remove(h)
			// The next miss must not join a load that began before the change.
			c.group.Forget(string(h[:]))
			return
		}
	}
	c.keys.Purge()
}

// Reset drops every key: notifications may have been missed. It
// implements changes.Subscriber.
func (c *keyCache) Reset() {
	c.mu.Lock()
	c.gen++
	c.keys.Purge()
	c.mu.Unlock()
}

func (c *keyCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}
