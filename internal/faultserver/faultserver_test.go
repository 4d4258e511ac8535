package faultserver_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rebound-grpc/rebound/internal/faultserver"
	"github.com/rebound-grpc/rebound/internal/testpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func dial(t *testing.T, addr string) testpb.EchoServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDisableRetry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return testpb.NewEchoServiceClient(cc)
}

func callCtx(t *testing.T, d time.Duration, id, tenant string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, faultserver.CallIDKey, id, faultserver.TenantKey, tenant)
}

func TestUnaryFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		fault    faultserver.Fault
		timeout  time.Duration
		wantCode codes.Code
		minTime  time.Duration
	}{
		{"ok", faultserver.Fault{}, 5 * time.Second, codes.OK, 0},
		{"code", faultserver.Fault{Code: codes.ResourceExhausted}, 5 * time.Second, codes.ResourceExhausted, 0},
		{"delay", faultserver.Fault{Delay: 50 * time.Millisecond}, 5 * time.Second, codes.OK, 50 * time.Millisecond},
		{"delay past deadline", faultserver.Fault{Delay: time.Second}, 50 * time.Millisecond, codes.DeadlineExceeded, 50 * time.Millisecond},
		{"slow first byte", faultserver.Fault{FirstByte: 40 * time.Millisecond}, 5 * time.Second, codes.OK, 40 * time.Millisecond},
		{"black hole", faultserver.Fault{BlackHole: true}, 80 * time.Millisecond, codes.DeadlineExceeded, 80 * time.Millisecond},
		{"reset", faultserver.Fault{Reset: true}, 5 * time.Second, codes.Unavailable, 0},
		{"goaway then answer", faultserver.Fault{GoAway: true}, 5 * time.Second, codes.OK, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := faultserver.Start(t, faultserver.Options{Name: "p"})
			srv.Set(tt.fault)
			c := dial(t, srv.Addr)
			start := time.Now()
			got, err := c.Echo(callCtx(t, tt.timeout, "id1", "acme"), &testpb.EchoRequest{Message: "hi"})
			el := time.Since(start)
			if code := status.Code(err); code != tt.wantCode {
				t.Fatalf("Echo() error = %v; want code %v", err, tt.wantCode)
			}
			if el < tt.minTime {
				t.Errorf("Echo() took %v; want ≥ %v", el, tt.minTime)
			}
			if err == nil {
				if want := "p|acme|hi"; got.GetMessage() != want {
					t.Errorf("Echo().Message = %q; want %q", got.GetMessage(), want)
				}
			}
			if n := srv.AttemptsOf("id1"); n != 1 {
				t.Errorf("AttemptsOf(id1) = %d; want 1", n)
			}
		})
	}
}

// TestGoAwayKeepsPort: after GOAWAY the port keeps answering, calls in flight
// finish, and the client reconnects.
func TestGoAwayKeepsPort(t *testing.T) {
	t.Parallel()
	srv := faultserver.Start(t, faultserver.Options{Name: "p"})
	c := dial(t, srv.Addr)
	srv.Set(faultserver.Fault{Delay: 100 * time.Millisecond})
	done := make(chan error, 1)
	go func() {
		_, err := c.Echo(callCtx(t, 5*time.Second, "slow", ""), &testpb.EchoRequest{Message: "x"})
		done <- err
	}()
	for srv.InFlight() == 0 {
		time.Sleep(time.Millisecond)
	}
	srv.GoAway()
	srv.Set(faultserver.Fault{})
	if err := <-done; err != nil {
		t.Errorf("call in flight during GOAWAY: error = %v; want nil", err)
	}
	for i := range 3 {
		if _, err := c.Echo(callCtx(t, 5*time.Second, "after", ""), &testpb.EchoRequest{Message: "x"}); err != nil {
			t.Fatalf("Echo() #%d after GOAWAY error = %v; want nil", i, err)
		}
	}
	if n := srv.GoAways(); n != 1 {
		t.Errorf("GoAways() = %d; want 1", n)
	}
}

func TestMaxConnectionAge(t *testing.T) {
	t.Parallel()
	srv := faultserver.Start(t, faultserver.Options{ServerOptions: []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: 20 * time.Millisecond, MaxConnectionAgeGrace: time.Second}),
	}})
	c := dial(t, srv.Addr)
	for i := range 10 {
		if _, err := c.Echo(callCtx(t, 5*time.Second, "", ""), &testpb.EchoRequest{}); err != nil {
			t.Fatalf("Echo() #%d error = %v; want nil", i, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPartialStreams(t *testing.T) {
	t.Parallel()
	srv := faultserver.Start(t, faultserver.Options{Name: "p"})
	c := dial(t, srv.Addr)

	srv.Set(faultserver.Fault{SendThenFail: 3, FirstByte: 20 * time.Millisecond})
	ls, err := c.List(callCtx(t, 5*time.Second, "l", "t"), &testpb.ListRequest{Message: "m", Count: 10})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for {
		m, err := ls.Recv()
		if err != nil {
			if code := status.Code(err); code != codes.Unavailable {
				t.Errorf("List Recv() error = %v; want UNAVAILABLE", err)
			}
			break
		}
		got = append(got, m.GetSeq())
	}
	if len(got) != 3 {
		t.Errorf("List received %v; want 3 messages", got)
	}

	cs, err := c.Chat(callCtx(t, 5*time.Second, "c", "t"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		_ = cs.Send(&testpb.ChatRequest{Message: "x", Seq: int64(i)})
	}
	_ = cs.CloseSend()
	n := 0
	for {
		_, err := cs.Recv()
		if err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Errorf("Chat Recv() error = %v; want UNAVAILABLE", err)
			}
			break
		}
		n++
	}
	if n != 3 {
		t.Errorf("Chat received %d; want 3", n)
	}

	srv.Set(faultserver.Fault{})
	us, err := c.Upload(callCtx(t, 5*time.Second, "u", "t"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"a", "b"} {
		_ = us.Send(&testpb.UploadRequest{Message: s})
	}
	r, err := us.CloseAndRecv()
	if err != nil || r.GetMessage() != "p|t|ab" || r.GetCount() != 2 {
		t.Errorf("Upload() = %v, %v; want p|t|ab, 2", r, err)
	}
	if _, err := ls.Recv(); !errors.Is(err, io.EOF) && err == nil {
		t.Errorf("Recv after end = nil; want an error")
	}
}

func TestRate(t *testing.T) {
	t.Parallel()
	srv := faultserver.Start(t, faultserver.Options{})
	srv.Set(faultserver.Fault{Code: codes.Unavailable, Rate: 0.5})
	c := dial(t, srv.Addr)
	fails := 0
	for range 200 {
		if _, err := c.Echo(callCtx(t, 5*time.Second, "", ""), &testpb.EchoRequest{}); err != nil {
			fails++
		}
	}
	if fails < 50 || fails > 150 {
		t.Errorf("failures with Rate 0.5 = %d of 200; want about 100", fails)
	}
}

func TestParseText(t *testing.T) {
	t.Parallel()
	name, tenant, text, ok := faultserver.ParseText("p|acme|a|b")
	if !ok || name != "p" || tenant != "acme" || text != "a|b" {
		t.Errorf("ParseText(p|acme|a|b) = %q, %q, %q, %v; want p, acme, a|b, true", name, tenant, text, ok)
	}
	if _, _, _, ok := faultserver.ParseText("static"); ok {
		t.Errorf("ParseText(static) ok = true; want false")
	}
}

func TestFaultString(t *testing.T) {
	t.Parallel()
	if got, want := (faultserver.Fault{BlackHole: true, Rate: 0.3}).String(), "blackhole@30%"; got != want {
		t.Errorf("Fault.String() = %q; want %q", got, want)
	}
}
