package faultserver

import (
	"net"
	"sync"
)

// connListener accepts on one net.Listener for any number of sub-listeners
// (one per grpc.Server, so that a GOAWAY can hand the port to a fresh server)
// and keeps every accepted connection, so that one can be reset by the
// client's address.
type connListener struct {
	net.Listener
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	mu   sync.Mutex
	open map[string]net.Conn // by remote address
}

func newConnListener(l net.Listener) *connListener {
	cl := &connListener{Listener: l, conns: make(chan net.Conn), done: make(chan struct{}), open: map[string]net.Conn{}}
	cl.wg.Add(1)
	go cl.acceptLoop()
	return cl
}

func (cl *connListener) acceptLoop() {
	defer cl.wg.Done()
	for {
		c, err := cl.Listener.Accept()
		if err != nil {
			return
		}
		tc := &trackedConn{Conn: c, cl: cl, key: c.RemoteAddr().String()}
		cl.mu.Lock()
		cl.open[tc.key] = tc
		cl.mu.Unlock()
		select {
		case cl.conns <- tc:
		case <-cl.done:
			_ = tc.Close()
			return
		}
	}
}

// Close stops accepting; connections stay open.
func (cl *connListener) Close() error {
	var err error
	cl.once.Do(func() {
		close(cl.done)
		err = cl.Listener.Close()
	})
	return err
}

// wait waits for the accept loop to end (after Close).
func (cl *connListener) wait() { cl.wg.Wait() }

// sub returns a listener that takes its connections from cl; closing it
// does not close cl.
func (cl *connListener) sub() net.Listener {
	return &subListener{cl: cl, done: make(chan struct{})}
}

// closeConn closes the connection whose remote address is addr.
func (cl *connListener) closeConn(addr string) bool {
	cl.mu.Lock()
	c, ok := cl.open[addr]
	cl.mu.Unlock()
	if ok {
		_ = c.Close()
	}
	return ok
}

// closeAll closes every open connection and returns how many.
func (cl *connListener) closeAll() int {
	cl.mu.Lock()
	all := make([]net.Conn, 0, len(cl.open))
	for _, c := range cl.open {
		all = append(all, c)
	}
	cl.mu.Unlock()
	for _, c := range all {
		_ = c.Close()
	}
	return len(all)
}

type trackedConn struct {
	net.Conn
	cl   *connListener
	key  string
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.cl.mu.Lock()
		if c.cl.open[c.key] == c {
			delete(c.cl.open, c.key)
		}
		c.cl.mu.Unlock()
	})
	return c.Conn.Close()
}

type subListener struct {
	cl   *connListener
	done chan struct{}
	once sync.Once
}

func (l *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.cl.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.cl.done:
		return nil, net.ErrClosed
	}
}

func (l *subListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *subListener) Addr() net.Addr { return l.cl.Addr() }
