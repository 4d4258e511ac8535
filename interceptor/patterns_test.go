package interceptor_test

import (
	"testing"
	"time"

	orcav3 "github.com/cncf/xds/go/xds/data/orca/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rebound-grpc/rebound/fallback"
	"github.com/rebound-grpc/rebound/interceptor"
	"github.com/rebound-grpc/rebound/internal/testserver"
	"github.com/rebound-grpc/rebound/pattern"
	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

// waitFor polls cond every 10ms for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

func patternOf(s *interceptor.Suite, method string) (interceptor.PatternStatus, bool) {
	for _, p := range s.Patterns() {
		if p.Method == method {
			return p, true
		}
	}
	return interceptor.PatternStatus{}, false
}

// TestPartialRecoveryFollowsHealth: with follow_health, a NOT_SERVING status
// opens the pattern before any call fails, and SERVING ramps traffic back.
func TestPartialRecoveryFollowsHealth(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", testserver.OK)
	s := newSuite(t, interceptor.WithPolicy(echoMethod, &reboundv1.RecoveryPolicy{
		Retry: &reboundv1.Retry{MaxAttempts: proto.Uint32(1)},
		Pattern: &reboundv1.RecoveryPolicy_PartialRecovery{PartialRecovery: &reboundv1.PartialRecovery{
			Breaker:      &reboundv1.ExponentialBackoff{OpenDelayMs: proto.Uint32(60_000), MaxOpenDelayMs: proto.Uint32(60_000)},
			RampPercent:  []float64{50, 100},
			StepWindowMs: proto.Uint32(150),
			FollowHealth: proto.Bool(true),
		}},
		Fallback: &reboundv1.Fallback{Steps: []*reboundv1.FallbackStep{staticStep(`message: "static"`)}},
	}))
	cc := dial(t, srv.Addr, s)
	call := func() interceptor.Served {
		t.Helper()
		var served interceptor.Served
		if _, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "x", interceptor.ServedBy(&served)); err != nil {
			t.Fatalf("Echo() error = %v; want every call answered", err)
		}
		return served
	}
	if sv := call(); sv.Source != fallback.SourcePrimary {
		t.Fatalf("first call served by %v; want primary", sv)
	}
	srv.Health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if !waitFor(5*time.Second, func() bool { p, _ := patternOf(s, echoMethod); return p.State == pattern.Open }) {
		t.Fatalf("pattern = %+v; want open after NOT_SERVING", s.Patterns())
	}
	before := srv.Attempts()
	for range 5 {
		if sv := call(); sv.Source != fallback.SourceStatic {
			t.Errorf("call while NOT_SERVING served by %v; want static", sv)
		}
	}
	if srv.Attempts() != before {
		t.Errorf("primary got %d attempts while NOT_SERVING; want 0", srv.Attempts()-before)
	}
	srv.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	var ramped bool
	if !waitFor(5*time.Second, func() bool {
		p, _ := patternOf(s, echoMethod)
		ramped = ramped || (p.State == pattern.Recovering && p.Admitted > 0 && p.Admitted < 1)
		call()
		return p.State == pattern.Closed
	}) {
		t.Fatalf("pattern = %+v; want closed after SERVING and the ramp", s.Patterns())
	}
	if !ramped {
		t.Errorf("never saw the ramp (recovering with a share between 0 and 1)")
	}
	if sv := call(); sv.Source != fallback.SourcePrimary {
		t.Errorf("call after recovery served by %v; want primary", sv)
	}
}

// TestAdaptiveRecoveryORCA: a server reporting utilization above
// max_utilization makes the adaptive pattern admit fewer calls, before any
// call fails.
func TestAdaptiveRecoveryORCA(t *testing.T) {
	t.Parallel()
	report, err := proto.Marshal(&orcav3.OrcaLoadReport{CpuUtilization: 0.97})
	if err != nil {
		t.Fatal(err)
	}
	srv := testserver.Start(t, "primary", func(testserver.Call) testserver.Response {
		return testserver.Response{Trailer: metadata.Pairs("endpoint-load-metrics-bin", string(report))}
	})
	s := newSuite(t, interceptor.WithPolicy(echoMethod, &reboundv1.RecoveryPolicy{
		Pattern: &reboundv1.RecoveryPolicy_AdaptiveRecovery{AdaptiveRecovery: &reboundv1.AdaptiveRecovery{
			MaxUtilization: proto.Float64(0.8),
		}},
		Fallback: &reboundv1.Fallback{Steps: []*reboundv1.FallbackStep{staticStep(`message: "static"`)}},
	}))
	cc := dial(t, srv.Addr, s)
	if !waitFor(10*time.Second, func() bool {
		if _, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "x"); err != nil {
			t.Fatalf("Echo() error = %v; want no failure", err)
		}
		p, _ := patternOf(s, echoMethod)
		return p.Admitted < 1
	}) {
		t.Fatalf("pattern = %+v; want the admitted share lowered by the load reports", s.Patterns())
	}
	p, _ := patternOf(s, echoMethod)
	if p.State != pattern.Recovering {
		t.Errorf("state = %v; want recovering (throttling, never a hard open)", p.State)
	}
}

// TestBreakerCountsCallsNotCoveredAttempts: a failed attempt that a retry
// covers does not count toward the breaker's trip rules; calls that fail do.
func TestBreakerCountsCallsNotCoveredAttempts(t *testing.T) {
	t.Parallel()
	trip := &reboundv1.Trip{ConsecutiveFailures: proto.Uint32(3), FailureRatePercent: proto.Float64(50), WindowCalls: proto.Uint32(4), MinimumCalls: proto.Uint32(4)}
	pol := &reboundv1.RecoveryPolicy{
		Retry: &reboundv1.Retry{InitialBackoffMs: proto.Uint32(1), MaxBackoffMs: proto.Uint32(2)},
		Pattern: &reboundv1.RecoveryPolicy_ExponentialBackoff{ExponentialBackoff: &reboundv1.ExponentialBackoff{
			Trip: trip, OpenDelayMs: proto.Uint32(60_000), MaxOpenDelayMs: proto.Uint32(60_000),
		}},
	}
	t.Run("every first attempt fails, every retry succeeds", func(t *testing.T) {
		t.Parallel()
		srv := testserver.Start(t, "primary", func(c testserver.Call) testserver.Response {
			if len(c.MD.Get("grpc-previous-rpc-attempts")) == 0 {
				return testserver.Response{Code: codes.Unavailable}
			}
			return testserver.Response{}
		})
		s := newSuite(t, interceptor.WithPolicy(echoMethod, pol))
		cc := dial(t, srv.Addr, s)
		for i := range 12 {
			if _, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "x"); err != nil {
				t.Fatalf("call %d: %v; want every call answered after one retry", i, err)
			}
		}
		if p, _ := patternOf(s, echoMethod); p.State != pattern.Closed {
			t.Errorf("pattern = %+v; want closed: half the attempts failed, but no call did", p)
		}
		if n := srv.Attempts(); n != 24 {
			t.Errorf("attempts = %d; want 24 (2 per call)", n)
		}
	})
	t.Run("every attempt fails", func(t *testing.T) {
		t.Parallel()
		srv := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
		s := newSuite(t, interceptor.WithPolicy(echoMethod, pol))
		cc := dial(t, srv.Addr, s)
		for range 3 {
			_, _ = echo(t, cc, ctxTimeout(t, 5*time.Second), "x")
		}
		if p, _ := patternOf(s, echoMethod); p.State != pattern.Open {
			t.Errorf("pattern = %+v; want open after 3 failed calls", p)
		}
		before := srv.Attempts()
		_, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "x")
		if status.Code(err) != codes.Unavailable || srv.Attempts() != before {
			t.Errorf("4th call: %v after %d new attempts; want short-circuited", err, srv.Attempts()-before)
		}
	})
}

// TestBreakerCountsStreamsNotCoveredAttempts is the stream form: a stream
// whose first attempt fails and whose retry succeeds is not a failure.
func TestBreakerCountsStreamsNotCoveredAttempts(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", func(c testserver.Call) testserver.Response {
		if len(c.MD.Get("grpc-previous-rpc-attempts")) == 0 {
			return testserver.Response{Code: codes.Unavailable}
		}
		return testserver.Response{}
	})
	const list = "/rebound.testing.v1.EchoService/List"
	s := newSuite(t, interceptor.WithPolicy(list, &reboundv1.RecoveryPolicy{
		Retry: &reboundv1.Retry{InitialBackoffMs: proto.Uint32(1), MaxBackoffMs: proto.Uint32(2)},
		Pattern: &reboundv1.RecoveryPolicy_ExponentialBackoff{ExponentialBackoff: &reboundv1.ExponentialBackoff{
			Trip:        &reboundv1.Trip{ConsecutiveFailures: proto.Uint32(3), FailureRatePercent: proto.Float64(50), WindowCalls: proto.Uint32(4), MinimumCalls: proto.Uint32(4)},
			OpenDelayMs: proto.Uint32(60_000), MaxOpenDelayMs: proto.Uint32(60_000),
		}},
	}))
	cc := dialStream(t, srv.Addr, s)
	for i := range 10 {
		if _, err := runList(ctxTimeout(t, 5*time.Second), cc, []string{"x"}); err != nil {
			t.Fatalf("stream %d: %v; want every stream answered after one retry", i, err)
		}
	}
	if p, _ := patternOf(s, list); p.State != pattern.Closed {
		t.Errorf("pattern = %+v; want closed: half the attempts failed, but no stream did", p)
	}
}
