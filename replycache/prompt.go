package replycache

import (
	"context"
	"encoding/json"
	"maps"
	"time"

	"github.com/budhq/bud"
	"github.com/budhq/bud/run"
)

// MetadataCachedFrom is the key of a cached answer's Response metadata
// that names the run whose turn it reuses (its response id).
const MetadataCachedFrom = "cached_from"

// PromptRequest is the first turn of a prompt run that the cache may
// answer or keep. A nil *PromptRequest is a run the cache has nothing to
// do with; its methods do nothing.
type PromptRequest struct {
	c   *Cache
	key string
	ttl time.Duration
	// responseID is the id of the run that a miss starts.
	responseID string
}

// Prompt returns the cacheable first turn of the run in: a run of a
// prompt deployment with cache settings s, whose document's model
// parameters are params, run on a model deployment with defaults (both
// read by Cacheable). gens are the deployments the answer depends on as
// they stand, the prompt deployment's and the model deployment's, so that
// a change of either (a new pinned version, another upstream) is never
// answered from before it. nil when the run is not cacheable.
func (c *Cache) Prompt(s bud.CacheSettings, in run.Input, params []byte, defaults map[string]json.RawMessage, gens ...Generation) *PromptRequest {
	if !Cacheable(s, params, defaults) {
		return nil
	}
	key, ok := promptKey(c.prefix, in, gens)
	if !ok {
		return nil
	}
	return &PromptRequest{c: c, key: key, ttl: time.Duration(s.TTLSeconds) * time.Second, responseID: in.ResponseID}
}

// Key is the run's cache key; empty for nil.
func (q *PromptRequest) Key() string {
	if q == nil {
		return ""
	}
	return q.key
}

// Lookup returns the cached turn, with the response id of the run it
// came from; ok is false on a miss, and for nil. The gateway answers with
// it as with a turn it has awaited (its Response, or the events of a
// finished turn), after setting MetadataCachedFrom (CachedFrom) in the
// input's metadata and marking the answer (MarkHit).
func (q *PromptRequest) Lookup(ctx context.Context) (run.Turn, bool) {
	if q == nil {
		return run.Turn{}, false
	}
	v, ok := q.c.get(ctx, q.key)
	if !ok {
		return run.Turn{}, false
	}
	kind, _, body, ok := decodeEntry(v)
	if !ok || kind != kindTurn {
		return run.Turn{}, false
	}
	var t run.Turn
	if json.Unmarshal(body, &t) != nil || t.ResponseID == "" {
		return run.Turn{}, false
	}
	return t, true
}

// Store keeps the run's first turn, out, when it may answer another
// request (Reusable), and reports whether it did. A turn without a
// response id gets the run's.
func (q *PromptRequest) Store(ctx context.Context, out run.Turn) bool {
	if q == nil || !Reusable(out) {
		return false
	}
	if out.ResponseID == "" {
		out.ResponseID = q.responseID
	}
	if out.ResponseID == "" {
		return false
	}
	buf := appendEntryHead(nil, kindTurn, "")
	b, err := json.Marshal(out)
	if err != nil {
		return false
	}
	// The turn ended; it is worth keeping even when its caller has gone.
	return q.c.set(context.WithoutCancel(ctx), q.key, append(buf, b...), q.ttl)
}

// Reusable reports whether a turn may answer another request: it
// completed, and the run ended with it. A failed or incomplete turn is
// an accident of its run, and a turn that paused for function outputs or
// approvals belongs to its run, which only one caller can continue.
func Reusable(t run.Turn) bool {
	return t.Status == run.StatusCompleted && t.Error == nil && !t.Waiting &&
		len(t.FunctionCalls) == 0 && len(t.ApprovalRequests) == 0
}

// CachedFrom returns metadata with MetadataCachedFrom set to responseID,
// for the Response of a cached turn: the caller's own metadata is kept,
// and metadata itself is not modified.
func CachedFrom(metadata map[string]string, responseID string) map[string]string {
	m := make(map[string]string, len(metadata)+1)
	maps.Copy(m, metadata)
	m[MetadataCachedFrom] = responseID
	return m
}
