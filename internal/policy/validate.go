package policy

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

// Limits on values that come from protos or Go options. They bound every
// attempt count, delay and list a policy can ask for.
const (
	MaxAttemptsCap        = 10
	MaxHedgedAttemptsCap  = 5
	MaxBackoffCapMs       = 300_000     // 5 min
	MaxOpenDelayCapMs     = 3_600_000   // 1 h
	MaxWindowCalls        = 10_000      //
	MaxWindowMs           = 600_000     // 10 min
	MaxStalenessCapMs     = 604_800_000 // 7 days
	MaxHedgingDelayMs     = 60_000      // 1 min
	MaxFallbackSteps      = 8           //
	MaxProbesCap          = 100         //
	MaxInFlightCap        = 100_000     //
	MaxConsecutiveFailCap = 1_000       //
	maxMultiplier         = 10.0        //
	maxKeyMetadata        = 16          //
	maxStaticReplyBytes   = 1 << 20     // 1 MiB
	maxStepWindowMs       = MaxWindowMs //
	maxLatencyFactor      = 100.0       //
	maxRampSteps          = 20          //
	maxSuccessThreshold   = 100         //
	maxHealthServiceBytes = 1024        //
	maxAlternateNameBytes = 256         //
	maxPercent            = 100.0       //
)

// FieldError is one invalid field of one policy source.
type FieldError struct {
	// Where names the method ("/pkg.Svc/Method") or service ("pkg.Svc") and the
	// source, e.g. "/pkg.Svc/Get (method option)".
	Where string
	// Field is the path of the field in RecoveryPolicy, e.g. "retry.max_attempts".
	Field string
	// Problem says what is wrong with the value.
	Problem string
}

// Error implements error.
func (e *FieldError) Error() string {
	return fmt.Sprintf("rebound: %s: %s: %s", e.Where, e.Field, e.Problem)
}

// checker collects every problem of one source instead of stopping at the first.
type checker struct {
	where string
	errs  []error
}

func (c *checker) fail(field, format string, args ...any) {
	c.errs = append(c.errs, &FieldError{Where: c.where, Field: field, Problem: fmt.Sprintf(format, args...)})
}

func (c *checker) err() error { return errors.Join(c.errs...) }

func (c *checker) uintRange(field string, v *uint32, lo, hi uint32) {
	if v == nil {
		return
	}
	if *v < lo || *v > hi {
		c.fail(field, "%d is out of range [%d, %d]", *v, lo, hi)
	}
}

func (c *checker) floatRange(field string, v *float64, lo, hi float64, loOpen bool) {
	if v == nil {
		return
	}
	f := *v
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		c.fail(field, "%v is not a finite number", f)
	case loOpen && f <= lo:
		c.fail(field, "%v must be greater than %v (and at most %v)", f, lo, hi)
	case f < lo || f > hi:
		c.fail(field, "%v is out of range [%v, %v]", f, lo, hi)
	}
}

func (c *checker) enum(field string, v protoreflect.Enum) {
	if v.Descriptor().Values().ByNumber(v.Number()) == nil {
		c.fail(field, "%d is not a known %s", v.Number(), v.Descriptor().Name())
	}
}

func (c *checker) codes(field string, cs []reboundv1.StatusCode) {
	for i, code := range cs {
		if code <= reboundv1.StatusCode_STATUS_CODE_UNSPECIFIED || code > reboundv1.StatusCode_STATUS_CODE_UNAUTHENTICATED {
			c.fail(fmt.Sprintf("%s[%d]", field, i), "%d is not a gRPC status code (use STATUS_CODE_*)", int32(code))
		}
	}
}

// CheckSource validates the fields of one policy source on their own: ranges,
// enums and shapes. Checks that need the merged policy (cross-field relations,
// references to alternates, functions and reply types) are done by Compile.
func CheckSource(where string, p *reboundv1.RecoveryPolicy) error {
	c := &checker{where: where}
	checkSource(c, p)
	return c.err()
}

func checkSource(c *checker, p *reboundv1.RecoveryPolicy) {
	if p == nil {
		return
	}
	if r := p.Retry; r != nil {
		c.uintRange("retry.max_attempts", r.MaxAttempts, 1, MaxAttemptsCap)
		c.uintRange("retry.initial_backoff_ms", r.InitialBackoffMs, 1, MaxBackoffCapMs)
		c.uintRange("retry.max_backoff_ms", r.MaxBackoffMs, 1, MaxBackoffCapMs)
		c.floatRange("retry.backoff_multiplier", r.BackoffMultiplier, 1, maxMultiplier, false)
		if r.Jitter != nil {
			c.enum("retry.jitter", r.GetJitter())
		}
		c.codes("retry.retryable_codes", r.RetryableCodes)
		c.uintRange("retry.per_attempt_timeout_ms", r.PerAttemptTimeoutMs, 0, MaxBackoffCapMs)
	}
	switch pat := p.Pattern.(type) {
	case *reboundv1.RecoveryPolicy_ExponentialBackoff:
		checkBreaker(c, "exponential_backoff", pat.ExponentialBackoff)
	case *reboundv1.RecoveryPolicy_PartialRecovery:
		pr := pat.PartialRecovery
		checkBreaker(c, "partial_recovery.breaker", pr.GetBreaker())
		if len(pr.RampPercent) > maxRampSteps {
			c.fail("partial_recovery.ramp_percent", "%d steps; at most %d", len(pr.RampPercent), maxRampSteps)
		}
		for i, s := range pr.RampPercent {
			f := s
			c.floatRange(fmt.Sprintf("partial_recovery.ramp_percent[%d]", i), &f, 0, maxPercent, true)
			if i > 0 && s <= pr.RampPercent[i-1] {
				c.fail(fmt.Sprintf("partial_recovery.ramp_percent[%d]", i), "%v does not increase on the step before (%v)", s, pr.RampPercent[i-1])
			}
		}
		if n := len(pr.RampPercent); n > 0 && pr.RampPercent[n-1] != 100 {
			c.fail("partial_recovery.ramp_percent", "the last step is %v; it must be 100", pr.RampPercent[n-1])
		}
		c.uintRange("partial_recovery.step_window_ms", pr.StepWindowMs, 1, maxStepWindowMs)
		c.uintRange("partial_recovery.max_in_flight", pr.MaxInFlight, 0, MaxInFlightCap)
		c.floatRange("partial_recovery.step_failure_rate_percent", pr.StepFailureRatePercent, 0, maxPercent, true)
		c.uintRange("partial_recovery.step_minimum_calls", pr.StepMinimumCalls, 1, MaxWindowCalls)
		c.uintRange("partial_recovery.slow_start_window_ms", pr.SlowStartWindowMs, 0, MaxWindowMs)
		c.floatRange("partial_recovery.slow_start_aggression", pr.SlowStartAggression, 0, maxMultiplier, true)
		c.floatRange("partial_recovery.slow_start_min_percent", pr.SlowStartMinPercent, 0, maxPercent, true)
		if len(pr.GetHealthService()) > maxHealthServiceBytes {
			c.fail("partial_recovery.health_service", "%d bytes; at most %d", len(pr.GetHealthService()), maxHealthServiceBytes)
		}
	case *reboundv1.RecoveryPolicy_AdaptiveRecovery:
		a := pat.AdaptiveRecovery
		c.floatRange("adaptive_recovery.k", a.K, 1, maxMultiplier, false)
		c.uintRange("adaptive_recovery.window_ms", a.WindowMs, 1, MaxWindowMs)
		c.floatRange("adaptive_recovery.latency_percentile", a.LatencyPercentile, 50, maxPercent, false)
		c.floatRange("adaptive_recovery.latency_factor", a.LatencyFactor, 1, maxLatencyFactor, true)
		c.floatRange("adaptive_recovery.max_utilization", a.MaxUtilization, 0, 1, false)
		c.floatRange("adaptive_recovery.min_admit_percent", a.MinAdmitPercent, 0, maxPercent, true)
		c.uintRange("adaptive_recovery.adjust_interval_ms", a.AdjustIntervalMs, 1, 60_000)
		c.floatRange("adaptive_recovery.decrease_factor", a.DecreaseFactor, 0, 0.999, true)
		c.floatRange("adaptive_recovery.increase_percent", a.IncreasePercent, 0, maxPercent, true)
		c.codes("adaptive_recovery.failure_codes", a.FailureCodes)
	}
	if p.Priority != nil {
		c.enum("priority", p.GetPriority())
	}
	if p.PatternScope != nil {
		c.enum("pattern_scope", p.GetPatternScope())
	}
	if f := p.Fallback; f != nil {
		if len(f.Steps) > MaxFallbackSteps {
			c.fail("fallback.steps", "%d steps; at most %d", len(f.Steps), MaxFallbackSteps)
		}
		c.codes("fallback.on_codes", f.OnCodes)
		for i, s := range f.Steps {
			field := fmt.Sprintf("fallback.steps[%d]", i)
			switch st := s.Step.(type) {
			case nil:
				c.fail(field, "no step kind is set (alternate, cache, static_reply or function)")
			case *reboundv1.FallbackStep_Alternate:
				if n := st.Alternate.GetName(); n == "" || len(n) > maxAlternateNameBytes {
					c.fail(field+".alternate.name", "%q must be a non-empty name of at most %d bytes", n, maxAlternateNameBytes)
				}
			case *reboundv1.FallbackStep_Cache:
				ms := st.Cache.GetMaxStalenessMs()
				c.uintRange(field+".cache.max_staleness_ms", &ms, 1, MaxStalenessCapMs)
				if len(st.Cache.KeyMetadata) > maxKeyMetadata {
					c.fail(field+".cache.key_metadata", "%d keys; at most %d", len(st.Cache.KeyMetadata), maxKeyMetadata)
				}
				for j, k := range st.Cache.KeyMetadata {
					if !validMetadataKey(k) {
						c.fail(fmt.Sprintf("%s.cache.key_metadata[%d]", field, j), "%q is not a lower-case gRPC metadata key", k)
					}
				}
			case *reboundv1.FallbackStep_StaticReply:
				t, j := st.StaticReply.GetText(), st.StaticReply.GetJson()
				if (t == "") == (j == "") {
					c.fail(field+".static_reply", "exactly one of text and json must be set")
				}
				if len(t)+len(j) > maxStaticReplyBytes {
					c.fail(field+".static_reply", "%d bytes; at most %d", len(t)+len(j), maxStaticReplyBytes)
				}
			}
		}
	}
	if h := p.Hedging; h != nil {
		c.uintRange("hedging.max_attempts", h.MaxAttempts, 1, MaxHedgedAttemptsCap)
		c.uintRange("hedging.delay_ms", h.DelayMs, 1, MaxHedgingDelayMs)
		c.floatRange("hedging.delay_percentile", h.DelayPercentile, 50, maxPercent, false)
		c.codes("hedging.non_fatal_codes", h.NonFatalCodes)
	}
}

func checkBreaker(c *checker, prefix string, b *reboundv1.ExponentialBackoff) {
	if b == nil {
		return
	}
	if t := b.Trip; t != nil {
		c.uintRange(prefix+".trip.consecutive_failures", t.ConsecutiveFailures, 0, MaxConsecutiveFailCap)
		c.floatRange(prefix+".trip.failure_rate_percent", t.FailureRatePercent, 0, maxPercent, false)
		c.uintRange(prefix+".trip.slow_call_ms", t.SlowCallMs, 0, MaxWindowMs)
		c.floatRange(prefix+".trip.slow_call_rate_percent", t.SlowCallRatePercent, 0, maxPercent, true)
		c.uintRange(prefix+".trip.window_calls", t.WindowCalls, 1, MaxWindowCalls)
		c.uintRange(prefix+".trip.window_ms", t.WindowMs, 1, MaxWindowMs)
		c.uintRange(prefix+".trip.minimum_calls", t.MinimumCalls, 1, MaxWindowCalls)
		if t.WindowCalls != nil && t.WindowMs != nil {
			c.fail(prefix+".trip", "window_calls and window_ms are exclusive; set one")
		}
		c.codes(prefix+".trip.failure_codes", t.FailureCodes)
	}
	c.uintRange(prefix+".open_delay_ms", b.OpenDelayMs, 1, MaxOpenDelayCapMs)
	c.uintRange(prefix+".max_open_delay_ms", b.MaxOpenDelayMs, 1, MaxOpenDelayCapMs)
	c.floatRange(prefix+".multiplier", b.Multiplier, 1, maxMultiplier, false)
	c.floatRange(prefix+".jitter_percent", b.JitterPercent, 0, maxPercent, false)
	c.uintRange(prefix+".max_probes", b.MaxProbes, 1, MaxProbesCap)
	c.uintRange(prefix+".success_threshold", b.SuccessThreshold, 1, maxSuccessThreshold)
}

// validMetadataKey reports whether k is a usable gRPC metadata key: lower
// case letters, digits, '-', '_' and '.', and not a reserved "grpc-" key.
func validMetadataKey(k string) bool {
	if k == "" || len(k) > 256 || strings.HasPrefix(k, "grpc-") {
		return false
	}
	for i := 0; i < len(k); i++ {
		ch := k[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.') {
			return false
		}
	}
	return true
}
