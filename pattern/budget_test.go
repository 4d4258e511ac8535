package pattern

import (
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newTestBudget(t testing.TB, c BudgetConfig) *Budget {
	t.Helper()
	b, err := NewBudget(c)
	if err != nil {
		t.Fatalf("NewBudget(%+v) = %v; want no error", c, err)
	}
	return b
}

func TestBudgetConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		c     BudgetConfig
		field string // "" = valid
	}{
		{"defaults", DefaultBudgetConfig(), ""},
		{"zero takes defaults", BudgetConfig{}, ""},
		{"fractional cap", BudgetConfig{MaxTokens: 2.5, Ratio: 0.1, MinPerSecond: 0.5}, ""},
		{"cap below 1", BudgetConfig{MaxTokens: 0.5}, "MaxTokens"},
		{"cap NaN", BudgetConfig{MaxTokens: math.NaN()}, "MaxTokens"},
		{"cap huge", BudgetConfig{MaxTokens: 1e300}, "MaxTokens"},
		{"ratio negative", BudgetConfig{Ratio: -1}, "Ratio"},
		{"ratio tiny", BudgetConfig{Ratio: 1e-6}, "Ratio"},
		{"min per second negative", BudgetConfig{MinPerSecond: -1}, "MinPerSecond"},
		{"min per second inf", BudgetConfig{MinPerSecond: math.Inf(1)}, "MinPerSecond"},
		{"allowance negative", BudgetConfig{RetriesWithoutSuccess: -1}, "RetriesWithoutSuccess"},
		{"allowance huge", BudgetConfig{RetriesWithoutSuccess: 10_001}, "RetriesWithoutSuccess"},
		{"cap above the bound", BudgetConfig{MaxTokens: 2e9}, "MaxTokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.c.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("%+v.Validate() = %v; want nil", tt.c, err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != "BudgetConfig."+tt.field {
				t.Fatalf("%+v.Validate() = %v; want a *ConfigError for BudgetConfig.%s", tt.c, err, tt.field)
			}
			if b, err := NewBudget(tt.c); b != nil || err == nil {
				t.Errorf("NewBudget(%+v) = %v, %v; want nil, error", tt.c, b, err)
			}
		})
	}
}

func TestBudget(t *testing.T) {
	t.Parallel()
	b := newTestBudget(t, BudgetConfig{Ratio: 0.5, MaxTokens: 5})
	if got := b.Tokens(t0); got != 5 {
		t.Fatalf("Tokens() of a new budget = %v; want 5", got)
	}
	for i := range 5 {
		if !b.TryWithdraw(t0) {
			t.Fatalf("TryWithdraw() #%d = false; want true", i+1)
		}
	}
	if b.TryWithdraw(t0) {
		t.Fatal("TryWithdraw() on an empty budget = true; want false")
	}
	b.OnSuccess(t0)
	if got := b.Tokens(t0); got != 0.5 {
		t.Fatalf("Tokens() after 1 success = %v; want 0.5", got)
	}
	if b.TryWithdraw(t0) {
		t.Fatal("TryWithdraw() with 0.5 tokens = true; want false")
	}
	b.OnSuccess(t0)
	if !b.TryWithdraw(t0) {
		t.Fatal("TryWithdraw() with 1 token = false; want true")
	}
	for range 100 {
		b.OnSuccess(t0)
	}
	if got := b.Tokens(t0); got != 5 {
		t.Fatalf("Tokens() after 100 successes = %v; want 5 (the cap)", got)
	}
}

// TestBudgetRetriesWithoutSuccess checks the allowance: after a success the
// target gets RetriesWithoutSuccess retries however full the bucket is, the
// next success restores them, and MinPerSecond refills them too.
func TestBudgetRetriesWithoutSuccess(t *testing.T) {
	t.Parallel()
	b := newTestBudget(t, BudgetConfig{MaxTokens: 20, RetriesWithoutSuccess: 3})
	if got := b.Tokens(t0); got != 3 {
		t.Fatalf("Tokens() of a new budget = %v; want 3 (the allowance, below the 20 tokens)", got)
	}
	granted := 0
	for b.TryWithdraw(t0) {
		granted++
	}
	if granted != 3 {
		t.Fatalf("TryWithdraw() on a full bucket with no success granted %d; want 3", granted)
	}
	b.OnSuccess(t0)
	granted = 0
	for b.TryWithdraw(t0) {
		granted++
	}
	if granted != 3 {
		t.Fatalf("TryWithdraw() after one success granted %d; want 3 (the allowance is restored)", granted)
	}
	// The bucket still binds: 20 tokens − 6 spent + 1 deposited = 15 left.
	for range 3 {
		b.OnSuccess(t0)
		if !b.TryWithdraw(t0) {
			t.Fatal("TryWithdraw() right after a success = false; want true")
		}
	}
	for range 15 {
		b.OnSuccess(t0)
		b.TryWithdraw(t0)
		b.TryWithdraw(t0)
	}
	if got := b.Tokens(t0); got != 0 {
		t.Fatalf("Tokens() after spending 2 per deposit of 1 = %v; want 0 (the bucket is empty)", got)
	}
	b.OnSuccess(t0)
	if got := b.Tokens(t0); got != 1 {
		t.Fatalf("Tokens() after one more success = %v; want 1 (the bucket, below the allowance)", got)
	}

	r := newTestBudget(t, BudgetConfig{MaxTokens: 20, RetriesWithoutSuccess: 2, MinPerSecond: 1})
	now := t0
	for r.TryWithdraw(now) {
	}
	now = now.Add(time.Second)
	if !r.TryWithdraw(now) {
		t.Fatal("TryWithdraw(+1s) with MinPerSecond 1 = false; want true: the refill pays the allowance too")
	}
	if r.TryWithdraw(now) {
		t.Fatal("TryWithdraw() twice in the same second = true; want false")
	}
}

func TestBudgetMinPerSecond(t *testing.T) {
	t.Parallel()
	b := newTestBudget(t, BudgetConfig{MaxTokens: 2, MinPerSecond: 0.5})
	now := t0
	for b.TryWithdraw(now) {
	}
	if got := b.Tokens(now); got != 0 {
		t.Fatalf("Tokens() after draining = %v; want 0", got)
	}
	now = now.Add(time.Second)
	if got := b.Tokens(now); got != 0.5 {
		t.Fatalf("Tokens(+1s) = %v; want 0.5", got)
	}
	if b.TryWithdraw(now) {
		t.Fatal("TryWithdraw(+1s) = true; want false")
	}
	now = now.Add(time.Second)
	if !b.TryWithdraw(now) {
		t.Fatal("TryWithdraw(+2s) = false; want true")
	}
	// Many small steps credit as much as one big one.
	for range 1000 {
		now = now.Add(time.Millisecond)
		b.TryWithdraw(now.Add(-time.Hour)) // a clock behind the mark credits nothing
		b.Tokens(now)
	}
	if got := b.Tokens(now); math.Abs(got-0.5) > 0.002 {
		t.Fatalf("Tokens() after 1000 × 1ms = %v; want 0.5", got)
	}
	// The refill is capped, and time spent full earns nothing.
	now = now.Add(time.Hour)
	if got := b.Tokens(now); got != 2 {
		t.Fatalf("Tokens(+1h) = %v; want 2 (the cap)", got)
	}
	b.TryWithdraw(now)
	b.TryWithdraw(now)
	if got := b.Tokens(now); got != 0 {
		t.Fatalf("Tokens() after 2 withdrawals = %v; want 0", got)
	}
}

// simulate runs calls with up to attempts attempts each; every attempt fails
// with probability failRate. A retry needs a token from the budget.
func simulate(b *Budget, rng *rand.Rand, calls, attempts int, failRate float64) (succeeded, made int) {
	now := t0
	for range calls {
		now = now.Add(5 * time.Millisecond) // 200 calls/s
		for a := range attempts {
			if a > 0 && !b.TryWithdraw(now) {
				break
			}
			made++
			if rng.Float64() >= failRate {
				b.OnSuccess(now)
				succeeded++
				break
			}
		}
	}
	return succeeded, made
}

// TestBudgetSimulation checks that the default budget tells a partial
// failure from a total one: it pays for retries when 30 % of attempts fail
// at random and stops them when all fail.
func TestBudgetSimulation(t *testing.T) {
	t.Parallel()
	t.Run("partial failure", func(t *testing.T) {
		t.Parallel()
		const calls = 100_000
		b := newTestBudget(t, DefaultBudgetConfig())
		ok, made := simulate(b, rand.New(rand.NewPCG(2026, 11)), calls, 3, 0.3)
		okRate, perCall := float64(ok)/calls, float64(made)/calls
		t.Logf("30%% failing: %.2f%% of calls succeed at %.3f attempts/call", 100*okRate, perCall)
		if okRate < 0.96 || perCall > 1.45 {
			t.Errorf("simulate(30%% failing) = %.2f%% OK at %.3f attempts/call; want >= 96%% at <= 1.45", 100*okRate, perCall)
		}
	})
	t.Run("total failure", func(t *testing.T) {
		t.Parallel()
		const calls = 600
		b := newTestBudget(t, DefaultBudgetConfig())
		_, made := simulate(b, rand.New(rand.NewPCG(2026, 11)), calls, 3, 1)
		t.Logf("100%% failing: %d attempts for %d calls (%.3f×)", made, calls, float64(made)/calls)
		if made > 606 {
			t.Errorf("simulate(100%% failing) made %d attempts for %d calls; want <= 606", made, calls)
		}
	})
	t.Run("total failure after a healthy period", func(t *testing.T) {
		t.Parallel()
		const calls = 600
		b := newTestBudget(t, DefaultBudgetConfig())
		rng := rand.New(rand.NewPCG(2026, 12))
		simulate(b, rng, 10_000, 3, 0.01) // the bucket is full when the outage starts
		_, made := simulate(b, rng, calls, 3, 1)
		t.Logf("100%% failing after healthy traffic: %d attempts for %d calls (%.3f×)", made, calls, float64(made)/calls)
		if made > 606 {
			t.Errorf("simulate(100%% failing after healthy) made %d attempts for %d calls; want <= 606", made, calls)
		}
	})
}

// TestBudgetConcurrentSafe withdraws from many goroutines; run it with
// -race. The budget is never overdrawn.
func TestBudgetConcurrentSafe(t *testing.T) {
	t.Parallel()
	t.Run("withdraw only", func(t *testing.T) {
		t.Parallel()
		b := newTestBudget(t, BudgetConfig{MaxTokens: 100, RetriesWithoutSuccess: 1000})
		var got atomic.Int64
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for range 1000 {
					if b.TryWithdraw(t0) {
						got.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if got.Load() != 100 || b.Tokens(t0) != 0 {
			t.Errorf("16×1000 TryWithdraw() on 100 tokens: %d granted, %v left; want 100, 0", got.Load(), b.Tokens(t0))
		}
	})
	t.Run("mixed", func(t *testing.T) {
		t.Parallel()
		b := newTestBudget(t, BudgetConfig{MaxTokens: 10, Ratio: 0.25, MinPerSecond: 1000})
		var granted, deposits atomic.Int64
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), 1))
				for i := range 2000 {
					now := t0.Add(time.Duration(i) * time.Microsecond) // 2ms in all: ≤ 2 refill tokens
					if rng.IntN(2) == 0 {
						b.OnSuccess(now)
						deposits.Add(1)
					} else if b.TryWithdraw(now) {
						granted.Add(1)
					}
					if tok := b.Tokens(now); tok < 0 || tok > 10 {
						t.Errorf("Tokens() = %v; want in [0, 10]", tok)
					}
				}
			})
		}
		wg.Wait()
		limit := 10 + 0.25*float64(deposits.Load()) + 2.001
		if float64(granted.Load()) > limit {
			t.Errorf("granted %d withdrawals; want <= %v (start + deposits + refill)", granted.Load(), limit)
		}
	})
}

func TestBudgetZeroAllocs(t *testing.T) {
	b := newTestBudget(t, BudgetConfig{MinPerSecond: 1})
	now := t0
	n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Millisecond)
		b.OnSuccess(now)
		b.TryWithdraw(now)
		b.Tokens(now)
	})
	if n != 0 {
		t.Errorf("AllocsPerRun(OnSuccess+TryWithdraw+Tokens) = %v; want 0", n)
	}
}
