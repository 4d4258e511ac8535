package pattern

import (
	"math"
	"sync/atomic"
	"time"
)

// window counts the calls, failures and slow calls of a sliding window,
// either the last n calls (count mode) or the last duration (time mode, in
// windowBuckets buckets). It is lock-free. Under concurrency its counts are
// approximate by a few calls, which the trip rules tolerate.
//
// A window is never reset in place: the breaker swaps in a new one, so a
// goroutine still writing to the old one cannot corrupt the new counts.
type window struct {
	timed bool

	// Count mode: slot i holds the flags of call number i (mod n); head is
	// the number of calls recorded so far. failures and slow are the sums of
	// the flags over all slots, adjusted after each slot change.
	n        uint64
	head     atomic.Uint64
	failures atomic.Int64
	slow     atomic.Int64
	slots    []atomic.Uint32

	// Time mode.
	width   int64 // nanoseconds per bucket
	buckets []bucket
}

// Flags of a count-mode slot.
const (
	slotCall = 1 << iota
	slotFailure
	slotSlow
)

// windowBuckets is the number of buckets of a time window.
const windowBuckets = 10

// Bucket epochs that no period index reaches.
const (
	epochUnused    = math.MinInt64 + 1 // never written
	epochResetting = math.MinInt64     // being zeroed by one goroutine
)

// bucket counts the calls of one period of a time window. epoch is the
// index of that period (Unix time / width).
type bucket struct {
	epoch    atomic.Int64
	calls    atomic.Int64
	failures atomic.Int64
	slow     atomic.Int64
	_        [32]byte // keep neighbouring buckets off one cache line
}

// newWindow returns an empty window: time mode when d > 0, else count mode
// over n calls.
func newWindow(n int, d time.Duration) *window {
	if d > 0 {
		w := &window{timed: true, width: max(int64(d)/windowBuckets, 1), buckets: make([]bucket, windowBuckets)}
		for i := range w.buckets {
			w.buckets[i].epoch.Store(epochUnused)
		}
		return w
	}
	return &window{n: uint64(n), slots: make([]atomic.Uint32, n)}
}

// success records a successful call that was not slow. It is the hot path:
// in count mode, once the window is full of successes, recording another one
// changes nothing, so it only reads.
func (w *window) success(now time.Time) {
	if !w.timed && w.head.Load() >= w.n && w.failures.Load() == 0 && w.slow.Load() == 0 {
		return
	}
	w.record(now, false, false)
}

// record records one call.
func (w *window) record(now time.Time, failed, slow bool) {
	if w.timed {
		w.recordTimed(now, failed, slow)
		return
	}
	v := uint32(slotCall)
	if failed {
		v |= slotFailure
	}
	if slow {
		v |= slotSlow
	}
	s := &w.slots[(w.head.Add(1)-1)%w.n]
	for {
		old := s.Load()
		if old == v {
			return
		}
		if s.CompareAndSwap(old, v) {
			if d := flagDelta(old, v, slotFailure); d != 0 {
				w.failures.Add(d)
			}
			if d := flagDelta(old, v, slotSlow); d != 0 {
				w.slow.Add(d)
			}
			return
		}
	}
}

// flagDelta returns +1 if flag is set in v but not in old, -1 for the
// reverse, else 0.
func flagDelta(old, v, flag uint32) int64 {
	return int64(v&flag)/int64(flag) - int64(old&flag)/int64(flag)
}

func (w *window) recordTimed(now time.Time, failed, slow bool) {
	idx := now.UnixNano() / w.width
	b := &w.buckets[mod(idx, windowBuckets)]
	for {
		e := b.epoch.Load()
		if e == idx {
			break
		}
		if e > idx || e == epochResetting {
			// A sample older than the bucket, or a concurrent reset:
			// drop it rather than wait.
			return
		}
		if b.epoch.CompareAndSwap(e, epochResetting) {
			b.calls.Store(0)
			b.failures.Store(0)
			b.slow.Store(0)
			b.epoch.Store(idx)
			break
		}
	}
	b.calls.Add(1)
	if failed {
		b.failures.Add(1)
	}
	if slow {
		b.slow.Add(1)
	}
}

// counts returns the calls, failures and slow calls in the window at now.
func (w *window) counts(now time.Time) (calls, failures, slow int64) {
	if !w.timed {
		return int64(min(w.head.Load(), w.n)), max(w.failures.Load(), 0), max(w.slow.Load(), 0)
	}
	cur := now.UnixNano() / w.width
	for i := range w.buckets {
		b := &w.buckets[i]
		if e := b.epoch.Load(); e <= cur && e > cur-windowBuckets {
			calls += b.calls.Load()
			failures += b.failures.Load()
			slow += b.slow.Load()
		}
	}
	return calls, failures, slow
}

// mod returns x mod m in [0, m).
func mod(x, m int64) int64 {
	r := x % m
	if r < 0 {
		r += m
	}
	return r
}
