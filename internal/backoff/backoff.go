package backoff

import (
	"math"
	"strconv"
	"time"
)

// Kind selects how a delay is randomised.
type Kind int

const (
	// Full is AWS "full jitter": a uniform delay in [0, min(Max, Initial·Multiplier^attempt)).
	// It spreads clients best and is the default of the retry loop.
	Full Kind = iota
	// Decorrelated is AWS "decorrelated jitter": a uniform delay in
	// [Initial, max(3·prev, Initial)), capped at Max. It depends on the previous
	// delay rather than on the attempt number.
	Decorrelated
	// Proportional is the exponential delay ±20 %:
	// min(Max, Initial·Multiplier^attempt) · (0.8 + 0.4·r). It is the only kind
	// that may exceed Max, by at most 20 %, so that clients that all reached the
	// cap still spread out.
	Proportional
)

// String returns "full", "decorrelated" or "proportional", or "Kind(n)" for
// an unknown value.
func (k Kind) String() string {
	switch k {
	case Full:
		return "full"
	case Decorrelated:
		return "decorrelated"
	case Proportional:
		return "proportional"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Config describes a backoff curve. It is a plain value: copy it freely.
// Config has no defaults; the zero Config yields a delay of 0.
type Config struct {
	// Initial is the delay before the first retry (before jitter).
	// Negative values count as 0.
	Initial time.Duration
	// Max caps the delay (Proportional may exceed it by up to 20 %).
	// Negative values count as 0; if Max < Initial, Max wins.
	Max time.Duration
	// Multiplier is the growth factor per retry. Values below 1, NaN and
	// ±Inf count as 1 (+Inf reaches Max on the second retry).
	Multiplier float64
	// Kind selects the jitter. Unknown kinds behave like Full.
	Kind Kind
}

// maxExponent bounds the attempt number used as exponent. Beyond it the delay
// no longer grows (for any Multiplier >= 1.001 it has long reached Max);
// math.Pow saturates to +Inf rather than overflowing, and +Inf is capped.
const maxExponent = 1 << 16

// Delay returns the sleep before retry number attempt, counted from 0 for the
// first retry. prev is the previous delay returned for this call (0 before the
// first retry); only Decorrelated uses it. r is a uniform random number in
// [0, 1); values outside are clamped and NaN counts as 0.
//
//   - Full:         r · min(Max, Initial·Multiplier^attempt)
//   - Decorrelated: min(Max, Initial + r·(max(3·prev, Initial) − Initial))
//   - Proportional: min(Max, Initial·Multiplier^attempt) · (0.8 + 0.4·r),
//     which lies in [0.8·Max, 1.2·Max) once the cap is reached.
//
// The result is never negative and never exceeds Max (Full, Decorrelated) or
// Max + Max/5 (Proportional). Negative attempts count as 0. Delay does not
// allocate.
func (c Config) Delay(attempt int, prev time.Duration, r float64) time.Duration {
	initial := max(c.Initial, 0)
	maxD := max(c.Max, 0)
	initial = min(initial, maxD)
	r = clampUnit(r)

	switch c.Kind {
	case Decorrelated:
		lo := float64(initial)
		hi := max(3*float64(max(prev, 0)), lo)
		return toDuration(lo+r*(hi-lo), maxD)
	case Proportional:
		base := c.exponential(attempt, initial, maxD)
		ceil := maxD + maxD/5
		if ceil < maxD { // overflow
			ceil = math.MaxInt64
		}
		return toDuration(float64(base)*(0.8+0.4*r), ceil)
	default: // Full and unknown kinds
		return toDuration(r*float64(c.exponential(attempt, initial, maxD)), maxD)
	}
}

// exponential returns min(maxD, initial·Multiplier^attempt) without overflow.
func (c Config) exponential(attempt int, initial, maxD time.Duration) time.Duration {
	m := c.Multiplier
	if !(m >= 1) { // NaN or below 1
		m = 1
	}
	attempt = min(max(attempt, 0), maxExponent)
	if attempt == 0 || m == 1 || initial == 0 {
		return initial
	}
	return toDuration(float64(initial)*math.Pow(m, float64(attempt)), maxD)
}

// clampUnit maps r into [0, 1); NaN becomes 0.
func clampUnit(r float64) float64 {
	if !(r > 0) { // NaN, negative, zero
		return 0
	}
	if r >= 1 {
		return math.Nextafter(1, 0)
	}
	return r
}

// toDuration converts f to a Duration in [0, ceil], saturating instead of
// overflowing. NaN becomes 0 and +Inf becomes ceil.
func toDuration(f float64, ceil time.Duration) time.Duration {
	if !(f > 0) {
		return 0
	}
	if f >= float64(ceil) { // float64(ceil) may round up; the min below catches that
		return ceil
	}
	return min(time.Duration(f), ceil)
}
