package interceptor_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rebound-grpc/rebound/fallback"
	"github.com/rebound-grpc/rebound/fallback/rediscache"
	"github.com/rebound-grpc/rebound/interceptor"
	"github.com/rebound-grpc/rebound/internal/redistest"
	"github.com/rebound-grpc/rebound/internal/testpb"
	"github.com/rebound-grpc/rebound/internal/testserver"
	"github.com/rebound-grpc/rebound/pattern"
	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

// Security review items: each test below is one item of issue 10.

// fakeInvoker is a grpc.UnaryInvoker that answers every attempt with
// answer's error and trailer, recording when each attempt started.
type fakeInvoker struct {
	answer func(ctx context.Context, n int) (error, metadata.MD)
	mu     sync.Mutex
	starts []time.Time
}

func (f *fakeInvoker) invoke(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
	f.mu.Lock()
	f.starts = append(f.starts, time.Now())
	n := len(f.starts)
	f.mu.Unlock()
	err, tr := f.answer(ctx, n)
	for _, o := range opts {
		if to, ok := o.(grpc.TrailerCallOption); ok && tr != nil {
			*to.TrailerAddr = tr
		}
	}
	return err
}

func (f *fakeInvoker) attempts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.starts)
}

func unavailable(context.Context, int) (error, metadata.MD) {
	return status.Error(codes.Unavailable, "down"), nil
}

// TestSecurityNonIdempotentNeverRetried: a method that is not IDEMPOTENT or
// NO_SIDE_EFFECTS gets one attempt, whatever the code, the configured
// attempts or the per-attempt timeout, unless its policy allows retries.
func TestSecurityNonIdempotentNeverRetried(t *testing.T) {
	t.Parallel()
	blackHole := func(ctx context.Context, _ int) (error, metadata.MD) {
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err(), nil
	}
	retry5 := &reboundv1.RecoveryPolicy{Retry: &reboundv1.Retry{MaxAttempts: proto.Uint32(5), InitialBackoffMs: proto.Uint32(1),
		RetryableCodes: []reboundv1.StatusCode{reboundv1.StatusCode_STATUS_CODE_UNAVAILABLE, reboundv1.StatusCode_STATUS_CODE_DEADLINE_EXCEEDED, reboundv1.StatusCode_STATUS_CODE_INTERNAL}}}
	timeout := &reboundv1.RecoveryPolicy{Retry: &reboundv1.Retry{MaxAttempts: proto.Uint32(5), InitialBackoffMs: proto.Uint32(1), PerAttemptTimeoutMs: proto.Uint32(10)}}
	create := testpb.EchoService_Create_FullMethodName
	tests := []struct {
		name   string
		opts   []interceptor.Option
		method string
		answer func(context.Context, int) (error, metadata.MD)
		want   int
	}{
		{"Create, defaults", nil, create, unavailable, 1},
		{"Create, 5 attempts configured", []interceptor.Option{interceptor.WithPolicy(create, retry5)}, create, unavailable, 1},
		{"Create, service default of 5 attempts", []interceptor.Option{interceptor.WithPolicy("rebound.testing.v1.EchoService", retry5)}, create, unavailable, 1},
		{"Create, INTERNAL retryable", []interceptor.Option{interceptor.WithPolicy(create, retry5)}, create, func(context.Context, int) (error, metadata.MD) {
			return status.Error(codes.Internal, "x"), nil
		}, 1},
		{"Create, per-attempt timeout fires", []interceptor.Option{interceptor.WithPolicy(create, timeout)}, create, blackHole, 1},
		{"unknown method, default of 5 attempts", []interceptor.Option{interceptor.WithDefaultPolicy(retry5)}, "/unknown.v1.Svc/Do", unavailable, 1},
		{"unknown method with pushback 0", []interceptor.Option{interceptor.WithDefaultPolicy(retry5)}, "/unknown.v1.Svc/Do", func(context.Context, int) (error, metadata.MD) {
			return status.Error(codes.Unavailable, "x"), metadata.Pairs(interceptor.PushbackKey, "0")
		}, 1},
		// Control: the same policy does retry an idempotent method.
		{"control: Echo retried", []interceptor.Option{interceptor.WithPolicy(echoMethod, retry5)}, echoMethod, unavailable, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSuite(t, tt.opts...)
			inv := &fakeInvoker{answer: tt.answer}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err := s.UnaryClientInterceptor()(ctx, tt.method, &testpb.CreateRequest{}, &testpb.CreateResponse{}, nil, inv.invoke)
			if err == nil {
				t.Fatalf("call error = nil; want a failure")
			}
			if got := inv.attempts(); got != tt.want {
				t.Errorf("attempts of %s = %d; want %d", tt.method, got, tt.want)
			}
		})
	}
}

// TestSecurityPushbackBounded: grpc-retry-pushback-ms never makes a call
// sleep past its deadline, nor longer than the cap, however large it is.
// Fake time (testing/synctest) lets the cap (minutes) be checked exactly.
func TestSecurityPushbackBounded(t *testing.T) {
	t.Parallel()
	t.Run("past the deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := newSuite(t)
			inv := &fakeInvoker{answer: func(context.Context, int) (error, metadata.MD) {
				return status.Error(codes.Unavailable, "busy"), metadata.Pairs(interceptor.PushbackKey, "10000")
			}}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			start := time.Now()
			err := s.UnaryClientInterceptor()(ctx, echoMethod, &testpb.EchoRequest{}, &testpb.EchoResponse{}, nil, inv.invoke)
			el := time.Since(start)
			if status.Code(err) != codes.Unavailable {
				t.Errorf("call error = %v; want UNAVAILABLE (the server's)", err)
			}
			// The first retry uses the policy's backoff (pushback is read once
			// the target is degraded); the second would sleep 10 s > deadline.
			if got := inv.attempts(); got != 2 {
				t.Errorf("attempts = %d; want 2", got)
			}
			if el >= time.Second {
				t.Errorf("call took %v (fake time); want to stop at once rather than sleep toward the 2s deadline", el)
			}
		})
	})
	t.Run("above the cap", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := newSuite(t, interceptor.WithRetryBudget(pattern.BudgetConfig{MaxTokens: 10}))
			inv := &fakeInvoker{answer: func(context.Context, int) (error, metadata.MD) {
				return status.Error(codes.Unavailable, "busy"), metadata.Pairs(interceptor.PushbackKey, "9223372036854775807")
			}}
			ctx, cancel := context.WithTimeout(context.Background(), 24*time.Hour)
			defer cancel()
			start := time.Now()
			err := s.UnaryClientInterceptor()(ctx, echoMethod, &testpb.EchoRequest{}, &testpb.EchoResponse{}, nil, inv.invoke)
			if status.Code(err) != codes.Unavailable {
				t.Errorf("call error = %v; want UNAVAILABLE", err)
			}
			inv.mu.Lock()
			starts := append([]time.Time(nil), inv.starts...)
			inv.mu.Unlock()
			if len(starts) != 4 {
				t.Fatalf("attempts = %d; want 4 (the EchoService policy)", len(starts))
			}
			capped := 0
			for i := 1; i < len(starts); i++ {
				gap := starts[i].Sub(starts[i-1])
				if gap > interceptor.MaxPushback {
					t.Errorf("sleep before attempt %d = %v; want ≤ %v", i+1, gap, interceptor.MaxPushback)
				}
				if gap == interceptor.MaxPushback {
					capped++
				}
			}
			if capped != 2 {
				t.Errorf("sleeps of exactly the cap = %d; want 2 (attempts 3 and 4)", capped)
			}
			if el := time.Since(start); el > 3*interceptor.MaxPushback {
				t.Errorf("call took %v; want ≤ %v", el, 3*interceptor.MaxPushback)
			}
		})
	})
}

// TestSecurityBudgetNeverOverdrawnConcurrentSafe: many concurrent failing
// calls never take the budget below zero, and retries stay within what the
// budget can grant.
func TestSecurityBudgetNeverOverdrawnConcurrentSafe(t *testing.T) {
	t.Parallel()
	s := newSuite(t, fast(interceptor.WithPolicy(echoMethod, &reboundv1.RecoveryPolicy{
		Pattern: &reboundv1.RecoveryPolicy_NoPattern{NoPattern: &reboundv1.NoPattern{}},
	}))...)
	var okAttempts, allAttempts atomic.Int64
	inv := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		allAttempts.Add(1)
		if rand.IntN(10) < 7 {
			return status.Error(codes.Unavailable, "down")
		}
		okAttempts.Add(1)
		return nil
	}
	const workers, calls = 16, 100
	minTokens := 1e9
	var mu sync.Mutex
	stop := make(chan struct{})
	var polls sync.WaitGroup
	polls.Add(1)
	go func() {
		defer polls.Done()
		for {
			if tok, ok := s.BudgetTokens(""); ok {
				mu.Lock()
				minTokens = min(minTokens, tok)
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			default:
				time.Sleep(50 * time.Microsecond)
			}
		}
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = s.UnaryClientInterceptor()(ctx, echoMethod, &testpb.EchoRequest{}, &testpb.EchoResponse{}, nil, inv)
				cancel()
			}
		}()
	}
	wg.Wait()
	close(stop)
	polls.Wait()
	retries := allAttempts.Load() - workers*calls
	bc := pattern.DefaultBudgetConfig()
	bound := bc.MaxTokens + bc.Ratio*float64(okAttempts.Load())
	if minTokens < 0 {
		t.Errorf("min budget tokens = %v; want ≥ 0", minTokens)
	}
	if float64(retries) > bound+1e-9 {
		t.Errorf("retries = %d; want ≤ %.1f (%v + %v × %d successes)", retries, bound, bc.MaxTokens, bc.Ratio, okAttempts.Load())
	}
	t.Logf("%d calls, %d retries (bound %.1f), min tokens %.3f", workers*calls, retries, bound, minTokens)
}

// TestSecurityCacheEntryBounded: a server's huge reply cannot grow the cache
// past its budget: the entry is not stored, and is not served later.
func TestSecurityCacheEntryBounded(t *testing.T) {
	t.Parallel()
	primary := testserver.Start(t, "primary", testserver.OK)
	cache := fallback.NewMemoryCache(64 << 10)
	s := newSuite(t, fast(interceptor.WithCache(cache), withChain(cacheStep(60_000), staticStep(`message: "static"`)))...)
	cc := dial(t, primary.Addr, s)
	c := testpb.NewEchoServiceClient(cc)
	big := &testpb.EchoRequest{Message: "big", Payload: make([]byte, 1<<20)}
	small := &testpb.EchoRequest{Message: "small"}
	for _, r := range []*testpb.EchoRequest{big, small} {
		if _, err := c.Echo(ctxTimeout(t, 5*time.Second), r); err != nil {
			t.Fatal(err)
		}
	}
	step := fallback.NewCacheStep(cache, time.Minute, nil)
	for _, tt := range []struct {
		req  *testpb.EchoRequest
		want bool
	}{{big, false}, {small, true}} {
		key, err := step.Key(context.Background(), echoMethod, tt.req)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := cache.Get(context.Background(), key); ok != tt.want {
			t.Errorf("cache holds the %s reply = %v; want %v", tt.req.GetMessage(), ok, tt.want)
		}
	}
	primary.SetBehavior(testserver.Fail(codes.Unavailable))
	var served interceptor.Served
	got, err := c.Echo(ctxTimeout(t, 5*time.Second), big, interceptor.ServedBy(&served))
	if err != nil || served.Source != fallback.SourceStatic || len(got.GetPayload()) != 0 {
		t.Errorf("Echo(big) with the primary down = %d bytes, %v, served %v; want the static reply", len(got.GetPayload()), err, served)
	}
}

// redisSuite starts a real Redis and a Suite that caches Echo there, scoped
// by authorization and tenant.
func redisSuite(t *testing.T) (*redis.Client, *testserver.Server, *interceptor.Suite, *grpc.ClientConn) {
	t.Helper()
	rs := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = rc.Close() })
	primary := testserver.Start(t, "primary", testserver.OK)
	s := newSuite(t, fast(interceptor.WithCache(rediscache.New(rc, rediscache.WithTimeout(time.Second))),
		withChain(cacheStep(60_000, "authorization", "x-tenant"), staticStep(`message: "static"`)))...)
	return rc, primary, s, dial(t, primary.Addr, s)
}

const (
	secretToken  = "Bearer s3cret-T0KEN-do-not-log"
	secretTenant = "tenant-ACME-4711"
)

func secretCtx(t *testing.T) context.Context {
	return metadata.AppendToOutgoingContext(ctxTimeout(t, 5*time.Second), "authorization", secretToken, "x-tenant", secretTenant)
}

// storedKeys makes one successful call with secrets in its metadata and
// returns the Redis keys once the asynchronous write landed.
func storedKeys(t *testing.T, rc *redis.Client, cc *grpc.ClientConn) []string {
	t.Helper()
	if _, err := echo(t, cc, secretCtx(t), "hello"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		keys, err := rc.Keys(context.Background(), "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) > 0 {
			return keys
		}
		if time.Now().After(deadline) {
			t.Fatalf("no key in Redis 5s after a successful call")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSecurityRedisKeysHashed: the scoping metadata (a bearer token, a
// tenant) reaches Redis only through a digest; values carry the rb1 tag.
func TestSecurityRedisKeysHashed(t *testing.T) {
	t.Parallel()
	rc, _, _, cc := redisSuite(t)
	keys := storedKeys(t, rc, cc)
	if len(keys) != 1 {
		t.Fatalf("Redis keys = %q; want 1", keys)
	}
	k := keys[0]
	for _, secret := range []string{secretToken, "s3cret", "T0KEN", secretTenant, "ACME", "4711", "Bearer", "hello"} {
		if strings.Contains(k, secret) {
			t.Errorf("Redis key %q contains %q; want secrets only through the digest", k, secret)
		}
	}
	prefix := rediscache.DefaultPrefix + echoMethod + ":"
	if !strings.HasPrefix(k, prefix) || len(k) != len(prefix)+fallback.KeyDigestLen {
		t.Errorf("Redis key %q; want %q + a %d-character digest", k, prefix, fallback.KeyDigestLen)
	}
	v, err := rc.Get(context.Background(), k).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(v), "rb1") {
		t.Errorf("Redis value starts %q; want the rb1 type/version tag", v[:min(len(v), 3)])
	}
	for _, secret := range []string{"s3cret", "ACME"} {
		if strings.Contains(string(v), secret) {
			t.Errorf("Redis value %q contains %q", v, secret)
		}
	}
}

// TestSecurityRedisForeignValueIsAMiss: a value under rebound's key that
// rebound did not write (no tag, another version, truncated) is never served.
func TestSecurityRedisForeignValueIsAMiss(t *testing.T) {
	t.Parallel()
	rc, primary, _, cc := redisSuite(t)
	key := storedKeys(t, rc, cc)[0]
	primary.SetBehavior(testserver.Fail(codes.Unavailable))
	var served interceptor.Served
	if _, err := echo(t, cc, secretCtx(t), "hello", interceptor.ServedBy(&served)); err != nil || served.Source != fallback.SourceCache {
		t.Fatalf("control: Echo() = %v, served %v; want the cached reply", err, served)
	}
	evil, _ := proto.Marshal(&testpb.EchoResponse{Message: "evil"})
	tag := []byte("rb1\x00\x00\x00\x00\x00\x00\x00\x01")
	for _, tt := range []struct {
		name  string
		value []byte
	}{
		{"bare protobuf", evil},
		{"another version", append([]byte("rb2\x00\x00\x00\x00\x00\x00\x00\x01"), evil...)},
		{"truncated header", tag[:5]},
		{"empty", nil},
		{"text", []byte("hello world")},
	} {
		if err := rc.Set(context.Background(), key, tt.value, 0).Err(); err != nil {
			t.Fatal(err)
		}
		got, err := echo(t, cc, secretCtx(t), "hello", interceptor.ServedBy(&served))
		if err != nil || served.Source != fallback.SourceStatic || got.GetMessage() != "static" {
			t.Errorf("%s: Echo() = %v, %v, served %v; want the static reply (a foreign value is a miss)", tt.name, got, err, served)
		}
	}
}
