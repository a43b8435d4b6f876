package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/splice"
)

// maxEchoBody bounds the body the /echo path sends back.
const maxEchoBody = 16 << 20

// The HTTP handler answers every request with one line naming what it saw,
// so a client can tell which path its request took:
//
//	multiplex: GET /hello HTTP/2.0 tls="TLS 1.3" alpn=h2 sni=localhost
//	multiplex: GET /hello HTTP/1.1 tls=none
//
// except on the path /echo, where it sends back the request body (at most
// 16 MiB).
func httpHandler(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/echo" {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEchoBody))
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
		return
	}
	st := r.TLS
	if st == nil {
		st, _ = r.Context().Value(tlsStateKey{}).(*tls.ConnectionState)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "multiplex: %s %s %s %s\n", r.Method, r.URL.Path, r.Proto, describeTLS(st))
}

func describeTLS(st *tls.ConnectionState) string {
	if st == nil {
		return "tls=none"
	}
	alpn := st.NegotiatedProtocol
	if alpn == "" {
		alpn = "none"
	}
	sni := st.ServerName
	if sni == "" {
		sni = "none"
	}
	return fmt.Sprintf("tls=%q alpn=%s sni=%s", tls.VersionName(st.Version), alpn, sni)
}

// tlsStateKey is the context key under which connContext stores the TLS
// state of a connection that arrived inside TLS.
type tlsStateKey struct{}

// tlsConn is a connection that arrived inside TLS, already decrypted and
// detected again. It carries the TLS state to the HTTP handler (through
// connContext) because net/http only fills Request.TLS itself for a
// *tls.Conn, and serving HTTP/2 from a non-*tls.Conn needs the server's
// unencrypted-HTTP/2 path, which it takes only for connections that do not
// report a TLS state.
type tlsConn struct {
	net.Conn
	state tls.ConnectionState
}

// connContext is the http.Server's ConnContext hook.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tlsConn); ok {
		return context.WithValue(ctx, tlsStateKey{}, &tc.state)
	}
	return ctx
}

// The gRPC Echo service, declared by hand so the example needs no generated
// code: its messages are the well-known google.protobuf.StringValue.
const (
	echoService = "sniff.examples.multiplex.Echo"
	echoMethod  = "/" + echoService + "/Echo"
)

type echoServer interface {
	Echo(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
}

type echoImpl struct{}

func (echoImpl) Echo(_ context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return wrapperspb.String("echo: " + in.GetValue()), nil
}

var echoServiceDesc = grpc.ServiceDesc{
	ServiceName: echoService,
	HandlerType: (*echoServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			if icpt == nil {
				return srv.(echoServer).Echo(ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: echoMethod}
			return icpt(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return srv.(echoServer).Echo(ctx, req.(*wrapperspb.StringValue))
			})
		},
	}},
	Metadata: "multiplex/echo",
}

// echo copies everything c sends back to it until the client closes its
// side (then echo closes its own) or is silent for idle (0: no limit). It
// counts the connection and its bytes in mc.
func echo(c net.Conn, idle time.Duration, mc metrics.Conn) {
	var err error
	defer func() {
		c.Close()
		mc.End(splice.Stats{Err: err})
	}()
	buf := make([]byte, 4096)
	for {
		if idle > 0 {
			c.SetReadDeadline(time.Now().Add(idle))
		}
		var n int
		n, err = c.Read(buf)
		if n > 0 {
			mc.AddRead(int64(n))
			w, werr := c.Write(buf[:n])
			mc.AddWritten(int64(w))
			if werr != nil {
				err = werr
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
				if cw, ok := c.(interface{ CloseWrite() error }); ok {
					cw.CloseWrite()
				}
			}
			return
		}
	}
}

// connQueue is a net.Listener whose connections are pushed by the program:
// the TLS handler hands decrypted, re-detected connections to net/http and
// grpc-go through two of them.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to Accept; it reports false when the queue is closed (the
// caller then closes c).
func (q *connQueue) push(c net.Conn) bool {
	select {
	case <-q.done:
		return false
	default:
	}
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: q.addr, Err: net.ErrClosed}
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// connSet tracks the connections the program handles itself (TLS
// handshakes, echoes) so shutdown can close them.
type connSet struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// start runs fn(c) on a new goroutine, tracked until it returns; when the set
// is already closed it closes c instead.
func (s *connSet) start(c net.Conn, fn func(net.Conn)) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
		fn(c)
	}()
}

// closeAndWait closes every tracked connection and waits for their
// goroutines.
func (s *connSet) closeAndWait() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
