// Package testpb is the generated code of the test-only service
// rebound.testing.v1 (internal/testpb/proto): services and methods annotated
// with every combination of rebound options and idempotency levels, used by
// rebound's own tests. Nothing outside rebound imports it.
package testpb
