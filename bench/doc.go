// Package bench compares rebound with the other ways a Go gRPC client gets
// retries and circuit breaking: go-grpc-middleware's retry interceptor,
// failsafe-go's gRPC interceptor (retry + circuit breaker) and grpc-go's
// built-in retries (service config, with and without A6 retry throttling).
//
// It is its own module so that the library never depends on its peers. The
// happy-path benchmarks live in this package (bench_test.go); the
// failure-path scenarios are the program ./cmd/scenarios; ./cmd/report turns
// both into RESULTS.md. ./run.sh runs everything:
//
//	cd bench && ./run.sh          # full run, ~15 minutes
//	cd bench && ./run.sh -quick   # ~2 minutes
//
// Every library is configured alike: 3 attempts, exponential backoff with
// jitter from 50 ms capped at 1 s, and a circuit breaker (10 consecutive
// failures, 1 s open delay, 2 successes to close) where the library has one.
// See internal/harness for the exact options of each.
package bench
