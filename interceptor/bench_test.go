package interceptor_test

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/rebound-grpc/rebound/interceptor"
	"github.com/rebound-grpc/rebound/internal/testpb"
	"github.com/rebound-grpc/rebound/internal/testserver"
	"github.com/rebound-grpc/rebound/pattern"
	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

func noopUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(ctx, method, req, reply, cc, opts...)
}

func nilInvoker(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
	return nil
}

// BenchmarkInterceptorAlone measures the interceptor with an invoker that
// returns at once: the cost rebound adds to every healthy call.
func BenchmarkInterceptorAlone(b *testing.B) {
	s, err := interceptor.New()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	req, reply := &testpb.EchoRequest{}, &testpb.EchoResponse{}
	for _, bc := range []struct {
		name string
		ic   grpc.UnaryClientInterceptor
	}{
		{"noop", noopUnary},
		{"rebound", s.UnaryClientInterceptor()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = bc.ic(ctx, testpb.EchoService_Echo_FullMethodName, req, reply, nil, nilInvoker)
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_ = bc.ic(ctx, testpb.EchoService_Echo_FullMethodName, req, reply, nil, nilInvoker)
				}
			})
		})
	}
}

// BenchmarkHealthyTCP measures a healthy unary call over loopback TCP, with a
// no-op interceptor and with rebound.
func BenchmarkHealthyTCP(b *testing.B) {
	srv := testserver.Start(b, "primary", testserver.OK)
	s, err := interceptor.New()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, bc := range []struct {
		name string
		ic   grpc.UnaryClientInterceptor
	}{
		{"noop", noopUnary},
		{"rebound", s.UnaryClientInterceptor()},
	} {
		b.Run(bc.name, func(b *testing.B) { benchEcho(b, srv.Addr, grpc.WithChainUnaryInterceptor(bc.ic)) })
	}
}

// benchEcho measures healthy Echo calls to addr over a connection dialed
// with opts (plus insecure credentials and grpc-go's retries off), after one
// warm-up call.
func benchEcho(b *testing.B, addr string, opts ...grpc.DialOption) {
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDisableRetry()}, opts...)
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	client := testpb.NewEchoServiceClient(cc)
	ctx := context.Background()
	req := &testpb.EchoRequest{Message: "hello"}
	if _, err := client.Echo(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Echo(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func TestHealthyPathAllocs(t *testing.T) {
	s := newSuite(t)
	ic := s.UnaryClientInterceptor()
	ctx := context.Background()
	req, reply := &testpb.EchoRequest{}, &testpb.EchoResponse{}
	for _, m := range []string{testpb.EchoService_Echo_FullMethodName, testpb.EchoService_Create_FullMethodName, "/unknown.Service/Method"} {
		_ = ic(ctx, m, req, reply, nil, nilInvoker) // first call creates state
		if n := testing.AllocsPerRun(200, func() { _ = ic(ctx, m, req, reply, nil, nilInvoker) }); n != 0 {
			t.Errorf("interceptor on %s allocs/op = %v; want 0", m, n)
		}
	}
}

// BenchmarkTracingCost compares, over loopback TCP, what tracing adds to a
// healthy call: rebound's call and attempt spans against otelgrpc's stats
// handler, both with the same recording SDK tracer provider.
func BenchmarkTracingCost(b *testing.B) {
	srv := testserver.Start(b, "primary", testserver.OK)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	s, err := interceptor.New(interceptor.WithTracerProvider(tp))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, bc := range []struct {
		name string
		opts []grpc.DialOption
	}{
		{"none", nil},
		{"otelgrpc", []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp)))}},
		{"rebound", []grpc.DialOption{grpc.WithChainUnaryInterceptor(s.UnaryClientInterceptor())}},
	} {
		b.Run(bc.name, func(b *testing.B) { benchEcho(b, srv.Addr, bc.opts...) })
	}
}

// BenchmarkCacheStore measures the healthy path of a method whose chain has
// a cache step: every success marshals the request and reply, derives the
// key and stores the entry in the memory cache.
func BenchmarkCacheStore(b *testing.B) {
	ctx := context.Background()
	req := &testpb.EchoRequest{Message: "a request of ordinary size", Seq: 42}
	reply := &testpb.EchoResponse{Message: "a reply of ordinary size, a little longer than the request", Seq: 42}
	for _, bc := range []struct {
		name string
		opts []interceptor.Option
	}{
		{"no-cache-step", nil},
		{"cache-step", []interceptor.Option{interceptor.WithPolicy(testpb.EchoService_Echo_FullMethodName, &reboundv1.RecoveryPolicy{
			Fallback: &reboundv1.Fallback{Steps: []*reboundv1.FallbackStep{{Step: &reboundv1.FallbackStep_Cache{Cache: &reboundv1.CacheStep{MaxStalenessMs: 60_000}}}}},
		})}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := interceptor.New(bc.opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ic := s.UnaryClientInterceptor()
			b.ReportAllocs()
			for b.Loop() {
				_ = ic(ctx, testpb.EchoService_Echo_FullMethodName, req, reply, nil, nilInvoker)
			}
		})
	}
}

// TestMethodLookupByAddress: the lookup cache keyed by the method string's
// address returns each method's own policy, and strings built per call (new
// addresses every time) neither allocate nor get another method's state.
func TestMethodLookupByAddress(t *testing.T) {
	s := newSuite(t, fast(interceptor.WithRetryBudget(pattern.BudgetConfig{MaxTokens: 1e6, RetriesWithoutSuccess: 10_000}))...)
	ic := s.UnaryClientInterceptor()
	ctx := context.Background()
	attempts := 0
	failing := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		attempts++
		return status.Error(codes.Unavailable, "down")
	}
	for i := range 50 {
		for _, tc := range []struct {
			method string
			want   int
		}{
			{testpb.EchoService_Echo_FullMethodName, 4},                                // IDEMPOTENT, 4 attempts
			{testpb.EchoService_Create_FullMethodName, 1},                              // not idempotent
			{strings.Clone(testpb.EchoService_Echo_FullMethodName), 4},                 // same name, new address
			{"/rebound.testing.v1.EchoService/" + "Create" + strings.Repeat("", i), 1}, // built per call
		} {
			attempts = 0
			_ = ic(ctx, tc.method, &testpb.EchoRequest{}, &testpb.EchoResponse{}, nil, failing)
			if attempts > tc.want || (i == 0 && attempts != tc.want) {
				t.Fatalf("call %d of %s made %d attempts; want %d (patterns %+v)", i, tc.method, attempts, tc.want, s.Patterns())
			}
		}
	}
	// A fresh Suite: the failures above opened the breakers.
	ic = newSuite(t).UnaryClientInterceptor()
	req, reply := &testpb.EchoRequest{}, &testpb.EchoResponse{}
	names := make([]string, 1200) // each at a new address
	for i := range names {
		names[i] = strings.Clone(testpb.EchoService_Echo_FullMethodName)
	}
	// The address cache fills each of its slots once over the Suite's life
	// (a bounded number of allocations); after that, new addresses cost nothing.
	for _, n := range names[:1000] {
		_ = ic(ctx, n, req, reply, nil, nilInvoker)
	}
	i := 1000
	if n := testing.AllocsPerRun(100, func() {
		_ = ic(ctx, names[i], req, reply, nil, nilInvoker)
		i++
	}); n > 0 {
		t.Errorf("allocs/op for a method string at a new address = %v; want 0", n)
	}
}
