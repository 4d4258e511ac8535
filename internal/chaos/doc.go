// Package chaos holds rebound's chaos test (chaos_test.go): concurrent unary
// and streaming calls through an interceptor.Suite with an alternate target,
// a Redis cache and a static reply, while faults change at random — the
// primary SIGKILLed (it runs as a separate process, internal/backendproc)
// and restarted, the alternate down, Redis stopped and started, black holes,
// slow replies, resets, GOAWAY, partial streams — and the invariants that
// must hold throughout: deadlines kept (to 5 ms), every error a meaningful
// gRPC status, attempts within the policy, the retry budget never overdrawn,
// cached replies only for the tenant that produced them, streams without
// duplicates, losses or retries after commit, and no goroutine or heap
// growth.
//
// It runs about 30 s (-short: 5 s; -chaos.duration to change it) on loopback
// with a fixed seed (-chaos.seed). The soak variant, TestSoak, runs only with
// -soak (minutes; not in CI):
//
//	go test -race ./internal/chaos                     # CI
//	go test ./internal/chaos -run TestSoak -soak -soak.duration 3m -v
package chaos
