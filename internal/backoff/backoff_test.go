package backoff

import (
	"math"
	"math/big"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	ms  = time.Millisecond
	sec = time.Second
)

func TestKindString(t *testing.T) {
	t.Parallel()
	for k, want := range map[Kind]string{Full: "full", Decorrelated: "decorrelated", Proportional: "proportional", Kind(7): "Kind(7)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q; want %q", int(k), got, want)
		}
	}
}

func TestDelay(t *testing.T) {
	t.Parallel()
	full := Config{Initial: 100 * ms, Max: 10 * sec, Multiplier: 2, Kind: Full}
	dec := Config{Initial: 100 * ms, Max: 10 * sec, Multiplier: 2, Kind: Decorrelated}
	prop := Config{Initial: 100 * ms, Max: 10 * sec, Multiplier: 2, Kind: Proportional}
	tests := []struct {
		name    string
		c       Config
		attempt int
		prev    time.Duration
		r       float64
		want    time.Duration
	}{
		{"full first r=0", full, 0, 0, 0, 0},
		{"full first r=0.5", full, 0, 0, 0.5, 50 * ms},
		{"full third r=0.5", full, 2, 0, 0.5, 200 * ms},
		{"full capped", full, 10, 0, 0.5, 5 * sec},
		{"full huge attempt", full, math.MaxInt, 0, 0.5, 5 * sec},
		{"full negative attempt", full, -3, 0, 0.5, 50 * ms},
		{"full r>=1 clamps below Max", full, 100, 0, 7, 10*sec - 1},
		{"full NaN r", full, 3, 0, math.NaN(), 0},
		{"decorrelated first", dec, 0, 0, 0.5, 100 * ms},
		{"decorrelated grows from prev", dec, 1, 1 * sec, 0.5, 100*ms + (3*sec-100*ms)/2},
		{"decorrelated r=0 is Initial", dec, 5, 1 * sec, 0, 100 * ms},
		{"decorrelated capped", dec, 5, 9 * sec, 0.9, 10 * sec},
		{"decorrelated huge prev", dec, 5, math.MaxInt64, 0.5, 10 * sec},
		{"decorrelated negative prev", dec, 5, -sec, 0.5, 100 * ms},
		{"proportional low", prop, 1, 0, 0, 160 * ms},
		{"proportional mid", prop, 1, 0, 0.5, 200 * ms},
		{"proportional capped high", prop, 30, 0, math.Nextafter(1, 0), 12 * sec},
		{"proportional capped low", prop, 30, 0, 0, 8 * sec},
		{"zero config", Config{}, 4, 0, 0.5, 0},
		{"multiplier below 1 is 1", Config{Initial: sec, Max: 10 * sec, Multiplier: 0.5}, 4, 0, 0.5, 500 * ms},
		{"multiplier NaN is 1", Config{Initial: sec, Max: 10 * sec, Multiplier: math.NaN()}, 4, 0, 0.5, 500 * ms},
		{"multiplier +Inf caps", Config{Initial: sec, Max: 10 * sec, Multiplier: math.Inf(1)}, 1, 0, 0.5, 5 * sec},
		{"Max below Initial wins", Config{Initial: 10 * sec, Max: sec, Multiplier: 2}, 0, 0, 0.5, 500 * ms},
		{"negative Max is 0", Config{Initial: sec, Max: -sec, Multiplier: 2, Kind: Proportional}, 2, 0, 0.5, 0},
		{"max duration no overflow", Config{Initial: sec, Max: math.MaxInt64, Multiplier: 10, Kind: Proportional}, 1000, 0, 0.999, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.c.Delay(tt.attempt, tt.prev, tt.r)
			// Float rounding may move a result by a few nanoseconds.
			if diff := got - tt.want; diff < -2 || diff > 2 {
				t.Errorf("%+v.Delay(%d, %v, %v) = %v; want %v", tt.c, tt.attempt, tt.prev, tt.r, got, tt.want)
			}
		})
	}
}

// TestDelayBounds sweeps attempts and random values for every kind and checks
// the documented bounds.
func TestDelayBounds(t *testing.T) {
	t.Parallel()
	for _, kind := range []Kind{Full, Decorrelated, Proportional} {
		t.Run(kind.String(), func(t *testing.T) {
			t.Parallel()
			c := Config{Initial: 50 * ms, Max: 2 * sec, Multiplier: 1.6, Kind: kind}
			prev := time.Duration(0)
			for attempt := range 200 {
				for _, r := range []float64{0, 0.1, 0.5, 0.9, math.Nextafter(1, 0)} {
					d := c.Delay(attempt, prev, r)
					lo, hi := bounds(c, attempt, prev)
					if d < lo || d > hi {
						t.Fatalf("Delay(%d, %v, %v) = %v; want in [%v, %v]", attempt, prev, r, d, lo, hi)
					}
				}
				prev = c.Delay(attempt, prev, 0.5)
			}
		})
	}
}

// bounds returns the documented range of Delay for r in [0, 1).
func bounds(c Config, attempt int, prev time.Duration) (lo, hi time.Duration) {
	exp := min(float64(c.Initial)*math.Pow(c.Multiplier, float64(attempt)), float64(c.Max))
	switch c.Kind {
	case Decorrelated:
		return c.Initial, min(max(3*prev, c.Initial), c.Max)
	case Proportional:
		return time.Duration(0.8*exp) - 1, time.Duration(1.2*exp) + 1
	default:
		return 0, time.Duration(exp) + 1
	}
}

func TestDelayDoesNotAllocate(t *testing.T) {
	c := Config{Initial: 50 * ms, Max: 2 * sec, Multiplier: 1.6, Kind: Proportional}
	if n := testing.AllocsPerRun(100, func() { _ = c.Delay(7, sec, 0.3) }); n != 0 {
		t.Errorf("AllocsPerRun(Delay) = %v; want 0", n)
	}
}

func FuzzDelay(f *testing.F) {
	f.Add(int64(100*ms), int64(10*sec), 2.0, uint8(0), 3, int64(0), 0.5)
	f.Add(int64(100*ms), int64(10*sec), 2.0, uint8(1), 3, int64(sec), 0.99)
	f.Add(int64(100*ms), int64(10*sec), 2.0, uint8(2), 3, int64(0), 0.99)
	f.Add(int64(math.MaxInt64), int64(math.MaxInt64), math.Inf(1), uint8(2), math.MaxInt, int64(math.MaxInt64), 0.999999)
	f.Add(int64(-1), int64(-1), math.NaN(), uint8(9), -1, int64(-1), math.NaN())
	f.Add(int64(1), int64(math.MaxInt64), 1e308, uint8(1), 1<<40, int64(math.MaxInt64/2), 2.0)
	f.Fuzz(func(t *testing.T, initial, maxD int64, mult float64, kind uint8, attempt int, prev int64, r float64) {
		c := Config{Initial: time.Duration(initial), Max: time.Duration(maxD), Multiplier: mult, Kind: Kind(kind % 4)}
		d := c.Delay(attempt, time.Duration(prev), r)
		if d < 0 {
			t.Fatalf("%+v.Delay(%d, %d, %v) = %v; want >= 0", c, attempt, prev, r, d)
		}
		// 1.2 × Max, computed without overflow.
		five := new(big.Int).Mul(big.NewInt(int64(d)), big.NewInt(5))
		six := new(big.Int).Mul(big.NewInt(max(maxD, 0)), big.NewInt(6))
		if five.Cmp(six) > 0 {
			t.Fatalf("%+v.Delay(%d, %d, %v) = %v; want <= 1.2 × Max", c, attempt, prev, r, d)
		}
		if c.Kind != Proportional && d > max(c.Max, 0) {
			t.Fatalf("%+v.Delay(%d, %d, %v) = %v; want <= Max", c, attempt, prev, r, d)
		}
	})
}

func BenchmarkDelay(b *testing.B) {
	for _, kind := range []Kind{Full, Decorrelated, Proportional} {
		b.Run(kind.String(), func(b *testing.B) {
			c := Config{Initial: 50 * ms, Max: 2 * sec, Multiplier: 1.6, Kind: kind}
			b.ReportAllocs()
			var d time.Duration
			for i := 0; b.Loop(); i++ {
				d = c.Delay(i&15, d, 0.37)
			}
		})
	}
}
