package fallback

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rebound-grpc/rebound/pattern"
)

// MaxSteps bounds the length of a chain.
const MaxSteps = 8

// Source says what produced a call's reply.
type Source int

// The sources of a reply.
const (
	// SourcePrimary: the call's own target answered (possibly after retries).
	SourcePrimary Source = iota
	// SourceAlternate: an alternate target answered.
	SourceAlternate
	// SourceCache: a reply cached from an earlier successful call answered.
	SourceCache
	// SourceStatic: the policy's static reply answered.
	SourceStatic
	// SourceFunction: the registered fallback function answered.
	SourceFunction
	// SourceNone: nothing answered; the call failed.
	SourceNone
)

// String returns the source's name.
func (s Source) String() string {
	switch s {
	case SourcePrimary:
		return "primary"
	case SourceAlternate:
		return "alternate"
	case SourceCache:
		return "cache"
	case SourceStatic:
		return "static"
	case SourceFunction:
		return "function"
	default:
		return "none"
	}
}

// Served describes how a call was answered, so that an application can mark
// degraded replies.
type Served struct {
	// Source is what produced the reply.
	Source Source
	// Name is the alternate's name (Source SourceAlternate).
	Name string
	// Age is how old the cached reply is (Source SourceCache).
	Age time.Duration
	// Attempts counts the attempts made on the primary target.
	Attempts int
}

// Degraded reports whether the reply came from anywhere but the primary.
func (s Served) Degraded() bool { return s.Source != SourcePrimary }

// String returns e.g. "primary", "alternate:replica", "cache(age 2.5s)".
func (s Served) String() string {
	switch s.Source {
	case SourceAlternate:
		return "alternate:" + s.Name
	case SourceCache:
		return fmt.Sprintf("cache(age %v)", s.Age.Round(time.Millisecond))
	default:
		return s.Source.String()
	}
}

// Call is one call handed to a chain. Reply is the caller's reply message: a
// step writes it only when it answers, so a step that fails leaves it as it was.
type Call struct {
	// Method is the full method name, "/pkg.Service/Method".
	Method string
	// Req is the request message.
	Req any
	// Reply is the caller's reply message.
	Reply any
	// Priority is the call's priority, for the alternates' patterns.
	Priority pattern.Priority
}

// Step is one way to answer a call. Answer either fills c.Reply and returns
// nil, or returns an error and leaves c.Reply untouched. It must return by
// ctx's deadline.
type Step interface {
	// Kind names the step for telemetry: "alternate", "cache", "static_reply" or "function".
	Kind() string
	// Answer answers c.
	Answer(ctx context.Context, c *Call) (Served, error)
}

// Chain tries its steps in order until one answers. It is immutable and safe
// for concurrent use.
type Chain struct {
	steps []Step
}

// NewChain returns a chain of steps (at most MaxSteps).
func NewChain(steps ...Step) (*Chain, error) {
	if len(steps) > MaxSteps {
		return nil, fmt.Errorf("fallback: %d steps; at most %d", len(steps), MaxSteps)
	}
	for i, s := range steps {
		if s == nil {
			return nil, fmt.Errorf("fallback: step %d is nil", i)
		}
	}
	return &Chain{steps: append([]Step(nil), steps...)}, nil
}

// Len returns the number of steps.
func (ch *Chain) Len() int { return len(ch.steps) }

// Steps returns the steps, in order.
func (ch *Chain) Steps() []Step { return append([]Step(nil), ch.steps...) }

type inChainKey struct{}

// InChain reports whether ctx belongs to a call made by a chain's step (an
// alternate target's call): such a call does not enter a chain again.
func InChain(ctx context.Context) bool {
	v, _ := ctx.Value(inChainKey{}).(bool)
	return v
}

// Run tries each step until one answers and returns how the call was served.
// When none answers it returns an *Error whose cause is cause, the primary's
// error. Steps are not started once ctx is done.
func (ch *Chain) Run(ctx context.Context, c *Call, cause error) (Served, error) {
	return ch.RunObserved(ctx, c, cause, nil)
}

// StepObserver is told when each step starts: it returns the context the step
// runs in (e.g. with a span) and a function called with the step's result.
type StepObserver func(ctx context.Context, step Step) (context.Context, func(Served, error))

// RunObserved is Run with an observer of every step (for telemetry).
func (ch *Chain) RunObserved(ctx context.Context, c *Call, cause error, obs StepObserver) (Served, error) {
	ctx = context.WithValue(ctx, inChainKey{}, true)
	var errs []error
	for _, s := range ch.steps {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("%s: not started: %w", s.Kind(), err))
			break
		}
		sctx, end := ctx, func(Served, error) {}
		if obs != nil {
			sctx, end = obs(ctx, s)
		}
		served, err := s.Answer(sctx, c)
		end(served, err)
		if err == nil {
			return served, nil
		}
		errs = append(errs, err)
	}
	return Served{Source: SourceNone}, &Error{Cause: cause, Steps: errs}
}

// Error is returned when no step answered. Its gRPC status is the cause's,
// unchanged; the steps' errors are kept beside it.
type Error struct {
	// Cause is the primary's error.
	Cause error
	// Steps holds each step's error, in order.
	Steps []error
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Cause != nil {
		b.WriteString(e.Cause.Error())
	}
	if len(e.Steps) > 0 {
		b.WriteString(" (fallback failed: ")
		for i, s := range e.Steps {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(s.Error())
		}
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns the cause, so errors.Is and errors.As see the primary's error.
func (e *Error) Unwrap() error { return e.Cause }

// GRPCStatus returns the cause's status unchanged.
func (e *Error) GRPCStatus() *status.Status { return status.Convert(e.Cause) }

// ErrNotProto is returned when a reply is not a protobuf message.
var ErrNotProto = errors.New("fallback: the reply is not a proto.Message")

// fill writes into reply only if produce succeeds: produce fills a fresh
// message of reply's type, which then replaces reply's contents.
func fill(reply any, produce func(m proto.Message) error) error {
	dst, ok := reply.(proto.Message)
	if !ok || dst == nil {
		return ErrNotProto
	}
	tmp := dst.ProtoReflect().New().Interface()
	if err := produce(tmp); err != nil {
		return err
	}
	proto.Reset(dst)
	proto.Merge(dst, tmp)
	return nil
}
