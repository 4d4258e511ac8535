package pattern

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// AdaptiveRecoveryConfig configures an [AdaptiveRecovery]. Start from
// [DefaultAdaptiveRecoveryConfig] and change what you need. A zero field
// takes its default, except MaxUtilization, where 0 disables the rule.
type AdaptiveRecoveryConfig struct {
	// K is the SRE multiplier: calls are throttled once requests exceed K
	// times accepts over Window. At least 1 (1 throttles hardest), at most
	// 10. Default 2.
	K float64
	// Window is the sliding window over which requests and accepts are
	// counted, in 20 buckets (it slides in steps of Window/20). At least
	// 20ms, at most 1h. Default 60s.
	Window time.Duration
	// LatencyPercentile is the latency percentile watched, as a fraction in
	// [0.5, 1]. Default 0.99.
	LatencyPercentile float64
	// LatencyFactor: when the percentile exceeds LatencyFactor × the
	// baseline (the lowest percentile seen recently), the admitted rate is
	// lowered. Finite and > 1. Default 2.
	LatencyFactor float64
	// LatencyWindow is how far back the percentile looks when the last
	// AdjustInterval holds fewer than MinLatencySamples latencies. At least
	// AdjustInterval, at most 64 AdjustIntervals. Default 10s.
	LatencyWindow time.Duration
	// BaselineWindow is how long the latency baseline remembers: it is the
	// lowest percentile seen over the last BaselineWindow/2 to
	// BaselineWindow, so a lasting change of the target's normal latency is
	// accepted after at most BaselineWindow. At least 2 AdjustIntervals.
	// Default 5m.
	BaselineWindow time.Duration
	// MinLatencySamples is how many latencies the percentile needs; with
	// fewer over LatencyWindow the latency rule does not apply. Default 20.
	MinLatencySamples int
	// MaxUtilization: when the server's ORCA utilization, averaged over the
	// last AdjustInterval, is above it, the admitted rate is lowered. The
	// utilization is ApplicationUtilization when positive, else
	// CPUUtilization (as gRPC's weighted round robin reads it). 0 disables
	// the rule. Default 0.
	MaxUtilization float64
	// MinAdmit is the lowest admission probability: a share of calls that
	// always reaches the target, so that its recovery is seen. In (0, 1].
	// Default 0.05.
	MinAdmit float64
	// AdjustInterval is the period of the rate controller (AIMD): once per
	// interval the rate is multiplied by DecreaseFactor if latency or load
	// is too high, else raised by IncreaseStep. At least 1ms. Default 1s.
	AdjustInterval time.Duration
	// DecreaseFactor is the multiplicative decrease, in (0, 1). Default 0.8.
	DecreaseFactor float64
	// IncreaseStep is the additive increase per AdjustInterval, in (0, 1].
	// Default 0.05.
	IncreaseStep float64
	// FailureCodes are the codes that count as a rejection by the target
	// (not an accept). It may contain neither codes.OK nor codes.Canceled.
	// Default [DefaultFailureCodes].
	FailureCodes Codes
	// Rand returns uniform numbers in [0, 1) for the admission draw. It is
	// called concurrently, without a lock, only while the admission
	// probability is below 1. nil uses math/rand/v2's top-level Float64,
	// which is lock-free.
	Rand func() float64
	// OnStateChange, if set, is called when the pattern starts throttling
	// (Closed → Recovering) and when it admits every call again (Recovering
	// → Closed), without a lock held, on the goroutine of the call that
	// caused it. It must not block.
	OnStateChange func(from, to State, now time.Time)
}

// Defaults of AdaptiveRecoveryConfig.
const (
	defaultK                 = 2.0
	defaultAdaptiveWindow    = 60 * time.Second
	defaultLatencyPercentile = 0.99
	defaultLatencyFactor     = 2.0
	defaultLatencyWindow     = 10 * time.Second
	defaultMinLatencySamples = 20
	defaultMinAdmit          = 0.05
	defaultAdjustInterval    = time.Second
	defaultDecreaseFactor    = 0.8
	defaultIncreaseStep      = 0.05
	defaultBaselineWindow    = 5 * time.Minute
	maxLatencyBuckets        = 64
	// adaptiveRefresh is how often the admission probability is recomputed
	// from the window (at most; AdjustInterval if shorter).
	adaptiveRefresh = 100 * time.Millisecond
	// adaptiveMinRequests is how many requests the window must hold before
	// the SRE term applies, so that the first outcomes of a cold client (one
	// failure makes the formula shed half the calls) do not throttle it.
	adaptiveMinRequests = 20
)

// DefaultAdaptiveRecoveryConfig returns the default configuration: K = 2
// over 60s, p99 latency against its baseline (the lowest p99 of the last
// 5 minutes) with a factor of 2 (at least 20 samples within 10s), no ORCA
// rule, an admission probability of at
// least 5 %, and a controller that multiplies the rate by 0.8 or adds 0.05
// once per second.
func DefaultAdaptiveRecoveryConfig() AdaptiveRecoveryConfig {
	return AdaptiveRecoveryConfig{
		K:                 defaultK,
		Window:            defaultAdaptiveWindow,
		LatencyPercentile: defaultLatencyPercentile,
		LatencyFactor:     defaultLatencyFactor,
		LatencyWindow:     defaultLatencyWindow,
		MinLatencySamples: defaultMinLatencySamples,
		BaselineWindow:    defaultBaselineWindow,
		MinAdmit:          defaultMinAdmit,
		AdjustInterval:    defaultAdjustInterval,
		DecreaseFactor:    defaultDecreaseFactor,
		IncreaseStep:      defaultIncreaseStep,
		FailureCodes:      DefaultFailureCodes,
	}
}

// Validate reports every invalid field of c, joined into one error of
// [*ConfigError] values that name the Go field.
func (c AdaptiveRecoveryConfig) Validate() error {
	_, err := c.normalize()
	return err
}

func (c AdaptiveRecoveryConfig) normalize() (AdaptiveRecoveryConfig, error) {
	ce := configErrors{typ: "AdaptiveRecoveryConfig"}
	bad := ce.bad
	orDefault(&c.K, defaultK)
	if !(c.K >= 1 && c.K <= 10) {
		bad("K", "%v is not in [1, 10]", c.K)
	}
	orDefault(&c.Window, defaultAdaptiveWindow)
	if c.Window < countBuckets*time.Millisecond || c.Window > time.Hour {
		bad("Window", "%v is not in [%v, 1h]", c.Window, countBuckets*time.Millisecond)
	}
	orDefault(&c.LatencyPercentile, defaultLatencyPercentile)
	if !(c.LatencyPercentile >= 0.5 && c.LatencyPercentile <= 1) {
		bad("LatencyPercentile", "%v is not in [0.5, 1] (a fraction: 0.99 is p99)", c.LatencyPercentile)
	}
	orDefault(&c.LatencyFactor, defaultLatencyFactor)
	if !(c.LatencyFactor > 1) || math.IsInf(c.LatencyFactor, 1) {
		bad("LatencyFactor", "%v is not a finite number > 1", c.LatencyFactor)
	}
	orDefault(&c.AdjustInterval, defaultAdjustInterval)
	if c.AdjustInterval < time.Millisecond {
		bad("AdjustInterval", "%v is shorter than 1ms", c.AdjustInterval)
	}
	orDefault(&c.LatencyWindow, max(defaultLatencyWindow, c.AdjustInterval))
	if c.AdjustInterval > 0 && (c.LatencyWindow < c.AdjustInterval || c.LatencyWindow > maxLatencyBuckets*c.AdjustInterval) {
		bad("LatencyWindow", "%v is not between AdjustInterval (%v) and %d AdjustIntervals", c.LatencyWindow, c.AdjustInterval, maxLatencyBuckets)
	}
	orDefault(&c.BaselineWindow, max(defaultBaselineWindow, 2*c.AdjustInterval))
	if c.AdjustInterval > 0 && c.BaselineWindow < 2*c.AdjustInterval {
		bad("BaselineWindow", "%v is shorter than 2 AdjustIntervals (%v)", c.BaselineWindow, 2*c.AdjustInterval)
	}
	orDefault(&c.MinLatencySamples, defaultMinLatencySamples)
	if c.MinLatencySamples < 0 {
		bad("MinLatencySamples", "%d is negative", c.MinLatencySamples)
	}
	if !(c.MaxUtilization >= 0) || math.IsInf(c.MaxUtilization, 1) {
		bad("MaxUtilization", "%v is not 0 (disabled) or a finite number > 0", c.MaxUtilization)
	}
	orDefault(&c.MinAdmit, defaultMinAdmit)
	if !(c.MinAdmit > 0 && c.MinAdmit <= 1) {
		bad("MinAdmit", "%v is not in (0, 1]", c.MinAdmit)
	}
	orDefault(&c.DecreaseFactor, defaultDecreaseFactor)
	if !(c.DecreaseFactor > 0 && c.DecreaseFactor < 1) {
		bad("DecreaseFactor", "%v is not in (0, 1)", c.DecreaseFactor)
	}
	orDefault(&c.IncreaseStep, defaultIncreaseStep)
	if !(c.IncreaseStep > 0 && c.IncreaseStep <= 1) {
		bad("IncreaseStep", "%v is not in (0, 1]", c.IncreaseStep)
	}
	ce.failureCodes(&c.FailureCodes)
	return c, ce.err()
}

// AdaptiveRecovery never opens: it admits each call with a probability that
// follows the target's health. It implements [Pattern]. The probability is
//
//	p = max(MinAdmit, throttle × rate)
//
// where
//
//   - throttle is the client-side throttling of the Google SRE book,
//     1 − max(0, (requests − K·accepts)/(requests + 1)) over the sliding
//     Window, once it holds 20 requests: requests are the attempts
//     rejected here plus the admitted attempts whose outcome was reported
//     (so calls still in flight count neither way), accepts those the
//     target answered with a code not in FailureCodes; codes.Canceled, the
//     caller giving up, counts nothing. Requests beyond K× what the target
//     accepts are shed locally, so in steady state the target sees about
//     min(requests, K·accepts) attempts;
//   - rate is an AIMD controller in [MinAdmit, 1] run once per
//     AdjustInterval: when the LatencyPercentile of recent latencies
//     exceeds LatencyFactor × the baseline, or the average ORCA utilization
//     of the last interval exceeds MaxUtilization, the rate is multiplied by
//     DecreaseFactor; otherwise IncreaseStep is added. Right after a
//     decrease, one more overloaded interval holds the rate instead (the
//     signals lag the rate by an interval, as TCP reduces once per round
//     trip), so one overload is not answered twice. The change per
//     interval is thus at most max(IncreaseStep, 1 − DecreaseFactor) of
//     all calls: the rate moves smoothly and cannot swing between 0 and
//     1.
//
// The percentile comes from a fixed-size log-linear histogram (8 bins per
// power of two, ≤ 12.5 % error) of the last AdjustInterval, reaching back
// up to LatencyWindow until MinLatencySamples latencies are found. The
// baseline is the lowest such percentile over the last BaselineWindow, so
// an overload cannot raise it, and a lasting change of the target's normal
// latency is accepted within BaselineWindow.
//
// State is Closed while p is 1 and Recovering while it throttles; it is
// never Open. Decision.Probe is always false. The priority is ignored.
//
// Per call, ShouldAttemptRecovery loads p and, only when p < 1, draws a
// random number (and counts a rejection); HandleSuccess and HandleFailure
// add a request, an accept, a histogram sample and a load report. All of it is atomic
// counters: no lock, no allocation. The probability is recomputed at most
// every 100ms, by whichever call finds it due and wins a TryLock, so no call
// ever waits for another. AdaptiveRecovery needs the time on every call: a
// zero now reads time.Now. It is safe for concurrent use. Create it with
// [NewAdaptiveRecovery].
type AdaptiveRecovery struct {
	cfg        AdaptiveRecoveryConfig // normalized, immutable
	rand       func() float64
	refresh    int64 // ns between recomputations of p
	interval   int64 // AdjustInterval in ns
	retryAfter time.Duration

	counts *countRing
	lat    *latencyRing

	admit      atomic.Uint64 // float64 bits of p
	state      atomic.Int32
	nextUpdate atomic.Int64 // Unix ns when p is due for recomputation

	mu         sync.Mutex // held by the one goroutine that recomputes p
	nextAdjust int64      // Unix ns of the next controller step; 0 before the first
	rate       float64
	decreased  bool // the last controller step was a decrease
	throttle   float64
	requests   int64
	accepts    int64
	pct        time.Duration // last percentile computed, 0 if none
	pctSamples int64
	baseline   time.Duration    // 0 until the first percentile
	baseMin    [2]time.Duration // lowest percentile of the previous and current half
	baseEpoch  int64            // index of the current half of BaselineWindow
	baseHalf   int64            // BaselineWindow/2 in ns
	util       float64          // last interval's average utilization, 0 if none
	scratch    [histBins]uint64
}

var _ Pattern = (*AdaptiveRecovery)(nil)

// NewAdaptiveRecovery returns a pattern configured by c that admits every
// call, or the errors of c.Validate.
func NewAdaptiveRecovery(c AdaptiveRecoveryConfig) (*AdaptiveRecovery, error) {
	c, err := c.normalize()
	if err != nil {
		return nil, err
	}
	a := &AdaptiveRecovery{
		cfg:        c,
		rand:       c.Rand,
		refresh:    int64(min(adaptiveRefresh, c.AdjustInterval)),
		interval:   int64(c.AdjustInterval),
		retryAfter: min(adaptiveRefresh, c.AdjustInterval),
		counts:     newCountRing(c.Window),
		lat:        newLatencyRing(c.AdjustInterval, int((c.LatencyWindow+c.AdjustInterval-1)/c.AdjustInterval)+1),
		rate:       1,
		throttle:   1,
		baseHalf:   int64(c.BaselineWindow / 2),
	}
	if a.rand == nil {
		a.rand = rand.Float64
	}
	a.admit.Store(math.Float64bits(1))
	return a, nil
}

// State returns Closed while every call is admitted and Recovering while
// calls are throttled. It never returns Open.
func (a *AdaptiveRecovery) State() State {
	return State(a.state.Load())
}

// AdmitProbability returns the current admission probability p.
func (a *AdaptiveRecovery) AdmitProbability() float64 {
	return math.Float64frombits(a.admit.Load())
}

// nanos returns now in Unix nanoseconds, reading the clock for a zero now.
func nanos(now time.Time) int64 {
	if now.IsZero() {
		return time.Now().UnixNano()
	}
	return now.UnixNano()
}

// ShouldAttemptRecovery counts a request and admits it with the current
// probability. The priority is ignored.
func (a *AdaptiveRecovery) ShouldAttemptRecovery(now time.Time, _ Priority) Decision {
	ns := nanos(now)
	if ns >= a.nextUpdate.Load() {
		a.update(ns)
	}
	p := math.Float64frombits(a.admit.Load())
	if p >= 1 || a.rand() < p {
		return Decision{Allow: true} // counted as a request when its outcome comes
	}
	if b := a.counts.at(ns); b != nil {
		b.counts.Add(oneRequest)
	}
	return Decision{RetryAfter: a.retryAfter}
}

// HandleSuccess reports an admitted attempt that ended with codes.OK.
func (a *AdaptiveRecovery) HandleSuccess(now time.Time, o Outcome) {
	a.handle(now, o, false)
}

// HandleFailure reports an admitted attempt that ended with a code other
// than codes.OK. Codes outside FailureCodes are accepts; codes.OK (an unset
// code) is a rejection.
func (a *AdaptiveRecovery) HandleFailure(now time.Time, o Outcome) {
	a.handle(now, o, true)
}

func (a *AdaptiveRecovery) handle(now time.Time, o Outcome, reportedFailure bool) {
	ns := nanos(now)
	kind := classify(o.Code, reportedFailure, a.cfg.FailureCodes)
	if kind != neutral {
		if b := a.counts.at(ns); b != nil {
			if kind == success {
				b.counts.Add(oneRequest + oneAccept)
			} else {
				b.counts.Add(oneRequest)
			}
		}
	}
	if (kind != neutral && o.Latency > 0) || o.Load != nil {
		if b := a.lat.at(ns); b != nil {
			if kind != neutral && o.Latency > 0 {
				b.bins[latencyBin(o.Latency)].Add(1)
			}
			if l := o.Load; l != nil {
				u := l.ApplicationUtilization
				if !(u > 0) {
					u = l.CPUUtilization
				}
				b.utilSum.Add(utilMicros(u))
				b.utilN.Add(1)
			}
		}
	}
	if ns >= a.nextUpdate.Load() {
		a.update(ns)
	}
}

// update recomputes p at ns, and runs the controller if an interval ended.
// Only one goroutine does it at a time; the others go on with the current p.
func (a *AdaptiveRecovery) update(ns int64) {
	if !a.mu.TryLock() {
		return
	}
	if ns < a.nextUpdate.Load() {
		a.mu.Unlock()
		return
	}
	if a.nextAdjust == 0 {
		a.nextAdjust = (floorDiv(ns, a.interval) + 1) * a.interval
	} else if ns >= a.nextAdjust {
		a.adjustLocked(ns, (ns-a.nextAdjust)/a.interval+1)
		a.nextAdjust = (floorDiv(ns, a.interval) + 1) * a.interval
	}
	a.requests, a.accepts = a.counts.sums(ns)
	a.throttle = 1
	if a.requests >= adaptiveMinRequests {
		a.throttle -= max(0, (float64(a.requests)-a.cfg.K*float64(a.accepts))/float64(a.requests+1))
	}
	p := min(1, max(a.cfg.MinAdmit, a.throttle*a.rate))
	a.admit.Store(math.Float64bits(p))
	a.nextUpdate.Store(min(ns+a.refresh, a.nextAdjust))
	to := Closed
	if p < 1 {
		to = Recovering
	}
	from := State(a.state.Swap(int32(to)))
	a.mu.Unlock()
	if from != to && a.cfg.OnStateChange != nil {
		a.cfg.OnStateChange(from, to, time.Unix(0, ns))
	}
}

// adjustLocked runs the controller for the interval(s) that ended before ns:
// one multiplicative decrease if the last interval was overloaded, else one
// additive increase per interval elapsed.
func (a *AdaptiveRecovery) adjustLocked(ns int64, intervals int64) {
	last := floorDiv(ns, a.interval) - 1 // the last complete period
	overloaded := false

	// Utilization of the last interval.
	a.util = 0
	if b := a.lat.period(last); b != nil {
		if n := b.utilN.Load(); n > 0 {
			a.util = float64(b.utilSum.Load()) / float64(n) / ppm
			overloaded = a.cfg.MaxUtilization > 0 && a.util > a.cfg.MaxUtilization
		}
	}

	// Latency percentile of the last interval, reaching back until enough
	// samples are found.
	a.scratch = [histBins]uint64{}
	var n int64
	for i := range int64(len(a.lat.buckets) - 1) {
		b := a.lat.period(last - i)
		if b == nil {
			continue
		}
		for j := range b.bins {
			if c := b.bins[j].Load(); c != 0 {
				a.scratch[j] += uint64(c)
				n += int64(c)
			}
		}
		if n >= int64(a.cfg.MinLatencySamples) {
			break
		}
	}
	a.pct, a.pctSamples = 0, n
	if n > 0 && n >= int64(a.cfg.MinLatencySamples) {
		target := uint64(math.Ceil(a.cfg.LatencyPercentile * float64(n)))
		var cum uint64
		for j, c := range a.scratch {
			cum += c
			if cum >= max(target, 1) {
				a.pct = binValue(j)
				break
			}
		}
		// The baseline is the lowest percentile of the current and the
		// previous half of BaselineWindow.
		if e := floorDiv(ns, a.baseHalf); e != a.baseEpoch {
			a.baseMin[0] = 0
			if e == a.baseEpoch+1 {
				a.baseMin[0] = a.baseMin[1]
			}
			a.baseMin[1], a.baseEpoch = 0, e
		}
		a.baseMin[1] = minPositive(a.baseMin[1], a.pct)
		a.baseline = minPositive(a.baseMin[0], a.baseMin[1])
		if float64(a.pct) > a.cfg.LatencyFactor*float64(a.baseline) {
			overloaded = true
		}
	}

	switch {
	case overloaded && a.decreased && intervals == 1:
		// The last decrease has not shown in a whole interval yet: hold.
		a.decreased = false
	case overloaded:
		a.rate = max(a.cfg.MinAdmit, a.rate*a.cfg.DecreaseFactor)
		a.decreased = true
	default:
		a.rate = min(1, a.rate+a.cfg.IncreaseStep*float64(intervals))
		a.decreased = false
	}
}

// AdaptiveRecoverySnapshot is a view of an [AdaptiveRecovery] for
// telemetry, demos and tests.
type AdaptiveRecoverySnapshot struct {
	// State is Closed while every call is admitted, else Recovering.
	State State
	// AdmitProbability is p = max(MinAdmit, Throttle × Rate).
	AdmitProbability float64
	// Throttle is the SRE client-side throttling term.
	Throttle float64
	// Rate is the AIMD controller's rate, driven by latency and load.
	Rate float64
	// Requests and Accepts are the window's counts at the time passed to
	// Snapshot.
	Requests, Accepts int64
	// Latency is the percentile at the last controller step, 0 if there were
	// too few samples.
	Latency time.Duration
	// LatencySamples is how many latencies that percentile was taken over.
	LatencySamples int64
	// Baseline is the latency baseline, 0 before the first percentile.
	Baseline time.Duration
	// Utilization is the average ORCA utilization of the last interval, 0
	// if none was reported.
	Utilization float64
}

// minPositive returns the lesser of a and b, ignoring a zero.
func minPositive(a, b time.Duration) time.Duration {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	}
	return min(a, b)
}

// Snapshot returns the pattern's state at now. It waits for a recomputation
// in progress but does not allocate.
func (a *AdaptiveRecovery) Snapshot(now time.Time) AdaptiveRecoverySnapshot {
	ns := nanos(now)
	a.mu.Lock()
	defer a.mu.Unlock()
	req, acc := a.counts.sums(ns)
	return AdaptiveRecoverySnapshot{
		State:            State(a.state.Load()),
		AdmitProbability: math.Float64frombits(a.admit.Load()),
		Throttle:         a.throttle,
		Rate:             a.rate,
		Requests:         req,
		Accepts:          acc,
		Latency:          a.pct,
		LatencySamples:   a.pctSamples,
		Baseline:         a.baseline,
		Utilization:      a.util,
	}
}
