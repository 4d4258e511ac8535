package fallback

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// EntryOverhead is the weight, in bytes, that a [MemoryCache] adds to each
// entry on top of len(key)+len(Value): the measured heap cost of its
// bookkeeping for one entry (about 150 bytes on 64-bit platforms), rounded up.
const EntryOverhead = 160

// MemoryCache is the embedded [Cache]: an in-process LRU cache bounded by the
// bytes it holds, with an optional time to live.
//
// Each entry weighs len(key) + len(Value) + [EntryOverhead] bytes. The total
// weight never exceeds the budget given to [NewMemoryCache], not even for an
// instant: a Set evicts least recently used entries until the new one fits,
// before it stores it. An entry heavier than the whole budget is not stored.
//
// Defaults: no TTL (entries stay until evicted); see [WithTTL].
//
// Get and Set never block on I/O; they hold one short lock (no allocation
// under it) and return ctx's error at once if ctx is already done.
// MemoryCache starts no goroutines and needs no Close: expired entries are
// never returned, and are dropped when read or when a Set finds them at the
// cold end of the LRU list.
//
// MemoryCache is safe for concurrent use. The zero value is not usable: call
// [NewMemoryCache].
type MemoryCache struct {
	maxBytes int64
	ttl      time.Duration
	now      func() time.Time

	mu    sync.Mutex
	lru   *simplelru.LRU[string, memoryItem] // guarded by mu
	bytes int64                              // guarded by mu; sum of the weights in lru
}

var _ Cache = (*MemoryCache)(nil)

type memoryItem struct {
	e       Entry
	expires int64 // mono nanoseconds (see MemoryCache.clock); 0: never
}

// MemoryOption configures a [MemoryCache].
type MemoryOption interface {
	applyMemory(*memoryConfig)
}

type memoryConfig struct {
	ttl time.Duration
	now func() time.Time // for tests; nil means time.Now
}

type memoryOptionFunc func(*memoryConfig)

func (f memoryOptionFunc) applyMemory(c *memoryConfig) { f(c) }

// WithTTL sets how long an entry may stay in a [MemoryCache] after it was
// stored, whatever its [Entry.StoredAt]. The default, 0, keeps entries until
// they are evicted for space. NewMemoryCache panics if ttl is negative.
//
// The policy's maximum staleness, checked against StoredAt, decides whether
// an entry may answer a call; WithTTL only bounds how long it is kept.
func WithTTL(ttl time.Duration) MemoryOption {
	return memoryOptionFunc(func(c *memoryConfig) { c.ttl = ttl })
}

// withClock makes the cache read time from now (tests only).
func withClock(now func() time.Time) MemoryOption {
	return memoryOptionFunc(func(c *memoryConfig) { c.now = now })
}

// NewMemoryCache returns an empty [MemoryCache] that holds at most maxBytes
// bytes of entries, each weighed as len(key) + len(Value) + [EntryOverhead].
//
// It panics if maxBytes is not positive or an option is invalid: both are
// programming errors.
func NewMemoryCache(maxBytes int64, opts ...MemoryOption) *MemoryCache {
	if maxBytes <= 0 {
		panic(fmt.Sprintf("fallback: NewMemoryCache: maxBytes = %d; want > 0", maxBytes))
	}
	var cfg memoryConfig
	for _, o := range opts {
		o.applyMemory(&cfg)
	}
	if cfg.ttl < 0 {
		panic(fmt.Sprintf("fallback: NewMemoryCache: WithTTL(%v); want >= 0", cfg.ttl))
	}
	m := &MemoryCache{maxBytes: maxBytes, ttl: cfg.ttl, now: cfg.now}
	if m.now == nil {
		m.now = time.Now
	}
	// The LRU is unbounded by count; MemoryCache bounds it by bytes.
	// NewLRU fails only for a size <= 0.
	m.lru, _ = simplelru.NewLRU(math.MaxInt, func(key string, it memoryItem) {
		m.bytes -= weight(key, it.e) // called with mu held, from Remove*
	})
	return m
}

// epoch anchors the monotonic clock of every MemoryCache.
var epoch = time.Now()

// clock returns monotonic nanoseconds (when now is time.Now).
func (m *MemoryCache) clock() int64 { return int64(m.now().Sub(epoch)) }

func weight(key string, e Entry) int64 {
	return int64(len(key)) + int64(len(e.Value)) + EntryOverhead
}

// Get returns the entry stored under key, if it is present and has not
// expired, and marks it as recently used. It returns ctx's error, and no
// entry, if ctx is already done.
func (m *MemoryCache) Get(ctx context.Context, key string) (Entry, bool, error) {
	if err := ctx.Err(); err != nil {
		return Entry{}, false, err
	}
	var now int64
	if m.ttl > 0 {
		now = m.clock()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.lru.Get(key)
	if !ok {
		return Entry{}, false, nil
	}
	if it.expires != 0 && now >= it.expires {
		m.lru.Remove(key)
		return Entry{}, false, nil
	}
	return it.e, true, nil
}

// Set stores e under key, without copying e.Value, evicting least recently
// used entries as needed to stay within the budget. An entry heavier than the
// whole budget is not stored (and any older entry under key is removed); Set
// then returns nil, as a cache may drop any entry at any time. Set returns
// ctx's error, and stores nothing, if ctx is already done.
func (m *MemoryCache) Set(ctx context.Context, key string, e Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	it := memoryItem{e: e}
	if m.ttl > 0 {
		it.expires = m.clock() + int64(m.ttl)
	}
	w := weight(key, e)

	m.mu.Lock()
	defer m.mu.Unlock()
	m.lru.Remove(key) // the old entry's weight leaves with it
	if w > m.maxBytes {
		return nil
	}
	// Drop expired entries from the cold end first: they are likely there,
	// since an expired entry is never read again.
	if m.ttl > 0 {
		for range 2 {
			k, old, ok := m.lru.GetOldest()
			if !ok || old.expires > it.expires-int64(m.ttl) {
				break
			}
			m.lru.Remove(k)
		}
	}
	for m.bytes+w > m.maxBytes {
		m.lru.RemoveOldest()
	}
	m.lru.Add(key, it)
	m.bytes += w
	return nil
}
