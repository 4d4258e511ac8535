package faultserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/rebound-grpc/rebound/internal/testpb"
)

// Metadata keys the server reads.
const (
	// TenantKey names the caller's tenant; every reply includes it.
	TenantKey = "x-tenant"
	// CallIDKey carries a caller-chosen id, the same for every attempt of
	// one call, so that attempts can be counted per call.
	CallIDKey = "x-call-id"
)

// Fault is what the server does with one attempt. The zero Fault answers at
// once. Fault is plain data (JSON-encodable), so it can be sent to a backend
// in another process.
type Fault struct {
	// Rate is the probability that the fault applies to an attempt; 0 and 1
	// both mean every attempt. An attempt the fault spares is answered at once.
	Rate float64 `json:"rate,omitempty"`
	// Code is the status to answer with; OK answers normally.
	Code codes.Code `json:"code,omitempty"`
	// Delay is slept before answering, cut short by the attempt's context.
	Delay time.Duration `json:"delay,omitempty"`
	// BlackHole accepts the attempt and never answers: the handler returns
	// only when the attempt's context ends.
	BlackHole bool `json:"black_hole,omitempty"`
	// Reset closes the attempt's TCP connection (after Delay), without a
	// gRPC status: the client sees the transport fail mid-call.
	Reset bool `json:"reset,omitempty"`
	// GoAway gracefully stops the serving grpc.Server (after Delay): it sends
	// GOAWAY on every connection and lets calls in flight finish, while a
	// fresh grpc.Server takes new connections on the same port. The attempt
	// itself is then answered as scripted by the other fields.
	GoAway bool `json:"go_away,omitempty"`
	// FirstByte delays the response headers of a stream (and a unary reply)
	// by this much, on top of Delay.
	FirstByte time.Duration `json:"first_byte,omitempty"`
	// SendThenFail makes a server stream (List, Chat) send this many messages
	// before failing with Code (UNAVAILABLE when Code is OK). 0: no partial
	// stream.
	SendThenFail int `json:"send_then_fail,omitempty"`
	// Pushback is sent as grpc-retry-pushback-ms with a failure, when set.
	Pushback string `json:"pushback,omitempty"`
}

// String describes f briefly, for logs.
func (f Fault) String() string {
	s := ""
	add := func(x string) {
		if s != "" {
			s += "+"
		}
		s += x
	}
	switch {
	case f.BlackHole:
		add("blackhole")
	case f.Reset:
		add("reset")
	case f.GoAway:
		add("goaway")
	}
	if f.Code != codes.OK {
		add(f.Code.String())
	}
	if f.Delay > 0 {
		add("delay " + f.Delay.String())
	}
	if f.FirstByte > 0 {
		add("firstbyte " + f.FirstByte.String())
	}
	if f.SendThenFail > 0 {
		add("partial " + strconv.Itoa(f.SendThenFail))
	}
	if f.Rate > 0 && f.Rate < 1 {
		s += fmt.Sprintf("@%.0f%%", f.Rate*100)
	}
	if s == "" {
		return "ok"
	}
	return s
}

// Call describes one attempt the server received.
type Call struct {
	// Method is the full method name.
	Method string
	// N counts the attempts this server received, from 1.
	N int64
	// ID is the attempt's CallIDKey metadata ("" when absent).
	ID string
	// Tenant is the attempt's TenantKey metadata ("" when absent).
	Tenant string
	// MD is the attempt's incoming metadata.
	MD metadata.MD
}

// Behavior picks the fault of each attempt. It must be safe for concurrent use.
type Behavior func(Call) Fault

// Always returns a Behavior that applies f to every attempt (subject to f.Rate).
func Always(f Fault) Behavior { return func(Call) Fault { return f } }

// Options configure a Server.
type Options struct {
	// Name is put in every reply. Default "faultserver".
	Name string
	// ServerOptions are given to every grpc.Server the Server creates (e.g.
	// keepalive.ServerParameters with MaxConnectionAge, for periodic GOAWAY).
	ServerOptions []grpc.ServerOption
	// OnAttempt, when set, is called at the start of every attempt.
	OnAttempt func(Call)
}

// Server serves testpb.EchoService with injected faults. Create it with
// Listen or Start; it is safe for concurrent use.
type Server struct {
	testpb.UnimplementedEchoServiceServer

	// Addr is the listening address, "127.0.0.1:port".
	Addr string
	// Name is put in every reply.
	Name string

	opts     Options
	lis      *connListener
	behavior atomic.Pointer[Behavior]
	n        atomic.Int64
	goaways  atomic.Int64
	resets   atomic.Int64
	inflight atomic.Int64

	mu      sync.Mutex
	srv     *grpc.Server // the grpc.Server taking new connections
	old     []*grpc.Server
	stopped bool
	serving sync.WaitGroup // Serve goroutines
	drains  sync.WaitGroup // GracefulStop goroutines
	perID   map[string]int
}

// Listen serves on addr ("127.0.0.1:0" for a free port) until Stop.
func Listen(addr string, o Options) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if o.Name == "" {
		o.Name = "faultserver"
	}
	s := &Server{Addr: l.Addr().String(), Name: o.Name, opts: o, lis: newConnListener(l), perID: map[string]int{}}
	s.Set(Fault{})
	s.mu.Lock()
	s.serveLocked()
	s.mu.Unlock()
	return s, nil
}

// Start serves on a free 127.0.0.1 port until the test ends.
func Start(t interface {
	Helper()
	Fatal(...any)
	Cleanup(func())
}, o Options) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// serveLocked starts a fresh grpc.Server on the listener. s.mu is held.
func (s *Server) serveLocked() {
	srv := grpc.NewServer(s.opts.ServerOptions...)
	testpb.RegisterEchoServiceServer(srv, s)
	s.srv = srv
	sub := s.lis.sub()
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		_ = srv.Serve(sub)
	}()
}

// Set makes every following attempt get f.
func (s *Server) Set(f Fault) { s.SetBehavior(Always(f)) }

// SetBehavior replaces the behaviour for the following attempts; nil answers
// every attempt.
func (s *Server) SetBehavior(b Behavior) {
	if b == nil {
		b = Always(Fault{})
	}
	s.behavior.Store(&b)
}

// GoAway gracefully stops the grpc.Server that serves the current
// connections (GOAWAY; calls in flight finish) and serves new connections
// with a fresh one on the same port. It does not wait for the drain.
func (s *Server) GoAway() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	old := s.srv
	s.serveLocked()
	s.old = append(s.old, old)
	s.goaways.Add(1)
	s.drains.Add(1)
	go func() {
		defer s.drains.Done()
		old.GracefulStop()
	}()
}

// ResetAll closes every open client connection at the TCP level.
func (s *Server) ResetAll() { s.resets.Add(int64(s.lis.closeAll())) }

// Stop stops the server at once: calls in flight fail, connections close,
// the port is released. It waits for every goroutine the server started.
func (s *Server) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	srvs := append([]*grpc.Server{s.srv}, s.old...)
	s.mu.Unlock()
	_ = s.lis.Close()
	for _, srv := range srvs {
		srv.Stop()
	}
	s.lis.closeAll()
	s.serving.Wait()
	s.drains.Wait()
	s.lis.wait()
}

// Attempts returns the number of attempts received.
func (s *Server) Attempts() int64 { return s.n.Load() }

// AttemptsOf returns the number of attempts received with call id id.
func (s *Server) AttemptsOf(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perID[id]
}

// MaxAttemptsPerCall returns the largest number of attempts received for one
// call id, and that id.
func (s *Server) MaxAttemptsPerCall() (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	best, who := 0, ""
	for id, n := range s.perID {
		if n > best {
			best, who = n, id
		}
	}
	return best, who
}

// Prune forgets the per-call counts of the call ids for which keep returns
// false (calls long finished), so that a long run does not grow the map.
func (s *Server) Prune(keep func(id string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.perID {
		if !keep(id) {
			delete(s.perID, id)
		}
	}
}

// InFlight returns the number of handlers running.
func (s *Server) InFlight() int64 { return s.inflight.Load() }

// GoAways and Resets count the GOAWAYs sent (GoAway calls and GoAway
// faults) and the connections reset.
func (s *Server) GoAways() int64 { return s.goaways.Load() }

// Resets counts the connections closed by Reset faults and ResetAll.
func (s *Server) Resets() int64 { return s.resets.Load() }

// begin records the attempt and picks its fault.
func (s *Server) begin(ctx context.Context, method string) (Call, Fault) {
	md, _ := metadata.FromIncomingContext(ctx)
	c := Call{Method: method, N: s.n.Add(1), MD: md, ID: first(md, CallIDKey), Tenant: first(md, TenantKey)}
	if c.ID != "" {
		s.mu.Lock()
		s.perID[c.ID]++
		s.mu.Unlock()
	}
	if s.opts.OnAttempt != nil {
		s.opts.OnAttempt(c)
	}
	f := (*s.behavior.Load())(c)
	if f.Rate > 0 && f.Rate < 1 && rand.Float64() >= f.Rate {
		f = Fault{}
	}
	return c, f
}

func first(md metadata.MD, k string) string {
	if v := md.Get(k); len(v) > 0 {
		return v[0]
	}
	return ""
}

// errReset is returned by a handler whose connection was reset: the client
// never sees it.
var errReset = status.Error(codes.Unavailable, "faultserver: connection reset")

// disrupt applies the part of f that precedes an answer: delays, black hole,
// reset, GOAWAY. A non-nil error ends the attempt with it.
func (s *Server) disrupt(ctx context.Context, f Fault) error {
	if err := sleep(ctx, f.Delay); err != nil {
		return err
	}
	switch {
	case f.BlackHole:
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	case f.Reset:
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			if s.lis.closeConn(p.Addr.String()) {
				s.resets.Add(1)
			}
		}
		<-ctx.Done() // the transport cancels the handler's context
		return errReset
	case f.GoAway:
		s.GoAway()
	}
	return nil
}

// fail returns f's failure, with pushback when scripted; nil when f.Code is OK.
func (s *Server) fail(ctx context.Context, c Call, f Fault) error {
	if f.Code == codes.OK {
		return nil
	}
	if f.Pushback != "" {
		_ = grpc.SetTrailer(ctx, metadata.Pairs("grpc-retry-pushback-ms", f.Pushback))
	}
	return status.Errorf(f.Code, "%s: injected %v (attempt %d)", s.Name, f.Code, c.N)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
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

// Text is the message of a reply: "name|tenant|text". [ParseText] splits it.
func (s *Server) Text(tenant, text string) string { return s.Name + "|" + tenant + "|" + text }

// ParseText splits a reply's message into the server's name, the tenant it
// was produced for and the request's text; ok is false when msg is not of
// that form.
func ParseText(msg string) (name, tenant, text string, ok bool) {
	parts := strings.SplitN(msg, "|", 3)
	if len(parts) != 3 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// unary runs one unary attempt.
func (s *Server) unary(ctx context.Context, method string) (Call, error) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	c, f := s.begin(ctx, method)
	if err := s.disrupt(ctx, f); err != nil {
		return c, err
	}
	if err := sleep(ctx, f.FirstByte); err != nil {
		return c, err
	}
	return c, s.fail(ctx, c, f)
}

// Echo implements testpb.EchoServiceServer.
func (s *Server) Echo(ctx context.Context, in *testpb.EchoRequest) (*testpb.EchoResponse, error) {
	c, err := s.unary(ctx, testpb.EchoService_Echo_FullMethodName)
	if err != nil {
		return nil, err
	}
	return &testpb.EchoResponse{Message: s.Text(c.Tenant, in.GetMessage()), Seq: in.GetSeq(), Payload: in.GetPayload()}, nil
}

// Lookup implements testpb.EchoServiceServer.
func (s *Server) Lookup(ctx context.Context, in *testpb.LookupRequest) (*testpb.LookupResponse, error) {
	c, err := s.unary(ctx, testpb.EchoService_Lookup_FullMethodName)
	if err != nil {
		return nil, err
	}
	return &testpb.LookupResponse{Message: s.Text(c.Tenant, in.GetMessage())}, nil
}

// Create implements testpb.EchoServiceServer.
func (s *Server) Create(ctx context.Context, in *testpb.CreateRequest) (*testpb.CreateResponse, error) {
	c, err := s.unary(ctx, testpb.EchoService_Create_FullMethodName)
	if err != nil {
		return nil, err
	}
	return &testpb.CreateResponse{Message: s.Text(c.Tenant, in.GetMessage())}, nil
}

// streamBegin runs the part of a stream attempt before its first message:
// the disruptions, then the slow first byte (the headers are sent after it).
func (s *Server) streamBegin(ss grpc.ServerStream, method string) (Call, Fault, error) {
	ctx := ss.Context()
	c, f := s.begin(ctx, method)
	if err := s.disrupt(ctx, f); err != nil {
		return c, f, err
	}
	if f.FirstByte > 0 {
		if err := sleep(ctx, f.FirstByte); err != nil {
			return c, f, err
		}
		if err := ss.SendHeader(metadata.MD{}); err != nil {
			return c, f, err
		}
	}
	if f.SendThenFail > 0 && f.Code == codes.OK {
		f.Code = codes.Unavailable
	}
	return c, f, nil
}

// List implements testpb.EchoServiceServer: Count replies with Seq 0, 1, ...
// With SendThenFail k, it sends min(k, Count) replies, then fails; with
// another failing Code, it fails before the first reply.
func (s *Server) List(in *testpb.ListRequest, stream grpc.ServerStreamingServer[testpb.ListResponse]) error {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	c, f, err := s.streamBegin(stream, testpb.EchoService_List_FullMethodName)
	if err != nil {
		return err
	}
	n := in.GetCount()
	if f.Code != codes.OK {
		n = min(n, int64(f.SendThenFail))
	}
	text := s.Text(c.Tenant, in.GetMessage())
	for i := int64(0); i < n; i++ {
		if err := stream.Send(&testpb.ListResponse{Message: text, Seq: i}); err != nil {
			return err
		}
	}
	return s.fail(stream.Context(), c, f)
}

// Upload implements testpb.EchoServiceServer: it concatenates the texts of
// the client's messages and counts them. A failing Code fails it after the
// client's messages were all read.
func (s *Server) Upload(stream grpc.ClientStreamingServer[testpb.UploadRequest, testpb.UploadResponse]) error {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	c, f, err := s.streamBegin(stream, testpb.EchoService_Upload_FullMethodName)
	if err != nil {
		return err
	}
	var text string
	var n int64
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		text += m.GetMessage()
		n++
	}
	if err := s.fail(stream.Context(), c, f); err != nil {
		return err
	}
	return stream.SendAndClose(&testpb.UploadResponse{Message: s.Text(c.Tenant, text), Count: n})
}

// Chat implements testpb.EchoServiceServer: it echoes every message (same
// Seq). With SendThenFail k it fails after k echoes; with another failing
// Code, before the first.
func (s *Server) Chat(stream grpc.BidiStreamingServer[testpb.ChatRequest, testpb.ChatResponse]) error {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	c, f, err := s.streamBegin(stream, testpb.EchoService_Chat_FullMethodName)
	if err != nil {
		return err
	}
	sent := 0
	for {
		if f.Code != codes.OK && sent >= f.SendThenFail {
			return s.fail(stream.Context(), c, f)
		}
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testpb.ChatResponse{Message: s.Text(c.Tenant, m.GetMessage()), Seq: m.GetSeq()}); err != nil {
			return err
		}
		sent++
	}
}
