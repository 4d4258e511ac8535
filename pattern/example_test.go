package pattern_test

import (
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/rebound-grpc/rebound/pattern"
)

// A breaker driven by a fake clock through closed → open → recovering →
// open (longer) → recovering → closed.
func ExampleExponentialBackoff() {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := pattern.DefaultExponentialBackoffConfig()
	c.ConsecutiveFailures = 3
	c.Jitter = 0 // deterministic output
	c.OnStateChange = func(from, to pattern.State, now time.Time) {
		fmt.Printf("%v: %v → %v\n", now.Sub(start), from, to)
	}
	b, err := pattern.NewExponentialBackoff(c)
	if err != nil {
		panic(err)
	}

	// call makes one attempt at now with the given result.
	call := func(now time.Time, code codes.Code) {
		d := b.ShouldAttemptRecovery(now, pattern.Default)
		if !d.Allow {
			fmt.Printf("%v: rejected, retry after %v\n", now.Sub(start), d.RetryAfter)
			return
		}
		o := pattern.Outcome{Code: code, Probe: d.Probe}
		if code == codes.OK {
			b.HandleSuccess(now, o)
		} else {
			b.HandleFailure(now, o)
		}
	}

	now := start
	for range 3 {
		call(now, codes.Unavailable)
	}
	call(now.Add(400*time.Millisecond), codes.OK)
	now = now.Add(time.Second)
	call(now, codes.Unavailable) // the probe fails: open for 2s
	call(now.Add(time.Second), codes.OK)
	now = now.Add(2 * time.Second)
	call(now, codes.OK) // first successful probe
	call(now, codes.OK) // second: closed
	fmt.Println("open delay is back to", b.OpenDelay())

	// Output:
	// 0s: closed → open
	// 400ms: rejected, retry after 600ms
	// 1s: open → recovering
	// 1s: recovering → open
	// 2s: rejected, retry after 1s
	// 3s: open → recovering
	// 3s: recovering → closed
	// open delay is back to 1s
}

// A retry budget lets retries through while most attempts succeed and stops
// them when every attempt fails.
func ExampleBudget() {
	b, err := pattern.NewBudget(pattern.DefaultBudgetConfig())
	if err != nil {
		panic(err)
	}
	now := time.Now()
	retries := 0
	for b.TryWithdraw(now) { // a total outage: nothing deposits
		retries++
	}
	fmt.Println("retries during an outage:", retries)
	for range 10 {
		b.OnSuccess(now) // the target recovers
	}
	fmt.Println("tokens after 10 successes:", b.Tokens(now))
	// Output:
	// retries during an outage: 5
	// tokens after 10 successes: 5
}

func ExampleCodesOf() {
	failures := pattern.CodesOf(codes.Unavailable, codes.ResourceExhausted)
	fmt.Println(failures.Has(codes.Unavailable), failures.Has(codes.NotFound))
	fmt.Println(failures)
	// Output:
	// true false
	// ResourceExhausted|Unavailable
}
