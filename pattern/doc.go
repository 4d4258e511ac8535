// Package pattern owns the recovery patterns of rebound: the state machines
// that decide whether a call may be sent to its target right now, and how
// much traffic a recovering target may take. It also owns the retry
// [Budget] that keeps retries from multiplying an outage.
//
// The interceptor (package interceptor) keeps one [Pattern] per method (or
// service) and target, and one [Budget] per target shared by all its
// methods, and composes them around every call as
//
//	Fallback(Retry(Pattern(call)))
//
// Each attempt inside the retry loop first asks
// [Pattern.ShouldAttemptRecovery]; a rejected attempt ends the loop and goes
// to the fallback chain. Each admitted attempt reports exactly one [Outcome]
// to [Pattern.HandleSuccess] or [Pattern.HandleFailure]. A retry (or hedge)
// after the first attempt also needs a token from [Budget.TryWithdraw]; each
// successful attempt pays into it with [Budget.OnSuccess], which also
// restores the few retries a target may take after its last success.
//
// Three patterns are here:
//
//   - [ExponentialBackoff]: a circuit breaker that opens on consecutive
//     failures or a failure (or slow-call) rate, stays open for a delay that
//     grows with every failed probe (capped, then jittered), and closes after
//     enough successful probes;
//   - [PartialRecovery]: opens the same way but comes back along a ramp (or
//     a slow-start curve), admitting a growing share of calls, highest
//     [Priority] first, with a cap on in-flight calls; [PartialRecovery.SetHealth]
//     lets a health signal open it or start the ramp;
//   - [AdaptiveRecovery]: never opens; admits each call with the SRE
//     client-side throttling probability, lowered further (AIMD) by rising
//     latency and by ORCA load reports.
//
// The interceptor reports, for the two breakers, only the failures of calls
// (a failed attempt that a retry covers is not reported); probes and the
// adaptive pattern see every attempt.
//
// Patterns classify outcomes themselves: a code in their FailureCodes
// (default [DefaultFailureCodes]) is a failure of the target, any other code
// is a success (the server answered), and codes.Canceled — the caller gave
// up — counts nothing.
//
// Everything here is safe for concurrent use, starts no goroutines, uses no
// timers and takes the current time from its caller, so tests drive it with
// plain time.Time values. On the healthy path (a closed pattern, successful
// attempts) nothing allocates or takes a lock. Configurations are plain
// structs with Default…Config constructors; New… functions validate them and
// return [*ConfigError] values naming the offending field.
//
// The package imports only the standard library and
// google.golang.org/grpc/codes, never the gRPC transport or OpenTelemetry.
package pattern
