package fallback

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Bounds of a recorded server stream: a stream with more messages or more
// bytes than these is not cached.
const (
	// MaxStreamMessages is the most messages a cached stream holds.
	MaxStreamMessages = 1000
	// MaxStreamBytes is the most bytes (encoded) a cached stream holds.
	MaxStreamBytes = 1 << 20
)

// streamMagic starts the Value of every cached stream, so that a value that
// is not one (a unary reply, a corrupt entry) is a miss. It also versions
// the encoding.
const streamMagic = "\x00rbs1"

var (
	streamSize    = proto.MarshalOptions{Deterministic: true}
	streamMarshal = proto.MarshalOptions{Deterministic: true, UseCachedSize: true} // after streamSize.Size
)

// StreamRecorder records the messages of one server stream, in order, as
// protobuf wire bytes (deterministic marshal), so that the stream can be
// served again by [CacheStep.Stream] when its primary fails. It keeps at most
// [MaxStreamMessages] messages and [MaxStreamBytes] bytes; past either bound
// it drops what it recorded and records nothing more.
//
// The zero value is ready to use. A StreamRecorder is not safe for
// concurrent use: one stream's receiving goroutine owns it.
type StreamRecorder struct {
	buf  []byte
	n    int
	full bool
}

// Record appends m. It reports false once the recorder is over its bounds
// (or m does not marshal): the stream will not be cached.
func (r *StreamRecorder) Record(m proto.Message) bool {
	if r.full {
		return false
	}
	size := streamSize.Size(m)
	if r.n >= MaxStreamMessages || len(streamMagic)+len(r.buf)+binary.MaxVarintLen64+size > MaxStreamBytes {
		r.drop()
		return false
	}
	if len(r.buf) == 0 {
		r.buf = append(r.buf, streamMagic...)
	}
	r.buf = binary.AppendUvarint(r.buf, uint64(size))
	b, err := streamMarshal.MarshalAppend(r.buf, m)
	if err != nil || len(b)-len(r.buf) != size {
		r.drop()
		return false
	}
	r.buf = b
	r.n++
	return true
}

func (r *StreamRecorder) drop() {
	r.full, r.buf, r.n = true, nil, 0
}

// Len returns the number of messages recorded.
func (r *StreamRecorder) Len() int { return r.n }

// Entry returns the recorded stream as a cache entry stored at now; ok is
// false when the recorder went over its bounds. The recorder must not be
// used after Entry.
func (r *StreamRecorder) Entry(now time.Time) (e Entry, ok bool) {
	if r.full {
		return Entry{}, false
	}
	if len(r.buf) == 0 {
		r.buf = append(r.buf, streamMagic...)
	}
	return Entry{Value: r.buf, StoredAt: now}, true
}

// ErrNotStream is returned when a cached value is not a recorded stream.
var ErrNotStream = errors.New("fallback: the cached value is not a recorded stream")

// CachedStream is a recorded stream being served: [CachedStream.Next] fills
// one message after the other, then returns io.EOF. It is not safe for
// concurrent use.
type CachedStream struct {
	msgs [][]byte
	next int
}

// DecodeStream decodes a value made by [StreamRecorder.Entry]. When typ is
// not nil, every message must unmarshal into it.
func DecodeStream(value []byte, typ protoreflect.MessageType) (*CachedStream, error) {
	if len(value) < len(streamMagic) || string(value[:len(streamMagic)]) != streamMagic {
		return nil, ErrNotStream
	}
	b := value[len(streamMagic):]
	var msgs [][]byte
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: truncated message %d", ErrNotStream, len(msgs))
		}
		msg := b[k : k+int(n)]
		if typ != nil {
			if err := proto.Unmarshal(msg, typ.New().Interface()); err != nil {
				return nil, fmt.Errorf("%w: message %d: %v", ErrNotStream, len(msgs), err)
			}
		}
		msgs = append(msgs, msg)
		if len(msgs) > MaxStreamMessages {
			return nil, fmt.Errorf("%w: more than %d messages", ErrNotStream, MaxStreamMessages)
		}
		b = b[k+int(n):]
	}
	return &CachedStream{msgs: msgs}, nil
}

// Len returns the number of messages of the stream.
func (c *CachedStream) Len() int { return len(c.msgs) }

// Next fills m with the next message (replacing its contents), or returns
// io.EOF after the last one.
func (c *CachedStream) Next(m proto.Message) error {
	if c.next >= len(c.msgs) {
		return io.EOF
	}
	if m == nil {
		return ErrNotProto
	}
	tmp := m.ProtoReflect().New().Interface()
	if err := proto.Unmarshal(c.msgs[c.next], tmp); err != nil {
		return fmt.Errorf("fallback: cached stream message %d: %w", c.next, err)
	}
	proto.Reset(m)
	proto.Merge(m, tmp)
	c.next++
	return nil
}

// Stream returns the recorded stream stored under key, if it is younger than
// the step's maximum staleness and decodes (into typ, when not nil). As with
// Answer, every failure is a miss of the step: a cache error, a missing, stale
// or undecodable entry.
func (s *CacheStep) Stream(ctx context.Context, key string, typ protoreflect.MessageType) (*CachedStream, Served, error) {
	e, ok, err := s.cache.Get(ctx, key)
	if err != nil {
		return nil, Served{}, fmt.Errorf("cache: %w", err)
	}
	if !ok {
		return nil, Served{}, ErrCacheMiss
	}
	age := time.Since(e.StoredAt)
	if e.StoredAt.IsZero() || age > s.maxStaleness {
		return nil, Served{}, fmt.Errorf("cache: entry is %v old, older than the %v allowed: %w", age.Round(time.Millisecond), s.maxStaleness, ErrCacheMiss)
	}
	cs, err := DecodeStream(e.Value, typ)
	if err != nil {
		return nil, Served{}, fmt.Errorf("cache: %v: %w", err, ErrCacheMiss)
	}
	return cs, Served{Source: SourceCache, Age: max(age, 0)}, nil
}

// WithinChain returns a context marked as belonging to a call made by a
// chain's step, as [Chain.Run] marks it: [InChain] reports true for it, so the
// call does not enter a chain again. The stream interceptor uses it for the
// streams it opens on alternates.
func WithinChain(ctx context.Context) context.Context {
	return context.WithValue(ctx, inChainKey{}, true)
}
