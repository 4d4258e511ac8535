package interceptor

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rebound-grpc/rebound/pattern"
)

// ErrShortCircuit is matched (errors.Is) by every *ShortCircuitError.
var ErrShortCircuit = errors.New("rebound: short-circuited")

// ShortCircuitError is returned when the method's recovery pattern did not
// admit the call and no fallback answered. Its gRPC code is UNAVAILABLE.
type ShortCircuitError struct {
	// Method is the full method name.
	Method string
	// Target is the connection's target.
	Target string
	// State is the pattern's state when the call was refused.
	State pattern.State
	// RetryAfter is how long until the pattern may admit calls again (0: unknown).
	RetryAfter time.Duration
}

// Error implements error.
func (e *ShortCircuitError) Error() string {
	if e.RetryAfter > 0 {
		return fmt.Sprintf("rebound: %s to %s short-circuited: circuit %s, retry after %v", e.Method, e.Target, e.State, e.RetryAfter.Round(time.Millisecond))
	}
	return fmt.Sprintf("rebound: %s to %s short-circuited: circuit %s", e.Method, e.Target, e.State)
}

// GRPCStatus reports codes.Unavailable, so status.Code(err) works.
func (e *ShortCircuitError) GRPCStatus() *status.Status {
	return status.New(codes.Unavailable, e.Error())
}

// Is reports whether target is ErrShortCircuit.
func (e *ShortCircuitError) Is(target error) bool { return target == ErrShortCircuit }
