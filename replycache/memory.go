package replycache

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"
)

// Store keeps encoded entries by key for a time. A Cache reads and writes
// entries through one; Memory and Redis are the two there are. A Store is
// safe for concurrent use.
type Store interface {
	// Get returns the value stored under key, ok false when there is none
	// or it has expired. The value may be shared with the store: it must
	// not be modified. An error means the store could not be asked; the
	// Cache takes it for a miss.
	Get(ctx context.Context, key string) (value []byte, ok bool, err error)
	// Set stores value under key for ttl, replacing what was there. The
	// store keeps no reference to value. A value larger than
	// MaxEntryBytes is not stored (ErrTooLarge).
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// MaxEntryBytes is the largest value the store takes: a recording
	// stops copying an answer beyond it, so an answer too large to store
	// costs no more than its cap.
	MaxEntryBytes() int
}

// ErrTooLarge is the error of a Set whose value is over the store's
// MaxEntryBytes.
var ErrTooLarge = errors.New("replycache: entry larger than the store takes")

// DefaultMemoryBytes is the size of the in-process cache when none is
// configured: enough for tens of thousands of typical answers, small
// next to a gateway's other memory.
const DefaultMemoryBytes = 64 << 20

// memoryEntryShare is the share of a Memory's bytes one entry may take at
// most: a few huge answers must not evict everything else.
const memoryEntryShare = 16

// memoryOverhead is what an entry costs beyond its key and value: its
// list element, map slot and bookkeeping. It is counted so that many
// small entries cannot exceed the bound by their overhead.
const memoryOverhead = 128

// Memory is an in-process Store bounded in bytes: when an entry would
// take it past its bound, the least recently used entries are dropped.
// Entries expire after their time to live; an expired entry is dropped
// when read, or when the bound needs its room. It is the cache of a
// gateway without Redis, which holds within that one process.
type Memory struct {
	max      int64
	maxEntry int
	now      func() time.Time

	mu    sync.Mutex
	used  int64
	items map[string]*list.Element
	// lru holds *memoryItem, the most recently used at the front.
	lru list.List
}

type memoryItem struct {
	key     string
	value   []byte
	expires time.Time
	size    int64
}

// NewMemory returns an in-process store of at most maxBytes (keys, values
// and overhead counted); DefaultMemoryBytes when maxBytes is not
// positive. An entry over a sixteenth of maxBytes is not stored.
func NewMemory(maxBytes int64) *Memory {
	if maxBytes <= 0 {
		maxBytes = DefaultMemoryBytes
	}
	return &Memory{max: maxBytes, maxEntry: int(maxBytes / memoryEntryShare), now: time.Now, items: map[string]*list.Element{}}
}

// Get implements Store. The value returned is the store's own.
func (m *Memory) Get(_ context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el := m.items[key]
	if el == nil {
		return nil, false, nil
	}
	it := el.Value.(*memoryItem)
	if !m.now().Before(it.expires) {
		m.remove(el)
		return nil, false, nil
	}
	m.lru.MoveToFront(el)
	return it.value, true, nil
}

// Set implements Store: it copies value, and evicts the least recently
// used entries until the new one fits.
func (m *Memory) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	if len(value) > m.maxEntry {
		return ErrTooLarge
	}
	size := int64(len(key) + len(value) + memoryOverhead)
	if size > m.max {
		return ErrTooLarge
	}
	it := &memoryItem{key: key, value: append([]byte(nil), value...), size: size}
	m.mu.Lock()
	defer m.mu.Unlock()
	it.expires = m.now().Add(ttl)
	if el := m.items[key]; el != nil {
		m.remove(el)
	}
	for m.used+it.size > m.max {
		m.remove(m.lru.Back())
	}
	m.items[key] = m.lru.PushFront(it)
	m.used += it.size
	return nil
}

// MaxEntryBytes implements Store.
func (m *Memory) MaxEntryBytes() int { return m.maxEntry }

// Bytes is how much of its bound the store holds, counted as the bound
// counts it.
func (m *Memory) Bytes() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.used
}

// Len is how many entries the store holds, expired ones not yet dropped
// included.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items)
}

func (m *Memory) remove(el *list.Element) {
	it := m.lru.Remove(el).(*memoryItem)
	delete(m.items, it.key)
	m.used -= it.size
}
