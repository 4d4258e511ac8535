package backendproc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rebound-grpc/rebound/internal/backendproc"
	"github.com/rebound-grpc/rebound/internal/faultserver"
	"github.com/rebound-grpc/rebound/internal/testpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestKillRestart: a killed backend refuses calls; restarted, it answers on
// the same port with the fault it had, and attempts are counted per call id
// across restarts.
func TestKillRestart(t *testing.T) {
	bin := backendproc.Build(t)
	p := bin.Start(t, "primary", "127.0.0.1:0")
	addr := p.Addr()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDisableRetry())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := testpb.NewEchoServiceClient(cc)
	waitReady := false // after a restart, wait out the client's reconnect backoff
	call := func(id string) (*testpb.EchoResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, faultserver.CallIDKey, id, faultserver.TenantKey, "acme")
		return c.Echo(ctx, &testpb.EchoRequest{Message: "hi"}, grpc.WaitForReady(waitReady))
	}
	if r, err := call("a"); err != nil || r.GetMessage() != "primary|acme|hi" {
		t.Fatalf("Echo() = %v, %v; want primary|acme|hi", r, err)
	}
	p.Set(faultserver.Fault{Code: codes.ResourceExhausted})
	if _, err := call("b"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Echo() with fault error = %v; want RESOURCE_EXHAUSTED", err)
	}
	p.Kill()
	if _, err := call("c"); status.Code(err) != codes.Unavailable {
		t.Fatalf("Echo() to killed backend error = %v; want UNAVAILABLE", err)
	}
	p.Restart()
	waitReady = true
	if p.Addr() != addr {
		t.Fatalf("Addr() after restart = %s; want %s", p.Addr(), addr)
	}
	if _, err := call("b"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Echo() after restart error = %v; want RESOURCE_EXHAUSTED (fault kept)", err)
	}
	p.Set(faultserver.Fault{})
	if _, err := call("d"); err != nil {
		t.Fatalf("Echo() after restart error = %v; want nil", err)
	}
	p.GoAway()
	p.ResetAll()
	// The client learns of the reset asynchronously: a call it already put
	// on the old connection fails UNAVAILABLE. The next ones reconnect.
	var err2 error
	for i := range 5 {
		if _, err2 = call(fmt.Sprintf("e%d", i)); err2 == nil {
			break
		}
		if status.Code(err2) != codes.Unavailable {
			t.Fatalf("Echo() after GOAWAY and reset error = %v; want nil or UNAVAILABLE", err2)
		}
	}
	if err2 != nil {
		t.Fatalf("Echo() after GOAWAY and reset, 5 tries: last error = %v; want a reconnect and nil", err2)
	}
	if n := p.AttemptsOf("b"); n != 2 {
		t.Errorf("AttemptsOf(b) = %d; want 2", n)
	}
	if n, _ := p.MaxAttemptsPerCall(); n != 2 {
		t.Errorf("MaxAttemptsPerCall() = %d; want 2", n)
	}
	if p.Kills() != 1 || p.Starts() != 2 {
		t.Errorf("Kills(), Starts() = %d, %d; want 1, 2", p.Kills(), p.Starts())
	}
}
