package fallback

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/rebound-grpc/rebound/internal/testpb"
)

// FuzzStaticStep answers with arbitrary wire bytes (a static reply, or a
// cache value that passed the tag check): never a panic; on failure the
// caller's reply is untouched; on success it holds exactly the bytes' message.
func FuzzStaticStep(f *testing.F) {
	ok, _ := proto.Marshal(&testpb.EchoResponse{Message: "static", Seq: 7, Payload: []byte{1, 2}})
	for _, b := range [][]byte{ok, nil, {0xff}, {0x0a, 0x05, 'a'}, {0x0a, 0x80, 0x80, 0x80, 0x80, 0x10}, {0x12, 0x01, 0x00}, {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, {0x0a, 0x01, 0xc3}, {0x7a, 0x00}} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, wire []byte) {
		reply := &testpb.EchoResponse{Message: "before"}
		_, err := NewStatic(wire).Answer(context.Background(), &Call{Method: "/m", Reply: reply})
		if err != nil {
			if reply.GetMessage() != "before" || reply.GetSeq() != 0 {
				t.Fatalf("Answer(%x) failed (%v) but changed the reply to %v", wire, err, reply)
			}
			return
		}
		var want testpb.EchoResponse
		if uerr := proto.Unmarshal(wire, &want); uerr != nil {
			t.Fatalf("Answer(%x) = nil; want the unmarshal error %v", wire, uerr)
		}
		if !proto.Equal(reply, &want) {
			t.Fatalf("Answer(%x) filled %v; want %v", wire, reply, &want)
		}
	})
}
