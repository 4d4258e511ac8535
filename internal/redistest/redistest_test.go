package redistest

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestAddr(t *testing.T) {
	t.Parallel()
	addr := Addr(t)
	if err := ping(addr, time.Second); err != nil {
		t.Errorf("ping(Addr()) = %v; want nil", err)
	}
}

func TestServerLifecycle(t *testing.T) {
	t.Parallel()
	s := Start(t)
	steps := []struct {
		name   string
		do     func()
		wantUp bool
	}{
		{"started", func() {}, true},
		{"paused", s.Pause, false},
		{"resumed", s.Resume, true},
		{"stopped", s.Stop, false},
		{"stopped twice", s.Stop, false},
		{"restarted", s.Restart, true},
		{"paused at cleanup", s.Pause, false},
	}
	for _, st := range steps {
		st.do()
		err := ping(s.Addr(), 300*time.Millisecond)
		if up := err == nil; up != st.wantUp {
			t.Fatalf("after %s: ping(%s) = %v; want up = %v", st.name, s.Addr(), err, st.wantUp)
		}
	}
}
