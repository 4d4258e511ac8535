package interceptor

import (
	"sort"
	"time"

	"github.com/rebound-grpc/rebound/pattern"
)

// PatternStatus is a point-in-time view of one recovery pattern instance:
// the state of one (method or service, target).
type PatternStatus struct {
	// Method is the full method guarded ("/pkg.Service/Method"), or the
	// service ("pkg.Service") when pattern_scope is SERVICE, or "other" for
	// methods beyond the Suite's bound.
	Method string
	// Target is the connection's target.
	Target string
	// State is the pattern's state.
	State pattern.State
	// Admitted is the share of calls the pattern admits now, from 0 to 1:
	// 1 when closed, 0 when open, the ramp's share (partial recovery) or the
	// admission probability (adaptive recovery) in between.
	Admitted float64
}

// StateChange is one state transition of a recovery pattern instance, as
// passed to the function of [WithStateChange].
type StateChange struct {
	// Method is the full method guarded, the service when pattern_scope is
	// SERVICE, or "other" (as in [PatternStatus]).
	Method string
	// Target is the connection's target, or "alternate:NAME" for the
	// breaker that guards an alternate target of Method.
	Target string
	// Alternate is the alternate's name (as given to [WithAlternate]) when
	// the pattern guards an alternate target; empty for the primary.
	Alternate string
	// From and To are the states before and after the transition.
	From, To pattern.State
	// At is the pattern's clock at the transition.
	At time.Time
}

// Patterns returns the status of every pattern instance the Suite holds,
// sorted by method and target. It is meant for dashboards and demos, not for
// the call path: it allocates.
func (s *Suite) Patterns() []PatternStatus {
	now := time.Now()
	var out []PatternStatus
	s.eachHolder(func(name string, ts *targetState) {
		out = append(out, PatternStatus{Method: name, Target: ts.target, State: ts.pattern.State(), Admitted: admitted(ts.pattern, now)})
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Method != out[j].Method {
			return out[i].Method < out[j].Method
		}
		return out[i].Target < out[j].Target
	})
	return out
}

// admitted is the share of calls p admits at now.
func admitted(p pattern.Pattern, now time.Time) float64 {
	switch p := p.(type) {
	case *pattern.PartialRecovery:
		return p.Snapshot(now).Share
	case *pattern.AdaptiveRecovery:
		return p.AdmitProbability()
	}
	switch p.State() {
	case pattern.Open:
		return 0
	case pattern.Recovering:
		return 0 // probes only
	default:
		return 1
	}
}
