package testserver

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rebound-grpc/rebound/internal/testpb"
)

// Call describes one attempt the server received.
type Call struct {
	// Method is the full method name.
	Method string
	// N counts the attempts this server received, from 1.
	N int64
	// MD is the attempt's incoming metadata.
	MD metadata.MD
	// Deadline is the attempt's deadline as the server saw it (zero: none).
	Deadline time.Time
}

// Response is what the server does with one attempt.
type Response struct {
	// Code is the status to return; OK answers normally.
	Code codes.Code
	// Delay is slept (or cut short by the attempt's context) before answering.
	Delay time.Duration
	// Trailer is sent with the answer.
	Trailer metadata.MD
	// Message overrides the reply's message text when set.
	Message string

	// The fields below script the streaming methods (see stream.go); the unary
	// methods ignore them.

	// AfterRecv makes Upload and Chat read this many client messages (Chat
	// without echoing them) before answering a non-OK Code.
	AfterRecv int
	// AfterSend makes List and Chat send this many replies before answering a
	// non-OK Code.
	AfterSend int
	// Header sends the response headers before answering a non-OK Code, so
	// the client sees a committed stream that then fails.
	Header bool
	// Interval is slept before each reply of List after the first.
	Interval time.Duration
}

// Behavior decides the response to each attempt. It must be safe for concurrent use.
type Behavior func(Call) Response

// OK answers every attempt.
func OK(Call) Response { return Response{} }

// Fail answers every attempt with code.
func Fail(code codes.Code) Behavior {
	return func(Call) Response { return Response{Code: code} }
}

// FailFirst fails the first n attempts with code, then answers.
func FailFirst(n int64, code codes.Code) Behavior {
	return func(c Call) Response {
		if c.N <= n {
			return Response{Code: code}
		}
		return Response{}
	}
}

// Server is a running test server.
type Server struct {
	testpb.UnimplementedEchoServiceServer
	testpb.UnimplementedPlainServiceServer

	// Addr is "127.0.0.1:port".
	Addr string
	// Name is put in every reply, to tell servers apart.
	Name string
	// Health is the server's grpc.health.v1 service (SERVING for "" at start).
	Health *health.Server

	srv      *grpc.Server
	lis      net.Listener
	behavior atomic.Pointer[Behavior]
	n        atomic.Int64
	canceled atomic.Int64

	mu    sync.Mutex
	calls []Call
	recv  map[int64][]string // client messages per stream attempt (stream.go)
}

// Start serves on a new 127.0.0.1 port until the test ends.
func Start(t testing.TB, name string, b Behavior) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", name, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Listen serves on addr until Stop.
func Listen(addr, name string, b Behavior) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: lis.Addr().String(), Name: name, lis: lis, srv: grpc.NewServer(), Health: health.NewServer()}
	s.SetBehavior(b)
	testpb.RegisterEchoServiceServer(s.srv, s)
	testpb.RegisterPlainServiceServer(s.srv, s)
	healthpb.RegisterHealthServer(s.srv, s.Health)
	go func() { _ = s.srv.Serve(lis) }()
	return s, nil
}

// Stop stops the server at once, failing calls in flight.
func (s *Server) Stop() { s.srv.Stop() }

// SetBehavior replaces the behaviour for the following attempts.
func (s *Server) SetBehavior(b Behavior) {
	if b == nil {
		b = OK
	}
	s.behavior.Store(&b)
}

// Attempts is the number of attempts received.
func (s *Server) Attempts() int64 { return s.n.Load() }

// Canceled is the number of attempts whose context was cancelled while the server delayed.
func (s *Server) Canceled() int64 { return s.canceled.Load() }

// Calls returns a copy of the attempts received.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// handle runs the behaviour for one attempt; a nil error means answer.
func (s *Server) handle(ctx context.Context, method string) (Response, error) {
	r, c, err := s.begin(ctx, method)
	if err != nil {
		return r, err
	}
	return r, s.answer(ctx, r, c)
}

// begin records one attempt, runs its behaviour and sleeps its delay; an
// error means the attempt's context ended first.
func (s *Server) begin(ctx context.Context, method string) (Response, Call, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	dl, _ := ctx.Deadline()
	c := Call{Method: method, N: s.n.Add(1), MD: md, Deadline: dl}
	s.mu.Lock()
	s.calls = append(s.calls, c)
	s.mu.Unlock()
	r := (*s.behavior.Load())(c)
	if r.Delay > 0 {
		tm := time.NewTimer(r.Delay)
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
			s.canceled.Add(1)
			return r, c, status.FromContextError(ctx.Err()).Err()
		}
	}
	return r, c, nil
}

// answer sets the scripted trailer and returns the scripted status.
func (s *Server) answer(ctx context.Context, r Response, c Call) error {
	if r.Trailer != nil {
		_ = grpc.SetTrailer(ctx, r.Trailer)
	}
	if r.Code != codes.OK {
		return status.Errorf(r.Code, "%s: scripted %v (attempt %d)", s.Name, r.Code, c.N)
	}
	return nil
}

func (s *Server) text(r Response, in string) string {
	if r.Message != "" {
		return r.Message
	}
	return s.Name + ":" + in
}

// Echo implements testpb.EchoServiceServer.
func (s *Server) Echo(ctx context.Context, in *testpb.EchoRequest) (*testpb.EchoResponse, error) {
	r, err := s.handle(ctx, testpb.EchoService_Echo_FullMethodName)
	if err != nil {
		return nil, err
	}
	return &testpb.EchoResponse{Message: s.text(r, in.GetMessage()), Seq: in.GetSeq(), Payload: in.GetPayload()}, nil
}

// Lookup implements testpb.EchoServiceServer.
func (s *Server) Lookup(ctx context.Context, in *testpb.LookupRequest) (*testpb.LookupResponse, error) {
	r, err := s.handle(ctx, testpb.EchoService_Lookup_FullMethodName)
	if err != nil {
		return nil, err
	}
	return &testpb.LookupResponse{Message: s.text(r, in.GetMessage())}, nil
}

// Create implements testpb.EchoServiceServer.
func (s *Server) Create(ctx context.Context, in *testpb.CreateRequest) (*testpb.CreateResponse, error) {
	r, err := s.handle(ctx, testpb.EchoService_Create_FullMethodName)
	if err != nil {
		return nil, err
	}
	return &testpb.CreateResponse{Message: s.text(r, in.GetMessage())}, nil
}

// Configured implements testpb.PlainServiceServer.
func (s *Server) Configured(ctx context.Context, in *testpb.ConfiguredRequest) (*testpb.ConfiguredResponse, error) {
	r, err := s.handle(ctx, testpb.PlainService_Configured_FullMethodName)
	if err != nil {
		return nil, err
	}
	return &testpb.ConfiguredResponse{Message: s.text(r, in.GetMessage())}, nil
}

// Bare implements testpb.PlainServiceServer.
func (s *Server) Bare(ctx context.Context, in *testpb.BareRequest) (*testpb.BareResponse, error) {
	r, err := s.handle(ctx, testpb.PlainService_Bare_FullMethodName)
	if err != nil {
		return nil, err
	}
	return &testpb.BareResponse{Message: s.text(r, in.GetMessage())}, nil
}
