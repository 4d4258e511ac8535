package pattern

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// transitionSet records the distinct transitions a pattern reports to its
// OnStateChange hook, from any goroutine.
type transitionSet struct{ m sync.Map }

func (s *transitionSet) record(from, to State, _ time.Time) { s.m.Store([2]State{from, to}, true) }

// has reports whether every transition in want was recorded.
func (s *transitionSet) has(want [][2]State) bool {
	for _, tr := range want {
		if _, ok := s.m.Load(tr); !ok {
			return false
		}
	}
	return true
}

// checkOnly fails t for every recorded transition that is not in valid.
func (s *transitionSet) checkOnly(t *testing.T, valid [][2]State) {
	t.Helper()
	s.m.Range(func(k, _ any) bool {
		tr := k.([2]State)
		for _, v := range valid {
			if tr == v {
				return true
			}
		}
		t.Errorf("transition %v→%v; want only valid transitions", tr[0], tr[1])
		return true
	})
}

// driveConcurrently runs rounds of 8 goroutines × 2000 calls against one
// pattern until every transition in want was recorded in ts, at most 20
// rounds. All goroutines share one clock, advanced by 0–250 µs per call, so
// the pattern sees coherent time; call makes call i of goroutine g at now.
// Whether one interleaving passes through every state is up to the
// scheduler (a recovery may need several probes in a row to succeed), which
// is why rounds repeat. afterRound, called once the goroutines of a round
// have returned, gets a time well past the round.
func driveConcurrently(t *testing.T, ts *transitionSet, want [][2]State, call func(g, i int, rng *rand.Rand, now time.Time), afterRound func(round int, later time.Time)) {
	t.Helper()
	const maxRounds, goroutines, calls = 20, 8, 2000
	var clock atomic.Int64
	for round := 0; round < maxRounds && !ts.has(want); round++ {
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), uint64(round)))
				for i := range calls {
					call(g, i, rng, t0.Add(time.Duration(clock.Add(int64(rng.IntN(250))*int64(time.Microsecond)))))
				}
			})
		}
		wg.Wait()
		afterRound(round, t0.Add(time.Duration(clock.Load())+time.Hour))
	}
	if !ts.has(want) {
		t.Errorf("after %d rounds of %d×%d calls not every transition of %v happened", maxRounds, goroutines, calls, want)
	}
}

// randomCall makes one call through p at now: it asks for admission (a
// refusal must carry a RetryAfter) and, when admitted, reports an outcome
// that is UNAVAILABLE with probability fail, CANCELLED with probability
// cancel, and OK otherwise, with a latency below maxLatency.
func randomCall(t *testing.T, p Pattern, rng *rand.Rand, now time.Time, fail, cancel float64, maxLatency time.Duration) {
	d := p.ShouldAttemptRecovery(now, Priority(rng.IntN(3)-1))
	if !d.Allow {
		if d.RetryAfter <= 0 {
			t.Errorf("ShouldAttemptRecovery() = %+v; want RetryAfter > 0 when not allowed", d)
		}
		return
	}
	o := Outcome{Probe: d.Probe, Latency: time.Duration(rng.Int64N(int64(maxLatency)))}
	switch r := rng.Float64(); {
	case r < fail:
		o.Code = codes.Unavailable
	case r < fail+cancel:
		o.Code = codes.Canceled
	}
	if o.Code == codes.OK {
		p.HandleSuccess(now.Add(o.Latency), o)
	} else {
		p.HandleFailure(now.Add(o.Latency), o)
	}
	_ = p.State()
}
