package pattern

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// PartialRecoveryConfig configures a [PartialRecovery]. Start from
// [DefaultPartialRecoveryConfig] and change what you need. A zero field takes
// its default, except those documented otherwise.
type PartialRecoveryConfig struct {
	// Breaker decides when the pattern opens and for how long: its trip
	// rules (ConsecutiveFailures, FailureRateThreshold, SlowCallDuration and
	// their window), OpenDelay, MaxOpenDelay, Multiplier, Jitter, Rand and
	// FailureCodes are used as [ExponentialBackoff] uses them. A ramp call
	// at least SlowCallDuration long counts as a failed one, and
	// ConsecutiveFailures failed ramp calls in a row fail their step.
	// MaxProbes, SuccessThreshold and OnStateChange are not used: the ramp
	// replaces probing, and the pattern reports its own transitions to
	// PartialRecoveryConfig.OnStateChange. MaxOpenDelay is also how long an
	// in-flight slot stays taken by a call whose outcome is never reported.
	// Default [DefaultExponentialBackoffConfig]; at least one trip rule must
	// be enabled.
	Breaker ExponentialBackoffConfig
	// Ramp is the share of calls admitted at each step of the recovery, in
	// (0, 1], strictly increasing and ending at 1, at most 100 steps. nil or
	// empty takes the default 0.05, 0.25, 0.5, 1. Ignored when
	// SlowStartWindow is set.
	Ramp []float64
	// StepWindow is how long each step lasts: a step whose outcomes stayed
	// healthy for StepWindow moves to the next one, and the last step (share
	// 1) closes the pattern. With a slow-start curve it is the period over
	// which failures are counted. Default 2s.
	StepWindow time.Duration
	// StepFailureRate fails a step when failures/outcomes of the step reach
	// it, once the step holds StepMinimumCalls outcomes; a step that ends
	// with a rate at or above it is repeated rather than passed. In (0, 1].
	// Default 0.2.
	StepFailureRate float64
	// StepMinimumCalls is how many outcomes a step needs before
	// StepFailureRate can fail it. Default 10.
	StepMinimumCalls int
	// ReopenOnFailure reopens the pattern, with the open delay grown by
	// Breaker.Multiplier, whenever a step fails. When false (the default), a
	// failed step goes back one step (a slow-start curve halves its share),
	// and only a failure at the first step (or at SlowStartMinShare) reopens.
	ReopenOnFailure bool
	// SlowStartWindow, when positive, replaces Ramp by a slow-start curve as
	// Envoy's: the share t after the recovery began is
	// max(SlowStartMinShare, (t/SlowStartWindow)^(1/SlowStartAggression)),
	// reaching 1 at SlowStartWindow. Default 0 (use Ramp).
	SlowStartWindow time.Duration
	// SlowStartAggression shapes the curve: 1 is linear, above 1 rises
	// faster early. Finite and > 0. Default 1.
	SlowStartAggression float64
	// SlowStartMinShare is the curve's lowest share, in (0, 1]. Default 0.05.
	SlowStartMinShare float64
	// MaxInFlight caps the calls admitted while recovering whose outcome is
	// not reported yet (a cancelled call frees its slot too). 0: no cap.
	// Default 0.
	MaxInFlight int
	// OnStateChange, if set, is called after every state transition, without
	// the pattern's lock held, on the goroutine of the call that caused it.
	// Transitions that race may be reported out of order. It must not block.
	OnStateChange func(from, to State, now time.Time)
}

// Defaults of PartialRecoveryConfig.
const (
	defaultStepWindow          = 2 * time.Second
	defaultStepFailureRate     = 0.2
	defaultStepMinimumCalls    = 10
	defaultSlowStartAggression = 1.0
	defaultSlowStartMinShare   = 0.05
	maxRampSteps               = 100
)

// defaultRamp is the default PartialRecoveryConfig.Ramp.
var defaultRamp = [...]float64{0.05, 0.25, 0.5, 1}

// DefaultPartialRecoveryConfig returns the default configuration: the
// breaker of [DefaultExponentialBackoffConfig] decides when to open and for
// how long, then the ramp admits 5 %, 25 %, 50 % and 100 % of calls for 2s
// each and closes; a step fails at a failure rate of 20 % over at least 10
// outcomes (or 5 failures in a row) and goes back one step.
func DefaultPartialRecoveryConfig() PartialRecoveryConfig {
	return PartialRecoveryConfig{
		Breaker:          DefaultExponentialBackoffConfig(),
		Ramp:             defaultRamp[:],
		StepWindow:       defaultStepWindow,
		StepFailureRate:  defaultStepFailureRate,
		StepMinimumCalls: defaultStepMinimumCalls,
	}
}

// Validate reports every invalid field of c, joined into one error of
// [*ConfigError] values that name the Go field (Breaker's as
// "PartialRecoveryConfig.Breaker.X").
func (c PartialRecoveryConfig) Validate() error {
	_, err := c.normalize()
	return err
}

// normalize validates c and returns it with the defaults filled in and its
// own copy of Ramp.
func (c PartialRecoveryConfig) normalize() (PartialRecoveryConfig, error) {
	ce := configErrors{typ: "PartialRecoveryConfig"}
	bad := ce.bad
	bc, err := c.Breaker.normalize()
	for _, e := range joined(err) {
		var ce *ConfigError
		if errors.As(e, &ce) {
			bad("Breaker."+strings.TrimPrefix(ce.Field, "ExponentialBackoffConfig."), "%s", ce.Reason)
		}
	}
	c.Breaker = bc

	if len(c.Ramp) == 0 {
		c.Ramp = defaultRamp[:]
	}
	if len(c.Ramp) > maxRampSteps {
		bad("Ramp", "has %d steps; want at most %d", len(c.Ramp), maxRampSteps)
	}
	for i, s := range c.Ramp {
		if !(s > 0 && s <= 1) {
			bad("Ramp", "step %d is %v; want a share in (0, 1]", i, s)
			break
		}
		if i > 0 && !(s > c.Ramp[i-1]) {
			bad("Ramp", "step %d (%v) is not above step %d (%v); want strictly increasing shares", i, s, i-1, c.Ramp[i-1])
			break
		}
	}
	if last := c.Ramp[len(c.Ramp)-1]; last != 1 {
		bad("Ramp", "ends at %v; want the last step to be 1 (every call)", last)
	}
	c.Ramp = append([]float64(nil), c.Ramp...)

	orDefault(&c.StepWindow, defaultStepWindow)
	if c.StepWindow < time.Millisecond {
		bad("StepWindow", "%v is shorter than 1ms", c.StepWindow)
	}
	orDefault(&c.StepFailureRate, defaultStepFailureRate)
	if !(c.StepFailureRate > 0 && c.StepFailureRate <= 1) {
		bad("StepFailureRate", "%v is not in (0, 1]", c.StepFailureRate)
	}
	orDefault(&c.StepMinimumCalls, defaultStepMinimumCalls)
	if c.StepMinimumCalls < 0 {
		bad("StepMinimumCalls", "%d is negative", c.StepMinimumCalls)
	}
	if c.SlowStartWindow < 0 {
		bad("SlowStartWindow", "%v is negative; want 0 (use Ramp) or more", c.SlowStartWindow)
	} else if c.SlowStartWindow > 0 && c.SlowStartWindow < time.Millisecond {
		bad("SlowStartWindow", "%v is shorter than 1ms", c.SlowStartWindow)
	}
	orDefault(&c.SlowStartAggression, defaultSlowStartAggression)
	if !(c.SlowStartAggression > 0) || math.IsInf(c.SlowStartAggression, 1) {
		bad("SlowStartAggression", "%v is not a finite number > 0", c.SlowStartAggression)
	}
	if c.SlowStartMinShare == 0 {
		c.SlowStartMinShare = defaultSlowStartMinShare
	}
	if !(c.SlowStartMinShare > 0 && c.SlowStartMinShare <= 1) {
		bad("SlowStartMinShare", "%v is not in (0, 1]", c.SlowStartMinShare)
	}
	if c.MaxInFlight < 0 {
		bad("MaxInFlight", "%d is negative; want 0 (no cap) or more", c.MaxInFlight)
	}
	return c, ce.err()
}

// joined returns the errors joined in err (nil for nil).
func joined(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Priority bands of PartialRecovery, highest first.
const (
	bandCritical = iota
	bandDefault
	bandSheddable
	numBands
)

// band maps a priority to its band: above Default is critical, below is
// sheddable.
func band(p Priority) int {
	switch {
	case p > Default:
		return bandCritical
	case p < Default:
		return bandSheddable
	}
	return bandDefault
}

// ppm is one million: shares and admission credits are kept in millionths,
// so that admission is exact integer arithmetic.
const ppm = 1_000_000

// Hard cap of a step: the calls it admits never exceed the sum of its
// shares plus stepSlackShare of its calls plus stepSlackCalls calls.
const (
	stepSlackShare = 0.05
	stepSlackCalls = 2
)

// PartialRecovery is a circuit breaker that recovers gradually. It
// implements [Pattern]:
//
//   - Closed: every call is admitted; the trip rules of an inner
//     [ExponentialBackoff] built from Breaker decide when it opens. This is
//     the breaker's own lock-free hot path plus one atomic load.
//   - Open: calls are rejected with RetryAfter set to the time left. The
//     first call after the open delay starts the ramp.
//   - Recovering: the ramp. Step i admits the share Ramp[i] of the calls
//     (or the slow-start curve's share). Every admitted call is marked
//     Decision.Probe, which lets the pattern count it in flight until its
//     outcome comes back, capped by MaxInFlight. A step whose StepWindow
//     passes with healthy outcomes moves up; the last step (share 1) then
//     closes the pattern. A step that fails (StepFailureRate over at least
//     StepMinimumCalls outcomes, or Breaker.ConsecutiveFailures failures
//     in a row) goes back one step, or reopens with the open delay grown
//     by Breaker.Multiplier (capped at Breaker.MaxOpenDelay, jittered) when
//     it was the first step or ReopenOnFailure is set. Closing resets the
//     open delay.
//
// # Admission
//
// Admission is deterministic: each priority band (critical, default,
// sheddable) has a credit that every one of its calls raises by the band's
// share, and a call is admitted when its band's credit reaches 1, which then
// drops by 1. A band with share s thus admits exactly ⌊n·s⌋ of n calls,
// evenly spread, with no burst: credit is capped at 1, so unused share is
// never banked. The step's share s is split between the bands by water
// filling over the demand seen in the current and the previous step window
// (fc, fd, fs: the fractions of calls of each band):
//
//	critical  = min(1, s/fc)
//	default   = min(1, (s − critical·fc)/fd)
//	sheddable = min(1, (s − critical·fc − default·fd)/fs)
//
// so the admitted share of all calls is s, and the guarantee is: **a band
// gets a share only when every higher band gets all of its calls**. At any
// decision where a sheddable call can be admitted, every critical and
// default call is admitted; so while the mix of priorities is steady over a
// step window, every critical call of that window is admitted before any
// sheddable one. A step also has a hard cap: it never admits more than the
// sum of its shares plus 5 % of its calls plus 2 calls, which only binds
// when the mix shifts abruptly within the window (then calls are rejected
// whatever their priority). Per step window the admitted share therefore
// stays below the step's share + 10 % with 50 calls or more.
//
// # Health
//
// [PartialRecovery.SetHealth] feeds the target's grpc.health.v1 status:
// NOT_SERVING opens the pattern at once and holds it open, whatever the open
// delay; SERVING after NOT_SERVING starts the ramp at once.
//
// Outcomes: codes in Breaker.FailureCodes are failures, codes.Canceled
// counts nothing (but frees its in-flight slot), any other code is a
// success. A non-probe outcome reported while Open or Recovering is a late
// result from Closed and is ignored; a probe outcome reported while Open or
// Closed only frees its slot; an outcome whose attempt started (now −
// Latency) before the current step began is not counted in it.
//
// Transitions are lazy, inside the calls; there are no timers or
// goroutines. Open rejects without a lock; Recovering takes a mutex per
// call. PartialRecovery is safe for concurrent use and allocates nothing per
// call, except when it closes (a fresh inner breaker). Create it with
// [NewPartialRecovery].
type PartialRecovery struct {
	cfg               PartialRecoveryConfig // normalized, immutable
	innerCfg          ExponentialBackoffConfig
	slowStart         bool
	recoveringBackoff time.Duration

	state         atomic.Int32
	inner         atomic.Pointer[ExponentialBackoff] // trip rules while Closed
	openUntilNs   atomic.Int64                       // Unix ns; MaxInt64 while health says NOT_SERVING
	closedSinceNs atomic.Int64                       // Unix ns of the last close
	openDemand    [numBands]atomic.Int64             // calls per band rejected while Open

	mu          sync.Mutex
	generation  uint64
	since       time.Time     // when the current state began
	openUntil   time.Time     // end of the current open delay
	delay       time.Duration // open delay before jitter: current or next
	healthDown  bool          // the last health report was NOT_SERVING
	rampStart   time.Time     // origin of the slow-start curve
	step        int           // index into Ramp
	stepSince   time.Time     // when the current step (or period) began
	stepCalls   int           // outcomes counted in the step
	stepFails   int           // failed outcomes counted in the step
	consecutive int           // failed outcomes in a row in the step
	stepBudget  int64         // sum of the shares of the step's calls, ppm
	stepSeen    int64         // calls asked in the step
	stepAdmit   int64         // calls admitted in the step
	credit      [numBands]int64
	demand      [numBands]int64 // calls per band in the step
	prevDemand  [numBands]int64 // calls per band in the previous step
	inFlight    int
	lastFlight  time.Time // last in-flight change
}

var _ Pattern = (*PartialRecovery)(nil)

// NewPartialRecovery returns a closed pattern configured by c, or the errors
// of c.Validate.
func NewPartialRecovery(c PartialRecoveryConfig) (*PartialRecovery, error) {
	c, err := c.normalize()
	if err != nil {
		return nil, err
	}
	if c.Breaker.Rand == nil {
		c.Breaker.Rand = rand.Float64
	}
	ic := c.Breaker
	ic.Jitter, ic.Rand, ic.OnStateChange = 0, nil, nil // the inner breaker only trips
	pr := &PartialRecovery{
		cfg:               c,
		innerCfg:          ic,
		slowStart:         c.SlowStartWindow > 0,
		recoveringBackoff: max(c.StepWindow/10, time.Millisecond),
		delay:             c.Breaker.OpenDelay,
	}
	in, err := NewExponentialBackoff(ic)
	if err != nil {
		return nil, err
	}
	pr.inner.Store(in)
	return pr, nil
}

// State returns the current state without taking a lock. Transitions are
// lazy: the move from Open to Recovering, and between steps, happens on the
// next ShouldAttemptRecovery.
func (pr *PartialRecovery) State() State {
	return State(pr.state.Load())
}

// ShouldAttemptRecovery decides whether a call of priority p may be sent now.
// While Closed it takes no lock and reads no clock.
func (pr *PartialRecovery) ShouldAttemptRecovery(now time.Time, p Priority) Decision {
	if State(pr.state.Load()) == Closed {
		return Decision{Allow: true}
	}
	return pr.shouldAttemptSlow(now, p)
}

func (pr *PartialRecovery) shouldAttemptSlow(now time.Time, p Priority) Decision {
	if now.IsZero() {
		now = time.Now()
	}
	b := band(p)
	if State(pr.state.Load()) == Open {
		if left := pr.openUntilNs.Load() - now.UnixNano(); left > 0 {
			pr.openDemand[b].Add(1)
			return Decision{RetryAfter: min(time.Duration(left), pr.cfg.Breaker.MaxOpenDelay)}
		}
	}
	pr.mu.Lock()
	var tr transition
	var d Decision
	switch State(pr.state.Load()) {
	case Closed:
		d = Decision{Allow: true}
	case Open:
		if pr.healthDown || now.Before(pr.openUntil) {
			pr.openDemand[b].Add(1)
			left := pr.cfg.Breaker.MaxOpenDelay
			if !pr.healthDown {
				left = pr.openUntil.Sub(now)
			}
			d = Decision{RetryAfter: left}
			break
		}
		tr = pr.startRampLocked(now)
		fallthrough
	case Recovering:
		if t := pr.advanceLocked(now); t.ok {
			tr = t // advance cannot move a ramp that started in this call
		}
		if State(pr.state.Load()) == Closed {
			d = Decision{Allow: true}
			break
		}
		d = pr.admitLocked(now, b)
	}
	pr.mu.Unlock()
	pr.notify(tr)
	return d
}

// admitLocked decides on a call of band b while Recovering.
func (pr *PartialRecovery) admitLocked(now time.Time, b int) Decision {
	share := pr.shareLocked(now)
	sharePPM := int64(math.Round(share * ppm))
	pr.demand[b]++
	pr.stepSeen++
	pr.stepBudget += sharePPM

	// Water filling: the band's share of this step, given the demand mix.
	var n [numBands]int64
	var total int64
	for i := range n {
		n[i] = pr.demand[i] + pr.prevDemand[i]
		total += n[i]
	}
	left := share * float64(total) // calls' worth of share to hand out
	var bandShare float64
	for i := 0; i <= b; i++ {
		bandShare = 0
		if n[i] > 0 {
			bandShare = min(1, max(0, left)/float64(n[i]))
		}
		left -= bandShare * float64(n[i])
	}
	if share >= 1 {
		bandShare = 1
	}
	c := &pr.credit[b]
	*c += int64(math.Round(bandShare * ppm))
	if *c < ppm {
		return Decision{RetryAfter: pr.recoveringBackoff}
	}
	reject := false
	// The step's hard cap, against shifts of the mix within the window.
	if (pr.stepAdmit+1)*ppm > pr.stepBudget+int64(stepSlackShare*ppm)*pr.stepSeen+stepSlackCalls*ppm {
		reject = true
	} else if pr.cfg.MaxInFlight > 0 && pr.inFlight >= pr.cfg.MaxInFlight {
		if now.Sub(pr.lastFlight) < pr.cfg.Breaker.MaxOpenDelay {
			reject = true
		} else {
			pr.inFlight = 0 // their outcomes were never reported: free the slots
		}
	}
	if reject {
		*c = ppm // keep one call's credit, never bank more
		return Decision{RetryAfter: pr.recoveringBackoff}
	}
	*c -= ppm
	pr.stepAdmit++
	pr.inFlight++
	pr.lastFlight = now
	return Decision{Allow: true, Probe: true}
}

// shareLocked returns the share of calls to admit at now while Recovering.
func (pr *PartialRecovery) shareLocked(now time.Time) float64 {
	if !pr.slowStart {
		return pr.cfg.Ramp[pr.step]
	}
	t := now.Sub(pr.rampStart)
	if t >= pr.cfg.SlowStartWindow {
		return 1
	}
	s := math.Pow(max(float64(t), 0)/float64(pr.cfg.SlowStartWindow), 1/pr.cfg.SlowStartAggression)
	return max(pr.cfg.SlowStartMinShare, s)
}

// advanceLocked ends the current step if its window has passed: a healthy
// step moves up (or closes the pattern after the last one), an unhealthy one
// that did not fail outright is repeated.
func (pr *PartialRecovery) advanceLocked(now time.Time) transition {
	if now.Sub(pr.stepSince) < pr.cfg.StepWindow {
		return transition{}
	}
	healthy := pr.stepCalls == 0 || float64(pr.stepFails) < pr.cfg.StepFailureRate*float64(pr.stepCalls)
	switch {
	case !healthy:
	case pr.slowStart:
		if pr.stepSince.Sub(pr.rampStart) >= pr.cfg.SlowStartWindow {
			return pr.closeLocked(now) // a whole healthy period at share 1
		}
	case pr.step == len(pr.cfg.Ramp)-1:
		return pr.closeLocked(now)
	default:
		pr.step++
	}
	pr.newStepLocked(now)
	return transition{}
}

// newStepLocked starts a step (or slow-start period) at now.
func (pr *PartialRecovery) newStepLocked(now time.Time) {
	pr.stepSince = now
	pr.stepCalls, pr.stepFails, pr.consecutive = 0, 0, 0
	pr.stepBudget, pr.stepSeen, pr.stepAdmit = 0, 0, 0
	pr.prevDemand = pr.demand
	pr.demand = [numBands]int64{}
}

// startRampLocked moves from Open to Recovering at the first step.
func (pr *PartialRecovery) startRampLocked(now time.Time) transition {
	pr.rampStart = now
	pr.step = 0
	pr.credit = [numBands]int64{}
	pr.newStepLocked(now)
	for i := range pr.openDemand {
		// The demand seen while open is the first step's mix estimate.
		pr.prevDemand[i] = pr.openDemand[i].Swap(0)
	}
	return pr.setStateLocked(Recovering, now)
}

// failStepLocked reacts to a failed step: back one step, or reopen.
func (pr *PartialRecovery) failStepLocked(now time.Time) transition {
	switch {
	case pr.cfg.ReopenOnFailure:
	case pr.slowStart:
		if s := pr.shareLocked(now); s > pr.cfg.SlowStartMinShare {
			// Halve the share: move the curve's origin to where it was s/2.
			t := float64(pr.cfg.SlowStartWindow) * math.Pow(s/2, pr.cfg.SlowStartAggression)
			pr.rampStart = now.Add(-time.Duration(t))
			pr.newStepLocked(now)
			return transition{}
		}
	case pr.step > 0:
		pr.step--
		pr.newStepLocked(now)
		return transition{}
	}
	next := min(float64(pr.delay)*pr.cfg.Breaker.Multiplier, float64(pr.cfg.Breaker.MaxOpenDelay))
	return pr.openLocked(now, time.Duration(next))
}

// HandleSuccess reports an admitted attempt that ended with codes.OK. A
// success while Closed is the inner breaker's lock-free hot path.
func (pr *PartialRecovery) HandleSuccess(now time.Time, o Outcome) {
	if !o.Probe && State(pr.state.Load()) == Closed {
		in := pr.inner.Load()
		in.HandleSuccess(now, o)
		if in.State() != Closed {
			pr.tripped(now, in) // a slow call, or an OK reported late
		}
		return
	}
	pr.handle(now, o, false)
}

// HandleFailure reports an admitted attempt that ended with a code other
// than codes.OK. Codes outside Breaker.FailureCodes count as successes,
// codes.Canceled counts nothing, and codes.OK (an unset code) is a failure.
func (pr *PartialRecovery) HandleFailure(now time.Time, o Outcome) {
	pr.handle(now, o, true)
}

func (pr *PartialRecovery) handle(now time.Time, o Outcome, reportedFailure bool) {
	if now.IsZero() {
		now = time.Now()
	}
	kind := classify(o.Code, reportedFailure, pr.cfg.Breaker.FailureCodes)
	if !o.Probe {
		if State(pr.state.Load()) != Closed || kind == neutral {
			return // a late result from before the pattern opened, or a cancellation
		}
		if o.Latency > 0 && now.Add(-o.Latency).UnixNano() < pr.closedSinceNs.Load() {
			return // started before the pattern last closed
		}
		in := pr.inner.Load()
		if reportedFailure {
			in.HandleFailure(now, o)
		} else {
			in.HandleSuccess(now, o)
		}
		if in.State() != Closed {
			pr.tripped(now, in)
		}
		return
	}
	pr.mu.Lock()
	if pr.inFlight > 0 {
		pr.inFlight--
	}
	pr.lastFlight = now
	var tr transition
	if State(pr.state.Load()) == Recovering && kind != neutral &&
		!(o.Latency > 0 && now.Add(-o.Latency).Before(pr.stepSince)) {
		slow := pr.cfg.Breaker.SlowCallDuration > 0 && o.Latency >= pr.cfg.Breaker.SlowCallDuration
		pr.stepCalls++
		if kind == failure || slow {
			pr.stepFails++
			pr.consecutive++
			cf := pr.cfg.Breaker.ConsecutiveFailures
			if cf > 0 && pr.consecutive >= cf ||
				pr.stepCalls >= pr.cfg.StepMinimumCalls && float64(pr.stepFails) >= pr.cfg.StepFailureRate*float64(pr.stepCalls) {
				tr = pr.failStepLocked(now)
			}
		} else {
			pr.consecutive = 0
		}
	}
	pr.mu.Unlock()
	pr.notify(tr)
}

// tripped opens the pattern after the inner breaker in tripped.
func (pr *PartialRecovery) tripped(now time.Time, in *ExponentialBackoff) {
	if now.IsZero() {
		now = time.Now()
	}
	pr.mu.Lock()
	var tr transition
	if State(pr.state.Load()) == Closed && pr.inner.Load() == in {
		tr = pr.openLocked(now, pr.cfg.Breaker.OpenDelay)
	}
	pr.mu.Unlock()
	pr.notify(tr)
}

// SetHealth reports the target's health status (grpc.health.v1) at now.
// serving false (NOT_SERVING, or SERVICE_UNKNOWN) opens the pattern at once,
// without a failed call, and holds it open until a report with serving true;
// serving true after false starts the ramp at once, skipping what is left of
// the open delay. serving true otherwise changes nothing, so repeating a
// status is harmless. A watcher whose stream ends, or that learns the server
// has no health service (UNIMPLEMENTED), should report serving true: no
// signal must not hold the pattern open.
func (pr *PartialRecovery) SetHealth(now time.Time, serving bool) {
	if now.IsZero() {
		now = time.Now()
	}
	pr.mu.Lock()
	var tr transition
	switch {
	case !serving:
		pr.healthDown = true
		if State(pr.state.Load()) != Open {
			tr = pr.openLocked(now, pr.delay)
		} else {
			pr.openUntilNs.Store(math.MaxInt64)
		}
	case pr.healthDown:
		pr.healthDown = false
		pr.openUntilNs.Store(pr.openUntil.UnixNano())
		if State(pr.state.Load()) == Open {
			tr = pr.startRampLocked(now)
		}
	}
	pr.mu.Unlock()
	pr.notify(tr)
}

// openLocked opens the pattern for delay (before jitter).
func (pr *PartialRecovery) openLocked(now time.Time, delay time.Duration) transition {
	pr.delay = delay
	pr.openUntil = now.Add(jittered(delay, pr.cfg.Breaker.Jitter, pr.cfg.Breaker.Rand))
	if pr.healthDown {
		pr.openUntilNs.Store(math.MaxInt64)
	} else {
		pr.openUntilNs.Store(pr.openUntil.UnixNano())
	}
	for i := range pr.openDemand {
		pr.openDemand[i].Store(0)
	}
	return pr.setStateLocked(Open, now)
}

// closeLocked closes the pattern with a fresh inner breaker and the initial
// open delay.
func (pr *PartialRecovery) closeLocked(now time.Time) transition {
	pr.delay = pr.cfg.Breaker.OpenDelay
	if in, err := NewExponentialBackoff(pr.innerCfg); err == nil { // validated at New
		pr.inner.Store(in)
	}
	pr.closedSinceNs.Store(now.UnixNano())
	return pr.setStateLocked(Closed, now)
}

func (pr *PartialRecovery) setStateLocked(to State, now time.Time) transition {
	from := State(pr.state.Load())
	pr.generation++
	pr.since = now
	pr.state.Store(int32(to))
	return transition{from: from, to: to, now: now, ok: true}
}

func (pr *PartialRecovery) notify(tr transition) {
	if tr.ok && pr.cfg.OnStateChange != nil {
		pr.cfg.OnStateChange(tr.from, tr.to, tr.now)
	}
}

// PartialRecoverySnapshot is a consistent view of a [PartialRecovery] for
// telemetry, demos and tests.
type PartialRecoverySnapshot struct {
	// State is the current state.
	State State
	// Generation counts the transitions so far.
	Generation uint64
	// Since is when the current state began (zero before the first
	// transition).
	Since time.Time
	// Share is the share of calls admitted at the time passed to Snapshot:
	// 1 when Closed, 0 when Open, the step's (or curve's) share when
	// Recovering.
	Share float64
	// Step is the index of the current ramp step while Recovering, and -1
	// when Closed, Open or following a slow-start curve.
	Step int
	// StepSince is when the current step (or slow-start period) began.
	StepSince time.Time
	// StepCalls and StepFailures count the outcomes of the current step.
	StepCalls, StepFailures int
	// StepAdmitted and StepAsked count the calls the current step admitted
	// and was asked about.
	StepAdmitted, StepAsked int
	// InFlight is the number of calls admitted while recovering whose
	// outcome is not reported yet.
	InFlight int
	// OpenDelay is the open delay before jitter: the current one while Open
	// or Recovering, the next one while Closed.
	OpenDelay time.Duration
	// OpenUntil is when the current or last open delay ends.
	OpenUntil time.Time
	// Serving is false while the last health report was NOT_SERVING.
	Serving bool
}

// Snapshot returns the pattern's state and counters at now. It takes the
// lock but does not allocate, and makes no transition (a ramp whose open
// delay has passed shows Open until a call asks).
func (pr *PartialRecovery) Snapshot(now time.Time) PartialRecoverySnapshot {
	if now.IsZero() {
		now = time.Now()
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	s := PartialRecoverySnapshot{
		State:        State(pr.state.Load()),
		Generation:   pr.generation,
		Since:        pr.since,
		Step:         -1,
		InFlight:     pr.inFlight,
		OpenDelay:    pr.delay,
		OpenUntil:    pr.openUntil,
		Serving:      !pr.healthDown,
		StepSince:    pr.stepSince,
		StepCalls:    pr.stepCalls,
		StepFailures: pr.stepFails,
		StepAdmitted: int(pr.stepAdmit),
		StepAsked:    int(pr.stepSeen),
	}
	switch s.State {
	case Closed:
		s.Share = 1
	case Recovering:
		s.Share = pr.shareLocked(now)
		if !pr.slowStart {
			s.Step = pr.step
		}
	}
	return s
}

// jittered returns d randomised by ±j using r (uniform in [0, 1)).
func jittered(d time.Duration, j float64, r func() float64) time.Duration {
	if j <= 0 {
		return d
	}
	x := r()
	if !(x >= 0 && x < 1) {
		x = 0.5
	}
	return time.Duration(min(float64(d)*(1+j*(2*x-1)), math.MaxInt64/2))
}
