package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/budhq/bud/db/dbsqlc"
)

// lastUsed collects keys' last use between flushes, so a request never
// waits on a database write.
type lastUsed struct {
	mu      sync.Mutex
	pending map[uuid.UUID]time.Time
}

func newLastUsed() *lastUsed { return &lastUsed{pending: map[uuid.UUID]time.Time{}} }

func (l *lastUsed) mark(id uuid.UUID) {
	now := time.Now()
	l.mu.Lock()
	l.pending[id] = now
	l.mu.Unlock()
}

func (l *lastUsed) take() map[uuid.UUID]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) == 0 {
		return nil
	}
	p := l.pending
	l.pending = make(map[uuid.UUID]time.Time, len(p))
	return p
}

// flushLastUsed writes pending last-use times in one statement. On failure
// they are put back so the next flush retries them.
func (g *Gateway) flushLastUsed(ctx context.Context) {
	p := g.lastUsed.take()
	if p == nil {
		return
	}
	arg := dbsqlc.TouchAPIKeysParams{Ids: make([]uuid.UUID, 0, len(p)), UsedAt: make([]time.Time, 0, len(p))}
	for id, t := range p {
		arg.Ids = append(arg.Ids, id)
		arg.UsedAt = append(arg.UsedAt, t)
	}
	if err := g.q.TouchAPIKeys(ctx, arg); err != nil {
		g.log.Warn("write keys' last use", "err", err, "keys", len(p))
		g.lastUsed.mu.Lock()
		for id, t := range p {
			if cur, ok := g.lastUsed.pending[id]; !ok || cur.Before(t) {
				g.lastUsed.pending[id] = t
			}
		}
		g.lastUsed.mu.Unlock()
	}
}
