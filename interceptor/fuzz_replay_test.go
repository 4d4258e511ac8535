package interceptor_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/rebound-grpc/rebound/interceptor"
	"github.com/rebound-grpc/rebound/internal/testpb"
)

// FuzzReplayBuffer adds client messages of fuzzed sizes and contents to a
// stream's replay buffer: it never holds more than its bound (whatever the
// messages) and accepts exactly the prefix that fits; when all fit it
// replays them in order, each equal to the one sent; once one does not fit
// it releases everything and replays nothing (the stream is then committed).
func FuzzReplayBuffer(f *testing.F) {
	f.Add([]byte("abc"), uint32(3), uint32(10), "x")
	f.Add([]byte{}, uint32(0), uint32(1), "")
	f.Add([]byte{0xff}, uint32(200_000), uint32(4), "big")
	f.Add([]byte("z"), uint32(interceptor.ReplayBufferBytes), uint32(2), "edge")
	f.Add([]byte("z"), uint32(interceptor.ReplayBufferBytes-16), uint32(3), "near edge")
	f.Add([]byte{}, uint32(0), uint32(41), "\xa1") // invalid UTF-8: does not marshal
	f.Fuzz(func(t *testing.T, unit []byte, size, count uint32, text string) {
		size %= 2 * interceptor.ReplayBufferBytes
		count = count%40 + 1
		var msgs []proto.Message
		var want []proto.Message
		full := false
		total := 0
		for i := range count {
			p := make([]byte, 0, size)
			for len(unit) > 0 && len(p) < int(size) {
				p = append(p, unit[:min(len(unit), int(size)-len(p))]...)
			}
			m := &testpb.UploadRequest{Message: text, Payload: p}
			if i%3 == 1 {
				m.Payload = nil
			}
			msgs = append(msgs, m)
			total += 4 + proto.Size(m)
			if _, err := proto.Marshal(m); err != nil {
				full = true // e.g. invalid UTF-8 in a string: it cannot be sent, nor kept
			}
			if !full && total <= interceptor.ReplayBufferBytes {
				want = append(want, m)
			} else {
				full = true
			}
		}
		kept, max, replayed, err := interceptor.ReplayRoundTrip(msgs)
		if err != nil {
			t.Fatalf("replay error = %v; want nil", err)
		}
		if max > interceptor.ReplayBufferBytes {
			t.Fatalf("buffer held %d bytes; want ≤ %d", max, interceptor.ReplayBufferBytes)
		}
		if kept != len(want) {
			t.Fatalf("kept %d of %d messages; want the %d that fit", kept, len(msgs), len(want))
		}
		if full {
			if len(replayed) != 0 {
				t.Fatalf("replayed %d messages after an overflow; want 0 (buffer released)", len(replayed))
			}
			return
		}
		if len(replayed) != len(want) {
			t.Fatalf("replayed %d of %d messages; want all", len(replayed), len(want))
		}
		for i := range want {
			if !proto.Equal(replayed[i], want[i]) {
				t.Fatalf("replayed[%d] = %v; want %v", i, replayed[i], want[i])
			}
		}
	})
}
