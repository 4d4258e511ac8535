package fallback

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rebound-grpc/rebound/pattern"
)

// AlternateStep sends the call, with its metadata and deadline, to another
// target. Its own pattern guards the alternate, so a dead alternate is not
// hammered either.
type AlternateStep struct {
	name string
	conn grpc.ClientConnInterface
	pat  pattern.Pattern
}

// NewAlternate returns a step that calls conn, named name. p guards it; nil
// means no pattern.
func NewAlternate(name string, conn grpc.ClientConnInterface, p pattern.Pattern) *AlternateStep {
	return &AlternateStep{name: name, conn: conn, pat: p}
}

// Kind implements Step.
func (s *AlternateStep) Kind() string { return "alternate" }

// Name returns the alternate's name.
func (s *AlternateStep) Name() string { return s.name }

// Pattern returns the pattern guarding the alternate, or nil.
func (s *AlternateStep) Pattern() pattern.Pattern { return s.pat }

// Answer implements Step.
func (s *AlternateStep) Answer(ctx context.Context, c *Call) (Served, error) {
	var d pattern.Decision
	if s.pat != nil {
		d = s.pat.ShouldAttemptRecovery(time.Now(), c.Priority)
		if !d.Allow {
			return Served{}, fmt.Errorf("alternate %s: circuit %s, retry after %v", s.name, s.pat.State(), d.RetryAfter.Round(time.Millisecond))
		}
	}
	start := time.Now()
	err := fill(c.Reply, func(m proto.Message) error {
		return s.conn.Invoke(ctx, c.Method, c.Req, m)
	})
	if s.pat != nil && !errors.Is(err, ErrNotProto) {
		now := time.Now()
		o := pattern.Outcome{Code: status.Code(err), Latency: now.Sub(start), Probe: d.Probe}
		if err == nil {
			s.pat.HandleSuccess(now, o)
		} else {
			if ctx.Err() != nil {
				o.Code = codes.Canceled // the caller's deadline, not the alternate's failure
			}
			s.pat.HandleFailure(now, o)
		}
	}
	if err != nil {
		return Served{}, fmt.Errorf("alternate %s: %w", s.name, err)
	}
	return Served{Source: SourceAlternate, Name: s.name}, nil
}

// CacheStep answers with the reply a successful call with the same key stored,
// if it is younger than the step's maximum staleness. A cache error, a miss,
// a stale entry or a value that does not unmarshal into the reply type is a
// failure of the step, never of anything else.
type CacheStep struct {
	cache        Cache
	maxStaleness time.Duration
	keyMetadata  []string
}

// ErrCacheMiss is returned by the cache step when it has nothing to serve:
// no entry, or one that does not unmarshal into the reply type.
var ErrCacheMiss = errors.New("fallback: cache miss")

// ErrCacheStale is returned by the cache step when its entry is older than
// the step's maximum staleness.
var ErrCacheStale = errors.New("fallback: cached reply too old")

// NewCacheStep returns a cache step over c.
func NewCacheStep(c Cache, maxStaleness time.Duration, keyMetadata []string) *CacheStep {
	return &CacheStep{cache: c, maxStaleness: maxStaleness, keyMetadata: append([]string(nil), keyMetadata...)}
}

// Kind implements Step.
func (s *CacheStep) Kind() string { return "cache" }

// Cache returns the step's cache.
func (s *CacheStep) Cache() Cache { return s.cache }

// MaxStaleness returns the oldest entry the step serves.
func (s *CacheStep) MaxStaleness() time.Duration { return s.maxStaleness }

// Key derives the cache key of a call: the method, the request's deterministic
// bytes and the values of the step's metadata keys in ctx's outgoing metadata.
func (s *CacheStep) Key(ctx context.Context, method string, req any) (string, error) {
	m, ok := req.(proto.Message)
	if !ok || m == nil {
		return "", errors.New("fallback: the request is not a proto.Message")
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("fallback: marshal request: %w", err)
	}
	var scope []string
	if len(s.keyMetadata) > 0 {
		md, _ := metadata.FromOutgoingContext(ctx)
		scope = make([]string, len(s.keyMetadata))
		for i, k := range s.keyMetadata {
			scope[i] = joinValues(md.Get(k))
		}
	}
	return Key(method, b, scope), nil
}

// joinValues encodes a metadata key's values as one unambiguous string: each
// value length-prefixed, so {"a", "b"} and {"ab"} differ, and absent differs
// from one empty value.
func joinValues(vals []string) string {
	if len(vals) == 0 {
		return ""
	}
	var b []byte
	for _, v := range vals {
		b = binary.AppendUvarint(b, uint64(len(v))+1)
		b = append(b, v...)
	}
	return string(b)
}

// Entry marshals a successful call's reply for Store: its key and the entry.
// It runs on the caller's goroutine, before the caller may reuse its messages.
func (s *CacheStep) Entry(ctx context.Context, method string, req, reply any, now time.Time) (string, Entry, error) {
	key, err := s.Key(ctx, method, req)
	if err != nil {
		return "", Entry{}, err
	}
	m, ok := reply.(proto.Message)
	if !ok || m == nil {
		return "", Entry{}, ErrNotProto
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return "", Entry{}, fmt.Errorf("fallback: marshal reply: %w", err)
	}
	return key, Entry{Value: b, StoredAt: now}, nil
}

// Answer implements Step.
func (s *CacheStep) Answer(ctx context.Context, c *Call) (Served, error) {
	key, err := s.Key(ctx, c.Method, c.Req)
	if err != nil {
		return Served{}, err
	}
	e, ok, err := s.cache.Get(ctx, key)
	if err != nil {
		return Served{}, fmt.Errorf("cache: %w", err)
	}
	if !ok {
		return Served{}, ErrCacheMiss
	}
	age := time.Since(e.StoredAt)
	if e.StoredAt.IsZero() || age > s.maxStaleness {
		return Served{}, fmt.Errorf("cache: entry is %v old, older than the %v allowed: %w", age.Round(time.Millisecond), s.maxStaleness, ErrCacheStale)
	}
	if err := fill(c.Reply, func(m proto.Message) error { return proto.Unmarshal(e.Value, m) }); err != nil {
		return Served{}, fmt.Errorf("cache: the entry does not unmarshal into the reply type (%v): %w", err, ErrCacheMiss)
	}
	return Served{Source: SourceCache, Age: max(age, 0)}, nil
}

// StaticStep answers with a fixed reply.
type StaticStep struct {
	wire []byte
}

// NewStatic returns a step that answers with the reply whose protobuf wire
// bytes are wire.
func NewStatic(wire []byte) *StaticStep {
	return &StaticStep{wire: append([]byte(nil), wire...)}
}

// Kind implements Step.
func (s *StaticStep) Kind() string { return "static_reply" }

// Answer implements Step.
func (s *StaticStep) Answer(_ context.Context, c *Call) (Served, error) {
	if err := fill(c.Reply, func(m proto.Message) error { return proto.Unmarshal(s.wire, m) }); err != nil {
		return Served{}, fmt.Errorf("static reply: %w", err)
	}
	return Served{Source: SourceStatic}, nil
}

// Func answers a call: it fills reply (a fresh message of the reply type,
// copied into the caller's reply only when Func returns nil) or returns an
// error. It must return by ctx's deadline.
type Func func(ctx context.Context, fullMethod string, req, reply any) error

// FuncStep answers with a Func.
type FuncStep struct {
	fn Func
}

// NewFunc returns a step that answers with fn.
func NewFunc(fn Func) *FuncStep { return &FuncStep{fn: fn} }

// Kind implements Step.
func (s *FuncStep) Kind() string { return "function" }

// Answer implements Step.
func (s *FuncStep) Answer(ctx context.Context, c *Call) (served Served, err error) {
	defer func() {
		if r := recover(); r != nil {
			served, err = Served{}, fmt.Errorf("function: panicked: %v", r)
		}
	}()
	if err := fill(c.Reply, func(m proto.Message) error { return s.fn(ctx, c.Method, c.Req, m) }); err != nil {
		return Served{}, fmt.Errorf("function: %w", err)
	}
	return Served{Source: SourceFunction}, nil
}
