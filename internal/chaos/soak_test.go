package chaos_test

import (
	"flag"
	"testing"
	"time"
)

var (
	flagSoak         = flag.Bool("soak", false, "run TestSoak (minutes; not in CI)")
	flagSoakDuration = flag.Duration("soak.duration", 3*time.Minute, "length of TestSoak")
)

// TestSoak runs the chaos scenario for minutes (-soak, -soak.duration) and
// samples the heap and goroutines every 10 s: both must stay flat — the
// last third of the run no higher than the first third plus a margin — on
// top of every invariant of TestChaos but the deadline overshoot, which is
// reported only: each sample forces two full GCs on a saturated machine.
//
//	go test ./internal/chaos -run TestSoak -soak -soak.duration 3m -v
func TestSoak(t *testing.T) {
	if !*flagSoak {
		t.Skip("soak benchmark: run with -soak (takes minutes)")
	}
	r := runChaos(t, *flagSoakDuration, 10*time.Second)
	r.report(t)
	r.check(t, true)
	n := len(r.samples)
	if n < 6 {
		t.Fatalf("%d samples; want ≥ 6 (run ≥ 1m)", n)
	}
	avg := func(s []sample) (heap float64, gor float64) {
		for _, x := range s {
			heap += float64(x.heap)
			gor += float64(x.goroutines)
		}
		return heap / float64(len(s)), gor / float64(len(s))
	}
	h1, g1 := avg(r.samples[:n/3])
	h3, g3 := avg(r.samples[n-n/3:])
	t.Logf("soak: heap %.1f MiB (first third) → %.1f MiB (last third); goroutines %.0f → %.0f", h1/(1<<20), h3/(1<<20), g1, g3)
	if h3 > h1*1.25+4<<20 {
		t.Errorf("heap grew from %.1f to %.1f MiB; want flat", h1/(1<<20), h3/(1<<20))
	}
	if g3 > g1*1.25+20 {
		t.Errorf("goroutines grew from %.0f to %.0f; want flat", g1, g3)
	}
}
