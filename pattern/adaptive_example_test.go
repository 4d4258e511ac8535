package pattern_test

import (
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/rebound-grpc/rebound/pattern"
)

// A backend that can take only 25 of the 100 calls a second it is offered:
// the SRE throttle settles at sending it K·accepts = 2 × 25 = 50 calls a
// second, without ever opening.
func ExampleAdaptiveRecovery() {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := pattern.DefaultAdaptiveRecoveryConfig()
	c.Rand = rand.New(rand.NewPCG(1, 2)).Float64 // deterministic output
	a, err := pattern.NewAdaptiveRecovery(c)
	if err != nil {
		panic(err)
	}
	sent := 0
	for sec := range 600 {
		accepted := 0
		for i := range 100 {
			now := start.Add(time.Duration(sec)*time.Second + time.Duration(i)*10*time.Millisecond)
			if !a.ShouldAttemptRecovery(now, pattern.Default).Allow {
				continue // to the fallback chain
			}
			sent++
			if accepted < 25 {
				accepted++
				a.HandleSuccess(now, pattern.Outcome{Code: codes.OK})
			} else {
				a.HandleFailure(now, pattern.Outcome{Code: codes.ResourceExhausted})
			}
		}
		if sec%120 == 119 {
			fmt.Printf("%3ds: sent %.0f calls/s of 100, %v\n", sec+1, float64(sent)/120, a.State())
			sent = 0
		}
	}
	// Output:
	// 120s: sent 51 calls/s of 100, recovering
	// 240s: sent 51 calls/s of 100, recovering
	// 360s: sent 51 calls/s of 100, recovering
	// 480s: sent 50 calls/s of 100, recovering
	// 600s: sent 50 calls/s of 100, recovering
}

// Server load reports (ORCA) above MaxUtilization lower the admitted rate
// before the server returns any error.
func ExampleAdaptiveRecovery_orca() {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := pattern.DefaultAdaptiveRecoveryConfig()
	c.MaxUtilization = 0.8
	a, err := pattern.NewAdaptiveRecovery(c)
	if err != nil {
		panic(err)
	}
	busy := &pattern.LoadReport{CPUUtilization: 0.95}
	for i := range 3000 { // 3s of successful calls from a busy server
		now := start.Add(time.Duration(i) * time.Millisecond)
		if a.ShouldAttemptRecovery(now, pattern.Default).Allow {
			a.HandleSuccess(now, pattern.Outcome{Code: codes.OK, Latency: time.Millisecond, Load: busy})
		}
	}
	s := a.Snapshot(start.Add(3 * time.Second))
	fmt.Printf("%v: p = %.2f, utilization %.2f\n", s.State, s.AdmitProbability, s.Utilization)
	// Output:
	// recovering: p = 0.80, utilization 0.95
}
