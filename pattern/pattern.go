package pattern

import (
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// State is the state of a recovery pattern as seen by the calls it guards.
type State int32

const (
	// Closed admits every call: the target is considered healthy.
	Closed State = iota
	// Open rejects every call until its open delay has passed.
	Open
	// Recovering admits a bounded number of probe calls that decide whether
	// the pattern closes again or reopens.
	Recovering
)

// String returns "closed", "open" or "recovering", or "State(n)" for an
// unknown value.
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case Recovering:
		return "recovering"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Priority is the criticality of a call (as in the SRE book's client-side
// throttling): patterns that admit a share of traffic shed [Sheddable] calls
// first and [Critical] calls last.
type Priority int32

const (
	// Sheddable calls may be dropped first (batch work, prefetches).
	Sheddable Priority = -1
	// Default is the priority of a call that does not set one.
	Default Priority = 0
	// Critical calls are admitted before any other.
	Critical Priority = 1
)

// String returns "sheddable", "default" or "critical", or "Priority(n)" for
// any other value.
func (p Priority) String() string {
	switch p {
	case Sheddable:
		return "sheddable"
	case Default:
		return "default"
	case Critical:
		return "critical"
	}
	return "Priority(" + strconv.Itoa(int(p)) + ")"
}

// LoadReport is the load a server reported with its response, as ORCA
// (gRFC A51) defines it. Utilizations are fractions, usually in [0, 1].
type LoadReport struct {
	// CPUUtilization is the server's CPU utilization.
	CPUUtilization float64
	// MemUtilization is the server's memory utilization.
	MemUtilization float64
	// ApplicationUtilization is the application-defined utilization.
	ApplicationUtilization float64
	// RPS is the server's rate of queries per second.
	RPS float64
}

// Outcome is the result of one admitted attempt. The interceptor reports
// exactly one Outcome per attempt a [Decision] admitted: to HandleSuccess when
// Code is codes.OK and to HandleFailure otherwise.
type Outcome struct {
	// Code is the attempt's status code.
	Code codes.Code
	// Latency is the time from the start of the attempt to its outcome.
	// Patterns also use it to tell when the attempt was admitted
	// (now − Latency), so a result from an earlier state is not counted
	// in the current one; leave it 0 if unknown.
	Latency time.Duration
	// Load is the server's ORCA load report, or nil.
	Load *LoadReport
	// Probe is copied from the Decision that admitted the attempt.
	Probe bool
}

// Decision is a pattern's answer to ShouldAttemptRecovery.
type Decision struct {
	// Allow reports whether the attempt may be sent to the target.
	Allow bool
	// Probe marks an admitted attempt as a recovery probe. The interceptor
	// copies it into the attempt's Outcome.
	Probe bool
	// RetryAfter is, when Allow is false, how long until the pattern may
	// admit calls again. It is a hint: the interceptor uses it to decide
	// whether waiting fits the caller's deadline or a fallback should answer.
	RetryAfter time.Duration
}

// Pattern decides whether a call may be sent to its target and learns from
// the outcomes. The interceptor composes it inside the retry loop:
// Fallback(Retry(Pattern(call))): each attempt asks ShouldAttemptRecovery,
// and each admitted attempt reports exactly one outcome.
//
// Implementations are safe for concurrent use, take the current time from the
// caller (no timers, no goroutines) and allocate nothing per call.
//
// A zero now means "not measured": the caller skipped the clock on its
// healthy path, and the pattern reads time.Now itself wherever it needs the
// time (leaving Closed, time windows). With a zero now the Outcome's Latency
// is zero too, and rules that need latency are not applied to that outcome;
// the interceptor always measures when the pattern's settings need latency.
type Pattern interface {
	// ShouldAttemptRecovery decides whether an attempt of priority p may be
	// sent now.
	ShouldAttemptRecovery(now time.Time, p Priority) Decision
	// HandleSuccess reports an admitted attempt that ended with codes.OK.
	HandleSuccess(now time.Time, o Outcome)
	// HandleFailure reports an admitted attempt that ended with any other code.
	HandleFailure(now time.Time, o Outcome)
	// State returns the current state. Transitions are lazy: a pattern whose
	// open delay has passed reports Open until the next call asks.
	State() State
}

// Codes is a set of gRPC status codes: bit i is set when codes.Code(i) is in
// the set. Membership tests cost one shift and do not allocate. Codes from 32
// upwards cannot be represented and are never members.
type Codes uint32

// CodesOf returns the set of the given codes. Codes from 32 upwards are
// ignored.
func CodesOf(cs ...codes.Code) Codes {
	var s Codes
	for _, c := range cs {
		if c < 32 {
			s |= 1 << c
		}
	}
	return s
}

// Has reports whether code is in the set.
func (c Codes) Has(code codes.Code) bool {
	return code < 32 && c&(1<<code) != 0
}

// String lists the codes of the set in numeric order, joined by "|", for
// example "Unknown|DeadlineExceeded"; the empty set is "".
func (c Codes) String() string {
	var b strings.Builder
	for i := codes.Code(0); i < 32; i++ {
		if c.Has(i) {
			if b.Len() > 0 {
				b.WriteByte('|')
			}
			b.WriteString(i.String())
		}
	}
	return b.String()
}

// DefaultFailureCodes are the codes that count as a failure of the target
// unless a configuration says otherwise: the server is down, overloaded or
// broken, or did not answer in time.
var DefaultFailureCodes = CodesOf(
	codes.Unavailable,
	codes.DeadlineExceeded,
	codes.ResourceExhausted,
	codes.Internal,
	codes.Unknown,
)

// ConfigError reports an invalid configuration field.
type ConfigError struct {
	// Field is the Go name of the field, qualified by its type, for example
	// "ExponentialBackoffConfig.Jitter".
	Field string
	// Reason says what is wrong and what is wanted.
	Reason string
}

// Error implements error.
func (e *ConfigError) Error() string {
	return "pattern: invalid " + e.Field + ": " + e.Reason
}

// outcomeKind is how a pattern classifies an Outcome.
type outcomeKind uint8

const (
	neutral outcomeKind = iota // caller cancellation: counts nothing
	success                    // the server answered
	failure                    // the code is in FailureCodes
)

// classify classifies an outcome reported to HandleSuccess (reportedFailure
// false) or HandleFailure (true). The code decides, with two exceptions:
// codes.Canceled is always neutral, and codes.OK reported as a failure
// (a caller that left Code unset) is a failure.
func classify(code codes.Code, reportedFailure bool, failureCodes Codes) outcomeKind {
	switch {
	case code == codes.Canceled:
		return neutral
	case code == codes.OK:
		if reportedFailure {
			return failure
		}
		return success
	case failureCodes.Has(code):
		return failure
	}
	return success
}
