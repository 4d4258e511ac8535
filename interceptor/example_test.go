package interceptor_test

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rebound-grpc/rebound/interceptor"
	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

// New validates every policy it can see and reports every problem at once,
// naming the method (or service), where the value came from, and the field.
func ExampleNew_validation() {
	_, err := interceptor.New(
		interceptor.WithPolicy("/rebound.testing.v1.EchoService/Echo", &reboundv1.RecoveryPolicy{
			Retry: &reboundv1.Retry{MaxAttempts: proto.Uint32(0)},
			Fallback: &reboundv1.Fallback{Steps: []*reboundv1.FallbackStep{
				{Step: &reboundv1.FallbackStep_Alternate{Alternate: &reboundv1.AlternateStep{Name: "eu-west"}}},
			}},
		}),
	)
	fmt.Println(err)
	// Output:
	// rebound: /rebound.testing.v1.EchoService/Echo (WithPolicy): retry.max_attempts: 0 is out of range [1, 10]
	// rebound: /rebound.testing.v1.EchoService/Echo (merged): fallback.steps[0].alternate.name: "eu-west" is not registered with WithAlternate
}

// A retryable failure is retried with backoff; a static reply answers once the
// attempts are spent. The invoker here stands in for a server that fails twice.
func ExampleSuite_UnaryClientInterceptor() {
	suite, err := interceptor.New(
		interceptor.WithFiles(nil), // policies from Go only, for this example
		interceptor.WithPolicy("/demo.v1.Prices/Get", &reboundv1.RecoveryPolicy{
			Retry: &reboundv1.Retry{MaxAttempts: proto.Uint32(3), InitialBackoffMs: proto.Uint32(1), AllowNonIdempotent: proto.Bool(true)},
		}),
	)
	if err != nil {
		panic(err)
	}
	defer suite.Close()

	attempts := 0
	flaky := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		attempts++
		if attempts < 3 {
			return status.Error(codes.Unavailable, "warming up")
		}
		reply.(*wrapperspb.StringValue).Value = "42.00 EUR"
		return nil
	}
	var served interceptor.Served
	reply := &wrapperspb.StringValue{}
	err = suite.UnaryClientInterceptor()(context.Background(), "/demo.v1.Prices/Get", &wrapperspb.StringValue{Value: "apple"}, reply, nil, flaky, interceptor.ServedBy(&served))
	fmt.Println(reply.GetValue(), err, served.Source, served.Attempts)
	// Output: 42.00 EUR <nil> primary 3
}

// ServedBy tells the caller which step of the fallback chain answered.
func ExampleServedBy() {
	suite, err := interceptor.New(
		interceptor.WithFiles(nil),
		interceptor.WithFallbackFunc("/demo.v1.Prices/Get", func(ctx context.Context, method string, req, reply any) error {
			reply.(*wrapperspb.StringValue).Value = "price unavailable"
			return nil
		}),
	)
	if err != nil {
		panic(err)
	}
	defer suite.Close()
	down := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		return status.Error(codes.Unavailable, "down")
	}
	var served interceptor.Served
	reply := &wrapperspb.StringValue{}
	err = suite.UnaryClientInterceptor()(context.Background(), "/demo.v1.Prices/Get", &wrapperspb.StringValue{}, reply, nil, down, interceptor.ServedBy(&served))
	fmt.Println(reply.GetValue(), err, served, served.Degraded())
	// Output: price unavailable <nil> function true
}

// WithStateChange reports every transition of a recovery pattern, here the
// breaker opening after two failed calls; the third call is refused without
// reaching the server.
func ExampleWithStateChange() {
	suite, err := interceptor.New(
		interceptor.WithFiles(nil),
		interceptor.WithPolicy("/demo.v1.Prices/Get", &reboundv1.RecoveryPolicy{
			Retry: &reboundv1.Retry{MaxAttempts: proto.Uint32(1)},
			Pattern: &reboundv1.RecoveryPolicy_ExponentialBackoff{ExponentialBackoff: &reboundv1.ExponentialBackoff{
				Trip: &reboundv1.Trip{ConsecutiveFailures: proto.Uint32(2)}, OpenDelayMs: proto.Uint32(10_000),
			}},
		}),
		interceptor.WithStateChange(func(c interceptor.StateChange) {
			fmt.Printf("%s: %v → %v\n", c.Method, c.From, c.To)
		}),
	)
	if err != nil {
		panic(err)
	}
	defer suite.Close()
	reached := 0
	down := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		reached++
		return status.Error(codes.Unavailable, "down")
	}
	for range 3 {
		err = suite.UnaryClientInterceptor()(context.Background(), "/demo.v1.Prices/Get", &wrapperspb.StringValue{}, &wrapperspb.StringValue{}, nil, down)
	}
	fmt.Println("calls that reached the server:", reached, "last error:", status.Code(err))
	// Output:
	// /demo.v1.Prices/Get: closed → open
	// calls that reached the server: 2 last error: Unavailable
}
