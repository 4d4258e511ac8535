package pattern

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The ring buffers of AdaptiveRecovery. Like window, each bucket holds the
// index of its period (Unix ns / width) in epoch; the first writer of a new
// period claims the bucket and zeroes it (epochResetting meanwhile, when
// concurrent writers drop their sample rather than wait). Nothing here locks
// or allocates after construction.

// countBuckets is the number of buckets of AdaptiveRecovery's request window.
const countBuckets = 20

// countBucket counts the requests and accepts of one period in one word,
// requests<<32 | accepts, so that an outcome costs one atomic add. A period
// would need 2^32 requests to overflow.
type countBucket struct {
	epoch  atomic.Int64
	counts atomic.Uint64
	_      [48]byte // keep neighbouring buckets off one cache line
}

// Increments of countBucket.counts.
const (
	oneRequest = 1 << 32
	oneAccept  = 1
)

// countRing counts requests and accepts over a sliding window of
// countBuckets periods of width nanoseconds.
type countRing struct {
	width   int64
	buckets [countBuckets]countBucket
}

func newCountRing(window time.Duration) *countRing {
	r := &countRing{width: max(int64(window)/countBuckets, 1)}
	for i := range r.buckets {
		r.buckets[i].epoch.Store(epochUnused)
	}
	return r
}

// at returns the bucket of the period of ns, claiming it if needed, or nil
// when the sample is older than the bucket or the bucket is being reset.
func (r *countRing) at(ns int64) *countBucket {
	idx := floorDiv(ns, r.width)
	b := &r.buckets[mod(idx, countBuckets)]
	for {
		e := b.epoch.Load()
		if e == idx {
			return b
		}
		if e > idx || e == epochResetting {
			return nil
		}
		if b.epoch.CompareAndSwap(e, epochResetting) {
			b.counts.Store(0)
			b.epoch.Store(idx)
			return b
		}
	}
}

// sums returns the requests and accepts in the window that ends at ns.
func (r *countRing) sums(ns int64) (requests, accepts int64) {
	cur := floorDiv(ns, r.width)
	for i := range r.buckets {
		b := &r.buckets[i]
		if e := b.epoch.Load(); e <= cur && e > cur-countBuckets {
			c := b.counts.Load()
			requests += int64(c >> 32)
			accepts += int64(c & (1<<32 - 1))
		}
	}
	return requests, accepts
}

// Log-linear latency histogram: bin 0 holds everything under 2^histMinExp
// ns (about 1µs); then each power of two up to 2^histMaxExp ns (about 69s)
// is split into 2^histSubBits bins, so a bin's width is at most 1/8 of its
// lower bound; longer latencies go to the last bin.
const (
	histMinExp  = 10
	histMaxExp  = 36
	histSubBits = 3
	histBins    = 1 + (histMaxExp-histMinExp)<<histSubBits
)

// latencyBin returns the histogram bin of d.
func latencyBin(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < 1<<histMinExp {
		return 0
	}
	e := bits.Len64(v) - 1 // v in [2^e, 2^(e+1))
	if e >= histMaxExp {
		return histBins - 1
	}
	sub := int(v>>(e-histSubBits)) & (1<<histSubBits - 1)
	return 1 + (e-histMinExp)<<histSubBits + sub
}

// binValue returns the middle of bin i.
func binValue(i int) time.Duration {
	if i <= 0 {
		return 1 << histMinExp / 2
	}
	i--
	e := histMinExp + i>>histSubBits
	sub := int64(i & (1<<histSubBits - 1))
	width := int64(1) << (e - histSubBits)
	return time.Duration(int64(1)<<e + sub*width + width/2)
}

// latencyBucket holds the latencies and load reports of one period.
type latencyBucket struct {
	epoch   atomic.Int64
	utilSum atomic.Int64 // utilization in millionths
	utilN   atomic.Int64
	bins    [histBins]atomic.Uint32
}

// latencyRing keeps latency histograms and load reports over n periods of
// width nanoseconds.
type latencyRing struct {
	width   int64
	buckets []latencyBucket
}

func newLatencyRing(width time.Duration, n int) *latencyRing {
	r := &latencyRing{width: max(int64(width), 1), buckets: make([]latencyBucket, n)}
	for i := range r.buckets {
		r.buckets[i].epoch.Store(epochUnused)
	}
	return r
}

// at returns the bucket of the period of ns, as countRing.at.
func (r *latencyRing) at(ns int64) *latencyBucket {
	idx := floorDiv(ns, r.width)
	b := &r.buckets[mod(idx, int64(len(r.buckets)))]
	for {
		e := b.epoch.Load()
		if e == idx {
			return b
		}
		if e > idx || e == epochResetting {
			return nil
		}
		if b.epoch.CompareAndSwap(e, epochResetting) {
			b.utilSum.Store(0)
			b.utilN.Store(0)
			for i := range b.bins {
				b.bins[i].Store(0)
			}
			b.epoch.Store(idx)
			return b
		}
	}
}

// period returns the bucket holding period idx, or nil if it holds another.
func (r *latencyRing) period(idx int64) *latencyBucket {
	b := &r.buckets[mod(idx, int64(len(r.buckets)))]
	if b.epoch.Load() != idx {
		return nil
	}
	return b
}

// utilMicros converts a utilization to millionths, bounded to [0, 1000].
func utilMicros(u float64) int64 {
	if !(u > 0) {
		return 0
	}
	return int64(math.Round(min(u, 1000) * ppm))
}

// floorDiv returns ⌊x/y⌋ for y > 0.
func floorDiv(x, y int64) int64 {
	q := x / y
	if x%y < 0 {
		q--
	}
	return q
}
