package policy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/rebound-grpc/rebound/internal/testpb"
	"github.com/rebound-grpc/rebound/pattern"
	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

const (
	echo       = "/rebound.testing.v1.EchoService/Echo"
	lookup     = "/rebound.testing.v1.EchoService/Lookup"
	create     = "/rebound.testing.v1.EchoService/Create"
	configured = "/rebound.testing.v1.PlainService/Configured"
	bare       = "/rebound.testing.v1.PlainService/Bare"
)

func testFiles(t testing.TB) *protoregistry.Files {
	t.Helper()
	f := new(protoregistry.Files)
	if err := f.RegisterFile(testpb.File_rebound_testing_v1_test_proto); err != nil {
		t.Fatal(err)
	}
	return f
}

func attempts(n uint32) *reboundv1.RecoveryPolicy {
	return &reboundv1.RecoveryPolicy{Retry: &reboundv1.Retry{MaxAttempts: proto.Uint32(n)}}
}

func TestResolutionPrecedence(t *testing.T) {
	t.Parallel()
	type want struct {
		maxAttempts, configured int
		initial                 time.Duration
		codes                   pattern.Codes
		prio                    pattern.Priority
		kind                    PatternKind
		idempotent              bool
		steps                   int
	}
	ua := pattern.CodesOf(codes.Unavailable, codes.Aborted)
	u := pattern.CodesOf(codes.Unavailable)
	tests := []struct {
		name   string
		in     Input
		method string
		want   want
	}{
		{"method and service options", Input{}, echo, want{4, 4, 5 * time.Millisecond, ua, pattern.Critical, PatternExponentialBackoff, true, 0}},
		{"service option only", Input{}, lookup, want{4, 4, 20 * time.Millisecond, u, pattern.Critical, PatternExponentialBackoff, true, 0}},
		{"not idempotent: no retries", Input{}, create, want{1, 4, 20 * time.Millisecond, u, pattern.Critical, PatternExponentialBackoff, false, 0}},
		{"method option only, non-idempotent allowed", Input{}, configured, want{2, 2, DefaultInitialBackoff, u, pattern.Default, PatternExponentialBackoff, false, 1}},
		{"no option: defaults", Input{}, bare, want{3, 3, DefaultInitialBackoff, u, pattern.Default, PatternExponentialBackoff, true, 0}},
		{"unknown method: defaults", Input{}, "/x.Y/Z", want{1, 3, DefaultInitialBackoff, u, pattern.Default, PatternExponentialBackoff, false, 0}},
		{"Go service beats method option", Input{Overrides: map[string]*reboundv1.RecoveryPolicy{"rebound.testing.v1.EchoService": attempts(6)}},
			echo, want{6, 6, 5 * time.Millisecond, ua, pattern.Critical, PatternExponentialBackoff, true, 0}},
		{"Go method beats Go service", Input{Overrides: map[string]*reboundv1.RecoveryPolicy{"rebound.testing.v1.EchoService": attempts(6), echo: attempts(7)}},
			echo, want{7, 7, 5 * time.Millisecond, ua, pattern.Critical, PatternExponentialBackoff, true, 0}},
		{"Go method name without leading slash", Input{Overrides: map[string]*reboundv1.RecoveryPolicy{echo[1:]: attempts(8)}},
			echo, want{8, 8, 5 * time.Millisecond, ua, pattern.Critical, PatternExponentialBackoff, true, 0}},
		{"defaults are weakest", Input{Defaults: &reboundv1.RecoveryPolicy{Priority: reboundv1.Priority_PRIORITY_SHEDDABLE.Enum(), Retry: &reboundv1.Retry{MaxAttempts: proto.Uint32(5)}}},
			echo, want{4, 4, 5 * time.Millisecond, ua, pattern.Critical, PatternExponentialBackoff, true, 0}},
		{"defaults fill the unset", Input{Defaults: &reboundv1.RecoveryPolicy{Priority: reboundv1.Priority_PRIORITY_SHEDDABLE.Enum(), Retry: &reboundv1.Retry{MaxAttempts: proto.Uint32(5)}}},
			bare, want{5, 5, DefaultInitialBackoff, u, pattern.Sheddable, PatternExponentialBackoff, true, 0}},
		{"oneof member replaced", Input{Overrides: map[string]*reboundv1.RecoveryPolicy{echo: {Pattern: &reboundv1.RecoveryPolicy_NoPattern{NoPattern: &reboundv1.NoPattern{}}}}},
			echo, want{4, 4, 5 * time.Millisecond, ua, pattern.Critical, PatternNone, true, 0}},
		{"list replaced whole", Input{Overrides: map[string]*reboundv1.RecoveryPolicy{echo: {Retry: &reboundv1.Retry{RetryableCodes: []reboundv1.StatusCode{reboundv1.StatusCode_STATUS_CODE_INTERNAL}}}}},
			echo, want{4, 4, 5 * time.Millisecond, pattern.CodesOf(codes.Internal), pattern.Critical, PatternExponentialBackoff, true, 0}},
		{"Go service override of an unknown service", Input{Overrides: map[string]*reboundv1.RecoveryPolicy{"x.Y": attempts(2)}},
			"/x.Y/Z", want{1, 2, DefaultInitialBackoff, u, pattern.Default, PatternExponentialBackoff, false, 0}},
		{"Go method override of an unknown method", Input{Overrides: map[string]*reboundv1.RecoveryPolicy{"/x.Y/Z": {Retry: &reboundv1.Retry{MaxAttempts: proto.Uint32(2), AllowNonIdempotent: proto.Bool(true)}}}},
			"/x.Y/Z", want{2, 2, DefaultInitialBackoff, u, pattern.Default, PatternExponentialBackoff, false, 0}},
		{"function registered adds a step", Input{Funcs: map[string]bool{bare: true}},
			bare, want{3, 3, DefaultInitialBackoff, u, pattern.Default, PatternExponentialBackoff, true, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := tt.in
			in.Files = testFiles(t)
			tab, err := Build(in)
			if err != nil {
				t.Fatalf("Build() error = %v", err)
			}
			m := tab.Lookup(tt.method)
			got := want{m.MaxAttempts, m.ConfiguredAttempts, m.Backoff.Initial, m.RetryableCodes, m.Priority, m.PatternKind, m.Idempotent, len(m.Steps)}
			if got != tt.want {
				t.Errorf("Lookup(%q) = %+v; want %+v", tt.method, got, tt.want)
			}
		})
	}
}

func TestStaticReplyCompiled(t *testing.T) {
	t.Parallel()
	tab, err := Build(Input{Files: testFiles(t)})
	if err != nil {
		t.Fatal(err)
	}
	m := tab.Lookup(configured)
	if len(m.Steps) != 1 || m.Steps[0].Kind != StepStatic {
		t.Fatalf("Steps = %+v; want one static step", m.Steps)
	}
	var got testpb.ConfiguredResponse
	if err := proto.Unmarshal(m.Steps[0].Static, &got); err != nil || got.GetMessage() != "static" {
		t.Errorf("static reply = %v, %v; want message \"static\"", &got, err)
	}
}

func TestLookupAllocs(t *testing.T) {
	tab, err := Build(Input{Files: testFiles(t), Overrides: map[string]*reboundv1.RecoveryPolicy{"x.Y": attempts(2)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, fm := range []string{echo, "/x.Y/Z", "/a.B/C", "garbage"} {
		if n := testing.AllocsPerRun(100, func() { _ = tab.Lookup(fm) }); n != 0 {
			t.Errorf("Lookup(%q) allocs = %v; want 0", fm, n)
		}
	}
}

func TestValidationErrors(t *testing.T) {
	t.Parallel()
	u := proto.Uint32
	f := proto.Float64
	pol := func(mut func(p *reboundv1.RecoveryPolicy)) *reboundv1.RecoveryPolicy {
		p := &reboundv1.RecoveryPolicy{}
		mut(p)
		return p
	}
	breaker := func(b *reboundv1.ExponentialBackoff) *reboundv1.RecoveryPolicy {
		return &reboundv1.RecoveryPolicy{Pattern: &reboundv1.RecoveryPolicy_ExponentialBackoff{ExponentialBackoff: b}}
	}
	steps := func(s ...*reboundv1.FallbackStep) *reboundv1.RecoveryPolicy {
		return &reboundv1.RecoveryPolicy{Fallback: &reboundv1.Fallback{Steps: s}}
	}
	tests := []struct {
		name  string
		p     *reboundv1.RecoveryPolicy
		field string
	}{
		{"max attempts zero", attempts(0), "retry.max_attempts"},
		{"max attempts over cap", attempts(MaxAttemptsCap + 1), "retry.max_attempts"},
		{"initial backoff zero", pol(func(p *reboundv1.RecoveryPolicy) { p.Retry = &reboundv1.Retry{InitialBackoffMs: u(0)} }), "retry.initial_backoff_ms"},
		{"max backoff zero", pol(func(p *reboundv1.RecoveryPolicy) { p.Retry = &reboundv1.Retry{MaxBackoffMs: u(0)} }), "retry.max_backoff_ms"},
		{"max backoff below initial", pol(func(p *reboundv1.RecoveryPolicy) {
			p.Retry = &reboundv1.Retry{InitialBackoffMs: u(500), MaxBackoffMs: u(100)}
		}), "retry.max_backoff_ms"},
		{"multiplier below one", pol(func(p *reboundv1.RecoveryPolicy) { p.Retry = &reboundv1.Retry{BackoffMultiplier: f(0.5)} }), "retry.backoff_multiplier"},
		{"multiplier NaN", pol(func(p *reboundv1.RecoveryPolicy) { p.Retry = &reboundv1.Retry{BackoffMultiplier: f(nan())} }), "retry.backoff_multiplier"},
		{"unknown jitter", pol(func(p *reboundv1.RecoveryPolicy) { p.Retry = &reboundv1.Retry{Jitter: reboundv1.Jitter(42).Enum()} }), "retry.jitter"},
		{"unspecified retryable code", pol(func(p *reboundv1.RecoveryPolicy) {
			p.Retry = &reboundv1.Retry{RetryableCodes: []reboundv1.StatusCode{reboundv1.StatusCode_STATUS_CODE_UNSPECIFIED}}
		}), "retry.retryable_codes[0]"},
		{"per attempt timeout over cap", pol(func(p *reboundv1.RecoveryPolicy) {
			p.Retry = &reboundv1.Retry{PerAttemptTimeoutMs: u(MaxBackoffCapMs + 1)}
		}), "retry.per_attempt_timeout_ms"},
		{"open delay zero", breaker(&reboundv1.ExponentialBackoff{OpenDelayMs: u(0)}), "exponential_backoff.open_delay_ms"},
		{"max open delay below open delay", breaker(&reboundv1.ExponentialBackoff{OpenDelayMs: u(5000), MaxOpenDelayMs: u(1000)}), "exponential_backoff.max_open_delay_ms"},
		{"breaker multiplier", breaker(&reboundv1.ExponentialBackoff{Multiplier: f(0)}), "exponential_backoff.multiplier"},
		{"jitter percent", breaker(&reboundv1.ExponentialBackoff{JitterPercent: f(101)}), "exponential_backoff.jitter_percent"},
		{"max probes zero", breaker(&reboundv1.ExponentialBackoff{MaxProbes: u(0)}), "exponential_backoff.max_probes"},
		{"success threshold zero", breaker(&reboundv1.ExponentialBackoff{SuccessThreshold: u(0)}), "exponential_backoff.success_threshold"},
		{"failure rate over 100", breaker(&reboundv1.ExponentialBackoff{Trip: &reboundv1.Trip{FailureRatePercent: f(150)}}), "exponential_backoff.trip.failure_rate_percent"},
		{"both windows", breaker(&reboundv1.ExponentialBackoff{Trip: &reboundv1.Trip{WindowCalls: u(10), WindowMs: u(1000)}}), "exponential_backoff.trip"},
		{"minimum calls above window", breaker(&reboundv1.ExponentialBackoff{Trip: &reboundv1.Trip{WindowCalls: u(10), MinimumCalls: u(50)}}), "exponential_backoff.trip.minimum_calls"},
		{"slow rate without slow call", breaker(&reboundv1.ExponentialBackoff{Trip: &reboundv1.Trip{SlowCallRatePercent: f(50)}}), "exponential_backoff.trip.slow_call_rate_percent"},
		{"ramp not increasing", pol(func(p *reboundv1.RecoveryPolicy) {
			p.Pattern = &reboundv1.RecoveryPolicy_PartialRecovery{PartialRecovery: &reboundv1.PartialRecovery{RampPercent: []float64{50, 25, 100}}}
		}), "partial_recovery.ramp_percent[1]"},
		{"ramp not ending at 100", pol(func(p *reboundv1.RecoveryPolicy) {
			p.Pattern = &reboundv1.RecoveryPolicy_PartialRecovery{PartialRecovery: &reboundv1.PartialRecovery{RampPercent: []float64{5, 50}}}
		}), "partial_recovery.ramp_percent"},
		{"adaptive k", pol(func(p *reboundv1.RecoveryPolicy) {
			p.Pattern = &reboundv1.RecoveryPolicy_AdaptiveRecovery{AdaptiveRecovery: &reboundv1.AdaptiveRecovery{K: f(0.5)}}
		}), "adaptive_recovery.k"},
		{"adaptive utilization", pol(func(p *reboundv1.RecoveryPolicy) {
			p.Pattern = &reboundv1.RecoveryPolicy_AdaptiveRecovery{AdaptiveRecovery: &reboundv1.AdaptiveRecovery{MaxUtilization: f(2)}}
		}), "adaptive_recovery.max_utilization"},
		{"slow start aggression zero", pol(func(p *reboundv1.RecoveryPolicy) {
			p.Pattern = &reboundv1.RecoveryPolicy_PartialRecovery{PartialRecovery: &reboundv1.PartialRecovery{SlowStartAggression: f(0)}}
		}), "partial_recovery.slow_start_aggression"},
		{"adaptive decrease factor one", pol(func(p *reboundv1.RecoveryPolicy) {
			p.Pattern = &reboundv1.RecoveryPolicy_AdaptiveRecovery{AdaptiveRecovery: &reboundv1.AdaptiveRecovery{DecreaseFactor: f(1)}}
		}), "adaptive_recovery.decrease_factor"},
		{"unknown priority", pol(func(p *reboundv1.RecoveryPolicy) { p.Priority = reboundv1.Priority(9).Enum() }), "priority"},
		{"empty step", steps(&reboundv1.FallbackStep{}), "fallback.steps[0]"},
		{"unknown alternate", steps(&reboundv1.FallbackStep{Step: &reboundv1.FallbackStep_Alternate{Alternate: &reboundv1.AlternateStep{Name: "nowhere"}}}), "fallback.steps[0].alternate.name"},
		{"empty alternate name", steps(&reboundv1.FallbackStep{Step: &reboundv1.FallbackStep_Alternate{Alternate: &reboundv1.AlternateStep{}}}), "fallback.steps[0].alternate.name"},
		{"cache staleness zero", steps(&reboundv1.FallbackStep{Step: &reboundv1.FallbackStep_Cache{Cache: &reboundv1.CacheStep{}}}), "fallback.steps[0].cache.max_staleness_ms"},
		{"cache key metadata upper case", steps(&reboundv1.FallbackStep{Step: &reboundv1.FallbackStep_Cache{Cache: &reboundv1.CacheStep{MaxStalenessMs: 10, KeyMetadata: []string{"X-Tenant"}}}}), "fallback.steps[0].cache.key_metadata[0]"},
		{"static reply does not parse", steps(&reboundv1.FallbackStep{Step: &reboundv1.FallbackStep_StaticReply{StaticReply: &reboundv1.StaticReplyStep{Text: "no_such_field: 1"}}}), "fallback.steps[0].static_reply"},
		{"static reply bad json", steps(&reboundv1.FallbackStep{Step: &reboundv1.FallbackStep_StaticReply{StaticReply: &reboundv1.StaticReplyStep{Json: "{"}}}), "fallback.steps[0].static_reply"},
		{"static reply both forms", steps(&reboundv1.FallbackStep{Step: &reboundv1.FallbackStep_StaticReply{StaticReply: &reboundv1.StaticReplyStep{Json: "{}", Text: "message: \"x\""}}}), "fallback.steps[0].static_reply"},
		{"function not registered", steps(&reboundv1.FallbackStep{Step: &reboundv1.FallbackStep_Function{Function: &reboundv1.FunctionStep{}}}), "fallback.steps[0].function"},
		{"too many steps", pol(func(p *reboundv1.RecoveryPolicy) {
			p.Fallback = &reboundv1.Fallback{}
			for range MaxFallbackSteps + 1 {
				p.Fallback.Steps = append(p.Fallback.Steps, &reboundv1.FallbackStep{Step: &reboundv1.FallbackStep_Cache{Cache: &reboundv1.CacheStep{MaxStalenessMs: 1}}})
			}
		}), "fallback.steps"},
		{"hedging over cap", pol(func(p *reboundv1.RecoveryPolicy) {
			p.Hedging = &reboundv1.Hedging{MaxAttempts: u(MaxHedgedAttemptsCap + 1), DelayMs: u(5)}
		}), "hedging.max_attempts"},
		{"hedging without delay", pol(func(p *reboundv1.RecoveryPolicy) { p.Hedging = &reboundv1.Hedging{MaxAttempts: u(2)} }), "hedging.delay_ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Build(Input{Files: testFiles(t), Overrides: map[string]*reboundv1.RecoveryPolicy{echo: tt.p}})
			if err == nil {
				t.Fatalf("Build(%v) error = nil; want an error naming %s and %s", tt.p, echo, tt.field)
			}
			var fe *FieldError
			found := false
			for _, e := range flatten(err) {
				if errors.As(e, &fe) && strings.HasPrefix(fe.Where, echo) && fe.Field == tt.field {
					found = true
				}
			}
			if !found {
				t.Errorf("Build() error = %v; want a FieldError naming %s and field %s", err, echo, tt.field)
			}
		})
	}
}

func TestValidationNamesEverySource(t *testing.T) {
	t.Parallel()
	_, err := Build(Input{
		Files:    testFiles(t),
		Defaults: attempts(0),
		Overrides: map[string]*reboundv1.RecoveryPolicy{
			"rebound.testing.v1.EchoService": attempts(11),
			bare:                             {Retry: &reboundv1.Retry{InitialBackoffMs: proto.Uint32(0)}},
			"/rebound.testing.v1.PlainService/Missing": attempts(2),
			"not/a/method": attempts(2),
		},
	})
	if err == nil {
		t.Fatal("Build() error = nil; want several")
	}
	for _, want := range []string{
		"default policy (WithDefaultPolicy): retry.max_attempts",
		"rebound.testing.v1.EchoService (WithPolicy): retry.max_attempts",
		bare + " (WithPolicy): retry.initial_backoff_ms",
		"/rebound.testing.v1.PlainService/Missing (WithPolicy): name: service rebound.testing.v1.PlainService has no such method",
		"not/a/method (WithPolicy): name",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Build() error =\n%v\nwant it to contain %q", err, want)
		}
	}
}

func TestProtoOptionErrorsNameTheSource(t *testing.T) {
	t.Parallel()
	// A bad proto option is reported with the method and "(method option)".
	if err := CheckSource(echo+" (method option)", attempts(0)); err == nil || !strings.Contains(err.Error(), echo+" (method option): retry.max_attempts") {
		t.Errorf("CheckSource() = %v; want it to name the method and field", err)
	}
}

func TestMergeDoesNotModifyInputs(t *testing.T) {
	t.Parallel()
	weak := &reboundv1.RecoveryPolicy{Retry: &reboundv1.Retry{MaxAttempts: proto.Uint32(2), RetryableCodes: []reboundv1.StatusCode{reboundv1.StatusCode_STATUS_CODE_ABORTED}}}
	strong := &reboundv1.RecoveryPolicy{Retry: &reboundv1.Retry{InitialBackoffMs: proto.Uint32(9)}}
	wc, sc := proto.Clone(weak), proto.Clone(strong)
	got := Merge(weak, strong)
	if !proto.Equal(weak, wc) || !proto.Equal(strong, sc) {
		t.Error("Merge modified its inputs")
	}
	want := &reboundv1.RecoveryPolicy{Retry: &reboundv1.Retry{MaxAttempts: proto.Uint32(2), InitialBackoffMs: proto.Uint32(9), RetryableCodes: []reboundv1.StatusCode{reboundv1.StatusCode_STATUS_CODE_ABORTED}}}
	if !proto.Equal(got, want) {
		t.Errorf("Merge() = %v; want %v", got, want)
	}
	got.Retry.RetryableCodes[0] = reboundv1.StatusCode_STATUS_CODE_INTERNAL
	if weak.Retry.RetryableCodes[0] != reboundv1.StatusCode_STATUS_CODE_ABORTED {
		t.Error("Merge's result shares a list with its input")
	}
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

func TestPatternSettingsCompiled(t *testing.T) {
	t.Parallel()
	u, f := proto.Uint32, proto.Float64
	tab, err := Build(Input{Files: testFiles(t), Overrides: map[string]*reboundv1.RecoveryPolicy{
		echo: {Pattern: &reboundv1.RecoveryPolicy_PartialRecovery{PartialRecovery: &reboundv1.PartialRecovery{
			Breaker:             &reboundv1.ExponentialBackoff{OpenDelayMs: u(250)},
			RampPercent:         []float64{10, 100},
			StepWindowMs:        u(500),
			SlowStartWindowMs:   u(10_000),
			SlowStartAggression: f(2),
			SlowStartMinPercent: f(10),
			MaxInFlight:         u(7),
			FollowHealth:        proto.Bool(true),
		}}},
		lookup: {Pattern: &reboundv1.RecoveryPolicy_AdaptiveRecovery{AdaptiveRecovery: &reboundv1.AdaptiveRecovery{
			K: f(1.5), LatencyPercentile: f(95), MaxUtilization: f(0.8), DecreaseFactor: f(0.5), IncreasePercent: f(10),
			FailureCodes: []reboundv1.StatusCode{reboundv1.StatusCode_STATUS_CODE_RESOURCE_EXHAUSTED},
		}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	p := tab.Lookup(echo)
	pc := p.PartialCfg
	if p.PatternKind != PatternPartialRecovery || pc.Breaker.OpenDelay != 250*time.Millisecond || len(pc.Ramp) != 2 || pc.Ramp[0] != 0.1 ||
		pc.StepWindow != 500*time.Millisecond || pc.SlowStartWindow != 10*time.Second || pc.SlowStartAggression != 2 ||
		pc.SlowStartMinShare != 0.1 || pc.MaxInFlight != 7 || !p.FollowHealth {
		t.Errorf("partial config = %+v (follow health %v); want the proto's settings", pc, p.FollowHealth)
	}
	a := tab.Lookup(lookup)
	ac := a.AdaptiveCfg
	if a.PatternKind != PatternAdaptiveRecovery || ac.K != 1.5 || ac.LatencyPercentile != 0.95 || ac.MaxUtilization != 0.8 ||
		ac.DecreaseFactor != 0.5 || ac.IncreaseStep != 0.1 || ac.FailureCodes != pattern.CodesOf(codes.ResourceExhausted) || !a.WantsLoad {
		t.Errorf("adaptive config = %+v (wants load %v); want the proto's settings", ac, a.WantsLoad)
	}
	if err := pc.Validate(); err != nil {
		t.Errorf("compiled partial config does not validate: %v", err)
	}
	if err := ac.Validate(); err != nil {
		t.Errorf("compiled adaptive config does not validate: %v", err)
	}
}
