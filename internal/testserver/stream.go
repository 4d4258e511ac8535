package testserver

import (
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/rebound-grpc/rebound/internal/testpb"
)

// Received returns the texts of the client messages that stream attempt n
// (Call.N) received, in order: List's request, Upload's and Chat's messages.
func (s *Server) Received(n int64) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.recv[n]...)
}

func (s *Server) record(n int64, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recv == nil {
		s.recv = map[int64][]string{}
	}
	s.recv[n] = append(s.recv[n], text)
}

// fail answers a failing stream attempt: the headers first when scripted.
func (s *Server) fail(ss grpc.ServerStream, r Response, c Call) error {
	if r.Header {
		_ = ss.SendHeader(metadata.MD{})
	}
	return s.answer(ss.Context(), r, c)
}

// List implements testpb.EchoServiceServer: count replies; with a non-OK
// Code, Response.AfterSend replies and then the scripted failure.
func (s *Server) List(in *testpb.ListRequest, stream grpc.ServerStreamingServer[testpb.ListResponse]) error {
	r, c, err := s.begin(stream.Context(), testpb.EchoService_List_FullMethodName)
	if err != nil {
		return err
	}
	s.record(c.N, in.GetMessage())
	n := in.GetCount()
	if r.Code != codes.OK {
		n = min(n, int64(r.AfterSend))
	}
	for i := int64(0); i < n; i++ {
		if i > 0 && r.Interval > 0 {
			time.Sleep(r.Interval)
		}
		if err := stream.Send(&testpb.ListResponse{Message: s.text(r, in.GetMessage()), Seq: i}); err != nil {
			return err
		}
	}
	if r.Code != codes.OK {
		return s.fail(stream, r, c)
	}
	return s.answer(stream.Context(), r, c)
}

// Upload implements testpb.EchoServiceServer: it concatenates the messages'
// texts; with a non-OK Code it reads Response.AfterRecv messages and then
// answers the scripted failure.
func (s *Server) Upload(stream grpc.ClientStreamingServer[testpb.UploadRequest, testpb.UploadResponse]) error {
	r, c, err := s.begin(stream.Context(), testpb.EchoService_Upload_FullMethodName)
	if err != nil {
		return err
	}
	var text string
	var n int64
	for {
		if r.Code != codes.OK && n >= int64(r.AfterRecv) {
			return s.fail(stream, r, c)
		}
		m, err := stream.Recv()
		if err == io.EOF {
			if r.Code != codes.OK {
				return s.fail(stream, r, c)
			}
			if err := s.answer(stream.Context(), r, c); err != nil {
				return err
			}
			return stream.SendAndClose(&testpb.UploadResponse{Message: s.text(r, text), Count: n})
		}
		if err != nil {
			return err
		}
		s.record(c.N, m.GetMessage())
		text += m.GetMessage()
		n++
	}
}

// Chat implements testpb.EchoServiceServer: it echoes every message. With a
// non-OK Code it echoes Response.AfterSend messages, or, when AfterSend is 0,
// reads Response.AfterRecv messages without echoing, and then answers the
// scripted failure.
func (s *Server) Chat(stream grpc.BidiStreamingServer[testpb.ChatRequest, testpb.ChatResponse]) error {
	r, c, err := s.begin(stream.Context(), testpb.EchoService_Chat_FullMethodName)
	if err != nil {
		return err
	}
	failing := r.Code != codes.OK
	var read, sent int
	for {
		if failing && (r.AfterSend > 0 && sent >= r.AfterSend || r.AfterSend == 0 && read >= r.AfterRecv) {
			return s.fail(stream, r, c)
		}
		m, err := stream.Recv()
		if err == io.EOF {
			if failing {
				return s.fail(stream, r, c)
			}
			return s.answer(stream.Context(), r, c)
		}
		if err != nil {
			return err
		}
		s.record(c.N, m.GetMessage())
		read++
		if failing && r.AfterSend == 0 {
			continue
		}
		if err := stream.Send(&testpb.ChatResponse{Message: s.text(r, m.GetMessage()), Seq: m.GetSeq()}); err != nil {
			return err
		}
		sent++
	}
}
