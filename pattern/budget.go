package pattern

import (
	"math"
	"sync/atomic"
	"time"
)

// BudgetConfig configures a [Budget]. A zero field takes its default.
type BudgetConfig struct {
	// Ratio is the number of tokens a successful attempt deposits; a retry
	// or hedge costs 1. In steady state retries stay below Ratio × successes.
	// At least 0.001. Default 1: never more retries than successes.
	Ratio float64
	// MaxTokens caps the bucket, which starts full: the credit a target
	// that fails part of its attempts can draw on while deposits lag behind
	// retries. At least 1. Default 20.
	MaxTokens float64
	// RetriesWithoutSuccess is how many retries a target gets after its
	// last successful attempt, however full the bucket is. A target that
	// answers nothing is in an outage, where retries only multiply its
	// load; the next success restores the allowance. It is what keeps an
	// outage that follows a healthy period (and a full bucket) to a handful
	// of extra attempts. At least 1, at most 10000. Default 5.
	RetriesWithoutSuccess int
	// MinPerSecond is a refill per second independent of successes, so that
	// a target that fails everything still gets a trickle of retries. It
	// refills the bucket and the allowance alike. Default 0.
	MinPerSecond float64
}

// Defaults and bounds of BudgetConfig.
const (
	defaultBudgetRatio     = 1.0
	defaultBudgetMaxTokens = 20
	defaultBudgetAllowance = 5
	maxBudgetAllowance     = 10_000
	maxBudgetTokens        = 1e9 // milli-tokens fit the 40 low bits of the state
)

// DefaultBudgetConfig returns the default configuration: 1 token per
// successful attempt (retries never outnumber successes, so a partial failure
// at most doubles the load), 20 tokens at most, 5 retries after the last
// success, no time-based refill.
//
// The numbers come from simulations and the bench scenarios with 3 attempts
// per call at 200 calls/s. When 30 % of attempts fail at random, the budget
// never runs dry: about 97 % of calls succeed at 1.39 attempts per call
// (97.3 % is the ceiling for 3 attempts; a ratio of 0.5 leaves the bucket
// empty too often, 95.5 %). When half the attempts time out (a brownout),
// retries are 0.75 per call against 0.875 successes, so they fit; the 20
// token cap absorbs the bursts in which timeouts outrun deposits (with 5
// tokens about 2 points of calls were lost to an empty bucket). When every
// attempt fails, the target gets the 5 retries allowed after its last
// success and then none until something succeeds again: 600 calls make 605
// attempts, full bucket or not.
func DefaultBudgetConfig() BudgetConfig {
	return BudgetConfig{Ratio: defaultBudgetRatio, MaxTokens: defaultBudgetMaxTokens, RetriesWithoutSuccess: defaultBudgetAllowance}
}

// Validate reports every invalid field of c, joined into one error of
// [*ConfigError] values that name the Go field.
func (c BudgetConfig) Validate() error {
	_, err := c.normalize()
	return err
}

func (c BudgetConfig) normalize() (BudgetConfig, error) {
	ce := configErrors{typ: "BudgetConfig"}
	bad := ce.bad
	orDefault(&c.Ratio, defaultBudgetRatio)
	orDefault(&c.MaxTokens, defaultBudgetMaxTokens)
	orDefault(&c.RetriesWithoutSuccess, defaultBudgetAllowance)
	if !(c.MaxTokens >= 1 && c.MaxTokens <= maxBudgetTokens) {
		bad("MaxTokens", "%v is not in [1, %g]", c.MaxTokens, maxBudgetTokens)
	}
	if !(c.Ratio >= 0.001 && c.Ratio <= maxBudgetTokens) {
		bad("Ratio", "%v is not in [0.001, %g]", c.Ratio, maxBudgetTokens)
	}
	if c.RetriesWithoutSuccess < 1 || c.RetriesWithoutSuccess > maxBudgetAllowance {
		bad("RetriesWithoutSuccess", "%d is not in [1, %d]", c.RetriesWithoutSuccess, maxBudgetAllowance)
	}
	if !(c.MinPerSecond >= 0 && c.MinPerSecond <= maxBudgetTokens) {
		bad("MinPerSecond", "%v is not in [0, %g]", c.MinPerSecond, maxBudgetTokens)
	}
	return c, ce.err()
}

// Budget is a retry budget shared by all calls to one target: a token
// bucket that successful attempts fill by Ratio and each retry or hedge
// empties by 1, and an allowance of RetriesWithoutSuccess retries that each
// retry spends and each success restores. It tells a partial failure from a
// total one: while attempts keep succeeding, deposits pay for the retries
// and the allowance is restored before it runs out; when every attempt
// fails, only the allowance is spent (plus MinPerSecond), so retries add a
// handful of attempts to an outage instead of multiplying it, however long
// the target was healthy before.
//
// The first attempt of a call never asks the budget; only retries and hedges
// do.
//
// Budget is lock-free and safe for concurrent use: the bucket and the
// allowance, in milli-tokens, share one atomic word changed by
// compare-and-swap, so a retry takes from both or from neither, and neither
// drops below zero. OnSuccess does not write when both are full, so a
// healthy target does not contend on it. No method allocates. Create it with
// [NewBudget].
type Budget struct {
	ratio     int64   // milli-tokens per success
	maxTokens int64   // milli-tokens
	maxAllow  int64   // milli-retries
	perNano   float64 // MinPerSecond in milli-tokens per nanosecond; 0 if none

	state  atomic.Uint64 // allowance<<tokenBits | tokens, both in milli
	refill atomic.Int64  // Unix ns up to which MinPerSecond was credited; 0 before the first call
}

const (
	tokenBits = 40
	tokenMask = 1<<tokenBits - 1
)

func pack(tokens, allow int64) uint64 { return uint64(allow)<<tokenBits | uint64(tokens) }

func unpack(s uint64) (tokens, allow int64) { return int64(s & tokenMask), int64(s >> tokenBits) }

// NewBudget returns a full budget configured by c, or the errors of
// c.Validate.
func NewBudget(c BudgetConfig) (*Budget, error) {
	c, err := c.normalize()
	if err != nil {
		return nil, err
	}
	b := &Budget{
		ratio:     int64(math.Round(c.Ratio * 1000)),
		maxTokens: int64(math.Round(c.MaxTokens * 1000)),
		maxAllow:  int64(c.RetriesWithoutSuccess) * 1000,
		perNano:   c.MinPerSecond * 1000 / 1e9,
	}
	b.state.Store(pack(b.maxTokens, b.maxAllow))
	return b, nil
}

// OnSuccess deposits Ratio tokens for a successful attempt, up to MaxTokens,
// and restores the allowance. It only reads when both are full. now is not
// used today; it is there so that every method takes the caller's clock.
func (b *Budget) OnSuccess(now time.Time) {
	for {
		s := b.state.Load()
		tok, allow := unpack(s)
		if tok >= b.maxTokens && allow >= b.maxAllow {
			return
		}
		if b.state.CompareAndSwap(s, pack(min(tok+b.ratio, b.maxTokens), b.maxAllow)) {
			return
		}
	}
}

// TryWithdraw takes one token and one retry of the allowance for a retry or
// hedge, and reports whether both were there.
func (b *Budget) TryWithdraw(now time.Time) bool {
	b.credit(now)
	for {
		s := b.state.Load()
		tok, allow := unpack(s)
		if tok < 1000 || allow < 1000 {
			return false
		}
		if b.state.CompareAndSwap(s, pack(tok-1000, allow-1000)) {
			return true
		}
	}
}

// Tokens returns how many retries the budget would grant at now, including
// the MinPerSecond refill due by then: the tokens in the bucket, or the
// allowance left since the last success if that is smaller. It does not
// change the budget.
func (b *Budget) Tokens(now time.Time) float64 {
	tok, allow := unpack(b.state.Load())
	if b.perNano > 0 {
		if last := b.refill.Load(); last != 0 {
			if due, _ := b.due(last, now.UnixNano()); due > 0 {
				tok = min(tok+due, b.maxTokens)
				allow = min(allow+due, b.maxAllow)
			}
		}
	}
	return float64(min(tok, allow)) / 1000
}

// credit adds the MinPerSecond refill due at now. The goroutine whose
// compare-and-swap moves the refill mark claims the interval, so each
// nanosecond is credited once.
func (b *Budget) credit(now time.Time) {
	if b.perNano == 0 {
		return
	}
	n := now.UnixNano()
	for {
		last := b.refill.Load()
		if last == 0 {
			if b.refill.CompareAndSwap(0, n) {
				return
			}
			continue
		}
		due, used := b.due(last, n)
		if due == 0 {
			return // less than a milli-token due, or a clock behind the mark
		}
		if tok, allow := unpack(b.state.Load()); tok >= b.maxTokens && allow >= b.maxAllow {
			used = n - last // full: the interval earns nothing
		}
		if !b.refill.CompareAndSwap(last, last+used) {
			continue
		}
		for {
			s := b.state.Load()
			tok, allow := unpack(s)
			if tok >= b.maxTokens && allow >= b.maxAllow {
				return
			}
			if b.state.CompareAndSwap(s, pack(min(tok+due, b.maxTokens), min(allow+due, b.maxAllow))) {
				return
			}
		}
	}
}

// due returns the whole milli-tokens earned between the refill mark last
// and n, and the nanoseconds they account for.
func (b *Budget) due(last, n int64) (milli, nanos int64) {
	elapsed := n - last
	if elapsed <= 0 {
		return 0, 0
	}
	f := float64(elapsed) * b.perNano
	if full := max(b.maxTokens, b.maxAllow); f >= float64(full) {
		return full, elapsed
	}
	milli = int64(f)
	if milli == 0 {
		return 0, 0
	}
	return milli, min(int64(math.Ceil(float64(milli)/b.perNano)), elapsed)
}
