package fallback

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// usedBytes returns the weight the cache accounts for.
func (m *MemoryCache) usedBytes() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bytes
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ nanos atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.nanos.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.nanos.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.nanos.Add(int64(d)) }

func TestMemoryCacheGetAfterSet(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 5, 6, 7, 8, 9, 10, time.UTC)
	tests := []struct {
		name string
		key  string
		e    Entry
	}{
		{name: "plain", key: Key("/p.S/M", []byte{1}, nil), e: Entry{Value: []byte("reply"), StoredAt: at}},
		{name: "empty value", key: "k", e: Entry{Value: []byte{}, StoredAt: at}},
		{name: "nil value", key: "k2", e: Entry{}},
		{name: "empty key", key: "", e: Entry{Value: []byte{1, 2, 3}, StoredAt: at}},
		{name: "large", key: "big", e: Entry{Value: bytes.Repeat([]byte{9}, 64<<10), StoredAt: at}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			m := NewMemoryCache(1 << 20)
			if _, ok, err := m.Get(ctx, tt.key); ok || err != nil {
				t.Fatalf("Get(%q) before Set = _, %v, %v; want _, false, nil", tt.key, ok, err)
			}
			if err := m.Set(ctx, tt.key, tt.e); err != nil {
				t.Fatalf("Set(%q) = %v; want nil", tt.key, err)
			}
			got, ok, err := m.Get(ctx, tt.key)
			if !ok || err != nil {
				t.Fatalf("Get(%q) = _, %v, %v; want _, true, nil", tt.key, ok, err)
			}
			if !bytes.Equal(got.Value, tt.e.Value) || !got.StoredAt.Equal(tt.e.StoredAt) {
				t.Errorf("Get(%q) = {%d bytes, %v}; want {%d bytes, %v}", tt.key, len(got.Value), got.StoredAt, len(tt.e.Value), tt.e.StoredAt)
			}
		})
	}
}

func TestMemoryCacheOverwrite(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	m := NewMemoryCache(1 << 20)
	for i := range 3 {
		if err := m.Set(ctx, "k", Entry{Value: []byte{byte(i)}}); err != nil {
			t.Fatalf("Set(k, %d) = %v; want nil", i, err)
		}
	}
	if got, ok, _ := m.Get(ctx, "k"); !ok || !bytes.Equal(got.Value, []byte{2}) {
		t.Errorf("Get(k) = %v, %v; want [2], true", got.Value, ok)
	}
}

func TestMemoryCacheTooLarge(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const maxBytes = 4096
	m := NewMemoryCache(maxBytes)
	fits := make([]byte, maxBytes-EntryOverhead-1)
	if err := m.Set(ctx, "k", Entry{Value: fits}); err != nil {
		t.Fatalf("Set(k, %d bytes) = %v; want nil", len(fits), err)
	}
	if _, ok, _ := m.Get(ctx, "k"); !ok {
		t.Errorf("Get(k) after Set of an entry weighing exactly the budget: ok = false; want true")
	}
	tooBig := make([]byte, maxBytes)
	if err := m.Set(ctx, "k", Entry{Value: tooBig}); err != nil {
		t.Fatalf("Set(k, %d bytes) = %v; want nil", len(tooBig), err)
	}
	if _, ok, _ := m.Get(ctx, "k"); ok {
		t.Errorf("Get(k) after Set of an entry over the budget: ok = true; want false (neither old nor new entry)")
	}
}

// TestMemoryCacheBudget churns distinct keys of mixed sizes through the
// cache and checks that the bytes it holds stay within ±5 % of the budget.
func TestMemoryCacheBudget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		maxBytes int64
		keys     int
		writers  int
		ttl      time.Duration
	}{
		{name: "8MiB/1 writer", maxBytes: 8 << 20, keys: 100_000, writers: 1},
		{name: "8MiB/4 writers", maxBytes: 8 << 20, keys: 100_000, writers: 4},
		{name: "8MiB/4 writers/ttl", maxBytes: 8 << 20, keys: 100_000, writers: 4, ttl: time.Hour},
		{name: "256KiB/2 writers", maxBytes: 256 << 10, keys: 50_000, writers: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			m := NewMemoryCache(tt.maxBytes, WithTTL(tt.ttl))
			r := rand.New(rand.NewPCG(1, uint64(tt.writers)))
			keys := make([]string, tt.keys)
			sizes := make([]int, tt.keys)
			var written int64
			for i := range keys {
				keys[i] = Key("/pkg.Svc/Get", []byte(strconv.Itoa(i)), []string{"tenant"})
				sizes[i] = r.IntN(4096) // mostly small and medium replies ...
				if r.IntN(20) == 0 {
					sizes[i] = 16<<10 + r.IntN(16<<10) // ... and a few large ones
				}
				written += int64(len(keys[i]) + sizes[i] + EntryOverhead)
			}
			values := make([]byte, 32<<10)

			var peak atomic.Int64
			var wg sync.WaitGroup
			for w := range tt.writers {
				wg.Go(func() {
					for i := w; i < len(keys); i += tt.writers {
						if err := m.Set(ctx, keys[i], Entry{Value: values[:sizes[i]]}); err != nil {
							t.Errorf("Set(key %d) = %v; want nil", i, err)
							return
						}
						if i%64 == 0 {
							if used := m.usedBytes(); used > peak.Load() {
								peak.Store(used)
							}
						}
					}
				})
			}
			wg.Wait()

			// Count what is really there, entry by entry.
			var held int64
			n := 0
			for i, k := range keys {
				if e, ok, _ := m.Get(ctx, k); ok {
					n++
					held += weight(k, e)
					if len(e.Value) != sizes[i] {
						t.Fatalf("Get(key %d) = %d bytes; want %d", i, len(e.Value), sizes[i])
					}
				}
			}
			ratio := float64(held) / float64(tt.maxBytes)
			t.Logf("written %.1f× budget; held %d entries, %d bytes = %.2f%% of budget; accounted %d; peak accounted %.2f%%",
				float64(written)/float64(tt.maxBytes), n, held, 100*ratio, m.usedBytes(), 100*float64(peak.Load())/float64(tt.maxBytes))
			if ratio < 0.95 || ratio > 1.05 {
				t.Errorf("bytes held = %d (%.2f%% of budget %d); want within ±5%%", held, 100*ratio, tt.maxBytes)
			}
			if p := float64(peak.Load()) / float64(tt.maxBytes); p > 1.05 {
				t.Errorf("peak accounted bytes = %.2f%% of budget; want <= 105%%", 100*p)
			}
			if got := m.usedBytes(); got != held {
				t.Errorf("accounted bytes = %d; want %d (sum over entries)", got, held)
			}
		})
	}
}

func TestMemoryCacheTTL(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clock := newFakeClock()
	m := NewMemoryCache(1<<20, WithTTL(time.Minute), withClock(clock.Now))
	if err := m.Set(ctx, "k", Entry{Value: []byte("v"), StoredAt: clock.Now()}); err != nil {
		t.Fatalf("Set(k) = %v; want nil", err)
	}
	steps := []struct {
		advance time.Duration
		wantOK  bool
	}{
		{0, true},
		{59 * time.Second, true},
		{999 * time.Millisecond, true},
		{2 * time.Millisecond, false},
		{time.Hour, false},
	}
	var elapsed time.Duration
	for _, s := range steps {
		clock.Advance(s.advance)
		elapsed += s.advance
		if _, ok, err := m.Get(ctx, "k"); ok != s.wantOK || err != nil {
			t.Errorf("Get(k) %v after Set = _, %v, %v; want _, %v, nil", elapsed, ok, err, s.wantOK)
		}
	}
	// A new Set starts a new life.
	if err := m.Set(ctx, "k", Entry{Value: []byte("v2")}); err != nil {
		t.Fatalf("Set(k) = %v; want nil", err)
	}
	clock.Advance(30 * time.Second)
	if got, ok, _ := m.Get(ctx, "k"); !ok || string(got.Value) != "v2" {
		t.Errorf("Get(k) 30s after a second Set = %q, %v; want v2, true", got.Value, ok)
	}
	// An expired entry frees its bytes when a Set finds it at the cold end.
	clock.Advance(time.Minute)
	if err := m.Set(ctx, "other", Entry{Value: []byte("v")}); err != nil {
		t.Fatalf("Set(other) = %v; want nil", err)
	}
	if got, want := m.usedBytes(), weight("other", Entry{Value: []byte("v")}); got != want {
		t.Errorf("accounted bytes after expiry of k and Set(other) = %d; want %d", got, want)
	}
	// ... or when it is read.
	clock.Advance(time.Minute)
	m.Get(ctx, "other")
	if got := m.usedBytes(); got != 0 {
		t.Errorf("accounted bytes after Get of an expired entry = %d; want 0", got)
	}
}

func TestMemoryCacheNoTTL(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	m := NewMemoryCache(1 << 20)
	if err := m.Set(ctx, "k", Entry{Value: []byte("v")}); err != nil {
		t.Fatalf("Set(k) = %v; want nil", err)
	}
	if _, ok, _ := m.Get(ctx, "k"); !ok {
		t.Errorf("Get(k) = _, false, _; want true")
	}
}

func TestMemoryCacheContextDone(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	tests := []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"canceled", canceled, context.Canceled},
		{"deadline exceeded", expired, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := NewMemoryCache(1 << 20)
			if err := m.Set(t.Context(), "k", Entry{Value: []byte("v")}); err != nil {
				t.Fatalf("Set(k) = %v; want nil", err)
			}
			start := time.Now()
			if _, ok, err := m.Get(tt.ctx, "k"); ok || err != tt.want {
				t.Errorf("Get(%s ctx, k) = _, %v, %v; want _, false, %v", tt.name, ok, err, tt.want)
			}
			if err := m.Set(tt.ctx, "k2", Entry{Value: []byte("v")}); err != tt.want {
				t.Errorf("Set(%s ctx, k2) = %v; want %v", tt.name, err, tt.want)
			}
			if d := time.Since(start); d > 100*time.Millisecond {
				t.Errorf("Get+Set with a done ctx took %v; want prompt return", d)
			}
			if _, ok, _ := m.Get(t.Context(), "k2"); ok {
				t.Errorf("Get(k2) after Set with a done ctx: ok = true; want false")
			}
		})
	}
}

func TestNewMemoryCachePanics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		maxBytes int64
		opts     []MemoryOption
	}{
		{"zero budget", 0, nil},
		{"negative budget", -1, nil},
		{"negative ttl", 1 << 20, []MemoryOption{WithTTL(-time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Errorf("NewMemoryCache(%d, %v) did not panic; want a panic", tt.maxBytes, tt.opts)
				}
			}()
			NewMemoryCache(tt.maxBytes, tt.opts...)
		})
	}
}

func TestMemoryCacheConcurrentSafe(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	m := NewMemoryCache(64<<10, WithTTL(time.Minute))
	value := func(k int) []byte { return []byte(fmt.Sprintf("value-of-%d-%s", k, bytes.Repeat([]byte{'x'}, k%300))) }
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for range 5000 {
				k := r.IntN(500)
				key := "k" + strconv.Itoa(k)
				if r.IntN(3) == 0 {
					if err := m.Set(ctx, key, Entry{Value: value(k), StoredAt: time.Now()}); err != nil {
						t.Errorf("Set(%s) = %v; want nil", key, err)
						return
					}
					continue
				}
				if e, ok, err := m.Get(ctx, key); err != nil {
					t.Errorf("Get(%s) = _, _, %v; want nil error", key, err)
					return
				} else if ok && !bytes.Equal(e.Value, value(k)) {
					t.Errorf("Get(%s) = %q; want %q", key, e.Value, value(k))
					return
				}
			}
		})
	}
	wg.Wait()
	if used := m.usedBytes(); used > 64<<10 {
		t.Errorf("accounted bytes = %d; want <= %d", used, 64<<10)
	}
}

func BenchmarkMemoryCache(b *testing.B) {
	for _, ttl := range []time.Duration{0, time.Hour} {
		name := "ttl=" + ttl.String()
		keys := make([]string, 1024)
		for i := range keys {
			keys[i] = Key("/pkg.Svc/Get", []byte(strconv.Itoa(i)), nil)
		}
		value := make([]byte, 512)
		b.Run("Get/hit/"+name, func(b *testing.B) {
			ctx := context.Background()
			m := NewMemoryCache(64<<20, WithTTL(ttl))
			for _, k := range keys {
				m.Set(ctx, k, Entry{Value: value})
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				m.Get(ctx, keys[i&1023])
				i++
			}
		})
		b.Run("Get/miss/"+name, func(b *testing.B) {
			ctx := context.Background()
			m := NewMemoryCache(64<<20, WithTTL(ttl))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				m.Get(ctx, keys[i&1023])
				i++
			}
		})
		b.Run("Set/churn/"+name, func(b *testing.B) {
			ctx := context.Background()
			churn := make([]string, 1<<16)
			for i := range churn {
				churn[i] = Key("/pkg.Svc/Get", []byte(strconv.Itoa(i)), nil)
			}
			m := NewMemoryCache(4<<20, WithTTL(ttl)) // ~6000 entries: most Sets evict
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				m.Set(ctx, churn[i&(1<<16-1)], Entry{Value: value})
				i++
			}
		})
		b.Run("Get/hit/parallel/"+name, func(b *testing.B) {
			ctx := context.Background()
			m := NewMemoryCache(64<<20, WithTTL(ttl))
			for _, k := range keys {
				m.Set(ctx, k, Entry{Value: value})
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					m.Get(ctx, keys[i&1023])
					i++
				}
			})
		})
	}
}
