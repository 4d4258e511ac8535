package main

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRunShort runs both measurements briefly over loopback: every call
// answers, and hedging adds few attempts. The latency figures themselves are
// measured by the program, not asserted here.
func TestRunShort(t *testing.T) {
	cfg := Config{Duration: 500 * time.Millisecond, Rate: 200, SlowShare: 0.05, Slow: 200 * time.Millisecond, Fast: time.Millisecond, Seed: 1}
	r, err := run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []Result{r.Without, r.With, r.With3} {
		if x.Calls != 100 || x.Failed != 0 {
			t.Errorf("%s: %d calls, %d failed; want 100 and 0", x.Name, x.Calls, x.Failed)
		}
	}
	if r.Without.AttemptsPerCall != 1 {
		t.Errorf("without hedging: %.3f attempts per call; want 1", r.Without.AttemptsPerCall)
	}
	if r.With.AttemptsPerCall < 1 || r.With.AttemptsPerCall > 1.5 {
		t.Errorf("with hedging: %.3f attempts per call; want a few hedges, at most 1.5", r.With.AttemptsPerCall)
	}
}
