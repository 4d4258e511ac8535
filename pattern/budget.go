package pattern

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// BudgetConfig configures a [Budget]. A zero Ratio or MaxTokens takes its
// default.
type BudgetConfig struct {
	// Ratio is the number of tokens a successful attempt deposits; a retry
	// or hedge costs 1. In steady state retries stay below Ratio × successes.
	// At least 0.001. Default 1: never more retries than successes.
	Ratio float64
	// MaxTokens caps the bucket, which starts full. It is also how many
	// retries a target that fails every attempt gets before the budget is
	// spent. At least 1. Default 5.
	MaxTokens float64
	// MinPerSecond is a refill per second independent of successes, so that
	// a target that fails everything still gets a trickle of retries.
	// Default 0.
	MinPerSecond float64
}

// Defaults of BudgetConfig.
const (
	defaultBudgetRatio     = 1.0
	defaultBudgetMaxTokens = 5
	maxBudgetTokens        = 1e12 // keeps milli-tokens far from int64 overflow
)

// DefaultBudgetConfig returns the default configuration: 1 token per
// successful attempt (retries never outnumber successes, so a partial failure
// at most doubles the load), 5 tokens at most, no time-based refill.
//
// The numbers come from simulations with 3 attempts per call. When 30 % of
// attempts fail at random, the budget never runs dry: about 97 % of calls
// succeed at 1.39 attempts per call (97.3 % is the ceiling for 3 attempts; a
// ratio of 0.5 leaves the bucket empty too often, 95.5 %). When half the
// attempts time out (a brownout), retries are 0.75 per call against 0.875
// successes, so they still fit. When every attempt fails, the target gets
// only the 5 retries in the bucket until something succeeds again: 600 calls
// make 605 attempts.
func DefaultBudgetConfig() BudgetConfig {
	return BudgetConfig{Ratio: defaultBudgetRatio, MaxTokens: defaultBudgetMaxTokens}
}

// Validate reports every invalid field of c, joined into one error of
// [*ConfigError] values that name the Go field.
func (c BudgetConfig) Validate() error {
	_, err := c.normalize()
	return err
}

func (c BudgetConfig) normalize() (BudgetConfig, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: "BudgetConfig." + field, Reason: fmt.Sprintf(format, args...)})
	}
	if c.Ratio == 0 {
		c.Ratio = defaultBudgetRatio
	}
	if c.MaxTokens == 0 {
		c.MaxTokens = defaultBudgetMaxTokens
	}
	if !(c.MaxTokens >= 1 && c.MaxTokens <= maxBudgetTokens) {
		bad("MaxTokens", "%v is not in [1, %g]", c.MaxTokens, maxBudgetTokens)
	}
	if !(c.Ratio >= 0.001 && c.Ratio <= maxBudgetTokens) {
		bad("Ratio", "%v is not in [0.001, %g]", c.Ratio, maxBudgetTokens)
	}
	if !(c.MinPerSecond >= 0 && c.MinPerSecond <= maxBudgetTokens) {
		bad("MinPerSecond", "%v is not in [0, %g]", c.MinPerSecond, maxBudgetTokens)
	}
	return c, errors.Join(errs...)
}

// Budget is a retry budget shared by all calls to one target: a token
// bucket that successful attempts fill by Ratio and each retry or hedge
// empties by 1. It tells a partial failure from a total one: while most
// attempts succeed, deposits pay for every retry; when every attempt fails,
// only the MaxTokens in the bucket (plus MinPerSecond) are spent, so retries
// add at most MaxTokens attempts to an outage instead of multiplying it.
//
// The first attempt of a call never asks the budget; only retries and hedges
// do.
//
// Budget is lock-free and safe for concurrent use: tokens are an atomic
// count of milli-tokens, changed by compare-and-swap, and never drop below
// zero. OnSuccess does not write when the bucket is full, so a healthy target
// does not contend on it. No method allocates. Create it with [NewBudget].
type Budget struct {
	ratio     int64   // milli-tokens per success
	maxTokens int64   // milli-tokens
	perNano   float64 // MinPerSecond in milli-tokens per nanosecond; 0 if none

	tokens atomic.Int64 // milli-tokens
	refill atomic.Int64 // Unix ns up to which MinPerSecond was credited; 0 before the first call
}

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
		perNano:   c.MinPerSecond * 1000 / 1e9,
	}
	b.tokens.Store(b.maxTokens)
	return b, nil
}

// OnSuccess deposits Ratio tokens for a successful attempt, up to MaxTokens.
// It only reads when the bucket is full. now is not used today; it is there
// so that every method takes the caller's clock.
func (b *Budget) OnSuccess(now time.Time) {
	for {
		cur := b.tokens.Load()
		if cur >= b.maxTokens {
			return
		}
		if b.tokens.CompareAndSwap(cur, min(cur+b.ratio, b.maxTokens)) {
			return
		}
	}
}

// TryWithdraw takes one token for a retry or hedge and reports whether there
// was one.
func (b *Budget) TryWithdraw(now time.Time) bool {
	b.credit(now)
	for {
		cur := b.tokens.Load()
		if cur < 1000 {
			return false
		}
		if b.tokens.CompareAndSwap(cur, cur-1000) {
			return true
		}
	}
}

// Tokens returns the tokens in the bucket at now, including the MinPerSecond
// refill due by then. It does not change the budget.
func (b *Budget) Tokens(now time.Time) float64 {
	t := b.tokens.Load()
	if b.perNano > 0 {
		if last := b.refill.Load(); last != 0 {
			if due, _ := b.due(last, now.UnixNano()); due > 0 {
				t = min(t+due, b.maxTokens)
			}
		}
	}
	return float64(t) / 1000
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
		if b.tokens.Load() >= b.maxTokens {
			used = n - last // full: the interval earns nothing
		}
		if !b.refill.CompareAndSwap(last, last+used) {
			continue
		}
		for {
			cur := b.tokens.Load()
			if cur >= b.maxTokens || b.tokens.CompareAndSwap(cur, min(cur+due, b.maxTokens)) {
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
	if f >= float64(b.maxTokens) {
		return b.maxTokens, elapsed
	}
	milli = int64(f)
	if milli == 0 {
		return 0, 0
	}
	return milli, min(int64(math.Ceil(float64(milli)/b.perNano)), elapsed)
}
