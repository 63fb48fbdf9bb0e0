// Package changes carries the database's change notifications to in-memory
// caches. The triggers of db/migrations notify on Channel whenever an API
// key, a deployment or a prompt's default version changes; a Listener holds
// one connection subscribed to it and hands each Change to its Subscribers,
// so a cache drops a stale entry within milliseconds of the change.
package changes

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Channel is the Postgres channel the change triggers notify on.
const Channel = "bud_changes"

// Kinds of change, as the triggers name them.
const (
	// KindKey: an API key was created, changed or deleted (KeyHash).
	KindKey = "key"
	// KindDeployment: a deployment was created, changed or deleted
	// (Project, Name).
	KindDeployment = "deployment"
	// KindPrompt: a prompt's default version changed, or the prompt was
	// deleted (Prompt).
	KindPrompt = "prompt"
)

// Change is one notification's payload: which entry of a cache went stale.
type Change struct {
	// Kind is one of the kinds above. A kind this build does not know is a
	// change it cannot place: a subscriber should drop everything.
	Kind string `json:"t"`
	// KeyHash is the hex SHA-256 of the changed key's secret (KindKey).
	KeyHash string `json:"h,omitempty"`
	// Project and Name name the changed deployment (KindDeployment).
	Project uuid.UUID `json:"p,omitzero"`
	Name    string    `json:"n,omitempty"`
	// Prompt is the changed prompt (KindPrompt).
	Prompt uuid.UUID `json:"id,omitzero"`
}

// Parse reads a notification's payload.
func Parse(payload string) (Change, error) {
	var c Change
	if err := json.Unmarshal([]byte(payload), &c); err != nil {
		return Change{}, fmt.Errorf("changes: parse %q: %w", payload, err)
	}
	return c, nil
}

// Subscriber is a cache kept fresh by a Listener. Its methods are called
// from the Listener's goroutine, one at a time, and must not block.
type Subscriber interface {
	// Apply drops what the change made stale, and makes sure no load that
	// began before it stores what it read.
	Apply(Change)
	// Reset drops everything: notifications may have been missed. It is
	// called on every (re)subscription, when the subscription is lost, and
	// for a notification that cannot be read.
	Reset()
}

// Listener holds a connection subscribed to Channel for its subscribers,
// reconnecting with backoff. While it is down, the subscribers' entries
// expire by their own TTL.
type Listener struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	subs []Subscriber
	// listening is closed once the first subscription is made.
	listening chan struct{}
	once      sync.Once
}

// NewListener returns a listener that feeds subs from pool's database; a
// nil log logs nothing. Run starts it.
func NewListener(pool *pgxpool.Pool, log *slog.Logger, subs ...Subscriber) *Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{pool: pool, log: log, subs: subs, listening: make(chan struct{})}
}

// Listening is closed once the listener is subscribed, from which point a
// change reaches the subscribers at once.
func (l *Listener) Listening() <-chan struct{} { return l.listening }

// Run listens until ctx ends, then returns nil.
func (l *Listener) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := l.listenOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		l.reset()
		l.log.Warn("change listener lost; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return nil
}

func (l *Listener) listenOnce(ctx context.Context) error {
	pooled, err := l.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("changes: acquire: %w", err)
	}
	// The connection will carry LISTEN, so it leaves the pool for good.
	conn := pooled.Hijack()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return fmt.Errorf("changes: listen: %w", err)
	}
	// What changed before the subscription was never notified.
	l.reset()
	l.once.Do(func() { close(l.listening) })
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("changes: wait: %w", err)
		}
		c, err := Parse(n.Payload)
		if err != nil {
			l.log.Warn("unreadable change notification; dropping every cached entry", "err", err)
			l.reset()
			continue
		}
		for _, s := range l.subs {
			s.Apply(c)
		}
	}
}

func (l *Listener) reset() {
	for _, s := range l.subs {
		s.Reset()
	}
}
