package fallback_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rebound-grpc/rebound/fallback"
)

func record(t *testing.T, msgs ...proto.Message) *fallback.StreamRecorder {
	t.Helper()
	var r fallback.StreamRecorder
	for i, m := range msgs {
		if !r.Record(m) {
			t.Fatalf("Record(message %d) = false; want true", i)
		}
	}
	return &r
}

func TestStreamRecorderRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msgs []string
	}{
		{"empty", nil},
		{"one", []string{"a"}},
		{"several", []string{"a", "", "ccc"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var r fallback.StreamRecorder
			m := &wrapperspb.StringValue{}
			for _, s := range tc.msgs {
				m.Value = s // reused: the recorder keeps bytes
				r.Record(m)
			}
			e, ok := r.Entry(time.Now())
			if !ok {
				t.Fatalf("Entry() ok = false; want true")
			}
			cs, err := fallback.DecodeStream(e.Value, (&wrapperspb.StringValue{}).ProtoReflect().Type())
			if err != nil {
				t.Fatalf("DecodeStream() error = %v", err)
			}
			if cs.Len() != len(tc.msgs) {
				t.Errorf("Len() = %d; want %d", cs.Len(), len(tc.msgs))
			}
			got := &wrapperspb.StringValue{Value: "stale"}
			for i, want := range tc.msgs {
				if err := cs.Next(got); err != nil || got.GetValue() != want {
					t.Errorf("Next() %d = %q, %v; want %q", i, got.GetValue(), err, want)
				}
			}
			if err := cs.Next(got); err != io.EOF {
				t.Errorf("Next() after the last = %v; want io.EOF", err)
			}
		})
	}
}

func TestStreamRecorderBounds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		n      int
		size   int
		wantOK bool
	}{
		{"max messages", fallback.MaxStreamMessages, 1, true},
		{"one message too many", fallback.MaxStreamMessages + 1, 1, false},
		{"under max bytes", 10, fallback.MaxStreamBytes / 20, true},
		{"over max bytes", 2, fallback.MaxStreamBytes / 2, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var r fallback.StreamRecorder
			m := &wrapperspb.BytesValue{Value: make([]byte, tc.size)}
			for range tc.n {
				r.Record(m)
			}
			e, ok := r.Entry(time.Now())
			if ok != tc.wantOK {
				t.Fatalf("Entry() ok = %v; want %v", ok, tc.wantOK)
			}
			if ok && len(e.Value) > fallback.MaxStreamBytes {
				t.Errorf("len(Value) = %d; want ≤ %d", len(e.Value), fallback.MaxStreamBytes)
			}
		})
	}
}

func TestDecodeStreamRejects(t *testing.T) {
	t.Parallel()
	good, _ := record(t, wrapperspb.String("a"), wrapperspb.String("b")).Entry(time.Now())
	strType := (&wrapperspb.StringValue{}).ProtoReflect().Type()
	notUTF8, _ := record(t, wrapperspb.Bytes([]byte{0xff})).Entry(time.Now())
	unary, _ := proto.Marshal(wrapperspb.String("a unary reply"))
	tests := []struct {
		name  string
		value []byte
		typ   protoreflect.MessageType
	}{
		{"empty", nil, nil},
		{"unary reply", unary, nil},
		{"truncated", good.Value[:len(good.Value)-1], nil},
		{"wrong type", notUTF8.Value, strType}, // a string field must be UTF-8
	}
	if _, err := fallback.DecodeStream(good.Value, strType); err != nil {
		t.Fatalf("DecodeStream(good) error = %v", err)
	}
	for _, tc := range tests {
		if _, err := fallback.DecodeStream(tc.value, tc.typ); !errors.Is(err, fallback.ErrNotStream) {
			t.Errorf("%s: DecodeStream() error = %v; want ErrNotStream", tc.name, err)
		}
	}
}

func TestCacheStepStream(t *testing.T) {
	t.Parallel()
	c := fallback.NewMemoryCache(1 << 20)
	step := fallback.NewCacheStep(c, time.Minute, nil)
	ctx := context.Background()
	e, _ := record(t, wrapperspb.String("a"), wrapperspb.String("b")).Entry(time.Now().Add(-time.Second))
	stale, _ := record(t, wrapperspb.String("old")).Entry(time.Now().Add(-time.Hour))
	_ = c.Set(ctx, "fresh", e)
	_ = c.Set(ctx, "stale", stale)
	_ = c.Set(ctx, "corrupt", fallback.Entry{Value: []byte("junk"), StoredAt: time.Now()})
	typ := (&wrapperspb.StringValue{}).ProtoReflect().Type()

	cs, served, err := step.Stream(ctx, "fresh", typ)
	if err != nil || cs.Len() != 2 || served.Source != fallback.SourceCache || served.Age < time.Second {
		t.Errorf("Stream(fresh) = %v, %+v, %v; want 2 messages from the cache, about 1s old", cs, served, err)
	}
	for _, key := range []string{"missing", "stale", "corrupt"} {
		if _, _, err := step.Stream(ctx, key, typ); !errors.Is(err, fallback.ErrCacheMiss) {
			t.Errorf("Stream(%s) error = %v; want ErrCacheMiss", key, err)
		}
	}
}

func TestWithinChain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if fallback.InChain(ctx) || !fallback.InChain(fallback.WithinChain(ctx)) {
		t.Errorf("InChain(ctx), InChain(WithinChain(ctx)) = %v, %v; want false, true", fallback.InChain(ctx), fallback.InChain(fallback.WithinChain(ctx)))
	}
}
