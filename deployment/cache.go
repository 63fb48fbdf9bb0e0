package deployment

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/singleflight"

	"github.com/budhq/bud"
	"github.com/budhq/bud/changes"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/secrets"
)

// DefaultTTL is Config.TTL's zero value.
const DefaultTTL = 5 * time.Second

// DefaultMaxEntries is Config.MaxEntries's zero value.
const DefaultMaxEntries = 10_000

// Config configures a Cache.
type Config struct {
	// Pool is the BudApp database, where deployments are read.
	Pool *pgxpool.Pool
	// Box opens provider keys; without one, a model deployment that has a
	// key fails with ErrProviderKey.
	Box *secrets.Box
	// TTL bounds how long an entry is trusted without a notification; 0
	// means DefaultTTL.
	TTL time.Duration
	// MaxEntries bounds how many lookups, found or not, the cache keeps;
	// past it the least recently used is dropped. 0 means
	// DefaultMaxEntries.
	MaxEntries int
}

// Cache resolves deployments by (project, name) and keeps what it read,
// the absence of a deployment included, so that a hit costs no database
// read and a flood of unknown names costs one. An entry is dropped by the
// change notification that concerns it (the cache is a
// changes.Subscriber: run a changes.Listener with it) and reloaded after
// the TTL in case a notification was missed. Names are what callers send,
// so the cache holds at most Config.MaxEntries entries, and a name that
// cannot be a deployment's (bud.ValidName) is ErrNotFound without a lookup.
// It is safe for concurrent use.
type Cache struct {
	q     *dbsqlc.Queries
	box   *secrets.Box
	ttl   time.Duration
	now   func() time.Time
	group singleflight.Group

	// mu orders loads' stores after invalidations; m locks itself, so a
	// hit takes only m's lock.
	mu sync.Mutex
	// gen counts invalidations; a load stores its result only if none
	// happened while it ran, so a load racing a change never caches the
	// pre-change row.
	gen uint64
	m   *lru.Cache[key, *entry]
}

type key struct {
	project uuid.UUID
	name    string
}

// entry is one lookup's result: a deployment, or its absence.
type entry struct {
	d        Deployment
	found    bool
	loadedAt time.Time
}

// NewCache returns an empty cache.
func NewCache(cfg Config) *Cache {
	ttl := cfg.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	size := cfg.MaxEntries
	if size <= 0 {
		size = DefaultMaxEntries
	}
	m, err := lru.New[key, *entry](size)
	if err != nil {
		// New fails only for a size below 1.
		panic("deployment: " + err.Error())
	}
	return &Cache{q: dbsqlc.New(cfg.Pool), box: cfg.Box, ttl: ttl, now: time.Now, m: m}
}

// Get returns the project's deployment called name, of either kind:
// ErrNotFound when there is none, an error wrapping ErrProviderKey when its
// provider key cannot be opened, another error when the database could not
// be read.
func (c *Cache) Get(ctx context.Context, project uuid.UUID, name string) (*Deployment, error) {
	if !bud.ValidName(name) {
		return nil, ErrNotFound
	}
	k := key{project, name}
	e, _ := c.m.Get(k)
	if e == nil || c.now().Sub(e.loadedAt) >= c.ttl {
		var err error
		if e, err = c.load(ctx, k); err != nil {
			return nil, err
		}
	}
	if !e.found {
		return nil, ErrNotFound
	}
	return &e.d, nil
}

// Model is Get for a model deployment: a prompt deployment of that name is
// ErrNotFound too.
func (c *Cache) Model(ctx context.Context, project uuid.UUID, name string) (*Deployment, error) {
	d, err := c.Get(ctx, project, name)
	if err == nil && d.Kind != bud.KindModel {
		return nil, ErrNotFound
	}
	return d, err
}

// Prompt is Get for a prompt deployment: a model deployment of that name
// is ErrNotFound too.
func (c *Cache) Prompt(ctx context.Context, project uuid.UUID, name string) (*Deployment, error) {
	d, err := c.Get(ctx, project, name)
	if err == nil && d.Kind != bud.KindPrompt {
		return nil, ErrNotFound
	}
	return d, err
}

// load reads a deployment, once for all the callers that miss it at the
// same time, and keeps it unless a change came in meanwhile.
func (c *Cache) load(ctx context.Context, k key) (*entry, error) {
	v, err, _ := c.group.Do(flightKey(k), func() (any, error) {
		gen := c.generation()
		row, err := c.q.GetDeploymentByName(ctx, dbsqlc.GetDeploymentByNameParams{ProjectID: k.project, Name: k.name})
		e := &entry{loadedAt: c.now()}
		switch {
		case db.IsNoRows(err):
		case err != nil:
			return nil, fmt.Errorf("load deployment: %w", err)
		default:
			if e.d, err = compile(row, c.box); err != nil {
				return nil, fmt.Errorf("load deployment: %w", err)
			}
			e.found = true
			if e.d.Kind == bud.KindPrompt && e.d.PromptVersion == nil {
				p, err := c.q.GetPrompt(ctx, e.d.PromptID)
				if err != nil && !db.IsNoRows(err) {
					return nil, fmt.Errorf("load prompt of deployment %s: %w", e.d.ID, err)
				}
				e.d.DefaultVersion = p.DefaultVersion
			}
		}
		c.mu.Lock()
		if c.gen == gen {
			c.m.Add(k, e)
		}
		c.mu.Unlock()
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*entry), nil
}

func flightKey(k key) string { return k.project.String() + "/" + k.name }

func (c *Cache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// Len is how many lookups, found or not, the cache holds.
func (c *Cache) Len() int { return c.m.Len() }

// Apply drops the entries a change makes stale; it implements
// changes.Subscriber. Key changes concern no deployment.
func (c *Cache) Apply(ch changes.Change) {
	if ch.Kind == changes.KindKey {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	switch ch.Kind {
	case changes.KindDeployment:
		k := key{ch.Project, ch.Name}
		c.m.Remove(k)
		// The next miss must not join a load that began before the change.
		c.group.Forget(flightKey(k))
	case changes.KindPrompt:
		// A prompt's default version changed, or the prompt went: every
		// deployment that follows its default is stale (the prompt's
		// deletion removes the others, which notify on their own).
		for _, k := range c.m.Keys() {
			if e, ok := c.m.Peek(k); ok && e.found && e.d.PromptID == ch.Prompt && e.d.PromptVersion == nil {
				c.m.Remove(k)
				c.group.Forget(flightKey(k))
			}
		}
	default:
		c.m.Purge()
	}
}

// Reset drops every entry; it implements changes.Subscriber.
func (c *Cache) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.m.Purge()
}
