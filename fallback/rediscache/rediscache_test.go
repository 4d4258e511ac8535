package rediscache

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/rebound-grpc/rebound/fallback"
	"github.com/rebound-grpc/rebound/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// slack is how much later than its deadline a call may return.
const slack = 100 * time.Millisecond

var testSeq atomic.Int64

// testPrefix gives each test keys of its own, as tests may share a server.
func testPrefix(t *testing.T) string {
	return "rebound-test:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":" + strconv.FormatInt(testSeq.Add(1), 10) + ":"
}

func newClient(t *testing.T, addr string, ctxTimeout bool) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:                  addr,
		DialTimeout:           time.Second,
		ReadTimeout:           300 * time.Millisecond,
		WriteTimeout:          300 * time.Millisecond,
		ContextTimeoutEnabled: ctxTimeout,
		Protocol:              2,
		DisableIdentity:       true,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	addr := redistest.Addr(t)
	at := time.Date(2026, 11, 28, 12, 34, 56, 789012345, time.UTC)
	tests := []struct {
		name string
		e    fallback.Entry
	}{
		{"plain", fallback.Entry{Value: []byte{0x0a, 0x02, 'o', 'k'}, StoredAt: at}},
		{"empty value", fallback.Entry{Value: []byte{}, StoredAt: at}},
		{"zero time", fallback.Entry{Value: []byte("v")}},
		{"magic inside value", fallback.Entry{Value: []byte("rb1rb1rb1"), StoredAt: at}},
		{"1 MiB", fallback.Entry{Value: bytes.Repeat([]byte{0xff, 0}, 512<<10), StoredAt: at}},
	}
	for _, ctxTimeout := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(tt.name+"/ContextTimeoutEnabled="+strconv.FormatBool(ctxTimeout), func(t *testing.T) {
				t.Parallel()
				c := New(newClient(t, addr, ctxTimeout), WithPrefix(testPrefix(t)), WithTimeout(time.Second))
				ctx := t.Context()
				key := fallback.Key("/pkg.Svc/Get", []byte(tt.name), nil)
				if _, ok, err := c.Get(ctx, key); ok || err != nil {
					t.Fatalf("Get(%q) before Set = _, %v, %v; want _, false, nil", key, ok, err)
				}
				if err := c.Set(ctx, key, tt.e); err != nil {
					t.Fatalf("Set(%q) = %v; want nil", key, err)
				}
				got, ok, err := c.Get(ctx, key)
				if !ok || err != nil {
					t.Fatalf("Get(%q) = _, %v, %v; want _, true, nil", key, ok, err)
				}
				if !bytes.Equal(got.Value, tt.e.Value) || !got.StoredAt.Equal(tt.e.StoredAt) || got.StoredAt.IsZero() != tt.e.StoredAt.IsZero() {
					t.Errorf("Get(%q) = {%d bytes, %v}; want {%d bytes, %v}", key, len(got.Value), got.StoredAt, len(tt.e.Value), tt.e.StoredAt)
				}
			})
		}
	}
}

func TestPrefixAndTTL(t *testing.T) {
	t.Parallel()
	addr := redistest.Addr(t)
	unique := testPrefix(t)
	tests := []struct {
		name       string
		opts       []Option
		wantPrefix string
		wantTTL    time.Duration // -1: no expiry
	}{
		{"defaults", nil, DefaultPrefix, DefaultTTL},
		{"custom", []Option{WithPrefix(unique), WithTTL(90 * time.Second)}, unique, 90 * time.Second},
		{"sub-second ttl", []Option{WithPrefix(unique), WithTTL(1500 * time.Millisecond)}, unique, 1500 * time.Millisecond},
		{"no expiry", []Option{WithPrefix(unique), WithTTL(0)}, unique, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rdb := newClient(t, addr, true)
			c := New(rdb, append(tt.opts, WithTimeout(time.Second))...)
			ctx := t.Context()
			key := unique + tt.name // unique even under the default prefix
			if err := c.Set(ctx, key, fallback.Entry{Value: []byte("v")}); err != nil {
				t.Fatalf("Set(%q) = %v; want nil", key, err)
			}
			t.Cleanup(func() { rdb.Del(context.Background(), tt.wantPrefix+key) })
			pttl, err := rdb.PTTL(ctx, tt.wantPrefix+key).Result()
			if err != nil {
				t.Fatalf("PTTL(%q) = _, %v; want nil error", tt.wantPrefix+key, err)
			}
			switch {
			case tt.wantTTL < 0 && pttl != -1:
				t.Errorf("PTTL(%q) = %v; want -1 (no expiry)", tt.wantPrefix+key, pttl)
			case tt.wantTTL > 0 && (pttl <= tt.wantTTL-time.Second || pttl > tt.wantTTL):
				t.Errorf("PTTL(%q) = %v; want in (%v, %v]", tt.wantPrefix+key, pttl, tt.wantTTL-time.Second, tt.wantTTL)
			}
		})
	}
}

func TestForeignOrCorruptValueIsMiss(t *testing.T) {
	t.Parallel()
	addr := redistest.Addr(t)
	rdb := newClient(t, addr, true)
	prefix := testPrefix(t)
	c := New(rdb, WithPrefix(prefix), WithTimeout(time.Second))
	tests := []struct {
		name        string
		raw         string
		wantCorrupt bool
	}{
		{"empty", "", true},
		{"foreign text", "hello world, not ours", true},
		{"magic only", "rb1", true},
		{"header cut short", "rb1\x00\x00\x00\x00\x00\x00\x00", true},
		{"other version", "rb2\x00\x00\x00\x00\x00\x00\x00\x00payload", true},
		{"json", `{"value":"x"}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			key := "k-" + tt.name
			if err := rdb.Set(ctx, prefix+key, tt.raw, time.Minute).Err(); err != nil {
				t.Fatalf("raw SET = %v", err)
			}
			e, ok, err := c.Get(ctx, key)
			if ok || !errors.Is(err, ErrCorrupt) {
				t.Errorf("Get(%q) over %q = %v, %v, %v; want a miss with ErrCorrupt", key, tt.raw, e, ok, err)
			}
		})
	}
	t.Run("wrong type", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		if err := rdb.RPush(ctx, prefix+"list", "a").Err(); err != nil {
			t.Fatalf("RPUSH = %v", err)
		}
		rdb.Expire(ctx, prefix+"list", time.Minute)
		if _, ok, err := c.Get(ctx, "list"); ok || err == nil {
			t.Errorf("Get(list) over a Redis list = _, %v, %v; want a miss with an error", ok, err)
		}
	})
}

// TestContextDone checks that a done ctx is answered at once, without Redis.
func TestContextDone(t *testing.T) {
	t.Parallel()
	// No server is needed: the address is never dialled.
	c := New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}))
	defer c.client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if _, ok, err := c.Get(ctx, "k"); ok || !errors.Is(err, context.Canceled) {
		t.Errorf("Get(canceled ctx) = _, %v, %v; want _, false, context.Canceled", ok, err)
	}
	if err := c.Set(ctx, "k", fallback.Entry{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Set(canceled ctx) = %v; want context.Canceled", err)
	}
	if d := time.Since(start); d > slack {
		t.Errorf("Get+Set with a canceled ctx took %v; want < %v", d, slack)
	}
}

// TestOutage stops and freezes a server of the test's own: every call still
// answers within its deadline, with an error, and leaves no goroutine behind.
func TestOutage(t *testing.T) {
	t.Parallel()
	for _, ctxTimeout := range []bool{false, true} {
		t.Run("ContextTimeoutEnabled="+strconv.FormatBool(ctxTimeout), func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			const timeout = 50 * time.Millisecond
			c := New(newClient(t, srv.Addr(), ctxTimeout), WithTimeout(timeout), WithPrefix(testPrefix(t)))
			ctx := t.Context()
			e := fallback.Entry{Value: []byte("v"), StoredAt: time.Now()}
			if err := c.Set(ctx, "k", e); err != nil {
				t.Fatalf("Set(k) with Redis up = %v; want nil", err)
			}

			// within calls op and checks that it fails within limit.
			within := func(what string, limit time.Duration, op func() error) {
				t.Helper()
				start := time.Now()
				err := op()
				if d := time.Since(start); d > limit+slack {
					t.Errorf("%s took %v; want <= %v", what, d, limit+slack)
				}
				if err == nil {
					t.Errorf("%s = nil error; want an error", what)
				}
			}
			get := func(ctx context.Context) func() error {
				return func() error {
					_, ok, err := c.Get(ctx, "k")
					if ok {
						t.Errorf("Get(k) during outage: ok = true; want false")
					}
					return err
				}
			}
			set := func(ctx context.Context) func() error {
				return func() error { return c.Set(ctx, "k", e) }
			}

			srv.Pause()
			for i := range 3 {
				within("Get(k), Redis frozen, #"+strconv.Itoa(i), timeout, get(ctx))
				within("Set(k), Redis frozen, #"+strconv.Itoa(i), timeout, set(ctx))
			}
			// A ctx deadline shorter than the timeout wins.
			long := New(c.client, WithTimeout(5*time.Second), WithPrefix(c.prefix))
			short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
			within("Get(k), Redis frozen, 30ms ctx, 5s timeout", 30*time.Millisecond, func() error {
				_, _, err := long.Get(short, "k")
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Get(k) past a 30ms ctx deadline = %v; want context.DeadlineExceeded", err)
				}
				return err
			})
			cancel()
			srv.Resume()

			srv.Stop()
			for i := range 3 {
				within("Get(k), Redis stopped, #"+strconv.Itoa(i), timeout, get(ctx))
				within("Set(k), Redis stopped, #"+strconv.Itoa(i), timeout, set(ctx))
			}
			srv.Restart()
			// The client reconnects: calls succeed again (data is gone).
			deadline := time.Now().Add(2 * time.Second)
			for {
				err := c.Set(ctx, "k", e)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("Set(k) after restart = %v; want nil within 2s", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if _, ok, err := c.Get(ctx, "k"); !ok || err != nil {
				t.Errorf("Get(k) after restart and Set = _, %v, %v; want _, true, nil", ok, err)
			}
		})
	}
}

func TestConcurrentSafe(t *testing.T) {
	t.Parallel()
	addr := redistest.Addr(t)
	c := New(newClient(t, addr, true), WithPrefix(testPrefix(t)), WithTimeout(2*time.Second))
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				key := "k" + strconv.Itoa((g+i)%10)
				want := []byte("value-" + key)
				if err := c.Set(ctx, key, fallback.Entry{Value: want}); err != nil {
					t.Errorf("Set(%s) = %v; want nil", key, err)
					return
				}
				if e, ok, err := c.Get(ctx, key); err != nil || !ok || !bytes.Equal(e.Value, want) {
					t.Errorf("Get(%s) = %q, %v, %v; want %q, true, nil", key, e.Value, ok, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestNewPanics(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	tests := []struct {
		name   string
		client redis.UniversalClient
		opts   []Option
	}{
		{"nil client", nil, nil},
		{"negative ttl", rdb, []Option{WithTTL(-time.Second)}},
		{"zero timeout", rdb, []Option{WithTimeout(0)}},
		{"negative timeout", rdb, []Option{WithTimeout(-time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%v, %v) did not panic; want a panic", tt.client, tt.opts)
				}
			}()
			New(tt.client, tt.opts...)
		})
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	at := time.Unix(0, 1_764_000_000_123_456_789)
	tests := []struct {
		name string
		e    fallback.Entry
	}{
		{"zero", fallback.Entry{}},
		{"value and time", fallback.Entry{Value: []byte("x"), StoredAt: at}},
	}
	for _, tt := range tests {
		got, err := decode(encode(tt.e))
		if err != nil || !bytes.Equal(got.Value, tt.e.Value) || !got.StoredAt.Equal(tt.e.StoredAt) {
			t.Errorf("decode(encode(%v)) = %v, %v; want %v, nil", tt.e, got, err, tt.e)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("rb1\x00\x00\x00\x00\x00\x00\x00\x01v"))
	f.Add([]byte("rb"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decode(b) // must not panic
		if err == nil && !bytes.Equal(encode(e)[headerLen:], b[headerLen:]) {
			t.Errorf("decode(%q) = %v; value does not round-trip", b, e)
		}
	})
}
