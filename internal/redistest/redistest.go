package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvAddr names the environment variable that points tests at an existing
// Redis server ("host:port").
const EnvAddr = "REBOUND_REDIS_ADDR"

// SkipMessage is the reason given when no Redis server is available.
const SkipMessage = "no redis: set " + EnvAddr + " or install redis-server"

// startTimeout bounds how long a started server may take to answer PING.
const startTimeout = 10 * time.Second

// Addr returns the address of a Redis server for t: $REBOUND_REDIS_ADDR if set
// (it must answer PING), else that of a server started with [Start]. It skips
// t when neither is available. Tests that share an external server must use
// keys of their own.
func Addr(t testing.TB) string {
	t.Helper()
	if addr := os.Getenv(EnvAddr); addr != "" {
		if err := ping(addr, 2*time.Second); err != nil {
			t.Fatalf("%s=%s: %v", EnvAddr, addr, err)
		}
		return addr
	}
	return Start(t).Addr()
}

// Server is a redis-server process owned by one test.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int

	mu     sync.Mutex
	cmd    *exec.Cmd // nil while stopped
	exited chan error
}

// Start starts a redis-server on a free loopback port, without persistence,
// waits until it answers PING and stops it in t.Cleanup. It skips t when no
// redis-server binary is on PATH.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip(SkipMessage)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.stop)
	// A port found free may be taken again before the server binds it:
	// try a few.
	for attempt := 0; ; attempt++ {
		s.port, err = freePort()
		if err == nil {
			err = s.start()
		}
		if err == nil {
			return s
		}
		if attempt == 2 {
			t.Fatalf("redistest: start redis-server: %v", err)
		}
	}
}

// Addr returns the server's address, "127.0.0.1:port". It stays the same
// across Stop and Restart.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Stop kills the server and waits for it to exit: connections are closed and
// new ones refused.
func (s *Server) Stop() {
	s.t.Helper()
	s.stop()
}

// Restart starts the server again on the same port, after [Server.Stop], and
// waits until it answers PING. The data is gone.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart redis-server: %v", err)
	}
}

// Pause freezes the server (SIGSTOP): connections still open, but nothing is
// answered — the hardest kind of outage for a client. Undo with
// [Server.Resume]; a paused server is resumed before it is stopped.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume thaws a server frozen by [Server.Pause] (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.t.Fatalf("redistest: %v: server not running", sig)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("redistest: %v: %v", sig, err)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	log, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
	)
	cmd.Stdout, cmd.Stderr = log, log // *os.File: no copying goroutines
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(startTimeout)
	for {
		if err := ping(s.Addr(), 200*time.Millisecond); err == nil {
			break
		} else if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("no PONG on %s within %v: %v (log: %s)", s.Addr(), startTimeout, err, s.logTail())
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exited: %v (log: %s)", err, s.logTail())
		case <-time.After(10 * time.Millisecond):
		}
	}
	s.cmd = cmd
	s.exited = exited
	return nil
}

func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGCONT) // in case it is paused
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd, s.exited = nil, nil
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if len(b) > 500 {
		b = b[len(b)-500:]
	}
	return strings.TrimSpace(string(b))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ping sends PING in RESP and expects +PONG, within timeout.
func ping(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING: got %q; want +PONG", line)
	}
	return nil
}
