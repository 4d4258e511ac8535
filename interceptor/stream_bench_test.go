package interceptor_test

import (
	"context"
	"fmt"
	"io"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rebound-grpc/rebound/internal/testpb"
	"github.com/rebound-grpc/rebound/internal/testserver"
)

func noopStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(ctx, desc, cc, method, opts...)
}

// BenchmarkStreamHealthyTCP measures a healthy server stream over loopback
// TCP, with a no-op stream interceptor and with rebound, for 1 and 100
// replies: the difference between the two sizes is the per-message cost, the
// rest the per-stream cost.
func BenchmarkStreamHealthyTCP(b *testing.B) {
	srv := testserver.Start(b, "primary", testserver.OK)
	s := newSuite(b)
	for _, bc := range []struct {
		name string
		ic   grpc.StreamClientInterceptor
	}{
		{"noop", noopStream},
		{"rebound", s.StreamClientInterceptor()},
	} {
		cc, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDisableRetry(), grpc.WithChainStreamInterceptor(bc.ic))
		if err != nil {
			b.Fatal(err)
		}
		client := testpb.NewEchoServiceClient(cc)
		for _, n := range []int64{1, 100} {
			b.Run(fmt.Sprintf("%s/msgs=%d", bc.name, n), func(b *testing.B) {
				ctx := context.Background()
				req := &testpb.ListRequest{Message: "hello", Count: n}
				reply := &testpb.ListResponse{}
				list := func() {
					st, err := client.List(ctx, req)
					if err != nil {
						b.Fatal(err)
					}
					got := int64(0)
					for {
						if err := st.RecvMsg(reply); err == io.EOF {
							break
						} else if err != nil {
							b.Fatal(err)
						}
						got++
					}
					if got != n {
						b.Fatalf("List() replies = %d; want %d", got, n)
					}
				}
				list()
				b.ReportAllocs()
				for b.Loop() {
					list()
				}
			})
		}
		_ = cc.Close()
	}
}
