package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

	"github.com/google/uuid"

	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/prompt"
	"github.com/budhq/bud/run"
)

// version is a cached, compiled prompt version. Versions are immutable, so
// an entry never goes stale.
type version struct {
	raw json.RawMessage
	// doc is nil for a run's document that does not parse, compiled for
	// one that does not compile (versionOf).
	doc      *prompt.Document
	compiled *prompt.Compiled
}

// versions caches compiled prompt versions, bounded so a long-lived gateway
// cannot grow without limit.
type versions struct {
	mu sync.Mutex
	m  map[string]*version
}

// maxCachedVersions bounds the cache; when it is full it starts over.
const maxCachedVersions = 4096

func (v *versions) get(key string) *version {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.m[key]
}

func (v *versions) put(key string, e *version) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil || len(v.m) >= maxCachedVersions {
		v.m = map[string]*version{}
	}
	v.m[key] = e
}

func versionKey(promptID uuid.UUID, n int32) string {
	return promptID.String() + ":" + strconv.Itoa(int(n))
}

// loadVersion returns a compiled prompt version, from the cache or the
// state store. A version that does not exist is db.IsNoRows.
func (g *Gateway) loadVersion(ctx context.Context, promptID uuid.UUID, n int32) (*version, error) {
	key := versionKey(promptID, n)
	if v := g.versions.get(key); v != nil {
		return v, nil
	}
	row, err := g.q.GetPromptVersion(ctx, dbsqlc.GetPromptVersionParams{PromptID: promptID, Version: n})
	if err != nil {
		return nil, err
	}
	raw, err := g.cfg.Documents.Get(ctx, row.StateKey)
	if err != nil {
		return nil, fmt.Errorf("get prompt document: %w", err)
	}
	doc, err := prompt.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse stored prompt document: %w", err)
	}
	compiled, err := prompt.Compile(doc)
	if err != nil {
		return nil, fmt.Errorf("compile stored prompt document: %w", err)
	}
	v := &version{raw: raw, doc: doc, compiled: compiled}
	g.versions.put(key, v)
	return v, nil
}

// versionOf is the version the run ran, compiled from the document in the
// run's input; a saved version is taken from, or put in, the cache that
// loadVersion fills (versions never change, so they are the same).
func (g *Gateway) versionOf(in run.Input) *version {
	key := versionKey(in.PromptID, in.PromptVersion)
	if in.PromptID != uuid.Nil {
		if v := g.versions.get(key); v != nil {
			return v
		}
	}
	v := &version{raw: in.Document}
	doc, err := prompt.Parse(in.Document)
	if err != nil {
		return v
	}
	v.doc = doc
	if v.compiled, err = prompt.Compile(doc); err == nil && in.PromptID != uuid.Nil {
		g.versions.put(key, v)
	}
	return v
}
