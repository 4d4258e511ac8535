package pattern

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
)

// ExponentialBackoffConfig configures an [ExponentialBackoff]. Start from
// [DefaultExponentialBackoffConfig] and change what you need.
//
// A zero field takes its default, except the fields documented as disabled
// by 0 (ConsecutiveFailures, FailureRateThreshold, SlowCallDuration,
// WindowDuration and Jitter), where 0 is taken literally. At least one trip
// rule must be enabled.
type ExponentialBackoffConfig struct {
	// ConsecutiveFailures opens the breaker after this many failures in a
	// row. 0 disables the rule. Default 10: with 30 % of attempts failing at
	// random, 10 in a row happen about once in 170,000 attempts, while 5 in
	// a row would trip every few hundred.
	ConsecutiveFailures int
	// FailureRateThreshold opens the breaker when failures/calls in the
	// window reaches it, once the window holds MinimumCalls calls. In
	// [0, 1]; 0 disables the rule. Default 0.5.
	FailureRateThreshold float64
	// SlowCallDuration marks a call whose Latency is at least this long as
	// slow. 0 disables the slow-call rule. Default 0.
	SlowCallDuration time.Duration
	// SlowCallRateThreshold opens the breaker when slow calls/calls in the
	// window reaches it, once the window holds MinimumCalls calls. In
	// (0, 1]. Default 1.
	SlowCallRateThreshold float64
	// WindowCalls is the size of the count-based window: the rate rules look
	// at the last WindowCalls calls. Used when WindowDuration is 0.
	// At most 1<<20. Default 100.
	WindowCalls int
	// WindowDuration, when positive, replaces the count-based window by a
	// time-based one over the last WindowDuration, kept in 10 buckets (so it
	// slides in steps of WindowDuration/10). Default 0 (count-based).
	WindowDuration time.Duration
	// MinimumCalls is how many calls the window must hold before the rate
	// rules apply. With a count-based window it is at most WindowCalls.
	// Default 20.
	MinimumCalls int
	// OpenDelay is how long the breaker stays open after it trips from
	// Closed. Default 1s.
	OpenDelay time.Duration
	// MaxOpenDelay caps the open delay as failed probes grow it; at least
	// OpenDelay. It is also how long a probe slot stays taken by a probe
	// whose outcome is never reported. Default 30s.
	MaxOpenDelay time.Duration
	// Multiplier grows the open delay after each failed probe:
	// delay = min(MaxOpenDelay, delay·Multiplier). At least 1. Default 2.
	Multiplier float64
	// Jitter randomises each open delay by ±Jitter (a fraction in [0, 1)),
	// applied after the cap, so that clients that all reached MaxOpenDelay
	// still probe at different times. 0 disables jitter. Default 0.2.
	Jitter float64
	// MaxProbes is how many probes may be in flight at once while
	// recovering. Default 1.
	MaxProbes int
	// SuccessThreshold is how many successful probes close the breaker.
	// Default 2.
	SuccessThreshold int
	// FailureCodes are the codes that count as failures of the target. It
	// may contain neither codes.OK nor codes.Canceled (caller cancellation is
	// always neutral). Default [DefaultFailureCodes].
	FailureCodes Codes
	// Rand returns uniform numbers in [0, 1) for the jitter; it is called
	// with the breaker's lock held and must not call back into the breaker.
	// nil uses math/rand/v2.
	Rand func() float64
	// OnStateChange, if set, is called after every state transition, without
	// the breaker's lock held (so it may call the breaker), on the goroutine
	// of the call that caused it. It may be called concurrently, and
	// transitions that race may be reported out of order; from and to are
	// always a real transition. It must not block.
	OnStateChange func(from, to State, now time.Time)
}

// Defaults of ExponentialBackoffConfig.
const (
	defaultConsecutiveFailures   = 10
	defaultFailureRateThreshold  = 0.5
	defaultSlowCallRateThreshold = 1.0
	defaultWindowCalls           = 100
	defaultMinimumCalls          = 20
	defaultOpenDelay             = time.Second
	defaultMaxOpenDelay          = 30 * time.Second
	defaultMultiplier            = 2.0
	defaultJitter                = 0.2
	defaultMaxProbes             = 1
	defaultSuccessThreshold      = 2
	maxWindowCalls               = 1 << 20
)

// DefaultExponentialBackoffConfig returns the default configuration: open
// after 10 consecutive failures or a failure rate of 50 % over the last 100
// calls (from 20 calls on), open for 1s growing ×2 per failed probe up to
// 30s, ±20 % jitter, 1 probe at a time, 2 successful probes close.
func DefaultExponentialBackoffConfig() ExponentialBackoffConfig {
	return ExponentialBackoffConfig{
		ConsecutiveFailures:   defaultConsecutiveFailures,
		FailureRateThreshold:  defaultFailureRateThreshold,
		SlowCallRateThreshold: defaultSlowCallRateThreshold,
		WindowCalls:           defaultWindowCalls,
		MinimumCalls:          defaultMinimumCalls,
		OpenDelay:             defaultOpenDelay,
		MaxOpenDelay:          defaultMaxOpenDelay,
		Multiplier:            defaultMultiplier,
		Jitter:                defaultJitter,
		MaxProbes:             defaultMaxProbes,
		SuccessThreshold:      defaultSuccessThreshold,
		FailureCodes:          DefaultFailureCodes,
	}
}

// Validate reports every invalid field of c, joined into one error of
// [*ConfigError] values that name the Go field. Zero fields are valid (they
// take their default).
func (c ExponentialBackoffConfig) Validate() error {
	_, err := c.normalize()
	return err
}

// normalize validates c and returns it with the defaults filled in.
func (c ExponentialBackoffConfig) normalize() (ExponentialBackoffConfig, error) {
	ce := configErrors{typ: "ExponentialBackoffConfig"}
	bad := ce.bad
	fraction := func(field string, v float64, zeroOK bool) {
		if math.IsNaN(v) || v < 0 || v > 1 || v == 0 && !zeroOK {
			bad(field, "%v is not in [0, 1]", v)
		}
	}

	if c.ConsecutiveFailures < 0 {
		bad("ConsecutiveFailures", "%d is negative; want 0 (disabled) or more", c.ConsecutiveFailures)
	}
	fraction("FailureRateThreshold", c.FailureRateThreshold, true)
	if c.SlowCallDuration < 0 {
		bad("SlowCallDuration", "%v is negative; want 0 (disabled) or more", c.SlowCallDuration)
	}
	orDefault(&c.SlowCallRateThreshold, defaultSlowCallRateThreshold)
	fraction("SlowCallRateThreshold", c.SlowCallRateThreshold, false)
	if c.ConsecutiveFailures == 0 && c.FailureRateThreshold == 0 && c.SlowCallDuration == 0 {
		bad("ConsecutiveFailures", "no trip rule is enabled; set ConsecutiveFailures, FailureRateThreshold or SlowCallDuration (or start from DefaultExponentialBackoffConfig)")
	}

	orDefault(&c.WindowCalls, defaultWindowCalls)
	if c.WindowCalls < 0 || c.WindowCalls > maxWindowCalls {
		bad("WindowCalls", "%d is not in [1, %d]", c.WindowCalls, maxWindowCalls)
	}
	if c.WindowDuration < 0 {
		bad("WindowDuration", "%v is negative; want 0 (count-based window) or more", c.WindowDuration)
	} else if c.WindowDuration > 0 && c.WindowDuration < windowBuckets*time.Millisecond {
		bad("WindowDuration", "%v is shorter than %v", c.WindowDuration, windowBuckets*time.Millisecond)
	}
	orDefault(&c.MinimumCalls, defaultMinimumCalls)
	if c.MinimumCalls < 0 {
		bad("MinimumCalls", "%d is negative", c.MinimumCalls)
	} else if c.WindowDuration == 0 && c.MinimumCalls > c.WindowCalls && (c.FailureRateThreshold > 0 || c.SlowCallDuration > 0) {
		bad("MinimumCalls", "%d is more than WindowCalls (%d), so the rate rules could never apply", c.MinimumCalls, c.WindowCalls)
	}

	orDefault(&c.OpenDelay, defaultOpenDelay)
	if c.OpenDelay < 0 {
		bad("OpenDelay", "%v is negative", c.OpenDelay)
	}
	orDefault(&c.MaxOpenDelay, max(defaultMaxOpenDelay, c.OpenDelay))
	if c.MaxOpenDelay < c.OpenDelay {
		bad("MaxOpenDelay", "%v is less than OpenDelay (%v)", c.MaxOpenDelay, c.OpenDelay)
	}
	orDefault(&c.Multiplier, defaultMultiplier)
	if !(c.Multiplier >= 1) || math.IsInf(c.Multiplier, 1) {
		bad("Multiplier", "%v is not a finite number >= 1", c.Multiplier)
	}
	if !(c.Jitter >= 0 && c.Jitter < 1) {
		bad("Jitter", "%v is not in [0, 1)", c.Jitter)
	}
	orDefault(&c.MaxProbes, defaultMaxProbes)
	if c.MaxProbes < 0 {
		bad("MaxProbes", "%d is negative", c.MaxProbes)
	}
	orDefault(&c.SuccessThreshold, defaultSuccessThreshold)
	if c.SuccessThreshold < 0 {
		bad("SuccessThreshold", "%d is negative", c.SuccessThreshold)
	}
	ce.failureCodes(&c.FailureCodes)
	return c, ce.err()
}

// ExponentialBackoff is a circuit breaker whose open delay grows with every
// failed recovery probe. It implements [Pattern]:
//
//   - Closed: every call is admitted. The breaker opens when a trip rule
//     fires: ConsecutiveFailures failures in a row, or a failure rate or
//     slow-call rate over the window at or above its threshold.
//   - Open: calls are rejected with RetryAfter set to the time left. The
//     first call at or after the open deadline moves it to Recovering.
//   - Recovering: up to MaxProbes probes are in flight at once
//     (Decision.Probe is true); other calls are rejected with a short
//     RetryAfter (OpenDelay/10). A failed or slow probe reopens it with the
//     open delay multiplied by Multiplier (capped at MaxOpenDelay, then
//     jittered); SuccessThreshold successful probes close it, which resets
//     the open delay to OpenDelay and empties the window.
//
// Codes in FailureCodes are failures; any other code is a success of the
// target (it answered), and codes.Canceled counts nothing. Outcomes of calls
// admitted in an earlier state are not counted in the current one: a
// non-probe outcome reported while Open or Recovering is ignored, a probe
// outcome reported while Open or Closed only frees its probe slot, and an
// outcome whose attempt started (now − Latency) before the current state
// began is ignored.
//
// Transitions happen lazily inside the calls; there are no timers or
// goroutines. In Closed with no failures, ShouldAttemptRecovery and
// HandleSuccess take no lock and allocate nothing; with a count-based window
// that is full of successes they only read shared memory.
//
// ExponentialBackoff is safe for concurrent use. Create it with
// [NewExponentialBackoff].
type ExponentialBackoff struct {
	cfg               ExponentialBackoffConfig // normalized, immutable
	recoveringBackoff time.Duration

	state       atomic.Int32
	consecutive atomic.Int64
	win         atomic.Pointer[window]
	openUntilNs atomic.Int64 // Unix ns of openUntil, for lock-free rejection while Open

	mu         sync.Mutex
	generation uint64        // number of transitions
	since      time.Time     // when the current state began
	openUntil  time.Time     // end of the current open delay
	delay      time.Duration // open delay before jitter: current or next
	probes     int           // probes in flight, across generations
	probeOK    int           // successful probes in the current Recovering
	lastProbe  time.Time     // last probe admitted or finished
}

var _ Pattern = (*ExponentialBackoff)(nil)

// NewExponentialBackoff returns a closed breaker configured by c, or the
// errors of c.Validate.
func NewExponentialBackoff(c ExponentialBackoffConfig) (*ExponentialBackoff, error) {
	c, err := c.normalize()
	if err != nil {
		return nil, err
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	b := &ExponentialBackoff{
		cfg:               c,
		recoveringBackoff: max(c.OpenDelay/10, time.Millisecond),
		delay:             c.OpenDelay,
	}
	b.win.Store(newWindow(c.WindowCalls, c.WindowDuration))
	return b, nil
}

// State returns the current state without taking a lock. The move from Open
// to Recovering happens on the first ShouldAttemptRecovery after the open
// delay, so State reports Open until then.
func (b *ExponentialBackoff) State() State {
	return State(b.state.Load())
}

// OpenDelay returns the open delay before jitter: while Open or Recovering,
// the one of the current opening; while Closed, the one the next opening
// will use (OpenDelay).
func (b *ExponentialBackoff) OpenDelay() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.delay
}

// ShouldAttemptRecovery decides whether a call may be sent now. The priority
// is ignored: every call is equal to this breaker.
func (b *ExponentialBackoff) ShouldAttemptRecovery(now time.Time, _ Priority) Decision {
	if State(b.state.Load()) == Closed {
		return Decision{Allow: true}
	}
	return b.shouldAttemptSlow(now)
}

func (b *ExponentialBackoff) shouldAttemptSlow(now time.Time) Decision {
	if now.IsZero() {
		now = time.Now()
	}
	if State(b.state.Load()) == Open {
		if left := b.openUntilNs.Load() - now.UnixNano(); left > 0 {
			return Decision{RetryAfter: time.Duration(left)}
		}
	}
	b.mu.Lock()
	var tr transition
	var d Decision
	switch State(b.state.Load()) {
	case Closed:
		d = Decision{Allow: true}
	case Open:
		if now.Before(b.openUntil) {
			d = Decision{RetryAfter: b.openUntil.Sub(now)}
			break
		}
		tr = b.setStateLocked(Recovering, now)
		b.probeOK = 0
		fallthrough
	case Recovering:
		if b.probes >= b.cfg.MaxProbes && now.Sub(b.lastProbe) >= b.cfg.MaxOpenDelay {
			// The outcomes of these probes were never reported: free their slots.
			b.probes = 0
		}
		if b.probes < b.cfg.MaxProbes {
			b.probes++
			b.lastProbe = now
			d = Decision{Allow: true, Probe: true}
		} else {
			d = Decision{RetryAfter: b.recoveringBackoff}
		}
	}
	b.mu.Unlock()
	b.notify(tr)
	return d
}

// HandleSuccess reports an admitted attempt that ended with codes.OK. A code
// in FailureCodes counts as a failure and codes.Canceled as nothing.
func (b *ExponentialBackoff) HandleSuccess(now time.Time, o Outcome) {
	if !o.Probe && o.Code == codes.OK && State(b.state.Load()) == Closed &&
		(b.cfg.SlowCallDuration == 0 || o.Latency < b.cfg.SlowCallDuration) {
		// Hot path: a fast success while Closed.
		if b.consecutive.Load() != 0 {
			b.consecutive.Store(0)
		}
		if now.IsZero() && b.cfg.WindowDuration > 0 {
			now = time.Now()
		}
		b.win.Load().success(now)
		return
	}
	b.handle(now, o, classify(o.Code, false, b.cfg.FailureCodes))
}

// HandleFailure reports an admitted attempt that ended with a code other
// than codes.OK. Codes outside FailureCodes count as successes of the target,
// codes.Canceled counts nothing, and codes.OK (an unset code) is a failure.
func (b *ExponentialBackoff) HandleFailure(now time.Time, o Outcome) {
	b.handle(now, o, classify(o.Code, true, b.cfg.FailureCodes))
}

func (b *ExponentialBackoff) handle(now time.Time, o Outcome, kind outcomeKind) {
	if now.IsZero() {
		now = time.Now()
	}
	slow := kind != neutral && b.cfg.SlowCallDuration > 0 && o.Latency >= b.cfg.SlowCallDuration
	if o.Probe {
		b.handleProbe(now, o, kind, slow)
		return
	}
	if State(b.state.Load()) != Closed || kind == neutral {
		return // a late result from before the breaker opened, or a cancellation
	}
	if kind == success && !slow {
		if b.consecutive.Load() != 0 {
			b.consecutive.Store(0)
		}
		b.win.Load().success(now)
		return
	}
	b.mu.Lock()
	if State(b.state.Load()) != Closed || b.staleLocked(now, o) {
		b.mu.Unlock()
		return
	}
	var consecutive int64
	if kind == failure {
		consecutive = b.consecutive.Add(1)
	} else if b.consecutive.Load() != 0 {
		b.consecutive.Store(0)
	}
	w := b.win.Load()
	w.record(now, kind == failure, slow)
	var tr transition
	if b.shouldTripLocked(now, w, consecutive) {
		tr = b.openLocked(now, b.cfg.OpenDelay)
	}
	b.mu.Unlock()
	b.notify(tr)
}

func (b *ExponentialBackoff) handleProbe(now time.Time, o Outcome, kind outcomeKind, slow bool) {
	b.mu.Lock()
	if b.probes > 0 {
		b.probes--
	}
	b.lastProbe = now
	var tr transition
	if State(b.state.Load()) == Recovering && kind != neutral && !b.staleLocked(now, o) {
		switch {
		case kind == failure || slow:
			next := min(float64(b.delay)*b.cfg.Multiplier, float64(b.cfg.MaxOpenDelay))
			tr = b.openLocked(now, time.Duration(next))
		default:
			b.probeOK++
			if b.probeOK >= b.cfg.SuccessThreshold {
				tr = b.closeLocked(now)
			}
		}
	}
	b.mu.Unlock()
	b.notify(tr)
}

// staleLocked reports whether the attempt of o started before the current
// state began, judged by its Latency.
func (b *ExponentialBackoff) staleLocked(now time.Time, o Outcome) bool {
	return o.Latency > 0 && now.Add(-o.Latency).Before(b.since)
}

func (b *ExponentialBackoff) shouldTripLocked(now time.Time, w *window, consecutive int64) bool {
	c := &b.cfg
	if c.ConsecutiveFailures > 0 && consecutive >= int64(c.ConsecutiveFailures) {
		return true
	}
	if c.FailureRateThreshold == 0 && c.SlowCallDuration == 0 {
		return false
	}
	calls, failures, slow := w.counts(now)
	if calls == 0 || calls < int64(c.MinimumCalls) {
		return false
	}
	return c.FailureRateThreshold > 0 && float64(failures) >= c.FailureRateThreshold*float64(calls) ||
		c.SlowCallDuration > 0 && float64(slow) >= c.SlowCallRateThreshold*float64(calls)
}

// openLocked opens the breaker for delay (before jitter).
func (b *ExponentialBackoff) openLocked(now time.Time, delay time.Duration) transition {
	b.delay = delay
	d := delay
	if j := b.cfg.Jitter; j > 0 {
		r := b.cfg.Rand()
		if !(r >= 0 && r < 1) {
			r = 0.5
		}
		d = time.Duration(min(float64(delay)*(1+j*(2*r-1)), math.MaxInt64/2))
	}
	b.openUntil = now.Add(d)
	b.openUntilNs.Store(b.openUntil.UnixNano())
	b.probeOK = 0
	return b.setStateLocked(Open, now)
}

// closeLocked closes the breaker with a fresh window and the initial delay.
func (b *ExponentialBackoff) closeLocked(now time.Time) transition {
	b.delay = b.cfg.OpenDelay
	b.probeOK = 0
	b.consecutive.Store(0)
	b.win.Store(newWindow(b.cfg.WindowCalls, b.cfg.WindowDuration))
	return b.setStateLocked(Closed, now)
}

func (b *ExponentialBackoff) setStateLocked(to State, now time.Time) transition {
	from := State(b.state.Load())
	b.generation++
	b.since = now
	b.state.Store(int32(to))
	return transition{from: from, to: to, now: now, ok: true}
}

// transition is a state change to report once the lock is released.
type transition struct {
	from, to State
	now      time.Time
	ok       bool
}

func (b *ExponentialBackoff) notify(tr transition) {
	if tr.ok && b.cfg.OnStateChange != nil {
		b.cfg.OnStateChange(tr.from, tr.to, tr.now)
	}
}

// BreakerSnapshot is a consistent view of an [ExponentialBackoff] for
// telemetry and tests.
type BreakerSnapshot struct {
	// State is the current state.
	State State
	// Generation counts the transitions so far.
	Generation uint64
	// Since is when the current state began (zero before the first
	// transition).
	Since time.Time
	// OpenDelay is the open delay before jitter, as [ExponentialBackoff.OpenDelay].
	OpenDelay time.Duration
	// OpenUntil is when the current or last open delay ends.
	OpenUntil time.Time
	// ConsecutiveFailures is the current run of failures.
	ConsecutiveFailures int
	// WindowCalls, WindowFailures and WindowSlowCalls are the counts of the
	// window at the time passed to Snapshot.
	WindowCalls, WindowFailures, WindowSlowCalls int
	// ProbesInFlight is the number of probes admitted whose outcome is not
	// reported yet.
	ProbesInFlight int
	// ProbeSuccesses is the number of successful probes since the breaker
	// last became Recovering.
	ProbeSuccesses int
}

// Snapshot returns the breaker's state and counters at now. It takes the
// lock but does not allocate.
func (b *ExponentialBackoff) Snapshot(now time.Time) BreakerSnapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	calls, failures, slow := b.win.Load().counts(now)
	return BreakerSnapshot{
		State:               State(b.state.Load()),
		Generation:          b.generation,
		Since:               b.since,
		OpenDelay:           b.delay,
		OpenUntil:           b.openUntil,
		ConsecutiveFailures: int(b.consecutive.Load()),
		WindowCalls:         int(calls),
		WindowFailures:      int(failures),
		WindowSlowCalls:     int(slow),
		ProbesInFlight:      b.probes,
		ProbeSuccesses:      b.probeOK,
	}
}
