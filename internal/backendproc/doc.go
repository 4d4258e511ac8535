// Package backendproc runs a fault-injecting backend (internal/faultserver)
// as a separate operating-system process, so that a test can kill it with
// SIGKILL — no graceful close, no GOAWAY, sockets dropped by the kernel — and
// restart it on the same port.
//
// [Build] compiles the backend (./cmd/backend) once per test into
// t.TempDir(), with the test binary's -race setting so that the build cache
// is shared with the test's own build. [Binary.Start] starts a [Proc];
// [Proc.Kill] and [Proc.Restart] take it down and bring it back. The parent
// steers the child through its stdin (faults, GOAWAY, resets) and reads every
// attempt it receives from its stdout, so attempts per call id are counted at
// the server side across restarts (attempts received by a process just before
// it was killed may be lost with it: the counts are lower bounds).
//
// The child exits when its stdin closes, so it never outlives the test
// binary. A Proc is safe for concurrent use.
package backendproc
