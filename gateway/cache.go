package gateway

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/singleflight"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
)

// changesChannel is the Postgres channel the change triggers notify on.
const changesChannel = "bud_changes"

// keyEntry is what the gateway knows of an API key. A missing key is cached
// too (found=false), so a flood of wrong keys costs no database reads.
type keyEntry struct {
	found     bool
	id        uuid.UUID
	projectID uuid.UUID
	expiresAt *time.Time
	revoked   bool
	loadedAt  time.Time
}

// deployment is a deployment as the gateway serves it, with its provider
// key opened and its default parameters pre-encoded.
type deployment struct {
	found         bool
	id            uuid.UUID
	projectID     uuid.UUID
	name          string
	kind          string
	created       time.Time
	chatURL       string
	upstreamModel []byte // JSON string
	apiKey        string
	defaults      map[string]json.RawMessage
	// promptID and promptVersion are what a prompt deployment serves; a nil
	// version follows the prompt's default, which defaultVersion holds
	// (kept fresh by the prompt's change notifications).
	promptID       uuid.UUID
	promptVersion  *int32
	defaultVersion int32
	loadedAt       time.Time
}

type depKey struct {
	project uuid.UUID
	name    string
}

// cache holds keys and deployments. Entries are dropped by notifications
// from Postgres within milliseconds of a change, and reloaded after ttl in
// case a notification was missed.
type cache struct {
	q     *dbsqlc.Queries
	open  func(sealed []byte, id uuid.UUID) (string, error)
	ttl   time.Duration
	now   func() time.Time
	group singleflight.Group

	mu sync.RWMutex
	// gen counts invalidations; a load stores its result only if none
	// happened while it ran, so a load racing a change never caches the
	// pre-change row.
	gen  uint64
	keys map[[32]byte]*keyEntry
	deps map[depKey]*deployment
}

func newCache(q *dbsqlc.Queries, ttl time.Duration, open func([]byte, uuid.UUID) (string, error)) *cache {
	return &cache{q: q, ttl: ttl, open: open, now: time.Now, keys: map[[32]byte]*keyEntry{}, deps: map[depKey]*deployment{}}
}

func (c *cache) fresh(loadedAt time.Time) bool { return c.now().Sub(loadedAt) < c.ttl }

// key returns the entry for a key hash, loading it on a miss.
func (c *cache) key(ctx context.Context, hash [32]byte) (*keyEntry, error) {
	c.mu.RLock()
	e := c.keys[hash]
	c.mu.RUnlock()
	if e != nil && c.fresh(e.loadedAt) {
		return e, nil
	}
	v, err, _ := c.group.Do("k"+string(hash[:]), func() (any, error) {
		gen := c.generation()
		row, err := c.q.GetAPIKeyByHash(ctx, hash[:])
		e := &keyEntry{loadedAt: c.now()}
		switch {
		case db.IsNoRows(err):
		case err != nil:
			return nil, fmt.Errorf("load api key: %w", err)
		default:
			e.found, e.id, e.projectID, e.expiresAt, e.revoked = true, row.ID, row.ProjectID, row.ExpiresAt, row.RevokedAt != nil
		}
		c.mu.Lock()
		if c.gen == gen {
			c.keys[hash] = e
		}
		c.mu.Unlock()
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*keyEntry), nil
}

// deployment returns the named deployment of a project, loading it on a miss.
func (c *cache) deployment(ctx context.Context, project uuid.UUID, name string) (*deployment, error) {
	k := depKey{project, name}
	c.mu.RLock()
	d := c.deps[k]
	c.mu.RUnlock()
	if d != nil && c.fresh(d.loadedAt) {
		return d, nil
	}
	v, err, _ := c.group.Do("d"+project.String()+"/"+name, func() (any, error) {
		gen := c.generation()
		row, err := c.q.GetDeploymentByName(ctx, dbsqlc.GetDeploymentByNameParams{ProjectID: project, Name: name})
		d := &deployment{loadedAt: c.now()}
		switch {
		case db.IsNoRows(err):
		case err != nil:
			return nil, fmt.Errorf("load deployment: %w", err)
		default:
			if d, err = c.compile(row); err != nil {
				return nil, err
			}
			if d.kind == bud.KindPrompt && d.promptVersion == nil {
				p, err := c.q.GetPrompt(ctx, d.promptID)
				if err != nil && !db.IsNoRows(err) {
					return nil, fmt.Errorf("load prompt of deployment %s: %w", d.id, err)
				}
				d.defaultVersion = p.DefaultVersion
			}
		}
		c.mu.Lock()
		if c.gen == gen {
			c.deps[k] = d
		}
		c.mu.Unlock()
		return d, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*deployment), nil
}

func (c *cache) compile(row dbsqlc.Deployment) (*deployment, error) {
	d := &deployment{
		found: true, id: row.ID, projectID: row.ProjectID, name: row.Name, kind: row.Kind,
		created: row.CreatedAt, loadedAt: c.now(),
	}
	if row.Kind == bud.KindPrompt && row.PromptID != nil {
		d.promptID, d.promptVersion = *row.PromptID, row.PromptVersion
	}
	if row.Kind != bud.KindModel {
		return d, nil
	}
	d.chatURL = joinURL(row.BaseURL, "chat/completions")
	d.upstreamModel, _ = json.Marshal(row.UpstreamModel)
	if len(row.APIKeySealed) > 0 {
		k, err := c.open(row.APIKeySealed, row.ID)
		if err != nil {
			return nil, fmt.Errorf("open provider key of deployment %s: %w", row.ID, err)
		}
		d.apiKey = k
	}
	if len(row.DefaultParams) > 0 {
		if err := json.Unmarshal(row.DefaultParams, &d.defaults); err != nil {
			return nil, fmt.Errorf("default params of deployment %s: %w", row.ID, err)
		}
	}
	return d, nil
}

// change is a notification payload from the change triggers.
type change struct {
	T  string    `json:"t"`
	H  string    `json:"h"`
	P  uuid.UUID `json:"p"`
	N  string    `json:"n"`
	ID uuid.UUID `json:"id"`
}

// apply drops the entry a notification names; an unreadable one drops all.
func (c *cache) apply(payload string) {
	var ch change
	if err := json.Unmarshal([]byte(payload), &ch); err != nil {
		c.clear()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	switch ch.T {
	case "key":
		var h [32]byte
		if b, err := hex.DecodeString(ch.H); err == nil && len(b) == len(h) {
			copy(h[:], b)
			delete(c.keys, h)
			// The next miss must not join a load that began before the change.
			c.group.Forget("k" + string(h[:]))
			return
		}
		c.keys = map[[32]byte]*keyEntry{}
	case "deployment":
		delete(c.deps, depKey{ch.P, ch.N})
		c.group.Forget("d" + ch.P.String() + "/" + ch.N)
	case "prompt":
		// A prompt's default version changed, or the prompt went: every
		// deployment that follows its default is stale (the prompt's
		// deletion removes the others, which notify on their own).
		for k, d := range c.deps {
			if d.promptID == ch.ID && d.promptVersion == nil {
				delete(c.deps, k)
				c.group.Forget("d" + k.project.String() + "/" + k.name)
			}
		}
	default:
		c.keys = map[[32]byte]*keyEntry{}
		c.deps = map[depKey]*deployment{}
	}
}

func (c *cache) generation() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

// clear drops everything: used when notifications may have been missed.
func (c *cache) clear() {
	c.mu.Lock()
	c.gen++
	c.keys = map[[32]byte]*keyEntry{}
	c.deps = map[depKey]*deployment{}
	c.mu.Unlock()
}

func joinURL(base, path string) string {
	for len(base) > 0 && base[len(base)-1] == '/' {
		base = base[:len(base)-1]
	}
	return base + "/" + path
}
