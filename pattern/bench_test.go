package pattern

import (
	"testing"
	"time"
)

func newBenchBreaker(b *testing.B, window time.Duration) *ExponentialBackoff {
	b.Helper()
	c := DefaultExponentialBackoffConfig()
	c.WindowDuration = window
	br, err := NewExponentialBackoff(c)
	if err != nil {
		b.Fatal(err)
	}
	return br
}

// BenchmarkClosedHealthy measures the hot path: ShouldAttemptRecovery and
// HandleSuccess on a closed breaker with a count-based window.
func BenchmarkClosedHealthy(b *testing.B) {
	br := newBenchBreaker(b, 0)
	now := t0
	o := Outcome{Latency: time.Millisecond}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now := now.Add(time.Duration(i) * time.Microsecond)
		if br.ShouldAttemptRecovery(now, Default).Allow {
			br.HandleSuccess(now, o)
		}
	}
}

// BenchmarkClosedHealthyParallel is BenchmarkClosedHealthy from GOMAXPROCS
// goroutines sharing one breaker.
func BenchmarkClosedHealthyParallel(b *testing.B) {
	br := newBenchBreaker(b, 0)
	o := Outcome{Latency: time.Millisecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		now := t0
		for pb.Next() {
			now = now.Add(time.Microsecond)
			if br.ShouldAttemptRecovery(now, Default).Allow {
				br.HandleSuccess(now, o)
			}
		}
	})
}

// BenchmarkClosedHealthyTimeWindow is BenchmarkClosedHealthy with a
// time-based window, which must count every call.
func BenchmarkClosedHealthyTimeWindow(b *testing.B) {
	br := newBenchBreaker(b, 10*time.Second)
	now := t0
	o := Outcome{Latency: time.Millisecond}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now := now.Add(time.Duration(i) * time.Microsecond)
		if br.ShouldAttemptRecovery(now, Default).Allow {
			br.HandleSuccess(now, o)
		}
	}
}

// BenchmarkClosedHealthyTimeWindowParallel is the parallel variant of
// BenchmarkClosedHealthyTimeWindow.
func BenchmarkClosedHealthyTimeWindowParallel(b *testing.B) {
	br := newBenchBreaker(b, 10*time.Second)
	o := Outcome{Latency: time.Millisecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		now := t0
		for pb.Next() {
			now = now.Add(time.Microsecond)
			if br.ShouldAttemptRecovery(now, Default).Allow {
				br.HandleSuccess(now, o)
			}
		}
	})
}

// BenchmarkOpenReject measures the rejection of a call while open.
func BenchmarkOpenReject(b *testing.B) {
	br := newBenchBreaker(b, 0)
	for range 5 {
		br.HandleFailure(t0, unavailable)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if br.ShouldAttemptRecovery(t0, Default).Allow {
				b.Fatal("allowed while open")
			}
		}
	})
}

func newBenchBudget(b *testing.B) *Budget {
	b.Helper()
	bu, err := NewBudget(DefaultBudgetConfig())
	if err != nil {
		b.Fatal(err)
	}
	return bu
}

// BenchmarkBudgetOnSuccess measures a deposit into a full budget, the
// healthy path.
func BenchmarkBudgetOnSuccess(b *testing.B) {
	bu := newBenchBudget(b)
	b.ReportAllocs()
	for b.Loop() {
		bu.OnSuccess(t0)
	}
}

// BenchmarkBudgetOnSuccessParallel is BenchmarkBudgetOnSuccess from
// GOMAXPROCS goroutines.
func BenchmarkBudgetOnSuccessParallel(b *testing.B) {
	bu := newBenchBudget(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bu.OnSuccess(t0)
		}
	})
}

// BenchmarkBudgetTryWithdraw measures a withdrawal followed by enough
// deposits to pay it back, as under partial failure.
func BenchmarkBudgetTryWithdraw(b *testing.B) {
	bu := newBenchBudget(b)
	b.ReportAllocs()
	for b.Loop() {
		bu.TryWithdraw(t0)
		bu.OnSuccess(t0)
		bu.OnSuccess(t0)
	}
}

// BenchmarkBudgetTryWithdrawParallel is BenchmarkBudgetTryWithdraw from
// GOMAXPROCS goroutines.
func BenchmarkBudgetTryWithdrawParallel(b *testing.B) {
	bu := newBenchBudget(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bu.TryWithdraw(t0)
			bu.OnSuccess(t0)
			bu.OnSuccess(t0)
		}
	})
}
