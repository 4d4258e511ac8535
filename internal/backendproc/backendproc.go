package backendproc

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rebound-grpc/rebound/internal/faultserver"
)

// pkg is the import path of the backend command.
const pkg = "github.com/rebound-grpc/rebound/internal/backendproc/cmd/backend"

// startTimeout bounds how long a backend may take to listen.
const startTimeout = 10 * time.Second

// ackTimeout bounds how long a backend may take to acknowledge a command.
const ackTimeout = 5 * time.Second

// Binary is a built backend executable.
type Binary struct {
	// Path is the executable's path.
	Path string
}

// Build compiles the backend into t.TempDir() and returns it. It skips t when
// no go command is found.
func Build(t testing.TB) *Binary {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("backendproc: no go command to build the backend: %v", err)
	}
	out := filepath.Join(t.TempDir(), "backend")
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command(goBin, append(args, pkg)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("backendproc: go build %s: %v\n%s", pkg, err, b)
	}
	return &Binary{Path: out}
}

// Proc is a backend process, running or killed, that keeps its port across
// restarts.
type Proc struct {
	t    testing.TB
	bin  *Binary
	name string
	addr string // fixed after the first start

	mu       sync.Mutex
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	acks     chan string
	exited   chan struct{}
	fault    faultserver.Fault
	perID    map[string]int
	maxN     int    // the most attempts seen for one call id, kept across Prune
	maxID    string // and that id
	attempts int64
	kills    int
	starts   int
	closed   bool
}

// Start starts the backend on addr ("127.0.0.1:0": a free port, kept across
// restarts), named name (put in every reply). The process is killed in
// t.Cleanup.
func (b *Binary) Start(t testing.TB, name, addr string) *Proc {
	t.Helper()
	p := &Proc{t: t, bin: b, name: name, addr: addr, perID: map[string]int{}}
	t.Cleanup(p.close)
	if err := p.start(); err != nil {
		t.Fatalf("backendproc: start %s: %v", name, err)
	}
	return p
}

// Addr returns the backend's address, "127.0.0.1:port".
func (p *Proc) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// Running reports whether the process is up.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Kill sends SIGKILL and waits for the process to exit. It does nothing if
// the process is not running.
func (p *Proc) Kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	if cmd != nil {
		p.kills++
	}
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// Restart starts the process again on the same port, with the last fault
// set, after Kill. It does nothing if the process is running.
func (p *Proc) Restart() {
	p.t.Helper()
	if p.Running() {
		return
	}
	var err error
	// The port was just released: another socket may hold it for a moment.
	for try := 0; try < 20; try++ {
		if err = p.start(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Errorf("backendproc: restart %s on %s: %v", p.name, p.Addr(), err)
}

// Set applies f to the following attempts; it is kept across restarts. It
// returns once the backend applied it (immediately when it is down).
func (p *Proc) Set(f faultserver.Fault) {
	b, _ := json.Marshal(f)
	p.mu.Lock()
	p.fault = f
	p.mu.Unlock()
	p.command("SET " + string(b))
}

// GoAway makes the backend send GOAWAY on its connections (see
// faultserver.Server.GoAway).
func (p *Proc) GoAway() { p.command("GOAWAY") }

// ResetAll makes the backend close every client connection.
func (p *Proc) ResetAll() { p.command("RESET") }

// Attempts returns the attempts the backend's processes reported.
func (p *Proc) Attempts() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.attempts
}

// AttemptsOf returns the attempts reported for call id id.
func (p *Proc) AttemptsOf(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.perID[id]
}

// MaxAttemptsPerCall returns the largest number of attempts reported for one
// call id, and that id.
func (p *Proc) MaxAttemptsPerCall() (int, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxN, p.maxID
}

// Prune forgets the per-call counts of the call ids for which keep returns
// false (calls long finished), so that a long run does not grow the map;
// MaxAttemptsPerCall still accounts for them.
func (p *Proc) Prune(keep func(id string) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id := range p.perID {
		if !keep(id) {
			delete(p.perID, id)
		}
	}
}

// Kills and Starts count the kills and the (re)starts.
func (p *Proc) Kills() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kills
}

// Starts counts the successful starts, the first included.
func (p *Proc) Starts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts
}

// command sends one line and waits for its acknowledgement; it does nothing
// while the process is down (the fault is replayed at the next start).
func (p *Proc) command(line string) {
	p.mu.Lock()
	stdin, acks, exited := p.stdin, p.acks, p.exited
	running := p.cmd != nil
	p.mu.Unlock()
	if !running {
		return
	}
	if _, err := io.WriteString(stdin, line+"\n"); err != nil {
		return // killed meanwhile
	}
	select {
	case a := <-acks:
		if a != "ACK" {
			p.t.Errorf("backendproc: %s: %q: %s", p.name, line, a)
		}
	case <-exited:
	case <-time.After(ackTimeout):
		p.t.Errorf("backendproc: %s: no ACK for %q within %v", p.name, line, ackTimeout)
	}
}

func (p *Proc) start() error {
	p.mu.Lock()
	closed, addr, fault := p.closed, p.addr, p.fault
	p.mu.Unlock()
	if closed {
		return errors.New("closed")
	}
	cmd := exec.Command(p.bin.Path, "-addr", addr, "-name", p.name)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	ready := make(chan string, 1)
	acks := make(chan string, 1)
	exited := make(chan struct{})
	go func() {
		p.read(stdout, ready, acks)
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case addr = <-ready:
	case <-exited:
		return fmt.Errorf("exited before listening on %s", addr)
	case <-time.After(startTimeout):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("not listening after %v", startTimeout)
	}
	if fault != (faultserver.Fault{}) {
		b, _ := json.Marshal(fault)
		if _, err := io.WriteString(stdin, "SET "+string(b)+"\n"); err == nil {
			select {
			case <-acks:
			case <-exited:
			case <-time.After(ackTimeout):
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = cmd.Process.Kill()
		<-exited
		return errors.New("closed")
	}
	p.addr = addr
	p.cmd, p.stdin, p.acks, p.exited = cmd, stdin, acks, exited
	p.starts++
	return nil
}

// read consumes the child's stdout until it closes.
func (p *Proc) read(r io.Reader, ready, acks chan<- string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		kind, rest, _ := strings.Cut(sc.Text(), " ")
		switch kind {
		case "READY":
			ready <- rest
		case "ACK":
			acks <- "ACK"
		case "ERR":
			acks <- "ERR " + rest
		case "ATTEMPT":
			id, _, _ := strings.Cut(rest, " ")
			p.mu.Lock()
			p.attempts++
			if id != "-" {
				p.perID[id]++
				if n := p.perID[id]; n > p.maxN {
					p.maxN, p.maxID = n, id
				}
			}
			p.mu.Unlock()
		}
	}
}

// close kills the process for good and closes its stdin.
func (p *Proc) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.Kill()
}
