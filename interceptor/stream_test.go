package interceptor_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rebound-grpc/rebound/fallback"
	"github.com/rebound-grpc/rebound/interceptor"
	"github.com/rebound-grpc/rebound/internal/testpb"
	"github.com/rebound-grpc/rebound/internal/testserver"
	"github.com/rebound-grpc/rebound/pattern"
	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

const echoService = "rebound.testing.v1.EchoService"

// dialStream connects to addr through both of the Suite's interceptors.
func dialStream(t testing.TB, addr string, s *interceptor.Suite) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDisableRetry(),
		grpc.WithChainUnaryInterceptor(s.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(s.StreamClientInterceptor()),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// streamKind drives one stream of a kind: it sends msgs (List sends the first
// as its request) and returns the texts of the replies, in order.
type streamKind struct {
	name string
	run  func(ctx context.Context, cc *grpc.ClientConn, msgs []string, opts ...grpc.CallOption) ([]string, error)
}

// listCount is how many replies List streams.
const listCount = 3

var streamKinds = []streamKind{
	{"server", runList},
	{"client", runUpload},
	{"bidi", runChat},
}

func runList(ctx context.Context, cc *grpc.ClientConn, msgs []string, opts ...grpc.CallOption) ([]string, error) {
	st, err := testpb.NewEchoServiceClient(cc).List(ctx, &testpb.ListRequest{Message: msgs[0], Count: listCount}, opts...)
	if err != nil {
		return nil, err
	}
	var got []string
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, m.GetMessage())
	}
}

func runUpload(ctx context.Context, cc *grpc.ClientConn, msgs []string, opts ...grpc.CallOption) ([]string, error) {
	st, err := testpb.NewEchoServiceClient(cc).Upload(ctx, opts...)
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		if err := st.Send(&testpb.UploadRequest{Message: m}); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
	}
	r, err := st.CloseAndRecv()
	if err != nil {
		return nil, err
	}
	return []string{r.GetMessage()}, nil
}

func runChat(ctx context.Context, cc *grpc.ClientConn, msgs []string, opts ...grpc.CallOption) ([]string, error) {
	st, err := testpb.NewEchoServiceClient(cc).Chat(ctx, opts...)
	if err != nil {
		return nil, err
	}
	for i, m := range msgs {
		if err := st.Send(&testpb.ChatRequest{Message: m, Seq: int64(i)}); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
	}
	if err := st.CloseSend(); err != nil {
		return nil, err
	}
	var got []string
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, m.GetMessage())
	}
}

// want returns the replies server name answers to msgs with kind k.
func want(k string, name string, msgs []string) []string {
	switch k {
	case "server":
		return slices.Repeat([]string{name + ":" + msgs[0]}, listCount)
	case "client":
		return []string{name + ":" + strings.Join(msgs, "")}
	default:
		out := make([]string, len(msgs))
		for i, m := range msgs {
			out[i] = name + ":" + m
		}
		return out
	}
}

// sent returns the client messages kind k sends for msgs.
func sent(k string, msgs []string) []string {
	if k == "server" {
		return msgs[:1]
	}
	return msgs
}

func servicePolicy(p *reboundv1.RecoveryPolicy) interceptor.Option {
	return interceptor.WithPolicy(echoService, p)
}

// noPattern turns the recovery pattern off, so that a test's failures do
// not open the circuit for its later streams.
var noPattern = servicePolicy(&reboundv1.RecoveryPolicy{Pattern: &reboundv1.RecoveryPolicy_NoPattern{NoPattern: &reboundv1.NoPattern{}}})

func chainPolicy(steps ...*reboundv1.FallbackStep) interceptor.Option {
	return servicePolicy(&reboundv1.RecoveryPolicy{Fallback: &reboundv1.Fallback{Steps: steps}})
}

var threeMsgs = []string{"a", "b", "c"}

func TestStreamHealthy(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", testserver.OK)
	cc := dialStream(t, srv.Addr, newSuite(t, fast()...))
	for _, k := range streamKinds {
		var served interceptor.Served
		got, err := k.run(ctxTimeout(t, 5*time.Second), cc, threeMsgs, interceptor.ServedBy(&served))
		if err != nil || !slices.Equal(got, want(k.name, "primary", threeMsgs)) {
			t.Errorf("%s stream = %q, %v; want %q", k.name, got, err, want(k.name, "primary", threeMsgs))
		}
		if served.Source != fallback.SourcePrimary || served.Attempts != 1 {
			t.Errorf("%s served = %+v; want primary after 1 attempt", k.name, served)
		}
	}
	if n := srv.Attempts(); n != 3 {
		t.Errorf("server attempts = %d; want 3", n)
	}
}

// TestStreamRetryBeforeCommit: a failure before any reply re-opens the
// stream and replays the client messages: the answering attempt sees each
// exactly once, in order.
func TestStreamRetryBeforeCommit(t *testing.T) {
	t.Parallel()
	for _, k := range streamKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			// The first attempt reads two client messages (List: its request), then fails.
			srv := testserver.Start(t, "primary", func(c testserver.Call) testserver.Response {
				if c.N == 1 {
					return testserver.Response{Code: codes.Unavailable, AfterRecv: 2}
				}
				return testserver.Response{}
			})
			cc := dialStream(t, srv.Addr, newSuite(t, fast()...))
			var served interceptor.Served
			got, err := k.run(ctxTimeout(t, 5*time.Second), cc, threeMsgs, interceptor.ServedBy(&served))
			if err != nil || !slices.Equal(got, want(k.name, "primary", threeMsgs)) {
				t.Fatalf("stream = %q, %v; want %q", got, err, want(k.name, "primary", threeMsgs))
			}
			if n := srv.Attempts(); n != 2 {
				t.Errorf("server attempts = %d; want 2", n)
			}
			if got, want := srv.Received(2), sent(k.name, threeMsgs); !slices.Equal(got, want) {
				t.Errorf("Received(attempt 2) = %q; want %q (each client message exactly once)", got, want)
			}
			if calls := srv.Calls(); len(calls) == 2 {
				if got := calls[1].MD.Get("grpc-previous-rpc-attempts"); !slices.Equal(got, []string{"1"}) {
					t.Errorf("attempt 2 grpc-previous-rpc-attempts = %q; want [1]", got)
				}
				if got := calls[0].MD.Get("grpc-previous-rpc-attempts"); got != nil {
					t.Errorf("attempt 1 grpc-previous-rpc-attempts = %q; want none", got)
				}
			}
			if served.Source != fallback.SourcePrimary || served.Attempts != 2 {
				t.Errorf("served = %+v; want primary after 2 attempts", served)
			}
		})
	}
}

// TestStreamNotRetried: the cases in which a failed stream goes to the caller
// unchanged, after one attempt.
func TestStreamNotRetried(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		kind streamKind
		resp testserver.Response
		opts []interceptor.Option
		// wantGot is what the caller receives before the error.
		wantGot []string
	}{
		{name: "server/after first message", kind: streamKinds[0], resp: testserver.Response{Code: codes.Unavailable, AfterSend: 2}, wantGot: []string{"primary:a", "primary:a"}},
		{name: "server/after headers", kind: streamKinds[0], resp: testserver.Response{Code: codes.Unavailable, Header: true}},
		{name: "client/after headers", kind: streamKinds[1], resp: testserver.Response{Code: codes.Unavailable, AfterRecv: 3, Header: true}},
		{name: "bidi/after first message", kind: streamKinds[2], resp: testserver.Response{Code: codes.Unavailable, AfterSend: 1}, wantGot: []string{"primary:a"}},
		{name: "bidi/after headers", kind: streamKinds[2], resp: testserver.Response{Code: codes.Unavailable, AfterRecv: 1, Header: true}},
		{name: "server/not retryable code", kind: streamKinds[0], resp: testserver.Response{Code: codes.InvalidArgument}},
		{name: "bidi/pushback -1", kind: streamKinds[2], resp: testserver.Response{Code: codes.Unavailable, Trailer: metadata.Pairs("grpc-retry-pushback-ms", "-1")}},
		{name: "client/max_attempts 1", kind: streamKinds[1], resp: testserver.Response{Code: codes.Unavailable},
			opts: []interceptor.Option{servicePolicy(&reboundv1.RecoveryPolicy{Retry: &reboundv1.Retry{MaxAttempts: proto.Uint32(1)}})}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := testserver.Start(t, "primary", func(testserver.Call) testserver.Response { return tc.resp })
			cc := dialStream(t, srv.Addr, newSuite(t, fast(tc.opts...)...))
			got, err := tc.kind.run(ctxTimeout(t, 5*time.Second), cc, threeMsgs)
			if status.Code(err) != tc.resp.Code {
				t.Errorf("stream error = %v; want %v", err, tc.resp.Code)
			}
			if !slices.Equal(got, tc.wantGot) {
				t.Errorf("stream replies = %q; want %q (no duplicate)", got, tc.wantGot)
			}
			if n := srv.Attempts(); n != 1 {
				t.Errorf("server attempts = %d; want 1", n)
			}
		})
	}
}

// TestStreamReplayOverflow: client messages beyond the 256 KiB replay buffer
// commit the stream: a later failure is not retried.
func TestStreamReplayOverflow(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 100<<10)
	tests := []struct {
		kind streamKind
		msgs []string
		resp testserver.Response
	}{
		{streamKinds[0], []string{big + big + big}, testserver.Response{Code: codes.Unavailable}},
		{streamKinds[1], []string{big, big, big}, testserver.Response{Code: codes.Unavailable, AfterRecv: 3}},
		{streamKinds[2], []string{big, big, big}, testserver.Response{Code: codes.Unavailable, AfterRecv: 3}},
	}
	for _, tc := range tests {
		t.Run(tc.kind.name, func(t *testing.T) {
			t.Parallel()
			srv := testserver.Start(t, "primary", func(testserver.Call) testserver.Response { return tc.resp })
			cc := dialStream(t, srv.Addr, newSuite(t, fast()...))
			_, err := tc.kind.run(ctxTimeout(t, 5*time.Second), cc, tc.msgs)
			if status.Code(err) != codes.Unavailable {
				t.Errorf("stream error = %v; want UNAVAILABLE", err)
			}
			if n := srv.Attempts(); n != 1 {
				t.Errorf("server attempts = %d; want 1 (committed by overflow)", n)
			}
		})
	}
}

// TestStreamDeadlineAcrossReopens: re-opens stop when the caller's deadline
// leaves no room, and every attempt carries the caller's deadline.
func TestStreamDeadlineAcrossReopens(t *testing.T) {
	t.Parallel()
	const deadline = 250 * time.Millisecond
	for _, k := range streamKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			srv := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
			s := newSuite(t, servicePolicy(&reboundv1.RecoveryPolicy{Retry: &reboundv1.Retry{
				MaxAttempts: proto.Uint32(10), InitialBackoffMs: proto.Uint32(40), MaxBackoffMs: proto.Uint32(40),
				Jitter: reboundv1.Jitter_JITTER_PROPORTIONAL.Enum(),
			}}), interceptor.WithRetryBudget(pattern.BudgetConfig{MaxTokens: 1000, RetriesWithoutSuccess: 1000}))
			cc := dialStream(t, srv.Addr, s)
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			dl, _ := ctx.Deadline()
			start := time.Now()
			_, err := k.run(ctx, cc, threeMsgs)
			took := time.Since(start)
			if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
				t.Errorf("stream error = %v; want UNAVAILABLE or DEADLINE_EXCEEDED", err)
			}
			if took > deadline+100*time.Millisecond {
				t.Errorf("stream took %v; want within the %v deadline", took, deadline)
			}
			if n := srv.Attempts(); n < 3 || n > 8 {
				t.Errorf("server attempts = %d; want 3..8 (32-48 ms apart within %v)", n, deadline)
			}
			// The server sees the caller's deadline plus the time the
			// headers took to reach it (grpc-timeout is relative), which a
			// loaded machine stretches past 10 ms. A fresh deadline per
			// attempt would be later by the attempt's start: ≥ 80 ms from
			// the third attempt on.
			for _, c := range srv.Calls() {
				if c.Deadline.IsZero() || c.Deadline.After(dl.Add(40*time.Millisecond)) {
					t.Errorf("attempt %d deadline = %v; want the caller's %v", c.N, c.Deadline, dl)
				}
			}
		})
	}
}

// TestStreamPerAttemptTimeout: the per-attempt timeout re-opens a stream that
// is not committed in time, and no longer applies once it is.
func TestStreamPerAttemptTimeout(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", func(c testserver.Call) testserver.Response {
		if c.N == 1 {
			return testserver.Response{Delay: 5 * time.Second} // a black hole
		}
		return testserver.Response{Interval: 80 * time.Millisecond} // 160 ms after commit
	})
	s := newSuite(t, fast(servicePolicy(&reboundv1.RecoveryPolicy{Retry: &reboundv1.Retry{PerAttemptTimeoutMs: proto.Uint32(100)}}))...)
	cc := dialStream(t, srv.Addr, s)
	got, err := runList(ctxTimeout(t, 5*time.Second), cc, []string{"a"})
	if err != nil || !slices.Equal(got, want("server", "primary", []string{"a"})) {
		t.Fatalf("List() = %q, %v; want %q", got, err, want("server", "primary", []string{"a"}))
	}
	if n := srv.Attempts(); n != 2 {
		t.Errorf("server attempts = %d; want 2", n)
	}
}

// TestStreamAlternate: a primary that cannot answer is replaced by the
// alternate, which gets every client message once and the caller's metadata.
func TestStreamAlternate(t *testing.T) {
	t.Parallel()
	for _, k := range streamKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			primary := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
			replica := testserver.Start(t, "replica", testserver.OK)
			s := newSuite(t, fast(interceptor.WithAlternate("replica", plainConn(t, replica.Addr)), chainPolicy(alternateStep("replica")))...)
			cc := dialStream(t, primary.Addr, s)
			ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 5*time.Second), "x-trace", "abc")
			var served interceptor.Served
			got, err := k.run(ctx, cc, threeMsgs, interceptor.ServedBy(&served))
			if err != nil || !slices.Equal(got, want(k.name, "replica", threeMsgs)) {
				t.Fatalf("stream = %q, %v; want %q", got, err, want(k.name, "replica", threeMsgs))
			}
			if served.Source != fallback.SourceAlternate || served.Name != "replica" || served.Attempts != 4 {
				t.Errorf("served = %+v; want alternate:replica after 4 attempts", served)
			}
			if got, want := replica.Received(1), sent(k.name, threeMsgs); !slices.Equal(got, want) {
				t.Errorf("replica Received = %q; want %q", got, want)
			}
			if calls := replica.Calls(); len(calls) != 1 || !slices.Equal(calls[0].MD.Get("x-trace"), []string{"abc"}) {
				t.Errorf("replica calls = %+v; want one carrying the caller's metadata", calls)
			}
		})
	}
}

// TestStreamShortCircuit: once the pattern is open a stream goes straight to
// the chain, or fails with the ShortCircuitError when there is none.
func TestStreamShortCircuit(t *testing.T) {
	t.Parallel()
	open := &reboundv1.RecoveryPolicy{
		Retry:   &reboundv1.Retry{MaxAttempts: proto.Uint32(1)},
		Pattern: stickyBreaker(1),
	}
	for _, withAlt := range []bool{false, true} {
		for _, k := range streamKinds {
			t.Run(k.name, func(t *testing.T) {
				t.Parallel()
				primary := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
				replica := testserver.Start(t, "replica", testserver.OK)
				opts := []interceptor.Option{servicePolicy(open), interceptor.WithAlternate("replica", plainConn(t, replica.Addr))}
				if withAlt {
					opts = append(opts, chainPolicy(alternateStep("replica")))
				}
				cc := dialStream(t, primary.Addr, newSuite(t, opts...))
				_, _ = k.run(ctxTimeout(t, 5*time.Second), cc, threeMsgs) // trips the breaker
				before := replica.Attempts()
				got, err := k.run(ctxTimeout(t, 5*time.Second), cc, threeMsgs)
				if n := primary.Attempts(); n != 1 {
					t.Errorf("primary attempts = %d; want 1 (then short-circuited)", n)
				}
				if !withAlt {
					if !errors.Is(err, interceptor.ErrShortCircuit) || status.Code(err) != codes.Unavailable {
						t.Errorf("stream error = %v; want a ShortCircuitError (UNAVAILABLE)", err)
					}
					return
				}
				if err != nil || !slices.Equal(got, want(k.name, "replica", threeMsgs)) {
					t.Errorf("stream = %q, %v; want %q", got, err, want(k.name, "replica", threeMsgs))
				}
				if n := replica.Attempts() - before; n != 1 {
					t.Errorf("replica attempts = %d; want 1", n)
				}
			})
		}
	}
}

// TestStreamCache: a server stream is served from the last complete stream
// with the same request when the primary fails before committing.
func TestStreamCache(t *testing.T) {
	t.Parallel()
	primary := testserver.Start(t, "primary", testserver.OK)
	s := newSuite(t, fast(noPattern, chainPolicy(cacheStep(60_000, "tenant")))...)
	cc := dialStream(t, primary.Addr, s)
	tenant := func(name string) context.Context {
		return metadata.AppendToOutgoingContext(ctxTimeout(t, 5*time.Second), "tenant", name)
	}
	if _, err := runList(tenant("t1"), cc, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	primary.SetBehavior(testserver.OK) // a different text for t2, to tell the entries apart
	primary.SetBehavior(func(testserver.Call) testserver.Response { return testserver.Response{Message: "t2"} })
	if _, err := runList(tenant("t2"), cc, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	primary.SetBehavior(testserver.Fail(codes.Unavailable))

	tests := []struct {
		name     string
		tenant   string
		msg      string
		want     []string
		wantCode codes.Code
	}{
		{"hit", "t1", "a", want("server", "primary", []string{"a"}), codes.OK},
		{"tenant scoped", "t2", "a", []string{"t2", "t2", "t2"}, codes.OK},
		{"other request", "t1", "b", nil, codes.Unavailable},
		{"other tenant", "t3", "a", nil, codes.Unavailable},
	}
	for _, tc := range tests {
		var served interceptor.Served
		got, err := runList(tenant(tc.tenant), cc, []string{tc.msg}, interceptor.ServedBy(&served))
		if status.Code(err) != tc.wantCode || !slices.Equal(got, tc.want) {
			t.Errorf("%s: List(%s, %s) = %q, %v; want %q, %v", tc.name, tc.tenant, tc.msg, got, err, tc.want, tc.wantCode)
		}
		if tc.wantCode == codes.OK && (served.Source != fallback.SourceCache || served.Age < 0 || served.Age > time.Minute) {
			t.Errorf("%s: served = %+v; want cache with a small age", tc.name, served)
		}
		var fe *fallback.Error
		if tc.wantCode != codes.OK && (!errors.As(err, &fe) || len(fe.Steps) != 1 || !errors.Is(fe.Steps[0], fallback.ErrCacheMiss)) {
			t.Errorf("%s: error = %v; want a fallback.Error with the cache miss beside the cause", tc.name, err)
		}
	}

	// A stream that fails after its first reply is the caller's: not completed from the cache.
	primary.SetBehavior(func(testserver.Call) testserver.Response {
		return testserver.Response{Code: codes.Unavailable, AfterSend: 1}
	})
	got, err := runList(tenant("t1"), cc, []string{"a"})
	if status.Code(err) != codes.Unavailable || len(got) != 1 {
		t.Errorf("List after one reply = %q, %v; want 1 reply then UNAVAILABLE", got, err)
	}
}

// TestStreamCacheOnlyServerStreams: client and bidi streams have no cached
// answer: the primary's error, unchanged.
func TestStreamCacheOnlyServerStreams(t *testing.T) {
	t.Parallel()
	for _, k := range streamKinds[1:] {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			primary := testserver.Start(t, "primary", testserver.OK)
			cc := dialStream(t, primary.Addr, newSuite(t, fast(chainPolicy(cacheStep(60_000)))...))
			if _, err := k.run(ctxTimeout(t, 5*time.Second), cc, threeMsgs); err != nil {
				t.Fatal(err)
			}
			primary.SetBehavior(testserver.Fail(codes.Unavailable))
			_, err := k.run(ctxTimeout(t, 5*time.Second), cc, threeMsgs)
			if status.Code(err) != codes.Unavailable {
				t.Errorf("stream error = %v; want UNAVAILABLE", err)
			}
		})
	}
}

// TestStreamConcurrentSafe sends and receives on one bidi stream from two
// goroutines while the first attempt fails and is replaced (run with -race).
func TestStreamConcurrentSafe(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, "primary", func(c testserver.Call) testserver.Response {
		if strings.Join(c.MD.Get("grpc-previous-rpc-attempts"), "") == "" {
			return testserver.Response{Code: codes.Unavailable, AfterRecv: 3}
		}
		return testserver.Response{}
	})
	cc := dialStream(t, srv.Addr, newSuite(t, fast(noPattern, interceptor.WithRetryBudget(pattern.BudgetConfig{MaxTokens: 1000, RetriesWithoutSuccess: 1000}))...))
	const streams, msgs = 8, 20
	var wg sync.WaitGroup
	for range streams {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			st, err := testpb.NewEchoServiceClient(cc).Chat(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			sendErr := make(chan error, 1)
			go func() {
				m := &testpb.ChatRequest{}
				for i := range msgs {
					m.Message, m.Seq = string(rune('a'+i)), int64(i) // reused: the stream must not keep it
					if err := st.Send(m); err != nil {
						sendErr <- err
						return
					}
				}
				sendErr <- st.CloseSend()
			}()
			var got []int64
			for {
				r, err := st.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Errorf("Recv() error = %v", err)
					break
				}
				got = append(got, r.GetSeq())
			}
			if err := <-sendErr; err != nil {
				t.Errorf("Send() error = %v", err)
			}
			if len(got) != msgs || !slices.IsSorted(got) || got[0] != 0 || got[msgs-1] != msgs-1 {
				t.Errorf("replies = %v; want 0..%d once each, in order", got, msgs-1)
			}
		})
	}
	wg.Wait()
	if n := srv.Attempts(); n != 2*streams {
		t.Errorf("server attempts = %d; want %d", n, 2*streams)
	}
}

// fakeStream is a grpc.ClientStream that answers left replies and io.EOF.
type fakeStream struct {
	grpc.ClientStream
	left int
}

func (f *fakeStream) SendMsg(any) error { return nil }
func (f *fakeStream) CloseSend() error  { return nil }
func (f *fakeStream) RecvMsg(any) error {
	if f.left == 0 {
		return io.EOF
	}
	f.left--
	return nil
}

// TestStreamHealthyPathAllocs: the interceptor allocates per stream, never
// per message.
func TestStreamHealthyPathAllocs(t *testing.T) {
	s := newSuite(t)
	ic := s.StreamClientInterceptor()
	desc := &grpc.StreamDesc{StreamName: "List", ServerStreams: true}
	ctx := context.Background()
	req, reply := &testpb.ListRequest{Message: "hello", Count: 100}, &testpb.ListResponse{}
	fs := &fakeStream{}
	streamer := func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
		return fs, nil
	}
	run := func(n int) func() {
		return func() {
			fs.left = n
			st, err := ic(ctx, desc, nil, testpb.EchoService_List_FullMethodName, streamer)
			if err != nil {
				t.Fatal(err)
			}
			_ = st.SendMsg(req)
			_ = st.CloseSend()
			for st.RecvMsg(reply) == nil {
			}
		}
	}
	run(1)()
	one := testing.AllocsPerRun(200, run(1))
	hundred := testing.AllocsPerRun(200, run(100))
	if hundred != one {
		t.Errorf("allocs of a 100-message stream = %v; want %v, as for 1 message (0 per message)", hundred, one)
	}
	if one > 1 {
		t.Errorf("allocs per stream = %v; want ≤ 1", one)
	}
	t.Logf("interceptor allocs per stream: %v; per message: %v", one, (hundred-one)/99)
}

// TestStreamHeader: Header on an attempt that failed without headers returns
// nil, as grpc does, and RecvMsg then re-opens the stream; headers commit it.
func TestStreamHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		first        testserver.Response
		wantHeader   bool
		wantAttempts int64
		wantReplies  int
		wantCode     codes.Code
	}{
		{"trailers only: retried", testserver.Response{Code: codes.Unavailable}, false, 2, listCount, codes.OK},
		{"headers then failure: committed", testserver.Response{Code: codes.Unavailable, Header: true}, true, 1, 0, codes.Unavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := testserver.Start(t, "primary", func(c testserver.Call) testserver.Response {
				if c.N == 1 {
					return tc.first
				}
				return testserver.Response{}
			})
			cc := dialStream(t, srv.Addr, newSuite(t, fast()...))
			st, err := testpb.NewEchoServiceClient(cc).List(ctxTimeout(t, 5*time.Second), &testpb.ListRequest{Message: "a", Count: listCount})
			if err != nil {
				t.Fatal(err)
			}
			md, err := st.Header()
			if err != nil || (md != nil) != tc.wantHeader {
				t.Errorf("Header() = %v, %v; want header %v", md, err, tc.wantHeader)
			}
			var n int
			for {
				_, err = st.Recv()
				if err != nil {
					break
				}
				n++
			}
			if err == io.EOF {
				err = nil
			}
			if status.Code(err) != tc.wantCode || n != tc.wantReplies {
				t.Errorf("Recv() = %d replies, %v; want %d, %v", n, err, tc.wantReplies, tc.wantCode)
			}
			if got := srv.Attempts(); got != tc.wantAttempts {
				t.Errorf("server attempts = %d; want %d", got, tc.wantAttempts)
			}
		})
	}
}

// TestStreamAlternateFails: when the alternate fails too, the caller gets the
// primary's status with the alternate's error beside it.
func TestStreamAlternateFails(t *testing.T) {
	t.Parallel()
	primary := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
	replica := testserver.Start(t, "replica", testserver.Fail(codes.Internal))
	s := newSuite(t, fast(interceptor.WithAlternate("replica", plainConn(t, replica.Addr)), chainPolicy(alternateStep("replica")))...)
	cc := dialStream(t, primary.Addr, s)
	for _, k := range streamKinds {
		var served interceptor.Served
		_, err := k.run(ctxTimeout(t, 5*time.Second), cc, threeMsgs, interceptor.ServedBy(&served))
		var fe *fallback.Error
		if status.Code(err) != codes.Unavailable || !errors.As(err, &fe) || len(fe.Steps) != 1 || status.Code(errors.Unwrap(fe.Steps[0])) != codes.Internal {
			t.Errorf("%s stream error = %v; want the primary's UNAVAILABLE with the alternate's INTERNAL beside it", k.name, err)
		}
		if served.Source != fallback.SourceNone {
			t.Errorf("%s served = %+v; want none", k.name, served)
		}
	}
}

// TestStreamReplayBufferOption: WithReplayBuffer sets the bound that commits a
// stream; the same small messages are replayed under the default bound.
func TestStreamReplayBufferOption(t *testing.T) {
	t.Parallel()
	msgs := []string{strings.Repeat("y", 600), strings.Repeat("z", 600)}
	for _, tc := range []struct {
		name         string
		opts         []interceptor.Option
		wantAttempts int64
	}{
		{"default 256 KiB replays", nil, 2},
		{"1 KiB overflows", []interceptor.Option{interceptor.WithReplayBuffer(1024)}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := testserver.Start(t, "primary", func(c testserver.Call) testserver.Response {
				if c.N == 1 {
					return testserver.Response{Code: codes.Unavailable, AfterRecv: 2}
				}
				return testserver.Response{}
			})
			cc := dialStream(t, srv.Addr, newSuite(t, fast(tc.opts...)...))
			_, _ = streamKinds[1].run(ctxTimeout(t, 5*time.Second), cc, msgs)
			if n := srv.Attempts(); n != tc.wantAttempts {
				t.Errorf("server attempts = %d; want %d", n, tc.wantAttempts)
			}
		})
	}
	if _, err := interceptor.New(interceptor.WithReplayBuffer(-1)); err == nil || !strings.Contains(err.Error(), "WithReplayBuffer(-1)") {
		t.Errorf("New(WithReplayBuffer(-1)) error = %v; want one naming the option", err)
	}
}
