package harness

import (
	"context"
	"fmt"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafegrpc"
	"github.com/failsafe-go/failsafe-go/timeout"
	gmwretry "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/retry"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/rebound-grpc/rebound/interceptor"
	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

// The settings every library gets alike.
const (
	Attempts       = 3
	InitialBackoff = 50 * time.Millisecond
	MaxBackoff     = time.Second
	// PeerJitter is the ± jitter fraction of the peers whose backoff has no
	// full-jitter option (go-grpc-middleware, failsafe-go).
	PeerJitter = 0.5
	// Breaker settings, rebound's defaults: open after 5 failures in a row,
	// 1 s open delay, 2 successes to close.
	BreakerFailures  = 10
	BreakerDelay     = time.Second
	BreakerSuccesses = 2
)

// Settings are the knobs a run varies.
type Settings struct {
	// PerAttemptTimeout bounds each attempt, for the libraries that have
	// such an option (rebound, go-grpc-middleware, failsafe-go). 0: none.
	PerAttemptTimeout time.Duration
	// InitialBackoff overrides the first backoff (default InitialBackoff) for
	// every library that takes one; grpc-go's service config keeps its own.
	InitialBackoff time.Duration
}

// initial is the first backoff of s.
func (s Settings) initial() time.Duration {
	if s.InitialBackoff > 0 {
		return s.InitialBackoff
	}
	return InitialBackoff
}

// Client is one library set up for one connection.
type Client struct {
	Unary       grpc.UnaryClientInterceptor // nil: no interceptor
	DialOptions []grpc.DialOption
	close       func()
}

// Close releases what the library holds (rebound's Suite).
func (c *Client) Close() {
	if c.close != nil {
		c.close()
	}
}

// Dial connects to srv with the library installed.
func (c *Client) Dial(srv *Server) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	opts = append(opts, srv.DialOptions()...)
	opts = append(opts, c.DialOptions...)
	if c.Unary != nil {
		opts = append(opts, grpc.WithChainUnaryInterceptor(c.Unary))
	}
	return grpc.NewClient(srv.Target(), opts...)
}

// Lib is one library (or one configuration of it) in the comparison.
type Lib struct {
	ID          string // short name used in benchmark names and tables
	Desc        string // how it is configured, for RESULTS.md
	Interceptor bool   // a unary interceptor (takes part in the interceptor-alone benchmark)
	Scenario    bool   // takes part in the failure scenarios
	New         func(Settings) (*Client, error)
}

// Libs returns every library compared, "none" first.
func Libs() []Lib {
	return []Lib{
		{ID: "none", Desc: "no interceptor, grpc.WithDisableRetry() (the baseline; a no-op interceptor in the interceptor-alone benchmark)", Interceptor: true, Scenario: true,
			New: func(Settings) (*Client, error) {
				return &Client{DialOptions: []grpc.DialOption{grpc.WithDisableRetry()}}, nil
			}},
		{ID: "rebound-budget", Desc: "rebound: RecoveryPolicy{retry: 3 attempts, 50 ms..1 s full jitter, allow_non_idempotent; no_pattern: {}}, default retry budget (1 token per success, 20 tokens, 5 retries after the last success)", Interceptor: true, Scenario: true,
			New: func(s Settings) (*Client, error) { return newRebound(s, false) }},
		{ID: "rebound-breaker", Desc: "rebound: same retry and budget + the default exponential_backoff pattern (10 consecutive failures or 50 % of ≥20 calls, open 1 s ×2 up to 30 s, 2 probes to close)", Interceptor: true, Scenario: true,
			New: func(s Settings) (*Client, error) { return newRebound(s, true) }},
		{ID: "gmw-retry", Desc: "go-grpc-middleware/v2 retry: WithMax(3), BackoffExponentialWithJitterBounded(50 ms, ±50 %, 1 s), WithCodes(UNAVAILABLE), WithPerRetryTimeout when set", Interceptor: true, Scenario: true,
			New: newGMW},
		{ID: "failsafe-retry", Desc: "failsafe-go failsafegrpc: NewRetryPolicyBuilder (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) WithMaxAttempts(3) WithBackoff(50 ms, 1 s) WithJitterFactor(0.5) ReturnLastFailure; + timeout policy per attempt when set", Interceptor: true, Scenario: true,
			New: func(s Settings) (*Client, error) { return newFailsafe(s, false) }},
		{ID: "failsafe-retry-cb", Desc: "failsafe-go: the same retry wrapping a circuit breaker: WithFailureThreshold(10) WithDelay(1 s) WithSuccessThreshold(2)", Interceptor: true, Scenario: true,
			New: func(s Settings) (*Client, error) { return newFailsafe(s, true) }},
		{ID: "grpc-retry", Desc: "grpc-go built-in retry, service config retryPolicy{maxAttempts 3, initialBackoff 0.05s, maxBackoff 1s, multiplier 2, UNAVAILABLE}; no per-attempt timeout exists", Scenario: true,
			New: func(Settings) (*Client, error) { return newGRPCRetry(false), nil }},
		{ID: "grpc-retry-throttle", Desc: "grpc-go built-in retry as above + retryThrottling{maxTokens 10, tokenRatio 0.1} (gRFC A6)", Scenario: true,
			New: func(Settings) (*Client, error) { return newGRPCRetry(true), nil }},
		{ID: "otelgrpc", Desc: "no retry; otelgrpc.NewClientHandler stats handler with an SDK TracerProvider (always sample, no exporter): the cost of tracing alone",
			New: newOtel},
	}
}

// Noop is the no-op interceptor of the baseline.
func Noop(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(ctx, method, req, reply, cc, opts...)
}

// ReboundPolicy is the policy rebound gets for FullMethod.
func ReboundPolicy(s Settings, breaker bool) *reboundv1.RecoveryPolicy {
	r := &reboundv1.Retry{
		MaxAttempts:        proto.Uint32(Attempts),
		InitialBackoffMs:   proto.Uint32(uint32(s.initial() / time.Millisecond)),
		MaxBackoffMs:       proto.Uint32(uint32(MaxBackoff / time.Millisecond)),
		BackoffMultiplier:  proto.Float64(2),
		Jitter:             reboundv1.Jitter_JITTER_FULL.Enum(),
		AllowNonIdempotent: proto.Bool(true),
	}
	if s.PerAttemptTimeout > 0 {
		r.PerAttemptTimeoutMs = proto.Uint32(uint32(s.PerAttemptTimeout / time.Millisecond))
	}
	p := &reboundv1.RecoveryPolicy{Retry: r}
	if breaker {
		p.Pattern = &reboundv1.RecoveryPolicy_ExponentialBackoff{ExponentialBackoff: &reboundv1.ExponentialBackoff{}}
	} else {
		p.Pattern = &reboundv1.RecoveryPolicy_NoPattern{NoPattern: &reboundv1.NoPattern{}}
	}
	return p
}

func newRebound(s Settings, breaker bool) (*Client, error) {
	suite, err := interceptor.New(interceptor.WithFiles(nil), interceptor.WithPolicy(FullMethod, ReboundPolicy(s, breaker)))
	if err != nil {
		return nil, fmt.Errorf("rebound: %w", err)
	}
	return &Client{
		Unary:       suite.UnaryClientInterceptor(),
		DialOptions: []grpc.DialOption{grpc.WithDisableRetry()},
		close:       func() { _ = suite.Close() },
	}, nil
}

func newGMW(s Settings) (*Client, error) {
	opts := []gmwretry.CallOption{
		gmwretry.WithMax(Attempts),
		gmwretry.WithBackoff(gmwretry.BackoffExponentialWithJitterBounded(s.initial(), PeerJitter, MaxBackoff)),
		gmwretry.WithCodes(codes.Unavailable),
	}
	if s.PerAttemptTimeout > 0 {
		opts = append(opts, gmwretry.WithPerRetryTimeout(s.PerAttemptTimeout))
	}
	return &Client{
		Unary:       gmwretry.UnaryClientInterceptor(opts...),
		DialOptions: []grpc.DialOption{grpc.WithDisableRetry()},
	}, nil
}

func newFailsafe(s Settings, breaker bool) (*Client, error) {
	rb := failsafegrpc.NewRetryPolicyBuilder[any]().
		WithMaxAttempts(Attempts).
		WithBackoff(s.initial(), MaxBackoff).
		WithJitterFactor(PeerJitter).
		ReturnLastFailure()
	if s.PerAttemptTimeout > 0 {
		rb = rb.HandleErrors(timeout.ErrExceeded)
	}
	policies := []failsafe.Policy[any]{rb.Build()}
	if breaker {
		policies = append(policies, circuitbreaker.NewBuilder[any]().
			WithFailureThreshold(BreakerFailures).
			WithDelay(BreakerDelay).
			WithSuccessThreshold(BreakerSuccesses).
			Build())
	}
	if s.PerAttemptTimeout > 0 {
		policies = append(policies, timeout.New[any](s.PerAttemptTimeout))
	}
	return &Client{
		Unary:       failsafegrpc.NewUnaryClientInterceptor(policies...),
		DialOptions: []grpc.DialOption{grpc.WithDisableRetry()},
	}, nil
}

// GRPCServiceConfig is the service config of the grpc-go built-in rows.
func GRPCServiceConfig(throttle bool) string {
	sc := `{"methodConfig":[{"name":[{"service":"` + Service + `"}],"retryPolicy":{` +
		`"maxAttempts":3,"initialBackoff":"0.05s","maxBackoff":"1s","backoffMultiplier":2,` +
		`"retryableStatusCodes":["UNAVAILABLE"]}}]`
	if throttle {
		sc += `,"retryThrottling":{"maxTokens":10,"tokenRatio":0.1}`
	}
	return sc + "}"
}

func newGRPCRetry(throttle bool) *Client {
	return &Client{DialOptions: []grpc.DialOption{grpc.WithDefaultServiceConfig(GRPCServiceConfig(throttle))}}
}

func newOtel(Settings) (*Client, error) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	return &Client{
		DialOptions: []grpc.DialOption{
			grpc.WithDisableRetry(),
			grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp))),
		},
		close: func() { _ = tp.Shutdown(context.Background()) },
	}, nil
}
