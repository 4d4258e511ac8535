package pattern

import (
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

func newTestAdaptive(t testing.TB, rng *rand.Rand, edit func(*AdaptiveRecoveryConfig)) *AdaptiveRecovery {
	t.Helper()
	c := DefaultAdaptiveRecoveryConfig()
	if rng != nil {
		c.Rand = rng.Float64
	}
	if edit != nil {
		edit(&c)
	}
	a, err := NewAdaptiveRecovery(c)
	if err != nil {
		t.Fatalf("NewAdaptiveRecovery(%+v) = %v; want no error", c, err)
	}
	return a
}

func TestAdaptiveRecoveryConfigValidate(t *testing.T) {
	t.Parallel()
	if err := DefaultAdaptiveRecoveryConfig().Validate(); err != nil {
		t.Fatalf("DefaultAdaptiveRecoveryConfig().Validate() = %v; want nil", err)
	}
	tests := []struct {
		name  string
		edit  func(*AdaptiveRecoveryConfig)
		field string // "" = valid
	}{
		{"zero fields take defaults", func(c *AdaptiveRecoveryConfig) { *c = AdaptiveRecoveryConfig{} }, ""},
		{"K below 1", func(c *AdaptiveRecoveryConfig) { c.K = 0.5 }, "K"},
		{"K NaN", func(c *AdaptiveRecoveryConfig) { c.K = math.NaN() }, "K"},
		{"window tiny", func(c *AdaptiveRecoveryConfig) { c.Window = time.Millisecond }, "Window"},
		{"window huge", func(c *AdaptiveRecoveryConfig) { c.Window = 2 * time.Hour }, "Window"},
		{"percentile as percent", func(c *AdaptiveRecoveryConfig) { c.LatencyPercentile = 99 }, "LatencyPercentile"},
		{"percentile low", func(c *AdaptiveRecoveryConfig) { c.LatencyPercentile = 0.3 }, "LatencyPercentile"},
		{"factor 1", func(c *AdaptiveRecoveryConfig) { c.LatencyFactor = 1 }, "LatencyFactor"},
		{"latency window below interval", func(c *AdaptiveRecoveryConfig) { c.LatencyWindow = time.Millisecond }, "LatencyWindow"},
		{"latency window too long", func(c *AdaptiveRecoveryConfig) { c.LatencyWindow = time.Hour }, "LatencyWindow"},
		{"latency window default follows interval", func(c *AdaptiveRecoveryConfig) { c.LatencyWindow = 0; c.AdjustInterval = time.Minute }, ""},
		{"baseline window short", func(c *AdaptiveRecoveryConfig) { c.BaselineWindow = time.Second }, "BaselineWindow"},
		{"samples negative", func(c *AdaptiveRecoveryConfig) { c.MinLatencySamples = -1 }, "MinLatencySamples"},
		{"utilization negative", func(c *AdaptiveRecoveryConfig) { c.MaxUtilization = -0.1 }, "MaxUtilization"},
		{"min admit above 1", func(c *AdaptiveRecoveryConfig) { c.MinAdmit = 1.5 }, "MinAdmit"},
		{"interval tiny", func(c *AdaptiveRecoveryConfig) { c.AdjustInterval = time.Microsecond }, "AdjustInterval"},
		{"decrease 1", func(c *AdaptiveRecoveryConfig) { c.DecreaseFactor = 1 }, "DecreaseFactor"},
		{"increase above 1", func(c *AdaptiveRecoveryConfig) { c.IncreaseStep = 2 }, "IncreaseStep"},
		{"failure codes with OK", func(c *AdaptiveRecoveryConfig) { c.FailureCodes = CodesOf(codes.OK) }, "FailureCodes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultAdaptiveRecoveryConfig()
			tt.edit(&c)
			err := c.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v; want nil", err)
				}
				if _, err := NewAdaptiveRecovery(c); err != nil {
					t.Fatalf("NewAdaptiveRecovery() = %v; want no error", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != "AdaptiveRecoveryConfig."+tt.field {
				t.Fatalf("Validate() = %v; want a *ConfigError for AdaptiveRecoveryConfig.%s", err, tt.field)
			}
			if a, err2 := NewAdaptiveRecovery(c); a != nil || err2 == nil {
				t.Errorf("NewAdaptiveRecovery() = %v, %v; want nil, error", a, err2)
			}
		})
	}
}

func TestLatencyHistogramBins(t *testing.T) {
	t.Parallel()
	prev := -1
	for d := time.Duration(1); d < 100*time.Second; d = d*21/20 + 1 {
		i := latencyBin(d)
		if i < prev || i < 0 || i >= histBins {
			t.Fatalf("latencyBin(%v) = %d after %d; want non-decreasing in [0, %d)", d, i, prev, histBins)
		}
		prev = i
		if d >= 1<<histMinExp && d < 1<<histMaxExp {
			if v := binValue(i); math.Abs(float64(v-d)) > float64(d)/8 {
				t.Errorf("binValue(latencyBin(%v)) = %v; want within 12.5 %%", d, v)
			}
		}
	}
	if got := latencyBin(time.Hour); got != histBins-1 {
		t.Errorf("latencyBin(1h) = %d; want the last bin %d", got, histBins-1)
	}
	if got := latencyBin(-time.Second); got != 0 {
		t.Errorf("latencyBin(-1s) = %d; want 0", got)
	}
}

// second is what one simulated second of an adaptive scenario saw.
type second struct {
	requests, admitted, failed int
	p                          float64 // admission probability at the end of the second
}

// simulateAdaptive sends rps(sec) calls per second, evenly spaced, for secs
// seconds, to a backend that answers each admitted call; the backend sees
// the seconds so far and how many calls it has answered in the current
// second.
func simulateAdaptive(a *AdaptiveRecovery, secs int, rps func(sec int) int, backend func(sec int, hist []second, n int) Outcome) []second {
	hist := make([]second, 0, secs)
	for s := range secs {
		var cur second
		rps := rps(s)
		for i := range rps {
			now := t0.Add(time.Duration(s)*time.Second + time.Duration(i)*time.Second/time.Duration(rps))
			cur.requests++
			if !a.ShouldAttemptRecovery(now, Default).Allow {
				continue
			}
			o := backend(s, hist, cur.admitted)
			cur.admitted++
			if o.Code == codes.OK {
				a.HandleSuccess(now, o)
			} else {
				cur.failed++
				a.HandleFailure(now, o)
			}
		}
		cur.p = a.AdmitProbability()
		hist = append(hist, cur)
	}
	return hist
}

// constRPS returns a constant rate for simulateAdaptive.
func constRPS(n int) func(int) int { return func(int) int { return n } }

// share returns admitted/requests over hist[from:to].
func share(hist []second, from, to int) float64 {
	var r, ad int
	for _, s := range hist[from:to] {
		r += s.requests
		ad += s.admitted
	}
	return float64(ad) / float64(r)
}

// maxStep returns the largest change of p between consecutive seconds of
// hist[from:].
func maxStep(hist []second, from int) float64 {
	var m float64
	for i := from + 1; i < len(hist); i++ {
		m = max(m, math.Abs(hist[i].p-hist[i-1].p))
	}
	return m
}

// TestAdaptiveRecoverySREThrottling checks the steady state of the SRE
// throttle against its prediction, with 100 calls/s for 20 minutes and a
// 60s window.
//
// The formula rejects locally with probability (requests − K·accepts) /
// (requests + 1), so in steady state the client sends the backend
// K·accepts attempts when that is below the requests: attempts = min(1,
// K·a) of the requests, where a is the share of them the backend accepts.
//
//   - A backend with a fixed capacity c (a share of the offered load)
//     accepts c whatever it is sent, so attempts settle at min(1, K·c).
//     K=2 with a backend rejecting 50 % of the attempts (capacity 50 %):
//     min(1, 2·0.5) = 1 — every request is sent and the backend accepts
//     half of them; the throttle does not engage, by design: K=2 tolerates
//     up to 1 − 1/K = 50 % rejections. K=2, capacity 25 % → 50 %; K=1.5,
//     capacity 25 % → 37.5 %.
//   - A backend that rejects each attempt at random with probability 1 − a
//     accepts the share a of what it is sent, so attempts = K·a × attempts.
//     If K·a > 1 nothing is throttled (K=2, 40 % rejected: 1.2 → 100 %); if
//     K·a < 1 the attempts shrink by K·a per window down to the MinAdmit
//     floor (K=1.5, 50 % rejected: 0.75 → 5 %). At K·a = 1 exactly (K=2,
//     50 % rejected at random) every share is a fixed point and the share
//     random-walks (neutral); that case is only checked for smoothness.
func TestAdaptiveRecoverySREThrottling(t *testing.T) {
	t.Parallel()
	const rps, secs = 100, 1200
	tests := []struct {
		name     string
		k        float64
		capacity int     // accepts per second; 0 = no capacity limit
		reject   float64 // probability of rejecting an attempt
		want     float64 // predicted share of requests sent; 0 = no prediction
	}{
		{"K=2, 50% rejected (capacity)", 2, rps / 2, 0, 1},
		{"K=2, capacity 25%", 2, rps / 4, 0, 0.5},
		{"K=1.5, capacity 25%", 1.5, rps / 4, 0, 0.375},
		{"K=2, 40% rejected at random", 2, 0, 0.4, 1},
		{"K=1.5, 50% rejected at random", 1.5, 0, 0.5, 0.05},
		{"K=2, 50% rejected at random (neutral)", 2, 0, 0.5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(5, 6))
			a := newTestAdaptive(t, rng, func(c *AdaptiveRecoveryConfig) { c.K = tt.k })
			backend := rand.New(rand.NewPCG(7, 8))
			accepted, acceptedSec := 0, -1
			hist := simulateAdaptive(a, secs, constRPS(rps), func(sec int, _ []second, _ int) Outcome {
				if sec != acceptedSec {
					accepted, acceptedSec = 0, sec
				}
				if tt.capacity > 0 && accepted >= tt.capacity || backend.Float64() < tt.reject {
					return Outcome{Code: codes.ResourceExhausted}
				}
				accepted++
				return Outcome{Code: codes.OK}
			})
			got := share(hist, secs-300, secs)
			var traj []float64
			for m := 0; m < secs; m += 120 {
				traj = append(traj, math.Round(share(hist, m, m+120)*1000)/1000)
			}
			step := maxStep(hist, 120)
			t.Logf("attempts reaching the backend over the last 5 min: %.3f of requests (predicted %.3f); per 2 min: %v; max change of p per second after 2 min: %.3f",
				got, tt.want, traj, step)
			if tt.want > 0 && math.Abs(got-tt.want) > 0.1*tt.want {
				t.Errorf("attempts reaching the backend = %.3f of requests; want the SRE prediction %.3f ± 10 %%", got, tt.want)
			}
			if step > 0.1 {
				t.Errorf("p changed by %.3f in one second; want at most 0.1 (no oscillation)", step)
			}
		})
	}
}

// TestAdaptiveRecoverySteadyHealthy: a healthy steady load is never
// throttled.
func TestAdaptiveRecoverySteadyHealthy(t *testing.T) {
	t.Parallel()
	var changes int
	a := newTestAdaptive(t, nil, func(c *AdaptiveRecoveryConfig) {
		c.MaxUtilization = 0.9
		c.OnStateChange = func(State, State, time.Time) { changes++ }
	})
	jitter := rand.New(rand.NewPCG(1, 1))
	hist := simulateAdaptive(a, 120, constRPS(200), func(int, []second, int) Outcome {
		lat := time.Duration(10+jitter.IntN(10)) * time.Millisecond
		return Outcome{Code: codes.OK, Latency: lat, Load: &LoadReport{CPUUtilization: 0.5}}
	})
	for i, s := range hist {
		if s.p != 1 || s.admitted != s.requests {
			t.Fatalf("second %d: %+v; want every call admitted", i, s)
		}
	}
	if changes != 0 || a.State() != Closed {
		t.Errorf("state changes = %d, State() = %v; want none, closed", changes, a.State())
	}
}

// TestAdaptiveRecoveryORCA: load on the backend grows from 50 to 100 calls/s
// over two minutes; its utilization is 1.2 × (calls last second)/100, and
// it fails calls with RESOURCE_EXHAUSTED once that is above 1. With
// MaxUtilization 0.9 the rate falls when the load passes about 75 calls/s,
// long before any error, and holds the utilization around 0.9 with next to
// no error (the signal lags the load by a second); without the ORCA rule the
// backend errs from about 84 calls/s.
func TestAdaptiveRecoveryORCA(t *testing.T) {
	t.Parallel()
	for _, maxUtil := range []float64{0.9, 0} {
		a := newTestAdaptive(t, rand.New(rand.NewPCG(1, 2)), func(c *AdaptiveRecoveryConfig) { c.MaxUtilization = maxUtil })
		const secs = 240
		offered := func(s int) int { return 50 + min(50, 50*s/120) }
		hist := simulateAdaptive(a, secs, offered, func(_ int, hist []second, n int) Outcome {
			util := 0.0
			if len(hist) > 0 {
				util = 1.2 * float64(hist[len(hist)-1].admitted) / 100
			}
			if util > 1 && float64(n) >= 100/1.2 {
				return Outcome{Code: codes.ResourceExhausted, Latency: time.Millisecond}
			}
			return Outcome{Code: codes.OK, Latency: 10 * time.Millisecond, Load: &LoadReport{CPUUtilization: util}}
		})
		firstThrottle, firstError, errs := -1, -1, 0
		for s, h := range hist {
			if h.p < 1 && firstThrottle < 0 {
				firstThrottle = s
			}
			if h.failed > 0 && firstError < 0 {
				firstError = s
			}
			errs += h.failed
		}
		last := hist[len(hist)-60:]
		minP, maxP := 1.0, 0.0
		for _, s := range last {
			minP, maxP = min(minP, s.p), max(maxP, s.p)
		}
		t.Logf("MaxUtilization %v: first throttled at %ds (%d calls/s offered), first error at %ds, %d errors; last minute p in [%.2f, %.2f], admitted %.1f calls/s; max change of p per second %.3f",
			maxUtil, firstThrottle, offered(max(firstThrottle, 0)), firstError, errs, minP, maxP, share(hist, secs-60, secs)*100, maxStep(hist, 0))
		if maxUtil == 0 {
			if errs == 0 {
				t.Errorf("without the ORCA rule: no errors; want the backend to err (the scenario is wrong)")
			}
			continue
		}
		if firstThrottle < 0 || firstError >= 0 && firstError <= firstThrottle {
			t.Errorf("first throttled at %ds, first error at %ds; want the rate lowered before any error", firstThrottle, firstError)
		}
		if errs > 10 {
			t.Errorf("errors with the ORCA rule = %d; want at most 10 (0.03 %% of calls)", errs)
		}
		if minP < 0.5 || maxP > 0.95 {
			t.Errorf("p over the last minute in [%.2f, %.2f]; want a steady band within [0.5, 0.95] (0.75 keeps 0.9 utilization)", minP, maxP)
		}
		if step := maxStep(hist, 0); step > 0.2 {
			t.Errorf("p changed by %.3f in one second; want at most 0.2", step)
		}
	}
}

// TestAdaptiveRecoveryLatencyAIMD: a backend with a capacity of 60 calls/s
// is offered 100; its latency is 10ms within capacity and grows with the
// overload (10ms × (1 + 4·(calls/60 − 1)) for the calls of the previous
// second). The p99 passing 2× the 10ms baseline (75 calls/s) lowers the
// rate ×0.8; below it, +0.05/s. The rate must settle into a narrow
// sawtooth, never swinging between 0 and 100 %, and come back to 1 once
// the overload ends.
func TestAdaptiveRecoveryLatencyAIMD(t *testing.T) {
	t.Parallel()
	a := newTestAdaptive(t, rand.New(rand.NewPCG(3, 3)), nil)
	const capacity, secs = 60, 180
	hist := simulateAdaptive(a, secs, constRPS(100), func(sec int, hist []second, _ int) Outcome {
		lat := 10 * time.Millisecond
		if len(hist) > 0 && sec < 120 {
			if over := float64(hist[len(hist)-1].admitted)/capacity - 1; over > 0 {
				lat = time.Duration(float64(lat) * (1 + 4*over))
			}
		}
		return Outcome{Code: codes.OK, Latency: lat}
	})
	minP, maxP := 1.0, 0.0
	for _, s := range hist[30:120] {
		minP, maxP = min(minP, s.p), max(maxP, s.p)
	}
	recovered := -1
	for i := 120; i < secs; i++ {
		if hist[i].p == 1 {
			recovered = i - 120
			break
		}
	}
	t.Logf("overloaded 30–120s: p in [%.2f, %.2f], admitted %.1f calls/s (capacity %d); max change of p per second %.3f; back to 1 %ds after the overload ended",
		minP, maxP, share(hist, 30, 120)*100, capacity, maxStep(hist, 0), recovered)
	if minP < 0.4 || maxP > 0.95 {
		t.Errorf("p in [%.2f, %.2f] under steady overload; want a band within [0.4, 0.95]", minP, maxP)
	}
	if step := maxStep(hist, 0); step > 0.2 {
		t.Errorf("p changed by %.3f in one second; want at most 0.2", step)
	}
	if recovered < 0 || recovered > 15 {
		t.Errorf("p back to 1 %ds after the overload; want within 15s", recovered)
	}
	if s := a.Snapshot(t0.Add(secs * time.Second)); s.Baseline < 9*time.Millisecond || s.Baseline > 12*time.Millisecond {
		t.Errorf("Snapshot().Baseline = %v; want about 10ms", s.Baseline)
	}
}

// TestAdaptiveRecoveryLowTrafficLatency: with fewer samples per interval
// than MinLatencySamples, the percentile reaches back over LatencyWindow;
// with fewer than that in the whole window, latency is not judged.
func TestAdaptiveRecoveryLowTrafficLatency(t *testing.T) {
	t.Parallel()
	a := newTestAdaptive(t, nil, nil)
	for s := range 30 {
		now := t0.Add(time.Duration(s) * time.Second)
		lat := 10 * time.Millisecond
		if s >= 20 {
			lat = 100 * time.Millisecond
		}
		for range 5 { // 5 calls/s: 20 samples take 4 intervals
			a.ShouldAttemptRecovery(now, Default)
			a.HandleSuccess(now, Outcome{Latency: lat})
		}
	}
	s := a.Snapshot(t0.Add(30 * time.Second))
	if s.LatencySamples < 20 || s.Rate >= 1 || s.Baseline > 20*time.Millisecond {
		t.Errorf("Snapshot() = %+v; want ≥ 20 samples, a lowered rate and a baseline near 10ms", s)
	}
	b := newTestAdaptive(t, nil, nil)
	for s := range 30 {
		now := t0.Add(time.Duration(s) * time.Second)
		b.ShouldAttemptRecovery(now, Default) // 1 call/s: 10 samples in 10s
		b.HandleSuccess(now, Outcome{Latency: time.Duration(s+1) * 10 * time.Millisecond})
	}
	if s := b.Snapshot(t0.Add(30 * time.Second)); s.Latency != 0 || s.Rate != 1 {
		t.Errorf("Snapshot() with 1 call/s = %+v; want no percentile and rate 1", s)
	}
}

// TestAdaptiveRecoveryOutcomes: codes outside FailureCodes are accepts;
// failure codes and an unset code reported as a failure are requests only;
// Canceled counts nothing.
func TestAdaptiveRecoveryOutcomes(t *testing.T) {
	t.Parallel()
	a := newTestAdaptive(t, nil, nil)
	for _, o := range []Outcome{canceled, notFound, unavailable, {}} {
		a.ShouldAttemptRecovery(t0, Default)
		a.HandleFailure(t0, o)
	}
	a.ShouldAttemptRecovery(t0, Default)
	a.HandleSuccess(t0, ok)
	if s := a.Snapshot(t0); s.Requests != 4 || s.Accepts != 2 {
		t.Errorf("Snapshot() = %+v; want 4 requests, 2 accepts", s)
	}
}

// TestAdaptiveRecoveryWindowSlides: a total outage throttles to MinAdmit;
// once the backend is back, p returns to 1 without ever opening. The SRE
// term recovers exponentially: p ≈ 2·accepts/requests, and accepts grow by
// 100·p per second, a time constant of window/(K·1s) = 30s, from the
// MinAdmit floor; about 2 windows in all (a shorter Window recovers
// faster).
func TestAdaptiveRecoveryWindowSlides(t *testing.T) {
	t.Parallel()
	var transitions []string
	a := newTestAdaptive(t, rand.New(rand.NewPCG(9, 9)), func(c *AdaptiveRecoveryConfig) {
		c.OnStateChange = func(from, to State, now time.Time) {
			transitions = append(transitions, from.String()+"→"+to.String())
		}
	})
	hist := simulateAdaptive(a, 240, constRPS(100), func(sec int, _ []second, _ int) Outcome {
		if sec >= 30 && sec < 90 {
			return Outcome{Code: codes.Unavailable}
		}
		return Outcome{Code: codes.OK}
	})
	minP, back := 1.0, -1
	for i, s := range hist {
		minP = min(minP, s.p)
		if i > 90 && s.p == 1 && back < 0 {
			back = i - 90
		}
	}
	t.Logf("outage 30–90s: lowest p %.3f; p back to 1 %ds after the outage; transitions %v", minP, back, transitions)
	if minP != 0.05 {
		t.Errorf("lowest p = %v; want MinAdmit 0.05", minP)
	}
	if back < 0 || back > 150 {
		t.Errorf("p back to 1 %ds after the outage; want within 2.5 windows (150s)", back)
	}
	if len(transitions) != 2 || transitions[0] != "closed→recovering" || transitions[1] != "recovering→closed" {
		t.Errorf("transitions = %v; want [closed→recovering recovering→closed]", transitions)
	}
}

func TestAdaptiveRecoveryZeroAllocs(t *testing.T) {
	a := newTestAdaptive(t, nil, func(c *AdaptiveRecoveryConfig) { c.MaxUtilization = 0.9 })
	now := t0
	load := &LoadReport{CPUUtilization: 0.5}
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Millisecond)
		if a.ShouldAttemptRecovery(now, Default).Allow {
			a.HandleSuccess(now, Outcome{Latency: time.Millisecond, Load: load})
		}
	}); n != 0 {
		t.Errorf("AllocsPerRun(healthy ShouldAttemptRecovery+HandleSuccess) = %v; want 0", n)
	}
	fail := func() {
		now = now.Add(time.Millisecond)
		if a.ShouldAttemptRecovery(now, Default).Allow {
			a.HandleFailure(now, unavailable)
		}
	}
	for range 3000 {
		fail()
	}
	if a.AdmitProbability() >= 1 {
		t.Fatalf("AdmitProbability() after failures = %v; want < 1", a.AdmitProbability())
	}
	if n := testing.AllocsPerRun(1000, fail); n != 0 {
		t.Errorf("AllocsPerRun(throttling ShouldAttemptRecovery+HandleFailure) = %v; want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = a.Snapshot(now) }); n != 0 {
		t.Errorf("AllocsPerRun(Snapshot) = %v; want 0", n)
	}
}

// TestAdaptiveRecoveryTakesNoLock holds the controller's mutex and checks
// that calls still complete, including those due to recompute p.
func TestAdaptiveRecoveryTakesNoLock(t *testing.T) {
	t.Parallel()
	a := newTestAdaptive(t, nil, nil)
	a.mu.Lock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			now := t0.Add(time.Duration(i) * 50 * time.Millisecond)
			a.ShouldAttemptRecovery(now, Default)
			a.HandleSuccess(now, Outcome{Latency: time.Millisecond})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("calls blocked on the controller's mutex")
	}
	a.mu.Unlock()
	<-done
}

// TestAdaptiveRecoveryConcurrentSafe drives one pattern from many goroutines;
// run it with -race.
func TestAdaptiveRecoveryConcurrentSafe(t *testing.T) {
	t.Parallel()
	a := newTestAdaptive(t, nil, func(c *AdaptiveRecoveryConfig) {
		c.MaxUtilization = 0.8
		c.AdjustInterval = 10 * time.Millisecond
		c.LatencyWindow = 50 * time.Millisecond
		c.Window = time.Second
		c.OnStateChange = func(State, State, time.Time) {}
	})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 11))
			now := t0
			for range 5000 {
				now = now.Add(time.Duration(rng.IntN(1000)) * time.Microsecond)
				d := a.ShouldAttemptRecovery(now, Priority(rng.IntN(3)-1))
				if !d.Allow {
					if d.RetryAfter <= 0 {
						t.Errorf("ShouldAttemptRecovery() = %+v; want RetryAfter > 0 when not allowed", d)
					}
					continue
				}
				o := Outcome{Latency: time.Duration(rng.IntN(50)) * time.Millisecond, Load: &LoadReport{CPUUtilization: rng.Float64()}}
				if rng.Float64() < 0.3 {
					o.Code = codes.Unavailable
					a.HandleFailure(now, o)
				} else {
					a.HandleSuccess(now, o)
				}
				_ = a.State()
				_ = a.Snapshot(now)
			}
		})
	}
	wg.Wait()
	if p := a.AdmitProbability(); !(p >= 0.05 && p <= 1) {
		t.Errorf("AdmitProbability() = %v; want in [MinAdmit, 1]", p)
	}
}

func TestAdaptiveRecoveryZeroNowReadsTheClock(t *testing.T) {
	t.Parallel()
	a := newTestAdaptive(t, nil, nil)
	var zero time.Time
	for range 100 {
		if a.ShouldAttemptRecovery(zero, Default).Allow {
			a.HandleFailure(zero, unavailable)
		}
	}
	if s := a.Snapshot(time.Now()); s.Requests != 100 {
		t.Errorf("Snapshot(time.Now()).Requests = %d; want the 100 requests made with a zero now counted at the real time", s.Requests)
	}
}
