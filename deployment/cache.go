package deployment

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
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
}

// Cache resolves deployments by (project, name) and keeps what it read,
// the absence of a deployment included, so that a hit costs no database
// read and a flood of unknown names costs one. An entry is dropped by the
// change notification that concerns it (the cache is a
// changes.Subscriber: run a changes.Listener with it) and reloaded after
// the TTL in case a notification was missed. It is safe for concurrent use.
type Cache struct {
	q     *dbsqlc.Queries
	box   *secrets.Box
	ttl   time.Duration
	now   func() time.Time
	group singleflight.Group

	mu sync.RWMutex
	// gen counts invalidations; a load stores its result only if none
	// happened while it ran, so a load racing a change never caches the
	// pre-change row.
	gen uint64
	m   map[key]*entry
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
	return &Cache{q: dbsqlc.New(cfg.Pool), box: cfg.Box, ttl: ttl, now: time.Now, m: map[key]*entry{}}
}

// Get returns the project's deployment called name, of either kind:
// ErrNotFound when there is none, an error wrapping ErrProviderKey when its
// provider key cannot be opened, another error when the database could not
// be read.
func (c *Cache) Get(ctx context.Context, project uuid.UUID, name string) (*Deployment, error) {
	k := key{project, name}
	c.mu.RLock()
	e := c.m[k]
	c.mu.RUnlock()
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
			c.m[k] = e
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
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

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
		delete(c.m, k)
		// The next miss must not join a load that began before the change.
		c.group.Forget(flightKey(k))
	case changes.KindPrompt:
		// A prompt's default version changed, or the prompt went: every
		// deployment that follows its default is stale (the prompt's
		// deletion removes the others, which notify on their own).
		for k, e := range c.m {
			if e.found && e.d.PromptID == ch.Prompt && e.d.PromptVersion == nil {
				delete(c.m, k)
				c.group.Forget(flightKey(k))
			}
		}
	default:
		c.m = map[key]*entry{}
	}
}

// Reset drops every entry; it implements changes.Subscriber.
func (c *Cache) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.m = map[key]*entry{}
}
