package pattern

import (
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStateString(t *testing.T) {
	t.Parallel()
	for s, want := range map[State]string{Closed: "closed", Open: "open", Recovering: "recovering", State(9): "State(9)"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q; want %q", int32(s), got, want)
		}
	}
}

func TestPriorityString(t *testing.T) {
	t.Parallel()
	for p, want := range map[Priority]string{Sheddable: "sheddable", Default: "default", Critical: "critical", Priority(-7): "Priority(-7)"} {
		if got := p.String(); got != want {
			t.Errorf("Priority(%d).String() = %q; want %q", int32(p), got, want)
		}
	}
	if !(Sheddable < Default && Default < Critical) {
		t.Errorf("Sheddable, Default, Critical = %d, %d, %d; want increasing", Sheddable, Default, Critical)
	}
}

func TestCodes(t *testing.T) {
	s := CodesOf(codes.Unavailable, codes.Internal, codes.Code(40))
	tests := []struct {
		code codes.Code
		want bool
	}{
		{codes.OK, false},
		{codes.Unavailable, true},
		{codes.Internal, true},
		{codes.NotFound, false},
		{codes.Code(31), false},
		{codes.Code(40), false},
		{codes.Code(1 << 31), false},
	}
	for _, tt := range tests {
		if got := s.Has(tt.code); got != tt.want {
			t.Errorf("%v.Has(%v) = %v; want %v", s, tt.code, got, tt.want)
		}
	}
	if got, want := s.String(), "Internal|Unavailable"; got != want {
		t.Errorf("CodesOf(Unavailable, Internal).String() = %q; want %q", got, want)
	}
	if got := Codes(0).String(); got != "" {
		t.Errorf("Codes(0).String() = %q; want \"\"", got)
	}
	for _, c := range []codes.Code{codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Internal, codes.Unknown} {
		if !DefaultFailureCodes.Has(c) {
			t.Errorf("DefaultFailureCodes.Has(%v) = false; want true", c)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = DefaultFailureCodes.Has(codes.Unavailable) }); n != 0 {
		t.Errorf("AllocsPerRun(Codes.Has) = %v; want 0", n)
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code     codes.Code
		reported bool // reported through HandleFailure
		want     outcomeKind
	}{
		{codes.OK, false, success},
		{codes.OK, true, failure},
		{codes.Canceled, false, neutral},
		{codes.Canceled, true, neutral},
		{codes.Unavailable, true, failure},
		{codes.Unavailable, false, failure},
		{codes.NotFound, true, success},
		{codes.InvalidArgument, true, success},
		{codes.PermissionDenied, true, success},
	}
	for _, tt := range tests {
		if got := classify(tt.code, tt.reported, DefaultFailureCodes); got != tt.want {
			t.Errorf("classify(%v, %v) = %v; want %v", tt.code, tt.reported, got, tt.want)
		}
	}
}
