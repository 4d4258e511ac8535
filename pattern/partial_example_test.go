package pattern_test

import (
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/rebound-grpc/rebound/pattern"
)

// A target fails, the pattern opens, and after the open delay it admits 5,
// 25, 50 and 100 % of the calls, one 2s step after the other, then closes.
// A fake clock drives 100 calls/s.
func ExamplePartialRecovery() {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := pattern.DefaultPartialRecoveryConfig()
	c.Breaker.Jitter = 0 // deterministic output
	c.Breaker.ConsecutiveFailures = 5
	c.OnStateChange = func(from, to pattern.State, now time.Time) {
		fmt.Printf("%v: %v → %v\n", now.Sub(start), from, to)
	}
	p, err := pattern.NewPartialRecovery(c)
	if err != nil {
		panic(err)
	}
	for range 5 {
		p.HandleFailure(start, pattern.Outcome{Code: codes.Unavailable})
	}
	admitted, asked := 0, 0
	for at := time.Second; at <= 9*time.Second; at += 10 * time.Millisecond {
		now := start.Add(at)
		if d := p.ShouldAttemptRecovery(now, pattern.Default); d.Allow {
			admitted++
			p.HandleSuccess(now, pattern.Outcome{Code: codes.OK, Probe: d.Probe})
		}
		asked++
		if s := p.Snapshot(now); s.State == pattern.Recovering && now.Sub(s.StepSince) == 1990*time.Millisecond {
			fmt.Printf("  step %d: share %.2f, admitted %d of %d\n", s.Step, s.Share, admitted, asked)
			admitted, asked = 0, 0
		}
	}
	// Output:
	// 0s: closed → open
	// 1s: open → recovering
	//   step 0: share 0.05, admitted 10 of 200
	//   step 1: share 0.25, admitted 50 of 200
	//   step 2: share 0.50, admitted 100 of 200
	//   step 3: share 1.00, admitted 200 of 200
	// 9s: recovering → closed
}

// Following the target's health: NOT_SERVING opens the pattern without a
// failed call, SERVING starts the ramp at once.
func ExamplePartialRecovery_SetHealth() {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p, err := pattern.NewPartialRecovery(pattern.DefaultPartialRecoveryConfig())
	if err != nil {
		panic(err)
	}
	p.SetHealth(start, false)
	fmt.Println(p.State(), p.ShouldAttemptRecovery(start.Add(time.Minute), pattern.Critical).Allow)
	p.SetHealth(start.Add(time.Minute), true)
	s := p.Snapshot(start.Add(time.Minute))
	fmt.Printf("%v at step %d, share %.2f\n", s.State, s.Step, s.Share)
	// Output:
	// open false
	// recovering at step 0, share 0.05
}
