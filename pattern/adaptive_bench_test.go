package pattern

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// BenchmarkAdaptiveRecoveryHealthy is the healthy path of an
// AdaptiveRecovery (p = 1, latency recorded) on one goroutine.
func BenchmarkAdaptiveRecoveryHealthy(b *testing.B) {
	a := newTestAdaptive(b, nil, nil)
	o := Outcome{Latency: time.Millisecond}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now := t0.Add(time.Duration(i) * time.Microsecond)
		if a.ShouldAttemptRecovery(now, Default).Allow {
			a.HandleSuccess(now, o)
		}
	}
}

// BenchmarkAdaptiveRecoveryHealthyParallel is the healthy path from
// GOMAXPROCS goroutines, with ORCA load reports.
func BenchmarkAdaptiveRecoveryHealthyParallel(b *testing.B) {
	a := newTestAdaptive(b, nil, func(c *AdaptiveRecoveryConfig) { c.MaxUtilization = 0.9 })
	o := Outcome{Latency: time.Millisecond, Load: &LoadReport{CPUUtilization: 0.5}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		now := t0
		for pb.Next() {
			now = now.Add(time.Microsecond)
			if a.ShouldAttemptRecovery(now, Default).Allow {
				a.HandleSuccess(now, o)
			}
		}
	})
}

// BenchmarkAdaptiveRecoveryThrottlingParallel is an AdaptiveRecovery that
// throttles (p < 1: a random draw per call) from GOMAXPROCS goroutines.
func BenchmarkAdaptiveRecoveryThrottlingParallel(b *testing.B) {
	a := newTestAdaptive(b, nil, nil)
	for i := range 1000 {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		if a.ShouldAttemptRecovery(now, Default).Allow {
			a.HandleFailure(now, Outcome{Code: codes.Unavailable})
		}
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		now := t0.Add(time.Second)
		i := 0
		for pb.Next() {
			now = now.Add(time.Microsecond)
			if a.ShouldAttemptRecovery(now, Default).Allow {
				i++
				if i%2 == 0 {
					a.HandleSuccess(now, Outcome{Latency: time.Millisecond})
				} else {
					a.HandleFailure(now, Outcome{Code: codes.Unavailable, Latency: time.Millisecond})
				}
			}
		}
	})
}
