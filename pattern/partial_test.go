package pattern

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// newTestPartial returns a PartialRecovery without jitter that opens after 5
// consecutive failures for 1s (growing ×2 up to 8s), with the default ramp
// 5/25/50/100 % of 2s steps.
func newTestPartial(t testing.TB, edit func(*PartialRecoveryConfig)) (*PartialRecovery, *recorder) {
	t.Helper()
	rec := &recorder{}
	c := DefaultPartialRecoveryConfig()
	c.Breaker.ConsecutiveFailures = 5
	c.Breaker.FailureRateThreshold = 0
	c.Breaker.MaxOpenDelay = 8 * time.Second
	c.Breaker.Jitter = 0
	c.OnStateChange = rec.record
	if edit != nil {
		edit(&c)
	}
	pr, err := NewPartialRecovery(c)
	if err != nil {
		t.Fatalf("NewPartialRecovery(%+v) = %v; want no error", c, err)
	}
	return pr, rec
}

// reportP sends o to the method the interceptor would call.
func reportP(pr *PartialRecovery, now time.Time, o Outcome) {
	if o.Code == codes.OK {
		pr.HandleSuccess(now, o)
	} else {
		pr.HandleFailure(now, o)
	}
}

// callP makes one attempt of priority p at now whose outcome is code, and
// reports whether it was admitted.
func callP(pr *PartialRecovery, now time.Time, p Priority, code codes.Code) bool {
	d := pr.ShouldAttemptRecovery(now, p)
	if d.Allow {
		reportP(pr, now, Outcome{Code: code, Probe: d.Probe})
	}
	return d.Allow
}

func TestPartialRecoveryConfigValidate(t *testing.T) {
	t.Parallel()
	if err := DefaultPartialRecoveryConfig().Validate(); err != nil {
		t.Fatalf("DefaultPartialRecoveryConfig().Validate() = %v; want nil", err)
	}
	tests := []struct {
		name  string
		edit  func(*PartialRecoveryConfig)
		field string // "" = valid
	}{
		{"zero fields take defaults", func(c *PartialRecoveryConfig) {
			*c = PartialRecoveryConfig{Breaker: ExponentialBackoffConfig{ConsecutiveFailures: 3}}
		}, ""},
		{"breaker without trip rule", func(c *PartialRecoveryConfig) { *c = PartialRecoveryConfig{} }, "Breaker.ConsecutiveFailures"},
		{"breaker bad jitter", func(c *PartialRecoveryConfig) { c.Breaker.Jitter = 2 }, "Breaker.Jitter"},
		{"one step", func(c *PartialRecoveryConfig) { c.Ramp = []float64{1} }, ""},
		{"ramp not ending at 1", func(c *PartialRecoveryConfig) { c.Ramp = []float64{0.1, 0.5} }, "Ramp"},
		{"ramp decreasing", func(c *PartialRecoveryConfig) { c.Ramp = []float64{0.5, 0.25, 1} }, "Ramp"},
		{"ramp repeated", func(c *PartialRecoveryConfig) { c.Ramp = []float64{0.5, 0.5, 1} }, "Ramp"},
		{"ramp zero step", func(c *PartialRecoveryConfig) { c.Ramp = []float64{0, 1} }, "Ramp"},
		{"ramp NaN", func(c *PartialRecoveryConfig) { c.Ramp = []float64{math.NaN(), 1} }, "Ramp"},
		{"ramp too long", func(c *PartialRecoveryConfig) {
			c.Ramp = make([]float64, 101)
			for i := range c.Ramp {
				c.Ramp[i] = float64(i+1) / 101
			}
		}, "Ramp"},
		{"step window negative", func(c *PartialRecoveryConfig) { c.StepWindow = -time.Second }, "StepWindow"},
		{"step window tiny", func(c *PartialRecoveryConfig) { c.StepWindow = time.Microsecond }, "StepWindow"},
		{"step failure rate above 1", func(c *PartialRecoveryConfig) { c.StepFailureRate = 1.5 }, "StepFailureRate"},
		{"step minimum negative", func(c *PartialRecoveryConfig) { c.StepMinimumCalls = -1 }, "StepMinimumCalls"},
		{"slow start negative", func(c *PartialRecoveryConfig) { c.SlowStartWindow = -1 }, "SlowStartWindow"},
		{"aggression negative", func(c *PartialRecoveryConfig) { c.SlowStartAggression = -1 }, "SlowStartAggression"},
		{"aggression inf", func(c *PartialRecoveryConfig) { c.SlowStartAggression = math.Inf(1) }, "SlowStartAggression"},
		{"min share above 1", func(c *PartialRecoveryConfig) { c.SlowStartMinShare = 2 }, "SlowStartMinShare"},
		{"max in flight negative", func(c *PartialRecoveryConfig) { c.MaxInFlight = -1 }, "MaxInFlight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultPartialRecoveryConfig()
			tt.edit(&c)
			err := c.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v; want nil", err)
				}
				if _, err := NewPartialRecovery(c); err != nil {
					t.Fatalf("NewPartialRecovery() = %v; want no error", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != "PartialRecoveryConfig."+tt.field {
				t.Fatalf("Validate() = %v; want a *ConfigError for PartialRecoveryConfig.%s", err, tt.field)
			}
			if pr, err2 := NewPartialRecovery(c); pr != nil || err2 == nil {
				t.Errorf("NewPartialRecovery() = %v, %v; want nil, error", pr, err2)
			}
		})
	}
}

func TestPartialRecoveryRampIsCopied(t *testing.T) {
	t.Parallel()
	ramp := []float64{0.5, 1}
	pr, _ := newTestPartial(t, func(c *PartialRecoveryConfig) { c.Ramp = ramp })
	ramp[0] = 0.9
	if got := pr.cfg.Ramp[0]; got != 0.5 {
		t.Errorf("Ramp[0] after the caller changed its slice = %v; want 0.5", got)
	}
}

// stepKey identifies one ramp step window: the generation of the
// Recovering state and the step index.
type stepKey struct {
	gen  uint64
	step int
}

// TestPartialRecoveryRampScenario is the recovery of an outage with a fake
// clock: 200 calls/s of default priority, the backend failing every call
// until 2.5s and answering every call after. The breaker opens at 20ms for
// 1s (±20 % jitter from a seeded source); the first ramp fails at 5 % and
// reopens for 2s; the second ramp, after healing, climbs 5 → 25 → 50 →
// 100 % and closes.
//
// It checks that per step window the admitted share follows the ramp and is
// never above the step's share + 10 % (also over every 250ms bucket inside a
// step), and that from 2× the open delay in force at healing plus the time
// the ramp takes to reach 100 % on, at least 99 % of calls are admitted.
func TestPartialRecoveryRampScenario(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	pr, rec := newTestPartial(t, func(c *PartialRecoveryConfig) {
		c.Breaker.Jitter = 0.2
		c.Breaker.Rand = rng.Float64
	})
	const (
		interval = 5 * time.Millisecond
		heal     = 2500 * time.Millisecond
		end      = 16 * time.Second
		bucket   = 250 * time.Millisecond
	)
	type counts struct{ asked, admitted int }
	steps := map[stepKey]*counts{}
	var order []stepKey
	buckets := map[stepKey]map[int]*counts{} // 250ms buckets per step window
	stepStart := map[stepKey]time.Duration{}
	var healDelay time.Duration
	hundred := map[int]*counts{} // 100ms buckets after healing
	for at := time.Duration(0); at < end; at += interval {
		now := t0.Add(at)
		if at == heal {
			healDelay = pr.Snapshot(now).OpenDelay
		}
		code := codes.OK
		if at < heal {
			code = codes.Unavailable
		}
		allowed := callP(pr, now, Default, code)
		if at >= heal {
			b := hundred[int((at-heal)/(100*time.Millisecond))]
			if b == nil {
				b = &counts{}
				hundred[int((at-heal)/(100*time.Millisecond))] = b
			}
			b.asked++
			if allowed {
				b.admitted++
			}
		}
		s := pr.Snapshot(now)
		if s.State != Recovering {
			continue
		}
		k := stepKey{s.Generation, s.Step}
		c := steps[k]
		if c == nil {
			c = &counts{}
			steps[k] = c
			order = append(order, k)
			buckets[k] = map[int]*counts{}
			stepStart[k] = s.StepSince.Sub(t0)
		}
		c.asked++
		bi := int((at - stepStart[k]) / bucket)
		bc := buckets[k][bi]
		if bc == nil {
			bc = &counts{}
			buckets[k][bi] = bc
		}
		bc.asked++
		if allowed {
			c.admitted++
			bc.admitted++
		}
	}
	t.Logf("transitions: %s", rec)
	ramp := pr.cfg.Ramp
	healedSteps := 0
	for _, k := range order {
		c := steps[k]
		share := float64(c.admitted) / float64(c.asked)
		start := stepStart[k]
		t.Logf("ramp step %d (generation %d) from %v: %d/%d admitted = %.3f (step share %.2f)", k.step, k.gen, start, c.admitted, c.asked, share, ramp[k.step])
		if share > ramp[k.step]+0.10 {
			t.Errorf("step %d from %v admitted %.3f of calls; want at most %.2f + 0.10", k.step, start, share, ramp[k.step])
		}
		for bi, bc := range buckets[k] {
			if bc.asked >= int(bucket/interval) {
				if bs := float64(bc.admitted) / float64(bc.asked); bs > ramp[k.step]+0.10 {
					t.Errorf("step %d, 250ms bucket %d admitted %.3f of calls; want at most %.2f + 0.10", k.step, bi, bs, ramp[k.step])
				}
			}
		}
		if start >= heal {
			healedSteps++
			if math.Abs(share-ramp[k.step]) > 0.10 {
				t.Errorf("healed step %d from %v admitted %.3f of calls; want %.2f ± 0.10", k.step, start, share, ramp[k.step])
			}
			if k.step != healedSteps-1 {
				t.Errorf("healed step window %d is ramp step %d; want the ramp climbed one step per window", healedSteps-1, k.step)
			}
		}
	}
	if healedSteps != len(ramp) {
		t.Errorf("the ramp after healing went through %d steps; want all %d", healedSteps, len(ramp))
	}
	// Time to 99 %: the start of the first 100ms bucket from which every
	// bucket admitted at least 99 % of calls.
	last := -1
	for i := range len(hundred) {
		if b := hundred[i]; float64(b.admitted) < 0.99*float64(b.asked) {
			last = i
		}
	}
	t99 := time.Duration(last+1) * 100 * time.Millisecond
	rampUp := time.Duration(len(ramp)-1) * pr.cfg.StepWindow
	bound := 2*healDelay + rampUp
	t.Logf("open delay at healing %v; 99 %% of calls admitted from %v after healing; bound 2×%v + %v = %v; closed at %v",
		healDelay, t99, healDelay, rampUp, bound, pr.Snapshot(t0.Add(end)).Since.Sub(t0))
	if t99 > bound {
		t.Errorf("99 %% of calls admitted only %v after healing; want at most 2×open delay + ramp = %v", t99, bound)
	}
	if got := pr.State(); got != Closed {
		t.Errorf("State() at the end = %v; want closed", got)
	}
}

// TestPartialRecoveryPriority checks the priority guarantee over a ramp with
// a seeded random mix of 10 % critical, 20 % default and 70 % sheddable
// calls at 300 calls/s: in every step window where a lower band had a call
// admitted, no call of a higher band was rejected. So every critical call is
// admitted before any sheddable one in the same window. With this mix the
// split is, per step share s: 5 % → critical 50 %; 25 % → critical 100 %,
// default 75 %; 50 % → critical and default 100 %, sheddable 29 %.
func TestPartialRecoveryPriority(t *testing.T) {
	t.Parallel()
	for _, mix := range [][3]float64{{0.1, 0.2, 0.7}, {1.0 / 3, 1.0 / 3, 1.0 / 3}, {0.6, 0.2, 0.2}} {
		t.Run(fmt.Sprintf("%.2f/%.2f/%.2f", mix[0], mix[1], mix[2]), func(t *testing.T) {
			t.Parallel()
			pr, _ := newTestPartial(t, nil)
			rng := rand.New(rand.NewPCG(3, 4))
			prios := [numBands]Priority{Critical, Default, Sheddable}
			type counts struct{ asked, admitted [numBands]int }
			steps := map[stepKey]*counts{}
			var order []stepKey
			for range 5 {
				callP(pr, t0, Default, codes.Unavailable)
			}
			for at := time.Duration(0); at < 12*time.Second; at += time.Second / 300 {
				now := t0.Add(at)
				r := rng.Float64()
				b := bandSheddable
				if r < mix[0] {
					b = bandCritical
				} else if r < mix[0]+mix[1] {
					b = bandDefault
				}
				allowed := callP(pr, now, prios[b], codes.OK)
				s := pr.Snapshot(now)
				if s.State != Recovering {
					continue
				}
				k := stepKey{s.Generation, s.Step}
				c := steps[k]
				if c == nil {
					c = &counts{}
					steps[k] = c
					order = append(order, k)
				}
				c.asked[b]++
				if allowed {
					c.admitted[b]++
				}
			}
			if len(order) != 4 {
				t.Fatalf("ramp went through %d step windows; want 4", len(order))
			}
			for _, k := range order {
				c := steps[k]
				var asked, admitted int
				for b := range numBands {
					asked += c.asked[b]
					admitted += c.admitted[b]
				}
				share := pr.cfg.Ramp[k.step]
				t.Logf("step %.2f: total %.3f; critical %d/%d, default %d/%d, sheddable %d/%d", share, float64(admitted)/float64(asked),
					c.admitted[0], c.asked[0], c.admitted[1], c.asked[1], c.admitted[2], c.asked[2])
				if got := float64(admitted) / float64(asked); got > share+0.10 || got < share-0.10 {
					t.Errorf("step %.2f admitted %.3f of all calls; want %.2f ± 0.10", share, got, share)
				}
				for hi := range numBands {
					for lo := hi + 1; lo < numBands; lo++ {
						if c.admitted[lo] > 0 && c.admitted[hi] < c.asked[hi] {
							t.Errorf("step %.2f admitted %d %v calls but rejected %d %v ones; want every higher-priority call admitted first",
								share, c.admitted[lo], prios[lo], c.asked[hi]-c.admitted[hi], prios[hi])
						}
					}
				}
			}
		})
	}
}

// TestPartialRecoveryPriorityDominance checks the rule at the level of one
// decision: whenever a sheddable call is admitted, a critical call asked
// right after is admitted too.
func TestPartialRecoveryPriorityDominance(t *testing.T) {
	t.Parallel()
	pr, _ := newTestPartial(t, func(c *PartialRecoveryConfig) { c.Ramp = []float64{0.6, 1} })
	pr.SetHealth(t0, false)
	pr.SetHealth(t0, true)
	now := t0
	for i := range 3000 {
		now = now.Add(time.Millisecond)
		p := []Priority{Sheddable, Sheddable, Default, Critical}[i%4]
		if callP(pr, now, p, codes.OK) && p == Sheddable {
			if !callP(pr, now, Critical, codes.OK) {
				t.Fatalf("call %d: a critical call right after an admitted sheddable one was rejected", i)
			}
		}
	}
}

// TestPartialRecoveryHealthFlip drives the pattern by health reports alone:
// NOT_SERVING opens it without any failed call and holds it open past the
// open delay; SERVING starts the ramp at once; the ramp then closes it.
func TestPartialRecoveryHealthFlip(t *testing.T) {
	t.Parallel()
	pr, rec := newTestPartial(t, nil)
	failures := 0
	admitted := 0
	for at := time.Duration(0); at < 15*time.Second; at += 10 * time.Millisecond {
		now := t0.Add(at)
		switch at {
		case time.Second:
			pr.SetHealth(now, false)
			if got := pr.State(); got != Open {
				t.Fatalf("State() after NOT_SERVING = %v; want open", got)
			}
		case 4 * time.Second: // three open delays later: still open
			if d := pr.ShouldAttemptRecovery(now, Critical); d.Allow || d.RetryAfter <= 0 {
				t.Fatalf("ShouldAttemptRecovery() while NOT_SERVING past the open delay = %+v; want rejected with RetryAfter > 0", d)
			}
			pr.SetHealth(now, true)
			if s := pr.Snapshot(now); s.State != Recovering || s.Step != 0 || s.Share != 0.05 {
				t.Fatalf("Snapshot() right after SERVING = %+v; want recovering at step 0 (5 %%)", s)
			}
			pr.SetHealth(now, true) // a repeated status changes nothing
		}
		d := pr.ShouldAttemptRecovery(now, Default)
		if d.Allow {
			admitted++
			pr.HandleSuccess(now, Outcome{Code: codes.OK, Probe: d.Probe})
		}
	}
	if want := "closed→open@1s open→recovering@4s recovering→closed@12s"; rec.String() != want {
		t.Errorf("transitions = %q; want %q", rec, want)
	}
	if failures != 0 {
		t.Errorf("failed calls = %d; want 0", failures)
	}
	if s := pr.Snapshot(t0.Add(15 * time.Second)); s.State != Closed || s.InFlight != 0 || !s.Serving {
		t.Errorf("Snapshot() at the end = %+v; want closed, serving, nothing in flight", s)
	}
}

// TestPartialRecoveryHealthWhileRecovering checks NOT_SERVING during the ramp
// reopens at once with the current open delay.
func TestPartialRecoveryHealthWhileRecovering(t *testing.T) {
	t.Parallel()
	pr, rec := newTestPartial(t, nil)
	pr.SetHealth(t0, true) // SERVING while closed: nothing
	for range 5 {
		callP(pr, t0, Default, codes.Unavailable)
	}
	pr.ShouldAttemptRecovery(t0.Add(time.Second), Default)
	pr.SetHealth(t0.Add(1500*time.Millisecond), false)
	pr.SetHealth(t0.Add(1600*time.Millisecond), false)
	if s := pr.Snapshot(t0.Add(2 * time.Second)); s.State != Open || s.OpenDelay != time.Second || s.Serving {
		t.Errorf("Snapshot() = %+v; want open with a 1s delay, not serving", s)
	}
	if want := "closed→open@0s open→recovering@1s recovering→open@1.5s"; rec.String() != want {
		t.Errorf("transitions = %q; want %q", rec, want)
	}
}

// TestPartialRecoveryStepDownAndReopen: a failing step goes back one step;
// the first step failing reopens with a doubled delay; with ReopenOnFailure
// any failing step reopens.
func TestPartialRecoveryStepDownAndReopen(t *testing.T) {
	t.Parallel()
	for _, reopen := range []bool{false, true} {
		pr, rec := newTestPartial(t, func(c *PartialRecoveryConfig) { c.ReopenOnFailure = reopen })
		for range 5 {
			callP(pr, t0, Default, codes.Unavailable)
		}
		now := t0.Add(time.Second)
		// Climb to step 2 (50 %) with every call succeeding.
		for ; now.Before(t0.Add(5*time.Second + time.Millisecond)); now = now.Add(time.Millisecond) {
			callP(pr, now, Default, codes.OK)
		}
		if s := pr.Snapshot(now); s.Step != 2 {
			t.Fatalf("Snapshot().Step = %d; want 2", s.Step)
		}
		// Five failures in a row fail the step.
		for n := 0; n < 5; now = now.Add(time.Millisecond) {
			if callP(pr, now, Default, codes.Unavailable) {
				n++
			}
		}
		s := pr.Snapshot(now)
		if reopen {
			if s.State != Open || s.OpenDelay != 2*time.Second {
				t.Fatalf("ReopenOnFailure: Snapshot() = %+v; want open for 2s", s)
			}
			continue
		}
		if s.State != Recovering || s.Step != 1 {
			t.Fatalf("Snapshot() after a failed step = %+v; want recovering at step 1", s)
		}
		// The outcome of a call admitted before the step-down does not count.
		pr.HandleFailure(now, Outcome{Code: codes.Unavailable, Probe: true, Latency: time.Second})
		if s := pr.Snapshot(now); s.StepFailures != 0 {
			t.Errorf("StepFailures after a stale failure = %d; want 0", s.StepFailures)
		}
		// A failure rate of 20 % over 10 outcomes fails step 1, then step 0 reopens.
		for i := 0; pr.State() == Recovering; now = now.Add(time.Millisecond) {
			code := codes.OK
			if i%5 == 0 {
				code = codes.Internal
			}
			if callP(pr, now, Default, code) {
				i++
			}
		}
		if s := pr.Snapshot(now); s.State != Open || s.OpenDelay != 2*time.Second {
			t.Errorf("Snapshot() after step 0 failed = %+v; want open for 2s", s)
		}
		if !strings.Contains(rec.String(), "recovering→open") {
			t.Errorf("transitions = %q; want a reopening", rec)
		}
	}
}

// TestPartialRecoveryUnhealthyStepRepeats: a step that ends with a failure
// rate above the threshold, but too few outcomes to fail, is repeated.
func TestPartialRecoveryUnhealthyStepRepeats(t *testing.T) {
	t.Parallel()
	pr, _ := newTestPartial(t, func(c *PartialRecoveryConfig) { c.Ramp = []float64{0.5, 1} })
	pr.SetHealth(t0, false)
	pr.SetHealth(t0, true)
	callP(pr, t0, Default, codes.OK)
	callP(pr, t0, Default, codes.Unavailable) // 1 of 1 outcomes failed (under 10)
	now := t0.Add(2 * time.Second)
	pr.ShouldAttemptRecovery(now, Default)
	if s := pr.Snapshot(now); s.State != Recovering || s.Step != 0 || !s.StepSince.Equal(now) {
		t.Errorf("Snapshot() = %+v; want step 0 repeated from t0+2s", s)
	}
}

func TestPartialRecoveryMaxInFlight(t *testing.T) {
	t.Parallel()
	pr, _ := newTestPartial(t, func(c *PartialRecoveryConfig) { c.Ramp = []float64{1}; c.MaxInFlight = 2; c.StepWindow = time.Hour })
	pr.SetHealth(t0, false)
	pr.SetHealth(t0, true)
	d1 := pr.ShouldAttemptRecovery(t0, Critical)
	d2 := pr.ShouldAttemptRecovery(t0, Critical)
	if !d1.Allow || !d1.Probe || !d2.Allow {
		t.Fatalf("first two calls = %+v, %+v; want admitted as probes", d1, d2)
	}
	if d := pr.ShouldAttemptRecovery(t0, Critical); d.Allow || d.RetryAfter <= 0 {
		t.Fatalf("third call with 2 in flight = %+v; want rejected with RetryAfter > 0", d)
	}
	pr.HandleFailure(t0, Outcome{Code: codes.Canceled, Probe: true}) // a cancellation frees its slot
	if s := pr.Snapshot(t0); s.InFlight != 1 {
		t.Fatalf("InFlight after a cancellation = %d; want 1", s.InFlight)
	}
	if d := pr.ShouldAttemptRecovery(t0, Critical); !d.Allow {
		t.Fatalf("call after a slot was freed = %+v; want admitted", d)
	}
	// Two slots whose outcomes never come back are reclaimed after MaxOpenDelay.
	later := t0.Add(pr.cfg.Breaker.MaxOpenDelay)
	if s := pr.Snapshot(later); s.InFlight != 2 {
		t.Fatalf("InFlight = %d; want 2", s.InFlight)
	}
	if d := pr.ShouldAttemptRecovery(later.Add(-time.Millisecond), Critical); d.Allow {
		t.Fatalf("call before the slots expire = %+v; want rejected", d)
	}
	if d := pr.ShouldAttemptRecovery(later, Critical); !d.Allow {
		t.Fatalf("call after the slots expired = %+v; want admitted", d)
	}
}

// TestPartialRecoverySlowStart follows Envoy's curve: with a 4s window and
// aggression 1 the share is t/4s (at least 5 %); a whole healthy 2s period
// at share 1 closes the pattern.
func TestPartialRecoverySlowStart(t *testing.T) {
	t.Parallel()
	for _, aggression := range []float64{1, 2} {
		pr, rec := newTestPartial(t, func(c *PartialRecoveryConfig) {
			c.SlowStartWindow = 4 * time.Second
			c.SlowStartAggression = aggression
		})
		pr.SetHealth(t0, false)
		pr.SetHealth(t0, true)
		const slot = 500 * time.Millisecond
		for i := range 8 {
			asked, admitted := 0, 0
			for at := time.Duration(i) * slot; at < time.Duration(i+1)*slot; at += time.Millisecond {
				asked++
				if callP(pr, t0.Add(at), Default, codes.OK) {
					admitted++
				}
			}
			mid := (float64(i) + 0.5) * slot.Seconds() / 4
			want := max(0.05, math.Pow(mid, 1/aggression))
			got := float64(admitted) / float64(asked)
			if math.Abs(got-want) > 0.05 {
				t.Errorf("aggression %v, %v–%v: admitted %.3f; want the curve's %.3f ± 0.05", aggression, time.Duration(i)*slot, time.Duration(i+1)*slot, got, want)
			}
		}
		if s := pr.Snapshot(t0.Add(4 * time.Second)); s.Step != -1 || s.Share != 1 {
			t.Errorf("Snapshot() at the curve's end = %+v; want Step -1, Share 1", s)
		}
		for at := 4 * time.Second; at < 7*time.Second; at += time.Millisecond {
			callP(pr, t0.Add(at), Default, codes.OK)
		}
		if want := "closed→open@0s open→recovering@0s recovering→closed@6s"; rec.String() != want {
			t.Errorf("aggression %v: transitions = %q; want %q", aggression, rec, want)
		}
	}
}

// TestPartialRecoverySlowStartStepDown: a failing period halves the share;
// at the minimum share a failing period reopens.
func TestPartialRecoverySlowStartStepDown(t *testing.T) {
	t.Parallel()
	pr, _ := newTestPartial(t, func(c *PartialRecoveryConfig) { c.SlowStartWindow = 4 * time.Second })
	pr.SetHealth(t0, false)
	pr.SetHealth(t0, true)
	now := t0.Add(2 * time.Second)
	for n := 0; n < 5; now = now.Add(time.Millisecond) {
		if callP(pr, now, Default, codes.Unavailable) {
			n++
		}
	}
	s := pr.Snapshot(now)
	if s.State != Recovering || math.Abs(s.Share-0.25) > 0.01 {
		t.Fatalf("Snapshot() after a failed period at share 0.5 = %+v; want recovering at share 0.25", s)
	}
	for pr.State() == Recovering {
		callP(pr, now, Default, codes.Unavailable)
		now = now.Add(time.Millisecond)
	}
	if s := pr.Snapshot(now); s.State != Open || s.OpenDelay != 2*time.Second {
		t.Errorf("Snapshot() = %+v; want open for 2s", s)
	}
}

// TestPartialRecoveryLateResults: outcomes from an earlier state do not
// count in the current one.
func TestPartialRecoveryLateResults(t *testing.T) {
	t.Parallel()
	pr, rec := newTestPartial(t, nil)
	for range 5 {
		callP(pr, t0, Default, codes.Unavailable)
	}
	for range 10 {
		pr.HandleFailure(t0, unavailable) // late non-probe results while open
	}
	now := t0.Add(time.Second)
	pr.ShouldAttemptRecovery(now, Default)
	for range 10 {
		pr.HandleFailure(now, unavailable) // late non-probe results while recovering
	}
	if s := pr.Snapshot(now); s.State != Recovering || s.StepFailures != 0 {
		t.Fatalf("Snapshot() = %+v; want recovering with no step failure", s)
	}
	pr.SetHealth(now, false)
	pr.SetHealth(now, true)
	// Close, then a probe outcome frees its slot only, and a failure of a
	// call that started before the close is ignored.
	for at := time.Second; at < 10*time.Second; at += time.Millisecond {
		callP(pr, t0.Add(at), Critical, codes.OK)
	}
	now = t0.Add(10 * time.Second)
	if pr.State() != Closed {
		t.Fatalf("State() = %v; want closed (transitions %s)", pr.State(), rec)
	}
	for range 5 {
		pr.HandleFailure(now, Outcome{Code: codes.Unavailable, Probe: true})
		pr.HandleFailure(now, Outcome{Code: codes.Unavailable, Latency: 5 * time.Second})
	}
	if pr.State() != Closed {
		t.Errorf("State() after late failures = %v; want closed", pr.State())
	}
	for range 5 {
		pr.HandleFailure(now, unavailable)
	}
	if pr.State() != Open {
		t.Errorf("State() after 5 new failures = %v; want open", pr.State())
	}
}

// TestPartialRecoverySlowCallTrips: the inner breaker's slow-call rule opens
// the pattern from HandleSuccess.
func TestPartialRecoverySlowCallTrips(t *testing.T) {
	t.Parallel()
	pr, _ := newTestPartial(t, func(c *PartialRecoveryConfig) {
		c.Breaker.SlowCallDuration = time.Second
		c.Breaker.WindowCalls = 10
		c.Breaker.MinimumCalls = 10
	})
	for range 10 {
		pr.HandleSuccess(t0, Outcome{Code: codes.OK, Latency: 2 * time.Second})
	}
	if pr.State() != Open {
		t.Errorf("State() after 10 slow calls = %v; want open", pr.State())
	}
}

func TestPartialRecoveryZeroAllocs(t *testing.T) {
	pr, _ := newTestPartial(t, nil)
	now := t0
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Millisecond)
		if !pr.ShouldAttemptRecovery(now, Default).Allow {
			t.Fatal("ShouldAttemptRecovery().Allow = false; want true")
		}
		pr.HandleSuccess(now, Outcome{Latency: time.Millisecond})
	}); n != 0 {
		t.Errorf("AllocsPerRun(closed ShouldAttemptRecovery+HandleSuccess) = %v; want 0", n)
	}
	pr.SetHealth(now, false)
	if n := testing.AllocsPerRun(100, func() { _ = pr.ShouldAttemptRecovery(now, Default) }); n != 0 {
		t.Errorf("AllocsPerRun(ShouldAttemptRecovery while open) = %v; want 0", n)
	}
	pr.SetHealth(now, true)
	if n := testing.AllocsPerRun(100, func() {
		d := pr.ShouldAttemptRecovery(now, Sheddable)
		if d.Allow {
			pr.HandleSuccess(now, Outcome{Probe: true})
		}
	}); n != 0 {
		t.Errorf("AllocsPerRun(ShouldAttemptRecovery+HandleSuccess while recovering) = %v; want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = pr.Snapshot(now) }); n != 0 {
		t.Errorf("AllocsPerRun(Snapshot) = %v; want 0", n)
	}
}

// TestPartialRecoveryClosedTakesNoLock holds the pattern's mutex and checks
// that the healthy path still completes.
func TestPartialRecoveryClosedTakesNoLock(t *testing.T) {
	t.Parallel()
	pr, _ := newTestPartial(t, nil)
	pr.HandleFailure(t0, unavailable)
	pr.mu.Lock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			now := t0.Add(time.Duration(i) * time.Millisecond)
			pr.ShouldAttemptRecovery(now, Default)
			pr.HandleSuccess(now, ok)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("healthy path blocked on the pattern's mutex")
	}
	pr.mu.Unlock()
	<-done
}

// TestPartialRecoveryConcurrentSafe drives one pattern from many goroutines
// with random outcomes, priorities and health flips; run it with -race.
func TestPartialRecoveryConcurrentSafe(t *testing.T) {
	t.Parallel()
	var ts transitionSet
	pr, _ := newTestPartial(t, func(c *PartialRecoveryConfig) {
		c.Breaker.OpenDelay = 10 * time.Millisecond
		c.Breaker.MaxOpenDelay = 40 * time.Millisecond
		c.Breaker.Jitter = 0.2
		c.StepWindow = 20 * time.Millisecond
		c.MaxInFlight = 5
		c.OnStateChange = ts.record
	})
	all := [][2]State{{Closed, Open}, {Open, Recovering}, {Recovering, Closed}, {Recovering, Open}}
	driveConcurrently(t, &ts, all,
		func(g, i int, rng *rand.Rand, now time.Time) {
			if g == 0 && i%200 == 0 {
				pr.SetHealth(now, i%400 != 0)
			}
			randomCall(t, pr, rng, now, 0.15, 0.05, 500*time.Microsecond)
			_ = pr.Snapshot(now)
		},
		func(round int, later time.Time) {
			if s := pr.Snapshot(later); s.InFlight != 0 {
				t.Errorf("Snapshot() after round %d = %+v; want nothing in flight", round, s)
			}
		})
	ts.checkOnly(t, all)
}

func TestPartialRecoveryZeroNowReadsTheClock(t *testing.T) {
	t.Parallel()
	pr, _ := newTestPartial(t, func(c *PartialRecoveryConfig) {
		c.Breaker.OpenDelay = time.Hour
		c.Breaker.MaxOpenDelay = time.Hour
	})
	var zero time.Time
	for range 5 {
		pr.HandleFailure(zero, unavailable)
	}
	d := pr.ShouldAttemptRecovery(zero, Default)
	if d.Allow || d.RetryAfter < 59*time.Minute || d.RetryAfter > time.Hour {
		t.Errorf("ShouldAttemptRecovery(zero) = %+v; want refused for about an hour (the real clock, not year 1)", d)
	}
	pr.SetHealth(zero, false)
	pr.SetHealth(zero, true)
	if s := pr.Snapshot(zero); s.State != Recovering || time.Since(s.Since) > time.Minute {
		t.Errorf("Snapshot(zero) = %+v; want recovering since about now", s)
	}
}
