package interceptor_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rebound-grpc/rebound/interceptor"
	"github.com/rebound-grpc/rebound/internal/testpb"
	"github.com/rebound-grpc/rebound/internal/testserver"
	"github.com/rebound-grpc/rebound/pattern"
	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

func newSuite(t testing.TB, opts ...interceptor.Option) *interceptor.Suite {
	t.Helper()
	s, err := interceptor.New(opts...)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func dial(t testing.TB, addr string, s *interceptor.Suite) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDisableRetry(),
		grpc.WithChainUnaryInterceptor(s.UnaryClientInterceptor()),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// fast makes retries quick so that real-time tests stay short.
func fast(extra ...interceptor.Option) []interceptor.Option {
	return append([]interceptor.Option{
		interceptor.WithDefaultPolicy(&reboundv1.RecoveryPolicy{Retry: &reboundv1.Retry{InitialBackoffMs: proto.Uint32(1), MaxBackoffMs: proto.Uint32(5)}}),
		interceptor.WithPolicy("rebound.testing.v1.EchoService", &reboundv1.RecoveryPolicy{Retry: &reboundv1.Retry{InitialBackoffMs: proto.Uint32(1), MaxBackoffMs: proto.Uint32(5)}}),
	}, extra...)
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestUnaryHealthy(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", testserver.OK)
	cc := dial(t, srv.Addr, newSuite(t))
	got, err := testpb.NewEchoServiceClient(cc).Echo(ctxTimeout(t, 5*time.Second), &testpb.EchoRequest{Message: "hi", Seq: 7})
	if err != nil {
		t.Fatalf("Echo() error = %v", err)
	}
	if got.GetMessage() != "primary:hi" || got.GetSeq() != 7 {
		t.Errorf("Echo() = %v; want primary:hi seq 7", got)
	}
	if n := srv.Attempts(); n != 1 {
		t.Errorf("server attempts = %d; want 1", n)
	}
}

func TestUnaryRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		behavior     testserver.Behavior
		call         func(cc *grpc.ClientConn) error
		wantCode     codes.Code
		wantAttempts int64
	}{
		{"retryable code then success", testserver.FailFirst(2, codes.Unavailable), echoCall, codes.OK, 3},
		{"second retryable code of the method", testserver.FailFirst(1, codes.Aborted), echoCall, codes.OK, 2},
		{"non-retryable code", testserver.Fail(codes.InvalidArgument), echoCall, codes.InvalidArgument, 1},
		{"attempts capped by the policy", testserver.Fail(codes.Unavailable), echoCall, codes.Unavailable, 4},
		{"non-idempotent method not retried", testserver.Fail(codes.Unavailable), createCall, codes.Unavailable, 1},
		{"non-idempotent allowed by policy", testserver.FailFirst(1, codes.Unavailable), configuredCall, codes.OK, 2},
		{"NO_SIDE_EFFECTS retried", testserver.FailFirst(1, codes.Unavailable), lookupCall, codes.OK, 2},
		// Pushback is read once the target has failed (see pushbackAfterFirst).
		{"negative pushback stops retries", pushbackAfterFirst("-1"), echoCall, codes.Unavailable, 2},
		{"malformed pushback stops retries", pushbackAfterFirst("soon"), echoCall, codes.Unavailable, 2},
		{"two pushback values stop retries", pushbackAfterFirst("1", "2"), echoCall, codes.Unavailable, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := testserver.Start(t, "primary", tt.behavior)
			cc := dial(t, srv.Addr, newSuite(t, fast()...))
			err := tt.call(cc)
			if got := status.Code(err); got != tt.wantCode {
				t.Errorf("call error = %v; want code %v", err, tt.wantCode)
			}
			if got := srv.Attempts(); got != tt.wantAttempts {
				t.Errorf("server attempts = %d; want %d", got, tt.wantAttempts)
			}
		})
	}
}

// pushbackAfterFirst fails every attempt with UNAVAILABLE; from the second on
// (the target is then degraded, so trailers are read) with pushback values.
func pushbackAfterFirst(values ...string) testserver.Behavior {
	return func(c testserver.Call) testserver.Response {
		r := testserver.Response{Code: codes.Unavailable}
		if c.N > 1 {
			r.Trailer = metadata.MD{"grpc-retry-pushback-ms": values}
		}
		return r
	}
}

func echoCall(cc *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := testpb.NewEchoServiceClient(cc).Echo(ctx, &testpb.EchoRequest{Message: "x"})
	return err
}

func createCall(cc *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := testpb.NewEchoServiceClient(cc).Create(ctx, &testpb.CreateRequest{Message: "x"})
	return err
}

func lookupCall(cc *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := testpb.NewEchoServiceClient(cc).Lookup(ctx, &testpb.LookupRequest{Message: "x"})
	return err
}

func configuredCall(cc *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := testpb.NewPlainServiceClient(cc).Configured(ctx, &testpb.ConfiguredRequest{Message: "x"})
	return err
}

func TestPreviousAttemptsHeader(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", testserver.FailFirst(3, codes.Unavailable))
	cc := dial(t, srv.Addr, newSuite(t, fast()...))
	if err := echoCall(cc); err != nil {
		t.Fatalf("Echo() error = %v", err)
	}
	calls := srv.Calls()
	if len(calls) != 4 {
		t.Fatalf("attempts = %d; want 4", len(calls))
	}
	for i, c := range calls {
		got := c.MD.Get("grpc-previous-rpc-attempts")
		if i == 0 {
			if len(got) != 0 {
				t.Errorf("attempt 1 grpc-previous-rpc-attempts = %v; want absent", got)
			}
			continue
		}
		if want := strconv.Itoa(i); len(got) != 1 || got[0] != want {
			t.Errorf("attempt %d grpc-previous-rpc-attempts = %v; want [%s]", i+1, got, want)
		}
	}
}

func TestPushbackHonoured(t *testing.T) {
	t.Parallel()
	const pb = 150 * time.Millisecond
	srv := testserver.Start(t, "primary", func(c testserver.Call) testserver.Response {
		switch c.N {
		case 1:
			return testserver.Response{Code: codes.Unavailable}
		case 2:
			return testserver.Response{Code: codes.Unavailable, Trailer: metadata.Pairs("grpc-retry-pushback-ms", "150")}
		}
		return testserver.Response{}
	})
	cc := dial(t, srv.Addr, newSuite(t, fast()...))
	start := time.Now()
	if err := echoCall(cc); err != nil {
		t.Fatalf("Echo() error = %v", err)
	}
	if el := time.Since(start); el < pb {
		t.Errorf("call took %v; want >= pushback %v", el, pb)
	}
}

func TestPushbackNotPastDeadline(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", pushbackAfterFirst("60000"))
	cc := dial(t, srv.Addr, newSuite(t, fast()...))
	ctx := ctxTimeout(t, 300*time.Millisecond)
	start := time.Now()
	_, err := testpb.NewEchoServiceClient(cc).Echo(ctx, &testpb.EchoRequest{})
	if el := time.Since(start); el > 250*time.Millisecond {
		t.Errorf("call took %v; a pushback past the deadline must not be slept", el)
	}
	if status.Code(err) != codes.Unavailable || srv.Attempts() != 2 {
		t.Errorf("error = %v after %d attempts; want UNAVAILABLE after 2", err, srv.Attempts())
	}
}

func TestBackoffNotPastDeadline(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
	slow := interceptor.WithPolicy(testpb.EchoService_Echo_FullMethodName, &reboundv1.RecoveryPolicy{
		Retry: &reboundv1.Retry{InitialBackoffMs: proto.Uint32(10_000), MaxBackoffMs: proto.Uint32(10_000), Jitter: reboundv1.Jitter_JITTER_PROPORTIONAL.Enum()},
	})
	cc := dial(t, srv.Addr, newSuite(t, slow))
	start := time.Now()
	_, err := testpb.NewEchoServiceClient(cc).Echo(ctxTimeout(t, time.Second), &testpb.EchoRequest{})
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("call took %v; a backoff that ends past the deadline must not be slept", el)
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("error = %v; want the primary's UNAVAILABLE", err)
	}
}

func TestPerAttemptTimeout(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", func(c testserver.Call) testserver.Response {
		if c.N == 1 {
			return testserver.Response{Delay: 5 * time.Second}
		}
		return testserver.Response{}
	})
	pol := interceptor.WithPolicy(testpb.EchoService_Echo_FullMethodName, &reboundv1.RecoveryPolicy{
		Retry: &reboundv1.Retry{PerAttemptTimeoutMs: proto.Uint32(100)},
	})
	cc := dial(t, srv.Addr, newSuite(t, fast(pol)...))
	start := time.Now()
	if err := echoCall(cc); err != nil {
		t.Fatalf("Echo() error = %v; want the second attempt's reply", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("call took %v; the first attempt should have been cut at 100ms", el)
	}
	if srv.Attempts() != 2 {
		t.Errorf("attempts = %d; want 2", srv.Attempts())
	}
}

func TestCallerDeadlineNotRetried(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", func(testserver.Call) testserver.Response {
		return testserver.Response{Delay: 5 * time.Second}
	})
	cc := dial(t, srv.Addr, newSuite(t, fast()...))
	_, err := testpb.NewEchoServiceClient(cc).Echo(ctxTimeout(t, 100*time.Millisecond), &testpb.EchoRequest{})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("error = %v; want DEADLINE_EXCEEDED", err)
	}
	if srv.Attempts() != 1 {
		t.Errorf("attempts = %d; want 1", srv.Attempts())
	}
}

func TestBudgetExhausted(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
	cc := dial(t, srv.Addr, newSuite(t, fast(
		interceptor.WithRetryBudget(pattern.BudgetConfig{Ratio: 0.1, MaxTokens: 2}),
		interceptor.WithPolicy(testpb.EchoService_Echo_FullMethodName, &reboundv1.RecoveryPolicy{Pattern: &reboundv1.RecoveryPolicy_NoPattern{NoPattern: &reboundv1.NoPattern{}}}),
	)...))
	var perCall []int64
	for range 3 {
		before := srv.Attempts()
		_ = echoCall(cc)
		perCall = append(perCall, srv.Attempts()-before)
	}
	// 2 tokens: the first call spends both (3 attempts), then no retries are left.
	if want := []int64{3, 1, 1}; !equal(perCall, want) {
		t.Errorf("attempts per call = %v; want %v", perCall, want)
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestShortCircuit(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
	cc := dial(t, srv.Addr, newSuite(t, fast(
		interceptor.WithPolicy(testpb.EchoService_Echo_FullMethodName, &reboundv1.RecoveryPolicy{
			Retry: &reboundv1.Retry{MaxAttempts: proto.Uint32(1)},
			Pattern: &reboundv1.RecoveryPolicy_ExponentialBackoff{ExponentialBackoff: &reboundv1.ExponentialBackoff{
				Trip:        &reboundv1.Trip{ConsecutiveFailures: proto.Uint32(3)},
				OpenDelayMs: proto.Uint32(60_000), MaxOpenDelayMs: proto.Uint32(60_000),
			}},
		}),
	)...))
	for range 3 {
		_ = echoCall(cc)
	}
	err := echoCall(cc)
	if status.Code(err) != codes.Unavailable || !errors.Is(err, interceptor.ErrShortCircuit) {
		t.Fatalf("error = %v; want UNAVAILABLE short circuit", err)
	}
	var sc *interceptor.ShortCircuitError
	if !errors.As(err, &sc) || sc.State != pattern.Open || sc.RetryAfter <= 0 {
		t.Errorf("error = %#v; want open with a retry-after", err)
	}
	if srv.Attempts() != 3 {
		t.Errorf("attempts = %d; want 3 (the fourth call short-circuited)", srv.Attempts())
	}
}

func TestCallerCancellationIsNotAFailure(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", func(testserver.Call) testserver.Response {
		return testserver.Response{Delay: 5 * time.Second}
	})
	cc := dial(t, srv.Addr, newSuite(t, fast(
		interceptor.WithPolicy(testpb.EchoService_Echo_FullMethodName, &reboundv1.RecoveryPolicy{
			Pattern: &reboundv1.RecoveryPolicy_ExponentialBackoff{ExponentialBackoff: &reboundv1.ExponentialBackoff{
				Trip: &reboundv1.Trip{ConsecutiveFailures: proto.Uint32(1)},
			}},
		}),
	)...))
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, _ = testpb.NewEchoServiceClient(cc).Echo(ctx, &testpb.EchoRequest{})
		cancel()
	}
	srv.SetBehavior(testserver.OK)
	if err := echoCall(cc); err != nil {
		t.Errorf("Echo() after caller timeouts = %v; want success (timeouts of the caller must not open the breaker)", err)
	}
}
