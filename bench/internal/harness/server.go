package harness

import (
	"context"
	"math/rand/v2"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Names of the test service and its one method.
const (
	Service    = "bench.Bench"
	FullMethod = "/bench.Bench/Call"
)

// Behavior decides how the server answers one attempt.
type Behavior func(ctx context.Context) error

// OK answers every attempt at once.
func OK(context.Context) error { return nil }

// Unavailable fails every attempt with UNAVAILABLE.
func Unavailable(context.Context) error {
	return status.Error(codes.Unavailable, "bench: server unavailable")
}

// FailRandom fails a share p of the attempts with UNAVAILABLE, at random.
func FailRandom(p float64) Behavior {
	return func(context.Context) error {
		if rand.Float64() < p {
			return status.Error(codes.Unavailable, "bench: random failure")
		}
		return nil
	}
}

// Brownout makes a share p of the attempts take d (or until the client
// gives up) before answering OK.
func Brownout(p float64, d time.Duration) Behavior {
	return func(ctx context.Context) error {
		if rand.Float64() >= p {
			return nil
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// Server is the test server: it counts the attempts that reach it, in all
// and per call.
type Server struct {
	Addr     string // host:port on 127.0.0.1, or "bufnet"
	srv      *grpc.Server
	lis      net.Listener
	buf      *bufconn.Listener
	behavior atomic.Pointer[Behavior]
	attempts atomic.Int64

	// perCall counts the attempts of each call that sent CallIDKey.
	perCall atomic.Pointer[[]atomic.Int32]
}

// CallIDKey is the metadata key a client may set to a call's index, so
// that the server attributes each attempt to its call.
const CallIDKey = "x-bench-call"

// TrackCalls makes the server count the attempts of calls 0..n-1 (by
// CallIDKey) from now on.
func (s *Server) TrackCalls(n int) {
	pc := make([]atomic.Int32, n)
	s.perCall.Store(&pc)
}

// CallAttempts returns the attempts counted for call i.
func (s *Server) CallAttempts(i int) int {
	pc := s.perCall.Load()
	if pc == nil || i < 0 || i >= len(*pc) {
		return 0
	}
	return int((*pc)[i].Load())
}

// SetBehavior switches how the server answers from now on.
func (s *Server) SetBehavior(b Behavior) { s.behavior.Store(&b) }

// Attempts is the number of attempts that reached the server.
func (s *Server) Attempts() int64 { return s.attempts.Load() }

// Reset forgets the attempts counted so far.
func (s *Server) Reset() { s.attempts.Store(0) }

func (s *Server) handle(ctx context.Context) error {
	s.attempts.Add(1)
	if pc := s.perCall.Load(); pc != nil {
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get(CallIDKey); len(v) == 1 {
				if i, err := strconv.Atoi(v[0]); err == nil && i >= 0 && i < len(*pc) {
					(*pc)[i].Add(1)
				}
			}
		}
	}
	return (*s.behavior.Load())(ctx)
}

// benchServer is the handler type of the ServiceDesc.
type benchServer interface{ handle(context.Context) error }

var serviceDesc = grpc.ServiceDesc{
	ServiceName: Service,
	HandlerType: (*benchServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Call",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			if err := srv.(benchServer).handle(ctx); err != nil {
				return nil, err
			}
			return in, nil
		},
	}},
	Metadata: "bench.proto",
}

func newServer() *Server {
	s := &Server{srv: grpc.NewServer()}
	s.SetBehavior(OK)
	s.srv.RegisterService(&serviceDesc, s)
	return s
}

// StartTCP starts a server on 127.0.0.1 (loopback only).
func StartTCP() (*Server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := newServer()
	s.lis, s.Addr = lis, lis.Addr().String()
	go s.srv.Serve(lis) //nolint:errcheck // ends with Stop
	return s, nil
}

// StartBufconn starts a server on an in-memory listener.
func StartBufconn() *Server {
	s := newServer()
	s.buf, s.Addr = bufconn.Listen(1<<20), "bufnet"
	go s.srv.Serve(s.buf) //nolint:errcheck // ends with Stop
	return s
}

// Target is the dial target of the server.
func (s *Server) Target() string {
	if s.buf != nil {
		return "passthrough:///bufnet"
	}
	return "passthrough:///" + s.Addr
}

// DialOptions are the transport options needed to reach the server.
func (s *Server) DialOptions() []grpc.DialOption {
	if s.buf == nil {
		return nil
	}
	return []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return s.buf.DialContext(ctx)
	})}
}

// Stop stops the server at once.
func (s *Server) Stop() { s.srv.Stop() }
