package main

import (
	"math"
	"sync"
	"time"
)

// slotWidth is the resolution of the time to recover.
const slotWidth = 100 * time.Millisecond

// maxTransitions bounds the pattern transitions kept for the summary (all
// are counted).
const maxTransitions = 1000

// Counts are the calls of a span of time (by the time each call started) and
// the attempts that reached the primary in it (by arrival).
type Counts struct {
	// Calls is every call the load made (or tried to make: see Shed).
	Calls int64 `json:"calls"`
	// Primary were answered by the primary at the first attempt.
	Primary int64 `json:"primary"`
	// Retried were answered by the primary after one or more retries.
	Retried int64 `json:"retried"`
	// Alternate were answered by the replica.
	Alternate int64 `json:"alternate"`
	// Cache were answered from rebound's cache.
	Cache int64 `json:"cache"`
	// Static were answered by the static reply (or a fallback function).
	Static int64 `json:"static"`
	// Failed got an error: nothing answered within the caller's deadline.
	Failed int64 `json:"failed"`
	// Shed were never sent because the load already had its maximum of
	// calls in flight; they are counted in Failed too.
	Shed int64 `json:"shed"`
	// Admitted made at least one attempt on the primary (the rest were
	// short-circuited by the recovery pattern).
	Admitted int64 `json:"admitted"`
	// Attempts is the attempts that reached the primary server.
	Attempts int64 `json:"attempts"`
}

// Answered is the calls that got a reply, from anywhere.
func (c Counts) Answered() int64 { return c.Calls - c.Failed }

// ByPrimary is the calls the primary answered, with or without retries.
func (c Counts) ByPrimary() int64 { return c.Primary + c.Retried }

func (c *Counts) add(o Counts) {
	c.Calls += o.Calls
	c.Primary += o.Primary
	c.Retried += o.Retried
	c.Alternate += o.Alternate
	c.Cache += o.Cache
	c.Static += o.Static
	c.Failed += o.Failed
	c.Shed += o.Shed
	c.Admitted += o.Admitted
	c.Attempts += o.Attempts
}

// outcome is how one call ended: one of the Counts fields set to 1 (and
// Admitted), Calls always 1.
type outcome = Counts

// secStats is one second of the run.
type secStats struct {
	c       Counts
	lat     hist
	pending int // calls started in this second and not finished
}

// phaseStats is one phase of the run.
type phaseStats struct {
	c   Counts
	lat hist
}

// Transition is one state change of the primary's recovery pattern.
type Transition struct {
	// AtS is when it happened, in seconds from the start of the load.
	AtS  float64 `json:"at_s"`
	From string  `json:"from"`
	To   string  `json:"to"`
}

// recorder collects everything the rows and the summary show. It is safe
// for concurrent use: one mutex, taken a few hundred times a second.
type recorder struct {
	sched Schedule

	mu          sync.Mutex
	start       time.Time // the load's t=0; zero until begin
	secs        []secStats
	slots       []Counts // per slotWidth, for the time to recover
	phases      []phaseStats
	total       phaseStats
	state       string // the pattern's current state
	transitions []Transition
	nTrans      int
	lastSec     int // the last second a call started in
	empty       int64
}

func newRecorder(sched Schedule) *recorder {
	total := sched.Total()
	return &recorder{
		sched:  sched,
		secs:   make([]secStats, int((total+time.Second-1)/time.Second)),
		slots:  make([]Counts, int((total+slotWidth-1)/slotWidth)),
		phases: make([]phaseStats, len(sched)),
		state:  "closed",
	}
}

// begin starts the clock: offsets are measured from now.
func (r *recorder) begin() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.start = time.Now()
	return r.start
}

// offsetLocked is the time since the start, and the indexes of its second,
// slot and phase (clamped to the schedule).
func (r *recorder) offsetLocked() (off time.Duration, sec, slot, phase int) {
	off = time.Since(r.start)
	sec = min(int(off/time.Second), len(r.secs)-1)
	slot = min(int(off/slotWidth), len(r.slots)-1)
	return off, sec, slot, r.sched.At(off)
}

// attempt counts an attempt arriving at the primary now and returns the
// phase it arrives in.
func (r *recorder) attempt() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, sec, slot, ph := r.offsetLocked()
	r.secs[sec].c.Attempts++
	r.slots[slot].Attempts++
	r.phases[ph].c.Attempts++
	r.total.c.Attempts++
	return ph
}

// callMark says where a call belongs: the second, slot and phase it started in.
type callMark struct{ sec, slot, phase int }

// begin1 marks a call starting now.
func (r *recorder) begin1() callMark {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, sec, slot, ph := r.offsetLocked()
	r.secs[sec].pending++
	r.lastSec = sec
	return callMark{sec, slot, ph}
}

// done records the end of a call begun with begin1.
func (r *recorder) done(m callMark, o outcome, lat time.Duration, empty bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &r.secs[m.sec]
	s.pending--
	s.c.add(o)
	s.lat.add(lat)
	r.slots[m.slot].add(o)
	r.phases[m.phase].c.add(o)
	r.phases[m.phase].lat.add(lat)
	r.total.c.add(o)
	r.total.lat.add(lat)
	if empty {
		r.empty++
	}
}

// shed records a call the load could not start.
func (r *recorder) shed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, sec, slot, ph := r.offsetLocked()
	o := outcome{Calls: 1, Failed: 1, Shed: 1}
	r.secs[sec].c.add(o)
	r.slots[slot].add(o)
	r.phases[ph].c.add(o)
	r.total.c.add(o)
	r.lastSec = sec
}

// transition records a state change of the primary's pattern.
func (r *recorder) transition(from, to string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state = to
	r.nTrans++
	if len(r.transitions) < maxTransitions {
		at := 0.0
		if !r.start.IsZero() {
			at = time.Since(r.start).Seconds()
		}
		r.transitions = append(r.transitions, Transition{AtS: at, From: from, To: to})
	}
}

// rowReady reports whether second k is final: over, and its calls finished
// (or the caller's deadline passed for all of them).
func (r *recorder) rowReady(k int, grace time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	end := min(time.Duration(k+1)*time.Second, r.sched.Total())
	since := time.Since(r.start)
	return since >= end && (r.secs[k].pending == 0 || since >= end+grace)
}

// statesIn returns the states the pattern was in during [from, to): the
// state at from, then each state it moved to.
func statesIn(initial string, ts []Transition, from, to float64) []string {
	st := initial
	i := 0
	for ; i < len(ts) && ts[i].AtS < from; i++ {
		st = ts[i].To
	}
	out := []string{st}
	for ; i < len(ts) && ts[i].AtS < to; i++ {
		if ts[i].To != out[len(out)-1] {
			out = append(out, ts[i].To)
		}
	}
	return out
}

// hist is a latency histogram with buckets 6 % wide, from 1 µs to about
// 2 minutes: fixed size, quantiles within ±3 %.
type hist [histBuckets]uint32

const (
	histBuckets = 320
	histBase    = 1.06
)

var logHistBase = math.Log(histBase)

func (h *hist) add(d time.Duration) {
	us := max(float64(d)/float64(time.Microsecond), 1)
	i := min(int(math.Log(us)/logHistBase), histBuckets-1)
	h[i]++
}

func (h *hist) merge(o *hist) {
	for i, n := range o {
		h[i] += n
	}
}

// quantile returns the q-quantile (0 < q <= 1), or 0 for an empty histogram.
func (h *hist) quantile(q float64) time.Duration {
	var total uint64
	for _, n := range h {
		total += uint64(n)
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, n := range h {
		seen += uint64(n)
		if seen >= rank {
			return time.Duration(math.Pow(histBase, float64(i)+0.5) * float64(time.Microsecond))
		}
	}
	return 0
}
