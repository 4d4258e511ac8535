package interceptor_test

import (
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/rebound-grpc/rebound/interceptor"
	"github.com/rebound-grpc/rebound/internal/testserver"
	"github.com/rebound-grpc/rebound/pattern"
	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

// TestWithStateChange: the function given to WithStateChange sees the
// primary's and the alternate's breakers open, with method, target and
// alternate name, and may call Suite.Patterns from inside.
func TestWithStateChange(t *testing.T) {
	t.Parallel()
	primary := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
	replica := testserver.Start(t, "replica", testserver.Fail(codes.Unavailable))
	pol := &reboundv1.RecoveryPolicy{
		Retry:    &reboundv1.Retry{MaxAttempts: proto.Uint32(1)},
		Pattern:  stickyBreaker(2),
		Fallback: &reboundv1.Fallback{Steps: []*reboundv1.FallbackStep{alternateStep("replica")}},
	}
	var (
		mu      sync.Mutex
		changes []interceptor.StateChange
		states  []pattern.State
		s       *interceptor.Suite
	)
	start := time.Now()
	s = newSuite(t, interceptor.WithAlternate("replica", plainConn(t, replica.Addr)), interceptor.WithPolicy(echoMethod, pol),
		interceptor.WithStateChange(func(c interceptor.StateChange) {
			ps := s.Patterns() // must not deadlock: the pattern's lock is released
			mu.Lock()
			defer mu.Unlock()
			changes = append(changes, c)
			for _, p := range ps {
				if p.Method == c.Method && p.Target == c.Target {
					states = append(states, p.State)
				}
			}
		}))
	cc := dial(t, primary.Addr, s)
	for range 4 {
		if _, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "x"); err == nil {
			t.Fatal("Echo() = nil error; want the primary's and the replica's UNAVAILABLE")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var sawPrimary, sawAlternate bool
	for _, c := range changes {
		if c.Method != echoMethod || c.From != pattern.Closed || c.To != pattern.Open || c.At.Before(start.Add(-time.Second)) || c.At.After(time.Now()) {
			t.Errorf("StateChange %+v; want %s closed→open at about now", c, echoMethod)
		}
		switch {
		case c.Alternate == "" && c.Target == primary.Addr:
			sawPrimary = true
		case c.Alternate == "replica" && c.Target == "alternate:replica":
			sawAlternate = true
		default:
			t.Errorf("StateChange %+v; want the primary (%s) or alternate:replica", c, primary.Addr)
		}
	}
	if !sawPrimary || !sawAlternate || len(changes) != 2 {
		t.Errorf("state changes = %+v; want exactly one closed→open for the primary and one for the alternate", changes)
	}
	if len(states) == 0 || states[0] != pattern.Open {
		t.Errorf("Patterns() inside the hook = %v; want the primary already open", states)
	}
}
