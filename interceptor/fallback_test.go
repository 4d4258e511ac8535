package interceptor_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rebound-grpc/rebound/fallback"
	"github.com/rebound-grpc/rebound/fallback/rediscache"
	"github.com/rebound-grpc/rebound/interceptor"
	"github.com/rebound-grpc/rebound/internal/redistest"
	"github.com/rebound-grpc/rebound/internal/testpb"
	"github.com/rebound-grpc/rebound/internal/testserver"
	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

const echoMethod = testpb.EchoService_Echo_FullMethodName

func plainConn(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDisableRetry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func alternateStep(name string) *reboundv1.FallbackStep {
	return &reboundv1.FallbackStep{Step: &reboundv1.FallbackStep_Alternate{Alternate: &reboundv1.AlternateStep{Name: name}}}
}

// stickyBreaker is an exponential_backoff pattern that opens after n
// consecutive failures and stays open for a minute: longer than any test.
func stickyBreaker(n uint32) *reboundv1.RecoveryPolicy_ExponentialBackoff {
	return &reboundv1.RecoveryPolicy_ExponentialBackoff{ExponentialBackoff: &reboundv1.ExponentialBackoff{
		Trip: &reboundv1.Trip{ConsecutiveFailures: proto.Uint32(n)}, OpenDelayMs: proto.Uint32(60_000), MaxOpenDelayMs: proto.Uint32(60_000),
	}}
}

func cacheStep(staleMs uint32, keys ...string) *reboundv1.FallbackStep {
	return &reboundv1.FallbackStep{Step: &reboundv1.FallbackStep_Cache{Cache: &reboundv1.CacheStep{MaxStalenessMs: staleMs, KeyMetadata: keys}}}
}

func staticStep(text string) *reboundv1.FallbackStep {
	return &reboundv1.FallbackStep{Step: &reboundv1.FallbackStep_StaticReply{StaticReply: &reboundv1.StaticReplyStep{Text: text}}}
}

func withChain(steps ...*reboundv1.FallbackStep) interceptor.Option {
	return interceptor.WithPolicy(echoMethod, &reboundv1.RecoveryPolicy{Fallback: &reboundv1.Fallback{Steps: steps}})
}

func echo(t testing.TB, cc *grpc.ClientConn, ctx context.Context, msg string, opts ...grpc.CallOption) (*testpb.EchoResponse, error) {
	t.Helper()
	return testpb.NewEchoServiceClient(cc).Echo(ctx, &testpb.EchoRequest{Message: msg}, opts...)
}

func TestFallbackAlternate(t *testing.T) {
	t.Parallel()
	primary := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
	replica := testserver.Start(t, "replica", testserver.OK)
	s := newSuite(t, fast(interceptor.WithAlternate("replica", plainConn(t, replica.Addr)), withChain(alternateStep("replica")))...)
	cc := dial(t, primary.Addr, s)
	var served interceptor.Served
	ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 5*time.Second), "x-trace", "abc")
	got, err := echo(t, cc, ctx, "hi", interceptor.ServedBy(&served))
	if err != nil {
		t.Fatalf("Echo() error = %v; want the alternate's reply", err)
	}
	if got.GetMessage() != "replica:hi" {
		t.Errorf("Echo() = %q; want replica:hi", got.GetMessage())
	}
	if served.Source != fallback.SourceAlternate || served.Name != "replica" || served.Attempts != 4 || !served.Degraded() {
		t.Errorf("served = %+v (%v); want alternate:replica after 4 attempts", served, served)
	}
	calls := replica.Calls()
	if len(calls) != 1 || strings.Join(calls[0].MD.Get("x-trace"), ",") != "abc" {
		t.Errorf("alternate calls = %+v; want one carrying the caller's metadata", calls)
	}
	if dl, _ := ctx.Deadline(); len(calls) == 1 && (calls[0].Deadline.IsZero() || calls[0].Deadline.After(dl.Add(time.Second))) {
		t.Errorf("alternate saw deadline %v; want the caller's %v", calls[0].Deadline, dl)
	}
}

func TestFallbackAlternateHasItsOwnBreaker(t *testing.T) {
	t.Parallel()
	primary := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
	replica := testserver.Start(t, "replica", testserver.Fail(codes.Unavailable))
	pol := &reboundv1.RecoveryPolicy{
		Retry:    &reboundv1.Retry{MaxAttempts: proto.Uint32(1)},
		Pattern:  stickyBreaker(3),
		Fallback: &reboundv1.Fallback{Steps: []*reboundv1.FallbackStep{alternateStep("replica")}},
	}
	s := newSuite(t, interceptor.WithAlternate("replica", plainConn(t, replica.Addr)), interceptor.WithPolicy(echoMethod, pol))
	cc := dial(t, primary.Addr, s)
	for range 10 {
		_, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "x")
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("Echo() error = %v; want UNAVAILABLE", err)
		}
	}
	if p, r := primary.Attempts(), replica.Attempts(); p != 3 || r != 3 {
		t.Errorf("attempts primary/replica = %d/%d; want 3/3 (each breaker opens after 3 failures)", p, r)
	}
}

func TestFallbackCache(t *testing.T) {
	t.Parallel()
	primary := testserver.Start(t, "primary", testserver.OK)
	s := newSuite(t, fast(withChain(cacheStep(60_000)))...)
	cc := dial(t, primary.Addr, s)
	if _, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "a"); err != nil {
		t.Fatal(err)
	}
	primary.SetBehavior(testserver.Fail(codes.Unavailable))
	var served interceptor.Served
	got, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "a", interceptor.ServedBy(&served))
	if err != nil || got.GetMessage() != "primary:a" {
		t.Fatalf("Echo(a) = %v, %v; want the cached primary:a", got, err)
	}
	if served.Source != fallback.SourceCache || served.Age < 0 || served.Age > time.Minute {
		t.Errorf("served = %+v; want cache with a small age", served)
	}
	// Another request has no entry: the primary's error, unchanged in code.
	_, err = echo(t, cc, ctxTimeout(t, 5*time.Second), "b")
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Echo(b) error = %v; want UNAVAILABLE", err)
	}
	var fe *fallback.Error
	if !errors.As(err, &fe) || len(fe.Steps) != 1 || !errors.Is(fe.Steps[0], fallback.ErrCacheMiss) {
		t.Errorf("Echo(b) error = %#v; want a fallback.Error with the cache miss beside the cause", err)
	}
}

func TestFallbackCacheStaleness(t *testing.T) {
	t.Parallel()
	primary := testserver.Start(t, "primary", testserver.OK)
	s := newSuite(t, fast(withChain(cacheStep(30), staticStep(`message: "static"`)))...)
	cc := dial(t, primary.Addr, s)
	if _, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "a"); err != nil {
		t.Fatal(err)
	}
	primary.SetBehavior(testserver.Fail(codes.Unavailable))
	time.Sleep(60 * time.Millisecond) // older than max_staleness_ms: 30
	got, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "a")
	if err != nil || got.GetMessage() != "static" {
		t.Errorf("Echo() = %v, %v; want the static reply (the cached one is stale)", got, err)
	}
}

func TestFallbackCacheTenantIsolation(t *testing.T) {
	t.Parallel()
	primary := testserver.Start(t, "primary", func(c testserver.Call) testserver.Response {
		return testserver.Response{Message: "for " + strings.Join(c.MD.Get("x-tenant"), ",")}
	})
	s := newSuite(t, fast(withChain(cacheStep(60_000, "x-tenant")))...)
	cc := dial(t, primary.Addr, s)
	tenant := func(name string) context.Context {
		return metadata.AppendToOutgoingContext(ctxTimeout(t, 5*time.Second), "x-tenant", name)
	}
	if _, err := echo(t, cc, tenant("alpha"), "same request"); err != nil {
		t.Fatal(err)
	}
	primary.SetBehavior(testserver.Fail(codes.Unavailable))
	got, err := echo(t, cc, tenant("alpha"), "same request")
	if err != nil || got.GetMessage() != "for alpha" {
		t.Errorf("alpha = %v, %v; want its own cached reply", got, err)
	}
	got, err = echo(t, cc, tenant("beta"), "same request")
	if err == nil {
		t.Errorf("beta = %v; want a miss, never alpha's reply", got)
	}
	got, err = echo(t, cc, ctxTimeout(t, 5*time.Second), "same request")
	if err == nil {
		t.Errorf("no tenant = %v; want a miss, never alpha's reply", got)
	}
}

// corruptCache returns garbage for every key.
type corruptCache struct{}

func (corruptCache) Get(context.Context, string) (fallback.Entry, bool, error) {
	return fallback.Entry{Value: []byte{0xff, 0xff, 0xff}, StoredAt: time.Now()}, true, nil
}
func (corruptCache) Set(context.Context, string, fallback.Entry) error { return nil }

func TestFallbackCorruptCacheIsAMiss(t *testing.T) {
	t.Parallel()
	primary := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
	s := newSuite(t, fast(interceptor.WithCache(corruptCache{}), withChain(cacheStep(60_000), staticStep(`message: "static"`)))...)
	cc := dial(t, primary.Addr, s)
	var served interceptor.Served
	got, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "a", interceptor.ServedBy(&served))
	if err != nil || got.GetMessage() != "static" || served.Source != fallback.SourceStatic {
		t.Errorf("Echo() = %v, %v, served %v; want the static reply after a corrupt cache value", got, err, served)
	}
}

func TestFallbackStaticFromProto(t *testing.T) {
	t.Parallel()
	primary := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
	cc := dial(t, primary.Addr, newSuite(t, fast()...))
	got, err := testpb.NewPlainServiceClient(cc).Configured(ctxTimeout(t, 5*time.Second), &testpb.ConfiguredRequest{Message: "x"})
	if err != nil || got.GetMessage() != "static" {
		t.Errorf("Configured() = %v, %v; want the proto's static reply", got, err)
	}
}

func TestFallbackFunc(t *testing.T) {
	t.Parallel()
	primary := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
	fn := func(ctx context.Context, method string, req, reply any) error {
		reply.(*testpb.EchoResponse).Message = "func:" + req.(*testpb.EchoRequest).GetMessage()
		return nil
	}
	cc := dial(t, primary.Addr, newSuite(t, fast(interceptor.WithFallbackFunc(echoMethod, fn))...))
	var served interceptor.Served
	got, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "x", interceptor.ServedBy(&served))
	if err != nil || got.GetMessage() != "func:x" || served.Source != fallback.SourceFunction {
		t.Errorf("Echo() = %v, %v, %v; want func:x from the function", got, err, served)
	}
}

func TestFallbackFailedStepLeavesReplyUntouched(t *testing.T) {
	t.Parallel()
	primary := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
	fn := func(ctx context.Context, method string, req, reply any) error {
		reply.(*testpb.EchoResponse).Message = "half written"
		return errors.New("gave up")
	}
	cc := dial(t, primary.Addr, newSuite(t, fast(interceptor.WithFallbackFunc(echoMethod, fn))...))
	reply := &testpb.EchoResponse{Message: "untouched"}
	err := cc.Invoke(ctxTimeout(t, 5*time.Second), echoMethod, &testpb.EchoRequest{}, reply)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "gave up") {
		t.Errorf("Invoke() error = %v; want UNAVAILABLE with the step's error beside it", err)
	}
	if reply.GetMessage() != "untouched" {
		t.Errorf("reply = %q; want untouched", reply.GetMessage())
	}
}

func TestFallbackChainOrder(t *testing.T) {
	t.Parallel()
	primary := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
	replica := testserver.Start(t, "replica", testserver.Fail(codes.Unavailable))
	var order []string
	fn := func(ctx context.Context, method string, req, reply any) error {
		order = append(order, "function")
		reply.(*testpb.EchoResponse).Message = "func"
		return nil
	}
	s := newSuite(t, fast(
		interceptor.WithAlternate("replica", plainConn(t, replica.Addr)),
		interceptor.WithFallbackFunc(echoMethod, fn),
		withChain(alternateStep("replica"), cacheStep(1000), &reboundv1.FallbackStep{Step: &reboundv1.FallbackStep_Function{Function: &reboundv1.FunctionStep{}}}, staticStep(`message: "static"`)),
	)...)
	cc := dial(t, primary.Addr, s)
	got, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "x")
	if err != nil || got.GetMessage() != "func" {
		t.Fatalf("Echo() = %v, %v; want the function (third step)", got, err)
	}
	if replica.Attempts() != 1 || len(order) != 1 {
		t.Errorf("replica attempts = %d, function calls = %d; want 1 and 1", replica.Attempts(), len(order))
	}
}

func TestFallbackDeadlineAcrossChain(t *testing.T) {
	t.Parallel()
	primary := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
	blackhole := testserver.Start(t, "blackhole", func(testserver.Call) testserver.Response { return testserver.Response{Delay: 10 * time.Second} })
	s := newSuite(t, fast(interceptor.WithAlternate("slow", plainConn(t, blackhole.Addr)), withChain(alternateStep("slow"), staticStep(`message: "static"`)))...)
	cc := dial(t, primary.Addr, s)
	start := time.Now()
	got, err := echo(t, cc, ctxTimeout(t, 300*time.Millisecond), "x")
	el := time.Since(start)
	if el > 350*time.Millisecond {
		t.Errorf("call took %v; want it back by its 300ms deadline", el)
	}
	if blackhole.Attempts() != 1 {
		t.Errorf("alternate attempts = %d; want 1", blackhole.Attempts())
	}
	// The alternate used up the deadline. The static step answers only if it
	// started in time (the server may report the deadline a moment before the
	// client's timer fires); otherwise the call fails.
	if err == nil && got.GetMessage() != "static" {
		t.Errorf("Echo() = %v; want static or an error", got)
	}
}

func TestShortCircuitGoesToFallbackAtOnce(t *testing.T) {
	t.Parallel()
	primary := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
	pol := &reboundv1.RecoveryPolicy{
		Retry:    &reboundv1.Retry{MaxAttempts: proto.Uint32(1)},
		Pattern:  stickyBreaker(2),
		Fallback: &reboundv1.Fallback{Steps: []*reboundv1.FallbackStep{staticStep(`message: "static"`)}},
	}
	cc := dial(t, primary.Addr, newSuite(t, interceptor.WithPolicy(echoMethod, pol)))
	for range 5 {
		var served interceptor.Served
		got, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "x", interceptor.ServedBy(&served))
		if err != nil || got.GetMessage() != "static" {
			t.Fatalf("Echo() = %v, %v; want static", got, err)
		}
	}
	if n := primary.Attempts(); n != 2 {
		t.Errorf("primary attempts = %d; want 2 (then the circuit is open)", n)
	}
}

func TestFallbackRedisStoppedMidTest(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = rc.Close() })
	primary := testserver.Start(t, "primary", testserver.OK)
	s := newSuite(t, fast(interceptor.WithCache(rediscache.New(rc)), withChain(cacheStep(60_000), staticStep(`message: "static"`)))...)
	cc := dial(t, primary.Addr, s)
	if _, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "a"); err != nil {
		t.Fatal(err)
	}
	primary.SetBehavior(testserver.Fail(codes.Unavailable))
	// The asynchronous write lands within its timeout; wait for it to be served.
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "a")
		if err == nil && got.GetMessage() == "primary:a" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never served from Redis: last %v, %v", got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rs.Stop()
	start := time.Now()
	got, err := echo(t, cc, ctxTimeout(t, 500*time.Millisecond), "a")
	if err != nil || got.GetMessage() != "static" {
		t.Errorf("with Redis stopped: %v, %v; want the next step (static)", got, err)
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("with Redis stopped the call took %v; want within its deadline", el)
	}
}

// countingCache counts the writes that reach it.
type countingCache struct {
	fallback.Cache
	sets atomic.Int64
}

func (c *countingCache) Set(ctx context.Context, key string, e fallback.Entry) error {
	c.sets.Add(1)
	return c.Cache.Set(ctx, key, e)
}

// TestCacheWritesOnlyChangedReplies: a reply equal to the one last stored is
// not written again until half the step's max staleness has passed; a
// changed reply is written at once. Time is synctest's, so a stalled machine
// cannot push the calls past the refresh.
func TestCacheWritesOnlyChangedReplies(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		cache := &countingCache{Cache: fallback.NewMemoryCache(1 << 20)}
		s := newSuite(t, interceptor.WithCache(cache), withChain(cacheStep(200))) // refresh after 100 ms
		ic := s.UnaryClientInterceptor()
		answer := "v1"
		invoker := func(_ context.Context, _ string, _, reply any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
			reply.(*testpb.EchoResponse).Message = answer
			return nil
		}
		call := func() {
			if err := ic(context.Background(), echoMethod, &testpb.EchoRequest{Message: "k"}, &testpb.EchoResponse{}, nil, invoker); err != nil {
				t.Fatal(err)
			}
			synctest.Wait() // the write, if any, has happened
		}
		want := func(n int64, why string) {
			t.Helper()
			if got := cache.sets.Load(); got != n {
				t.Fatalf("cache writes = %d; want %d (%s)", got, n, why)
			}
		}
		for range 20 {
			call()
			time.Sleep(time.Millisecond)
		}
		want(1, "the same reply 20 times within 20 ms: one write")
		answer = "v2"
		call()
		want(2, "a changed reply: written at once")
		time.Sleep(90 * time.Millisecond)
		call()
		want(2, "unchanged, 90 ms after its write: not written")
		time.Sleep(20 * time.Millisecond)
		call()
		want(3, "unchanged, but past the refresh: written again, so the entry stays fresh")
	})
}
