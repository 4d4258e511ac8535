package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Summary is what one run showed. It is also the -json output; ratios are
// fractions (0.995, not 99.5) and times are seconds from the start of the load
// unless a field's name says otherwise.
type Summary struct {
	// Pattern is the recovery pattern of the run (-pattern).
	Pattern string `json:"pattern"`
	// Schedule is the primary's schedule, as run (scaled).
	Schedule string `json:"schedule"`
	// DurationS is the length of the load.
	DurationS float64 `json:"duration_s"`
	// Rate is the calls per second asked for.
	Rate float64 `json:"rate"`
	// Totals counts every call of the run.
	Totals Counts `json:"totals"`
	// Availability is the share of calls that got a reply, from anywhere.
	Availability float64 `json:"availability"`
	// Amplification is the attempts that reached the primary per call: 1 is
	// one attempt per call; a plain 3-attempt retry reaches 3 on a dead primary.
	Amplification float64 `json:"amplification"`
	// Down sums the hard-down phases; nil when the schedule has none.
	Down *PhaseSummary `json:"down"`
	// Recovery is how fast the primary took the calls back after the heal.
	Recovery Recovery `json:"recovery"`
	// LatencyMs is the latency the caller saw, in milliseconds.
	LatencyMs Latency `json:"latency_ms"`
	// Phases is each phase of the schedule.
	Phases []PhaseSummary `json:"phases"`
	// Seconds is the row of each second.
	Seconds []Row `json:"seconds"`
	// Transitions is the primary pattern's state changes (the first 1000).
	Transitions []Transition `json:"transitions"`
	// TransitionCount is the number of state changes.
	TransitionCount int `json:"transition_count"`
	// Interrupted is set when the run was cut short (Ctrl-C): the figures
	// cover the calls made until then.
	Interrupted bool `json:"interrupted"`
	// EmptyReplies counts calls that returned no error but no item either:
	// a fallback that did not fill the reply. Always 0 unless rebound has a bug.
	EmptyReplies int64 `json:"empty_replies"`
}

// PhaseSummary is one phase (or all the phases of a kind).
type PhaseSummary struct {
	// Phase is the phase's kind and parameter ("down", "flaky=50%").
	Phase  string  `json:"phase"`
	StartS float64 `json:"start_s"`
	EndS   float64 `json:"end_s"`
	Counts
	// Availability is the share of the phase's calls that got a reply.
	Availability float64 `json:"availability"`
	// PrimaryShare is the share answered by the primary (retried or not).
	PrimaryShare float64 `json:"primary_share"`
	// Amplification is the attempts reaching the primary per call.
	Amplification float64 `json:"amplification"`
	// LatencyMs is the latency of the phase's calls, in milliseconds.
	LatencyMs Latency `json:"latency_ms"`
}

// Recovery measures the return to the primary after the outage.
type Recovery struct {
	// HealAtS is when the primary healed: the start of the first healed
	// phase (else of the last healthy phase after a failing one); nil when
	// the schedule never heals.
	HealAtS *float64 `json:"heal_at_s"`
	// Recovered reports whether some 1 s window after the heal had at least
	// 95 % of its calls answered by the primary.
	Recovered bool `json:"recovered"`
	// TimeToRecoverS is the time from the heal to the start of the first such
	// window (windows start every 100 ms); nil when not recovered.
	TimeToRecoverS *float64 `json:"time_to_recover_s"`
	// OutageEndS is the end of the last hard failure (a down or slow phase),
	// after which the primary answers again, if not always (flaky); nil when
	// the schedule has none.
	OutageEndS *float64 `json:"outage_end_s"`
	// BackOnPrimaryS is the time from OutageEndS to the start of the first
	// 1 s window with at least 95 % answered by the primary: what the
	// recovery pattern costs after the primary is back. nil: not within the run.
	BackOnPrimaryS *float64 `json:"back_on_primary_s"`
}

// recoveredShare is the share of calls the primary must answer, over one
// second, for the client to count as recovered.
const recoveredShare = 0.95

// Latency are two quantiles of a latency distribution, in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// Row is one second of the run.
type Row struct {
	// Second is the row's start: it covers [Second, Second+1).
	Second int `json:"second"`
	// Phase is the phase, or the phases joined by ">" when it changed.
	Phase string `json:"phase"`
	Counts
	// States are the states of the primary's pattern in the second, in order.
	States []string `json:"states"`
	// LatencyMs is the latency of the second's calls, in milliseconds.
	LatencyMs Latency `json:"latency_ms"`
}

func latencyOf(h *hist) Latency {
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)) / 1000 }
	return Latency{P50: ms(h.quantile(0.50)), P99: ms(h.quantile(0.99))}
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func seconds(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }

func phaseSummary(name string, start, end time.Duration, ps *phaseStats) PhaseSummary {
	c := ps.c
	return PhaseSummary{
		Phase: name, StartS: seconds(start), EndS: seconds(end), Counts: c,
		Availability:  ratio(c.Answered(), c.Calls),
		PrimaryShare:  ratio(c.ByPrimary(), c.Calls),
		Amplification: ratio(c.Attempts, c.Calls),
		LatencyMs:     latencyOf(&ps.lat),
	}
}

// rowLocked builds the row of second k.
func (r *recorder) rowLocked(k int) Row {
	from, to := time.Duration(k)*time.Second, min(time.Duration(k+1)*time.Second, r.sched.Total())
	var phases []string
	for _, p := range r.sched {
		if p.Start < to && p.End > from {
			phases = append(phases, p.Label())
		}
	}
	s := &r.secs[k]
	return Row{
		Second: k, Phase: strings.Join(phases, ">"), Counts: s.c,
		States:    statesIn("closed", r.transitions, from.Seconds(), to.Seconds()),
		LatencyMs: latencyOf(&s.lat),
	}
}

// row returns the row of second k.
func (r *recorder) row(k int) Row {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rowLocked(k)
}

// summary builds the summary of the run.
func (r *recorder) summary(cfg Config) Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.total.c
	s := Summary{
		Pattern: cfg.Pattern, Schedule: r.sched.String(), DurationS: seconds(r.sched.Total()), Rate: cfg.Rate,
		Totals: c, Availability: ratio(c.Answered(), c.Calls), Amplification: ratio(c.Attempts, c.Calls),
		LatencyMs:       latencyOf(&r.total.lat),
		Transitions:     append([]Transition{}, r.transitions...),
		TransitionCount: r.nTrans,
		EmptyReplies:    r.empty,
	}
	var down phaseStats
	var downStart, downEnd time.Duration
	nDown := 0
	for i, p := range r.sched {
		s.Phases = append(s.Phases, phaseSummary(p.Label(), p.Start, p.End, &r.phases[i]))
		if p.Kind == KindDown {
			if nDown == 0 {
				downStart = p.Start
			}
			nDown++
			downEnd = p.End
			down.c.add(r.phases[i].c)
			down.lat.merge(&r.phases[i].lat)
		}
	}
	if nDown > 0 {
		d := phaseSummary("down", downStart, downEnd, &down)
		s.Down = &d
	}
	for k := 0; k <= min(r.lastSec, len(r.secs)-1); k++ {
		s.Seconds = append(s.Seconds, r.rowLocked(k))
	}
	if heal, ok := r.sched.HealAt(); ok {
		h := seconds(heal)
		s.Recovery.HealAtS = &h
		if ttr, ok := r.recoveredAfterLocked(heal); ok {
			s.Recovery.Recovered, s.Recovery.TimeToRecoverS = true, &ttr
		}
	}
	if end, ok := r.sched.OutageEnd(); ok {
		e := seconds(end)
		s.Recovery.OutageEndS = &e
		if back, ok := r.recoveredAfterLocked(end); ok {
			s.Recovery.BackOnPrimaryS = &back
		}
	}
	return s
}

// recoveredAfterLocked returns the time from t to the start of the first
// 1 s window (windows start every slotWidth) in which the primary answered
// at least recoveredShare of the calls.
func (r *recorder) recoveredAfterLocked(t time.Duration) (float64, bool) {
	const window = int(time.Second / slotWidth)
	for i := int((t + slotWidth - 1) / slotWidth); i+window <= len(r.slots); i++ {
		var w Counts
		for _, sl := range r.slots[i : i+window] {
			w.add(sl)
		}
		if w.Calls > 0 && ratio(w.ByPrimary(), w.Calls) >= recoveredShare {
			return seconds(time.Duration(i)*slotWidth - t), true
		}
	}
	return 0, false
}

// rowPrinter writes the header and a row per second.
type rowPrinter struct {
	w         io.Writer
	showAdmit bool          // the pattern admits a share of calls: show it
	grace     time.Duration // how long a row waits for its slowest calls
}

func newRowPrinter(cfg Config, primaryAddr, replicaAddr string) *rowPrinter {
	p := &rowPrinter{w: cfg.Rows, showAdmit: cfg.Pattern != "backoff", grace: cfg.CallTimeout + 100*time.Millisecond}
	if p.w == nil {
		return p
	}
	fmt.Fprintf(p.w, "rebound outage demo: primary %s (schedule %s), replica %s (the %d best sellers)\n", primaryAddr, cfg.Schedule, replicaAddr, cfg.Hot)
	fmt.Fprintf(p.w, "load: %g calls/s, open loop, over %d items, deadline %v; GetItem's policy from catalog.proto, pattern %s\n\n", cfg.Rate, cfg.Keys, cfg.CallTimeout, cfg.Pattern)
	admit := ""
	if p.showAdmit {
		admit = " admit"
	}
	fmt.Fprintf(p.w, "%5s  %-12s %6s %7s %7s %6s %6s %6s %6s %8s%s  %-27s %8s %8s\n",
		"t", "phase", "calls", "primary", "retried", "altern", "cache", "static", "failed", "attempts", admit, "pattern", "p50", "p99")
	return p
}

// loop prints each second once it is final, until the load is done; then
// the remaining rows.
func (p *rowPrinter) loop(rec *recorder, loadDone <-chan struct{}) {
	if p.w == nil {
		return
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for k := 0; k < len(rec.secs); {
		if rec.rowReady(k, p.grace) {
			p.print(rec.row(k))
			k++
			continue
		}
		select {
		case <-tick.C:
		case <-loadDone:
			rec.mu.Lock()
			last := rec.lastSec
			rec.mu.Unlock()
			for ; k <= last; k++ {
				p.print(rec.row(k))
			}
			return
		}
	}
}

func (p *rowPrinter) print(r Row) {
	admit := ""
	if p.showAdmit {
		admit = fmt.Sprintf(" %4.0f%%", 100*ratio(r.Admitted, r.Calls))
	}
	fmt.Fprintf(p.w, "%4ds  %-12s %6d %7d %7d %6d %6d %6d %6d %8d%s  %-27s %8s %8s\n",
		r.Second, r.Phase, r.Calls, r.Primary, r.Retried, r.Alternate, r.Cache, r.Static, r.Failed, r.Attempts, admit,
		states(r.States), ms(r.LatencyMs.P50), ms(r.LatencyMs.P99))
}

// states writes a second's pattern states, "closed" or "open→recovering→closed";
// a long flapping run keeps its ends.
func states(s []string) string {
	if len(s) > 4 {
		return fmt.Sprintf("%s→…→%s (%d)", s[0], s[len(s)-1], len(s)-1)
	}
	return strings.Join(s, "→")
}

// ms writes milliseconds with a precision that suits their size.
func ms(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 10:
		return fmt.Sprintf("%.1fms", v)
	default:
		return fmt.Sprintf("%.0fms", v)
	}
}

func pct(v float64) string { return fmt.Sprintf("%.2f %%", 100*v) }

// writeSummary writes the summary for people.
func writeSummary(w io.Writer, s Summary) {
	t := s.Totals
	fmt.Fprintf(w, "\nsummary: pattern %s, %d calls at %g/s over %gs, schedule %s\n", s.Pattern, t.Calls, s.Rate, s.DurationS, s.Schedule)
	if s.Interrupted {
		fmt.Fprintf(w, "  INTERRUPTED after %d s: the figures cover the calls made until then\n", len(s.Seconds))
	}
	fmt.Fprintf(w, "  availability seen by the caller  %s  (primary %d + after retry %d, replica %d, cache %d, static %d; failed %d)\n",
		pct(s.Availability), t.Primary, t.Retried, t.Alternate, t.Cache, t.Static, t.Failed)
	if d := s.Down; d != nil {
		fmt.Fprintf(w, "  ... while the primary was down   %s  (%d calls: replica %d, cache %d, static %d; failed %d)\n",
			pct(d.Availability), d.Calls, d.Alternate, d.Cache, d.Static, d.Failed)
	}
	fmt.Fprintf(w, "  load on the primary              %.2f attempts per call overall", s.Amplification)
	if d := s.Down; d != nil {
		fmt.Fprintf(w, ", %.2f while it was down (%d attempts for %d calls; plain 3-attempt retries: 3.00)", d.Amplification, d.Attempts, d.Calls)
	}
	fmt.Fprintln(w)
	rc := s.Recovery
	switch {
	case rc.HealAtS == nil:
		fmt.Fprintf(w, "  time to recover                  - (the schedule never heals)\n")
	case !rc.Recovered:
		fmt.Fprintf(w, "  time to recover                  not within the run (healed at %gs; no 1 s with >= 95 %% answered by the primary)\n", *rc.HealAtS)
	default:
		fmt.Fprintf(w, "  time to recover                  %.1fs after the heal at %gs (to the first 1 s with >= 95 %% answered by the primary)\n", *rc.TimeToRecoverS, *rc.HealAtS)
	}
	if rc.OutageEndS != nil && (rc.HealAtS == nil || *rc.OutageEndS != *rc.HealAtS) {
		if rc.BackOnPrimaryS != nil {
			fmt.Fprintf(w, "  back on the primary              %.1fs after the last hard failure ended at %gs\n", *rc.BackOnPrimaryS, *rc.OutageEndS)
		} else {
			fmt.Fprintf(w, "  back on the primary              not within the run after the last hard failure ended at %gs\n", *rc.OutageEndS)
		}
	}
	fmt.Fprintf(w, "  latency seen by the caller       p50 %s, p99 %s\n", ms(s.LatencyMs.P50), ms(s.LatencyMs.P99))
	fmt.Fprintf(w, "  pattern state changes            %d\n", s.TransitionCount)
	if s.EmptyReplies > 0 {
		fmt.Fprintf(w, "  BUG: %d calls returned no error and an empty reply\n", s.EmptyReplies)
	}
	fmt.Fprintf(w, "\n  %-12s %8s %6s %8s %8s %9s %8s\n", "phase", "from", "calls", "answered", "primary", "attempts/", "p99")
	fmt.Fprintf(w, "  %-12s %8s %6s %8s %8s %9s %8s\n", "", "", "", "", "", "call", "")
	for _, p := range s.Phases {
		fmt.Fprintf(w, "  %-12s %7gs %6d %7.1f%% %7.1f%% %9.2f %8s\n", p.Phase, p.StartS, p.Calls, 100*p.Availability, 100*p.PrimaryShare, p.Amplification, ms(p.LatencyMs.P99))
	}
}

// writeJSON writes the summary as indented JSON.
func writeJSON(w io.Writer, s Summary) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}
