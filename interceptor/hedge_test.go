package interceptor_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rebound-grpc/rebound/interceptor"
	"github.com/rebound-grpc/rebound/internal/testpb"
	"github.com/rebound-grpc/rebound/internal/testserver"
	"github.com/rebound-grpc/rebound/pattern"
	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

func hedging(method string, attempts, delayMs uint32) interceptor.Option {
	return interceptor.WithPolicy(method, &reboundv1.RecoveryPolicy{
		Hedging: &reboundv1.Hedging{MaxAttempts: proto.Uint32(attempts), DelayMs: proto.Uint32(delayMs)},
	})
}

// slowFirst makes the first attempt take d; later ones answer at once.
func slowFirst(d time.Duration) testserver.Behavior {
	return func(c testserver.Call) testserver.Response {
		if c.N == 1 {
			return testserver.Response{Delay: d, Message: "slow"}
		}
		return testserver.Response{Message: fmt.Sprintf("fast-%d", c.N)}
	}
}

func TestHedgeWinnerDeliveredLosersCancelled(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", slowFirst(5*time.Second))
	cc := dial(t, srv.Addr, newSuite(t, hedging(echoMethod, 3, 20)))
	var served interceptor.Served
	start := time.Now()
	got, err := echo(t, cc, ctxTimeout(t, 10*time.Second), "x", interceptor.ServedBy(&served))
	if err != nil || got.GetMessage() != "fast-2" {
		t.Fatalf("Echo() = %v, %v; want the hedge's reply fast-2", got, err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("hedged call took %v; want about the hedging delay", el)
	}
	if served.Attempts != 2 {
		t.Errorf("served attempts = %d; want 2", served.Attempts)
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.Canceled() != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if srv.Canceled() != 1 {
		t.Errorf("server saw %d cancelled attempts; want the slow loser cancelled", srv.Canceled())
	}
	if srv.Attempts() != 2 {
		t.Errorf("server attempts = %d; want 2 (no third hedge after a winner)", srv.Attempts())
	}
}

func TestHedgeNonFatalFiresNextAtOnce(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", testserver.FailFirst(1, codes.Unavailable))
	cc := dial(t, srv.Addr, newSuite(t, hedging(echoMethod, 3, 10_000)))
	start := time.Now()
	if _, err := echo(t, cc, ctxTimeout(t, 20*time.Second), "x"); err != nil {
		t.Fatalf("Echo() error = %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("call took %v; a non-fatal failure must fire the next hedge at once, not after 10s", el)
	}
}

func TestHedgeFatalEndsCall(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", testserver.Fail(codes.InvalidArgument))
	cc := dial(t, srv.Addr, newSuite(t, hedging(echoMethod, 3, 10)))
	_, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "x")
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("Echo() error = %v; want INVALID_ARGUMENT", err)
	}
	if n := srv.Attempts(); n != 1 {
		t.Errorf("attempts = %d; want 1 (a fatal code ends the call)", n)
	}
}

func TestHedgeNotForNonIdempotent(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", slowFirst(300*time.Millisecond))
	cc := dial(t, srv.Addr, newSuite(t, hedging(testpb.EchoService_Create_FullMethodName, 3, 10)))
	got, err := testpb.NewEchoServiceClient(cc).Create(ctxTimeout(t, 5*time.Second), &testpb.CreateRequest{Message: "x"})
	if err != nil || got.GetMessage() != "slow" || srv.Attempts() != 1 {
		t.Errorf("Create() = %v, %v after %d attempts; want the one slow attempt (never hedged)", got, err, srv.Attempts())
	}
}

func TestHedgeBudgetShared(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", func(c testserver.Call) testserver.Response {
		return testserver.Response{Delay: 200 * time.Millisecond}
	})
	cc := dial(t, srv.Addr, newSuite(t, hedging(echoMethod, 3, 20),
		interceptor.WithRetryBudget(pattern.BudgetConfig{Ratio: 0.001, MaxTokens: 2})))
	// Call 1 may hedge twice (2 tokens); call 2 finds the budget (nearly) empty.
	var perCall []int64
	for range 2 {
		before := srv.Attempts()
		if _, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "x"); err != nil {
			t.Fatal(err)
		}
		perCall = append(perCall, srv.Attempts()-before)
	}
	if perCall[0] != 3 || perCall[1] != 1 {
		t.Errorf("attempts per call = %v; want [3 1]: hedges are paid from the retry budget", perCall)
	}
}

func TestHedgeConcurrentSafe(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", func(c testserver.Call) testserver.Response {
		if c.N%3 == 0 {
			return testserver.Response{Delay: 30 * time.Millisecond}
		}
		return testserver.Response{}
	})
	cc := dial(t, srv.Addr, newSuite(t, hedging(echoMethod, 2, 5)))
	client := testpb.NewEchoServiceClient(cc)
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for g := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				seq := int64(g*1000 + i)
				msg := fmt.Sprintf("m%d", seq)
				got, err := client.Echo(ctxTimeout(t, 5*time.Second), &testpb.EchoRequest{Message: msg, Seq: seq})
				switch {
				case err != nil:
					errs <- err
				case got.GetSeq() != seq || got.GetMessage() != "primary:"+msg:
					errs <- fmt.Errorf("Echo(%d) = %v; want its own reply", seq, got)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestHedgeDelayFromPercentile(t *testing.T) {
	t.Parallel()
	var slow bool
	var mu sync.Mutex
	srv := testserver.Start(t, "primary", func(c testserver.Call) testserver.Response {
		mu.Lock()
		defer mu.Unlock()
		if slow {
			slow = false
			return testserver.Response{Delay: 5 * time.Second, Message: "slow"}
		}
		return testserver.Response{}
	})
	pol := interceptor.WithPolicy(echoMethod, &reboundv1.RecoveryPolicy{Hedging: &reboundv1.Hedging{
		MaxAttempts: proto.Uint32(2), DelayMs: proto.Uint32(10_000), DelayPercentile: proto.Float64(95),
	}})
	cc := dial(t, srv.Addr, newSuite(t, pol))
	for range 40 { // teach the method its latency
		if _, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "x"); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	slow = true
	mu.Unlock()
	start := time.Now()
	got, err := echo(t, cc, ctxTimeout(t, 20*time.Second), "x")
	if err != nil || got.GetMessage() == "slow" {
		t.Fatalf("Echo() = %v, %v; want the hedge's reply", got, err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("call took %v; the hedge should fire after the observed p95 (milliseconds), not the 10s fixed delay", el)
	}
}
