// Package testnet holds the loopback servers the module's tests share: an
// accept loop whose handlers are all waited for when the test ends (so
// goleak sees no server goroutine left), and an echo of fixed-size messages
// for request/response benchmarks.
package testnet

import (
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Serve listens on 127.0.0.1 (an ephemeral port) and runs handle on every
// accepted connection in its own goroutine, closing the connection after
// handle returns. When the test ends the listener is closed and Serve waits
// for the accept loop and every handler to return. The caller may close the
// returned listener earlier to stop accepting; the handlers are still
// waited for at the end of the test.
func Serve(tb testing.TB, handle func(net.Conn)) net.Listener {
	tb.Helper()
	return ServeOn(tb, "127.0.0.1:0", handle)
}

// ServeOn is Serve on a TCP address of the caller's choice, such as
// "[::1]:0".
func ServeOn(tb testing.TB, address string, handle func(net.Conn)) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", address)
	if err != nil {
		tb.Fatalf("testnet: listen: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln
}

// EchoMessages reads size-byte messages from c and writes each one back,
// until a read or write fails (typically EOF when the peer closes).
func EchoMessages(c net.Conn, size int) {
	buf := make([]byte, size)
	for {
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// Wait bounds every wait of a test for another goroutine: a test that goes
// wrong fails after it instead of hanging until the go test timeout.
const Wait = 30 * time.Second

// Recv receives from ch, failing the test when nothing comes within Wait.
func Recv[T any](tb testing.TB, ch <-chan T, what string) T {
	tb.Helper()
	timer := time.NewTimer(Wait)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		tb.Fatalf("waited %v for %s", Wait, what)
		panic("unreachable")
	}
}

// WaitGroup waits for wg, failing the test when it is not done within Wait.
func WaitGroup(tb testing.TB, wg *sync.WaitGroup, what string) {
	tb.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	Recv(tb, done, what)
}

// Dial connects to addr over TCP, closes the connection when the test ends,
// and bounds its reads and writes by a deadline of d from now.
func Dial(tb testing.TB, addr string, d time.Duration) net.Conn {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(d)); err != nil {
		tb.Fatalf("deadline on %s: %v", addr, err)
	}
	return c
}

// OneConnListener is a net.Listener that hands out one connection, then
// blocks until closed: it serves an already accepted (or detected)
// connection to a server that wants a listener.
type OneConnListener struct {
	mu     sync.Mutex
	c      net.Conn
	closed chan struct{}
	once   sync.Once
	addr   net.Addr
}

// NewOneConnListener returns a listener whose first Accept returns c.
func NewOneConnListener(c net.Conn) *OneConnListener {
	return &OneConnListener{c: c, closed: make(chan struct{}), addr: c.LocalAddr()}
}

// Accept returns the connection once, then blocks until Close.
func (l *OneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.c
	l.c = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}

// Close ends a blocked Accept; it does not close the handed-out connection.
func (l *OneConnListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

// Addr is the connection's local address.
func (l *OneConnListener) Addr() net.Addr { return l.addr }

// ServeHTTP serves h with HTTP/1 and unencrypted HTTP/2 (as grpc-go's
// insecure client speaks it) on 127.0.0.1 and returns the address. The
// server is closed, and its Serve goroutine waited for, when the test ends.
func ServeHTTP(tb testing.TB, h http.Handler) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testnet: listen: %v", err)
	}
	srv := &http.Server{Handler: h, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	tb.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}
