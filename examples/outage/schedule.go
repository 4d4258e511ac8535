package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Kind is what the primary server does during a phase.
type Kind string

// The kinds of phase.
const (
	// KindHealthy answers every attempt in a few milliseconds.
	KindHealthy Kind = "healthy"
	// KindDown fails every attempt at once with UNAVAILABLE (hard down).
	KindDown Kind = "down"
	// KindSlow answers every attempt, but only after Param (default 400 ms):
	// longer than the policy's per-attempt timeout (150 ms), a brownout.
	KindSlow Kind = "slow"
	// KindFlaky fails a random Param percent (default 30) of the attempts
	// with UNAVAILABLE and answers the rest as healthy.
	KindFlaky Kind = "flaky"
	// KindHealed is healthy; it marks the moment the outage is over, from
	// which the time to recover is measured.
	KindHealed Kind = "healed"
)

// Defaults of the phase parameters.
const (
	defaultSlowDelay    = 400 * time.Millisecond
	defaultFlakyPercent = 30.0
)

// DefaultSchedule is the schedule of a run without -schedule: about 20 s.
const DefaultSchedule = "healthy:4s,down:5s,slow:4s,flaky:4s,healed:3s"

// Phase is one step of the primary's schedule.
type Phase struct {
	Kind Kind
	// Start and End are offsets from the start of the load.
	Start, End time.Duration
	// Delay is how long a slow phase takes to answer.
	Delay time.Duration
	// FailPercent is the share of attempts a flaky phase fails.
	FailPercent float64
}

// Healthy reports whether the primary answers normally in the phase.
func (p Phase) Healthy() bool { return p.Kind == KindHealthy || p.Kind == KindHealed }

// Label is the phase as the schedule would write it, without its duration.
func (p Phase) Label() string {
	switch {
	case p.Kind == KindSlow && p.Delay != defaultSlowDelay:
		return fmt.Sprintf("slow=%v", p.Delay)
	case p.Kind == KindFlaky && p.FailPercent != defaultFlakyPercent:
		return fmt.Sprintf("flaky=%g%%", p.FailPercent)
	}
	return string(p.Kind)
}

// Schedule is the primary's behaviour over time: consecutive phases from 0.
type Schedule []Phase

// ParseSchedule parses the short text form: comma-separated phases
// KIND[=PARAM]:DURATION, e.g.
//
//	healthy:4s,down:5s,slow:4s,flaky:4s,healed:3s
//	healthy:2s,slow=300ms:3s,flaky=50%:3s,healed:2s
//
// KIND is healthy, down, slow, flaky or healed; PARAM is the reply delay of
// slow and the failure percentage of flaky.
func ParseSchedule(s string) (Schedule, error) {
	var sched Schedule
	var at time.Duration
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		kindParam, durText, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("schedule phase %d %q: want KIND[=PARAM]:DURATION", i+1, part)
		}
		d, err := time.ParseDuration(durText)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("schedule phase %d %q: duration %q: want a positive duration such as 4s", i+1, part, durText)
		}
		kindText, param, hasParam := strings.Cut(kindParam, "=")
		p := Phase{Kind: Kind(kindText), Start: at, End: at + d}
		switch p.Kind {
		case KindHealthy, KindDown, KindHealed:
			if hasParam {
				return nil, fmt.Errorf("schedule phase %d %q: %s takes no parameter", i+1, part, p.Kind)
			}
		case KindSlow:
			p.Delay = defaultSlowDelay
			if hasParam {
				if p.Delay, err = time.ParseDuration(param); err != nil || p.Delay <= 0 {
					return nil, fmt.Errorf("schedule phase %d %q: slow=%s: want a positive reply delay such as 400ms", i+1, part, param)
				}
			}
		case KindFlaky:
			p.FailPercent = defaultFlakyPercent
			if hasParam {
				if p.FailPercent, err = strconv.ParseFloat(strings.TrimSuffix(param, "%"), 64); err != nil || p.FailPercent < 0 || p.FailPercent > 100 {
					return nil, fmt.Errorf("schedule phase %d %q: flaky=%s: want a failure percentage 0-100 such as 30%%", i+1, part, param)
				}
			}
		default:
			return nil, fmt.Errorf("schedule phase %d %q: unknown kind %q (want healthy, down, slow, flaky or healed)", i+1, part, kindText)
		}
		sched = append(sched, p)
		at += d
	}
	return sched, nil
}

// Total is the length of the schedule.
func (s Schedule) Total() time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1].End
}

// Scale stretches or shrinks every phase so that the schedule lasts total.
func (s Schedule) Scale(total time.Duration) Schedule {
	old := s.Total()
	out := make(Schedule, len(s))
	for i, p := range s {
		p.Start = time.Duration(float64(p.Start) * float64(total) / float64(old))
		p.End = time.Duration(float64(p.End) * float64(total) / float64(old))
		out[i] = p
	}
	if len(out) > 0 {
		out[len(out)-1].End = total
	}
	return out
}

// At returns the index of the phase in effect at offset t (the last phase
// beyond the end, the first before the start).
func (s Schedule) At(t time.Duration) int {
	for i, p := range s {
		if t < p.End {
			return i
		}
	}
	return len(s) - 1
}

// HealAt is when the outage ends: the start of the first healed phase, else
// of the last healthy phase that follows a failing one. ok is false when the
// schedule never heals.
func (s Schedule) HealAt() (at time.Duration, ok bool) {
	for _, p := range s {
		if p.Kind == KindHealed {
			return p.Start, true
		}
	}
	for i := len(s) - 1; i > 0; i-- {
		if s[i].Healthy() && !s[i-1].Healthy() {
			return s[i].Start, true
		}
	}
	return 0, false
}

// OutageEnd is the end of the last hard failure: the last down or slow
// phase. ok is false when the schedule has none.
func (s Schedule) OutageEnd() (at time.Duration, ok bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i].Kind == KindDown || s[i].Kind == KindSlow {
			return s[i].End, true
		}
	}
	return 0, false
}

// String is the schedule in its text form.
func (s Schedule) String() string {
	parts := make([]string, len(s))
	for i, p := range s {
		parts[i] = p.Label() + ":" + shortDuration(p.End-p.Start)
	}
	return strings.Join(parts, ",")
}

// shortDuration writes d rounded to the millisecond, without trailing zeros
// ("1.5s", "4s", "250ms").
func shortDuration(d time.Duration) string {
	return d.Round(time.Millisecond).String()
}
