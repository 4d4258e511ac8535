package policy

import (
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

func nan() float64 { return math.NaN() }

// FuzzBuild feeds random RecoveryPolicy messages to Build as Go overrides: it
// must never panic, and every accepted policy must have bounded attempts and
// delays.
func FuzzBuild(f *testing.F) {
	seeds := []*reboundv1.RecoveryPolicy{
		attempts(3),
		attempts(0),
		{Retry: &reboundv1.Retry{InitialBackoffMs: proto.Uint32(1), MaxBackoffMs: proto.Uint32(MaxBackoffCapMs), BackoffMultiplier: proto.Float64(10)}},
		{Hedging: &reboundv1.Hedging{MaxAttempts: proto.Uint32(5), DelayMs: proto.Uint32(1)}},
		{Pattern: &reboundv1.RecoveryPolicy_PartialRecovery{PartialRecovery: &reboundv1.PartialRecovery{RampPercent: []float64{5, 100}}}},
		{Fallback: &reboundv1.Fallback{Steps: []*reboundv1.FallbackStep{{Step: &reboundv1.FallbackStep_Cache{Cache: &reboundv1.CacheStep{MaxStalenessMs: 1}}}}}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true)
	}
	files := testFiles(f)
	f.Fuzz(func(t *testing.T, data []byte, perMethod bool) {
		p := &reboundv1.RecoveryPolicy{}
		if err := proto.Unmarshal(data, p); err != nil {
			return
		}
		name := "rebound.testing.v1.EchoService"
		if perMethod {
			name = echo
		}
		tab, err := Build(Input{Files: files, Overrides: map[string]*reboundv1.RecoveryPolicy{name: p}, Alternates: map[string]bool{"a": true}})
		if err != nil {
			return
		}
		for _, fm := range append(tab.Methods(), "/unknown.S/M") {
			m := tab.Lookup(fm)
			if m.MaxAttempts < 1 || m.MaxAttempts > MaxAttemptsCap {
				t.Fatalf("%s: MaxAttempts = %d; want [1, %d]", fm, m.MaxAttempts, MaxAttemptsCap)
			}
			if m.HedgeAttempts < 1 || m.HedgeAttempts > MaxHedgedAttemptsCap {
				t.Fatalf("%s: HedgeAttempts = %d; want [1, %d]", fm, m.HedgeAttempts, MaxHedgedAttemptsCap)
			}
			capD := time.Duration(MaxBackoffCapMs) * time.Millisecond
			if m.Backoff.Initial <= 0 || m.Backoff.Max > capD || m.Backoff.Max < m.Backoff.Initial {
				t.Fatalf("%s: backoff %+v out of bounds", fm, m.Backoff)
			}
			if m.Backoff.Multiplier < 1 || m.Backoff.Multiplier > 10 || math.IsNaN(m.Backoff.Multiplier) {
				t.Fatalf("%s: multiplier %v out of bounds", fm, m.Backoff.Multiplier)
			}
			for n := 0; n < 12; n++ {
				if d := m.Backoff.Delay(n, m.Backoff.Max, 0.999); d < 0 || d > capD*2 {
					t.Fatalf("%s: Delay(%d) = %v; want within [0, %v]", fm, n, d, capD*2)
				}
			}
			if m.PerAttemptTimeout < 0 || m.PerAttemptTimeout > capD {
				t.Fatalf("%s: per-attempt timeout %v out of bounds", fm, m.PerAttemptTimeout)
			}
			if m.Breaker.OpenDelay < 0 || m.Breaker.MaxOpenDelay > time.Duration(MaxOpenDelayCapMs)*time.Millisecond {
				t.Fatalf("%s: open delay %v..%v out of bounds", fm, m.Breaker.OpenDelay, m.Breaker.MaxOpenDelay)
			}
			if len(m.Steps) > MaxFallbackSteps+1 {
				t.Fatalf("%s: %d steps", fm, len(m.Steps))
			}
		}
	})
}
