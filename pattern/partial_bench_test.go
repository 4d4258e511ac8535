package pattern

import (
	"testing"
	"time"
)

// BenchmarkPartialRecoveryClosedParallel is the healthy path of a closed
// PartialRecovery from GOMAXPROCS goroutines.
func BenchmarkPartialRecoveryClosedParallel(b *testing.B) {
	pr, _ := newTestPartial(b, nil)
	o := Outcome{Latency: time.Millisecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		now := t0
		for pb.Next() {
			now = now.Add(time.Microsecond)
			if pr.ShouldAttemptRecovery(now, Default).Allow {
				pr.HandleSuccess(now, o)
			}
		}
	})
}

// BenchmarkPartialRecoveryRampingParallel is a PartialRecovery in the middle
// of its ramp (share 0.5, a mutex per call) from GOMAXPROCS goroutines.
func BenchmarkPartialRecoveryRampingParallel(b *testing.B) {
	pr, _ := newTestPartial(b, func(c *PartialRecoveryConfig) { c.Ramp = []float64{0.5, 1}; c.StepWindow = time.Hour })
	pr.SetHealth(t0, false)
	pr.SetHealth(t0, true)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		now := t0
		for pb.Next() {
			now = now.Add(time.Microsecond)
			if d := pr.ShouldAttemptRecovery(now, Default); d.Allow {
				pr.HandleSuccess(now, Outcome{Probe: d.Probe})
			}
		}
	})
}

// BenchmarkPartialRecoveryOpenRejectParallel is the lock-free rejection of
// an open PartialRecovery.
func BenchmarkPartialRecoveryOpenRejectParallel(b *testing.B) {
	pr, _ := newTestPartial(b, nil)
	pr.SetHealth(t0, false)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if pr.ShouldAttemptRecovery(t0, Default).Allow {
				b.Fatal("allowed while open")
			}
		}
	})
}
