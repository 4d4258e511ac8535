package bench

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/rebound-grpc/rebound/bench/internal/harness"
)

func nilInvoker(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
	return nil
}

// BenchmarkAlone measures each interceptor with an invoker that returns at
// once: what the library adds to every healthy call, with no transport.
func BenchmarkAlone(b *testing.B) {
	ctx := context.Background()
	req, reply := &emptypb.Empty{}, &emptypb.Empty{}
	for _, lib := range harness.Libs() {
		if !lib.Interceptor {
			continue
		}
		b.Run("lib="+lib.ID, func(b *testing.B) {
			c, err := lib.New(harness.Settings{})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ic := c.Unary
			if ic == nil {
				ic = harness.Noop
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := ic(ctx, harness.FullMethod, req, reply, nil, nilInvoker); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTCP measures a healthy unary call over loopback TCP.
func BenchmarkTCP(b *testing.B) {
	srv, err := harness.StartTCP()
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	benchCalls(b, srv)
}

// BenchmarkBufconn measures a healthy unary call over an in-memory bufconn
// listener: the same as TCP without the kernel.
func BenchmarkBufconn(b *testing.B) {
	srv := harness.StartBufconn()
	defer srv.Stop()
	benchCalls(b, srv)
}

func benchCalls(b *testing.B, srv *harness.Server) {
	for _, lib := range harness.Libs() {
		b.Run("lib="+lib.ID, func(b *testing.B) {
			c, err := lib.New(harness.Settings{})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			cc, err := c.Dial(srv)
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			ctx := context.Background()
			req := &emptypb.Empty{}
			// Warm up: connect, and let every library see its first call.
			for range 10 {
				if err := cc.Invoke(ctx, harness.FullMethod, req, new(emptypb.Empty)); err != nil {
					b.Fatal(err)
				}
			}
			reply := new(emptypb.Empty)
			b.ReportAllocs()
			for b.Loop() {
				if err := cc.Invoke(ctx, harness.FullMethod, req, reply); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
