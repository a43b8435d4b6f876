package proxy

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/spiffe"
	"github.com/sniffsplice/sniff/splice"
)

// HTTP-level serving (issue 10): a connection detected (or declared) as
// HTTP/1, HTTP/2 or gRPC is served by net/http, and each request goes
// through an httputil.ReverseProxy — outbound to the peer sidecar over a pool
// of mutual-TLS connections that announce the session protocol in their
// transport header, inbound to the local application — with the metrics
// package's HTTP middleware counting requests, responses, status codes,
// gRPC status and latency. Upgrades (WebSockets) and CONNECT become raw
// streams.

// ClientIDHeader carries the client sidecar's verified identity to the
// application on inbound HTTP requests, as Linkerd's l5d-client-id does. The
// application sees exactly the identity the inbound sidecar verified, or no
// l5d-client-id at all (an unmeshed client), never one a client wrote: HTTP
// reaches it only through the HTTP layer, which replaces the header. The
// exceptions are ports declared opaque and a proxy with NoHTTP, where the
// bytes are carried untouched and no header is injected or stripped (see the
// README's Security section).
const ClientIDHeader = "l5d-client-id"

// maxHeaderBytes bounds request headers (431 beyond).
const maxHeaderBytes = 64 << 10

var discardLog = log.New(io.Discard, "", 0)

// copyBuffers recycles ReverseProxy's body copy buffers (32 KiB each).
var copyBuffers httputil.BufferPool = &bufferPool{}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// isHTTP reports whether proto is served at the HTTP layer.
func isHTTP(proto detect.Protocol) bool {
	return proto == detect.HTTP1 || proto == detect.HTTP2 || proto == detect.GRPC
}

type transportKey struct {
	dst netip.AddrPort
	sp  opaque.SessionProtocol
}

// pooledTransport is an upstream pool and the last identity its peer proved:
// net/http's Transport for the requests the net/http path carries, and the
// direct path's own pool of HTTP/1.1 connections (h1.go), both dialled by
// dial.
type pooledTransport struct {
	rt   http.RoundTripper
	tr   *http.Transport
	sp   opaque.SessionProtocol // what the upstream speaks
	dial func(context.Context) (net.Conn, error)
	h1   h1Pool
	peer atomic.Pointer[spiffe.ID]
}

func newPooledTransport(sp opaque.SessionProtocol, timeout time.Duration, dial func(context.Context) (net.Conn, error)) *pooledTransport {
	t := &pooledTransport{sp: sp, dial: dial}
	t.tr = newTransport(sp, timeout, dial)
	t.rt = t.tr
	return t
}

// closeIdle closes the idle connections of both pools.
func (t *pooledTransport) closeIdle() {
	t.tr.CloseIdleConnections()
	t.h1.closeIdle()
}

type httpState struct {
	mu  sync.Mutex
	out map[transportKey]*pooledTransport
	in  map[transportKey]*pooledTransport
	// netHTTPOnly turns the direct HTTP/1.1 path off: every request goes
	// through net/http and ReverseProxy (for the benchmarks that compare).
	netHTTPOnly bool
	// direct counts the requests the direct path carried, handoffs the
	// connections it handed to net/http, parks the times an idle
	// connection went to wait in a Waiter (park.go).
	direct, handoffs, parks atomic.Uint64
	// lingering counts the idle keep-alive connections waiting for their
	// next request on their goroutine (h1Linger, h1MaxLingering).
	lingering atomic.Int64
	// h1Handlers are the direct path's handlers, inbound and outbound
	// (h1Handler).
	h1Once     [2]sync.Once
	h1Handlers [2]http.Handler
}

// outboundTransport returns the pool of connections to the peer in front of
// dst that carry session protocol sp.
func (p *Proxy) outboundTransport(dst netip.AddrPort, sp opaque.SessionProtocol) *pooledTransport {
	p.http.mu.Lock()
	defer p.http.mu.Unlock()
	k := transportKey{dst, sp}
	if t := p.http.out[k]; t != nil {
		return t
	}
	var t *pooledTransport
	t = newPooledTransport(sp, p.ResponseTimeout, func(ctx context.Context) (net.Conn, error) {
		c, id, err := p.dialUpstream(ctx, dst, sp)
		if err == nil && !id.IsZero() {
			t.peer.Store(&id)
		}
		return c, err
	})
	p.http.out = bounded(p.http.out)
	p.http.out[k] = t
	return t
}

// inboundTransport returns the pool of connections to the local application
// port, speaking HTTP/1 or h2c as the client did.
func (p *Proxy) inboundTransport(port uint16, sp opaque.SessionProtocol) *pooledTransport {
	p.http.mu.Lock()
	defer p.http.mu.Unlock()
	dst := netip.AddrPortFrom(p.appHost(), port)
	k := transportKey{dst, sp}
	if t := p.http.in[k]; t != nil {
		return t
	}
	t := newPooledTransport(sp, p.ResponseTimeout, func(ctx context.Context) (net.Conn, error) {
		return p.dialPlain(ctx, dst.String())
	})
	p.http.in = bounded(p.http.in)
	p.http.in[k] = t
	return t
}

// maxTransports bounds the pools kept per direction (one per destination
// and session protocol); past it the idle ones are closed and forgotten
// (pools still in use finish their requests).
const maxTransports = 1024

func bounded(m map[transportKey]*pooledTransport) map[transportKey]*pooledTransport {
	if m == nil || len(m) >= maxTransports {
		for _, t := range m {
			t.closeIdle()
		}
		return map[transportKey]*pooledTransport{}
	}
	return m
}

func newTransport(sp opaque.SessionProtocol, timeout time.Duration, dial func(context.Context) (net.Conn, error)) *http.Transport {
	var protos http.Protocols
	if sp == opaque.SessionHTTP2 {
		protos.SetUnencryptedHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	return &http.Transport{
		DialContext:           func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		Protocols:             &protos,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ResponseHeaderTimeout: timeout,
	}
}

// CloseIdleConnections closes the idle pooled HTTP connections to peers and
// local applications (a Sidecar does it when it closes).
func (p *Proxy) CloseIdleConnections() {
	p.http.mu.Lock()
	defer p.http.mu.Unlock()
	for _, m := range []map[transportKey]*pooledTransport{p.http.out, p.http.in} {
		for _, t := range m {
			t.closeIdle()
		}
	}
}

// serveHTTP serves the HTTP connection c until it closes (or is hijacked and
// the tunnel ends): every request is proxied through t to target. Bytes are
// counted on mc as they move; serveHTTP ends mc when the connection ends.
//
// HTTP/1.1 goes on the direct path (h1.go) until a request needs net/http.
// An idle HTTP/1.1 keep-alive connection may outlive the call: serveHTTP then
// returns with ev.parked set, and the connection waits in its listener's
// Waiter; emit hands the event back to it, and it is emitted when the
// connection ends (park.go).
func (p *Proxy) serveHTTP(ctx context.Context, ev *Event, c net.Conn, target netip.AddrPort, t *pooledTransport, dir opaque.Direction, clientID spiffe.ID, mc metrics.Conn) {
	if t.sp != opaque.SessionHTTP1 || p.http.netHTTPOnly {
		ev.ClientBytes, ev.ServerBytes = p.serveNetHTTP(ctx, c, nil, target, t, dir, clientID, mc)
		p.endHTTP(ev, t, mc, nil)
		return
	}
	s := p.newH1Server(ctx, ev, c, t, dir, clientID, mc)
	s.target, s.clientID = target, clientID
	switch s.serve(true) {
	case h1Parked:
		ev.ClientBytes, ev.ServerBytes = s.read, s.written
		ev.parked = s
		return
	case h1Handoff:
		s.handoff()
	}
	ev.ClientBytes, ev.ServerBytes = s.read, s.written
	p.endHTTP(ev, t, mc, s.firstErr)
}

// endHTTP ends an HTTP connection's metrics and completes its event.
func (p *Proxy) endHTTP(ev *Event, t *pooledTransport, mc metrics.Conn, err error) {
	mc.End(splice.Stats{})
	if id := t.peer.Load(); id != nil && ev.PeerID.IsZero() {
		ev.PeerID = *id
	}
	if err != nil && ev.Err == nil {
		ev.Err = err
	}
}

// serveNetHTTP serves c through net/http until it closes; rest are bytes
// read from c before (they are read again first, and not counted again).
// It returns the bytes read from c and written to it.
func (p *Proxy) serveNetHTTP(ctx context.Context, c net.Conn, rest []byte, target netip.AddrPort, t *pooledTransport, dir opaque.Direction, clientID spiffe.ID, mc metrics.Conn) (read, written int64) {
	if len(rest) > 0 {
		c = detect.NewReplayConn(c, rest)
	}
	skip := len(rest)
	errs := newServerErrors(func(status int, lat time.Duration) { p.Metrics.ObserveHTTPError(dir, status, lat) })
	cc := &countingConn{Conn: c, mc: mc, errs: errs, closed: make(chan struct{}), skip: skip}
	rewrite := p.rewriter(target, dir, clientID)
	rp := &httputil.ReverseProxy{
		Rewrite:    rewrite,
		Transport:  t.rt,
		BufferPool: copyBuffers,
		// FlushInterval stays 0: ReverseProxy already streams responses of
		// unknown length (gRPC, SSE) with immediate flushes, and a gRPC
		// Trailers-Only answer (ContentLength 0) must not have its headers
		// flushed early, or its grpc-status arrives without END_STREAM.
		ErrorLog:     discardLog,
		ErrorHandler: proxyError,
	}
	var h http.Handler = rp
	h = connectHandler(h, func(ctx context.Context) (net.Conn, error) { return t.tr.DialContext(ctx, "tcp", target.String()) }, rewrite)
	h = upgradeHandler(h, t.tr, rewrite)
	h = watchBody(h)
	h = p.Metrics.HTTPHandler(h, metrics.HTTPOptions{Direction: dir})
	h = errs.mark(h) // net/http's own answers (400, 431, ...) are counted by errs
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           h,
		Protocols:         &protos,
		ReadHeaderTimeout: cmp.Or(p.HeaderTimeout, 30*time.Second),
		IdleTimeout:       5 * time.Minute,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          discardLog,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnState:         func(_ net.Conn, st http.ConnState) { errs.connState(st) },
	}
	l := &oneConnListener{c: cc, done: make(chan struct{})}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(l)
	}()
	// A draining listener shuts the server down gracefully: HTTP/1.1 answers say Connection:
	// close and an idle connection is closed, HTTP/2 gets a GOAWAY and its streams in flight end.
	var drained <-chan struct{}
	if ls, ok := ctx.Value(listenerKey{}).(*listener); ok {
		drained = ls.drained
	}
	var shutdown chan struct{}
	for ended := false; !ended; {
		select {
		case <-cc.closed:
			ended = true
		case <-ctx.Done():
			ended = true
		case <-drained:
			drained, shutdown = nil, make(chan struct{})
			go func() {
				defer close(shutdown)
				srv.Shutdown(ctx)
			}()
		}
	}
	srv.Close()
	if shutdown != nil {
		<-shutdown // returns once Close has removed the connection
	}
	cc.Close() // also when hijacked: the tunnel ends with it
	l.Close()
	<-served
	cc.io.Lock() // the conn is closed: calls still running return at once
	defer cc.io.Unlock()
	return cc.read.Load(), cc.written.Load()
}

// forwardedHeaders are the headers ReverseProxy's Rewrite mode removes from
// every outgoing request as untrusted. The sidecars are transparent: the
// client's own values (from an ingress in front of the mesh, say) go on as
// they came, and nothing is added.
var forwardedHeaders = [...]string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// rewriter returns the one header policy of every request proxied to target
// (ReverseProxy's Rewrite; upgrades and CONNECT through outRequest, which
// strips the same hop-by-hop headers first). Inbound, the application gets
// the identity this sidecar verified in l5d-client-id, or no l5d-client-id
// at all for an unmeshed client: whatever the client wrote there, in the
// header or in the trailer, is dropped.
func (p *Proxy) rewriter(target netip.AddrPort, dir opaque.Direction, clientID spiffe.ID) func(*httputil.ProxyRequest) {
	host := target.String()
	var id []string
	if !clientID.IsZero() {
		id = []string{clientID.String()}
	}
	return func(pr *httputil.ProxyRequest) {
		pr.Out.URL.Scheme = "http"
		pr.Out.URL.Host = host
		for _, k := range forwardedHeaders {
			if v, ok := pr.In.Header[k]; ok && !httpguts.HeaderValuesContainsToken(pr.In.Header["Connection"], k) {
				pr.Out.Header[k] = v
			}
		}
		if dir == opaque.Inbound {
			pr.Out.Header.Del(ClientIDHeader)
			pr.Out.Trailer.Del(ClientIDHeader)
			if id != nil {
				pr.Out.Header[clientIDKey] = id
			}
		}
	}
}

// clientIDKey is ClientIDHeader in canonical form.
var clientIDKey = http.CanonicalHeaderKey(ClientIDHeader)

// hopHeaders are the hop-by-hop headers ReverseProxy removes (RFC 9110,
// section 7.6.1, and the old ones it still names).
var hopHeaders = [...]string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// outRequest builds the request sent upstream for in the way ReverseProxy
// builds it before calling Rewrite (hop-by-hop headers, those named in
// Connection and the forwarded headers removed; an upgrade's Connection and
// Upgrade put back), then applies rewrite. For the requests ReverseProxy
// does not carry itself: upgrades and CONNECT.
func outRequest(in *http.Request, rewrite func(*httputil.ProxyRequest)) *http.Request {
	out := in.Clone(in.Context())
	out.RequestURI = ""
	var upgrade string
	if httpguts.HeaderValuesContainsToken(in.Header["Connection"], "upgrade") {
		upgrade = in.Header.Get("Upgrade")
	}
	for _, v := range in.Header["Connection"] {
		for _, k := range strings.Split(v, ",") {
			if k = textproto.TrimString(k); k != "" {
				out.Header.Del(k)
			}
		}
	}
	for _, k := range hopHeaders {
		out.Header.Del(k)
	}
	for _, k := range forwardedHeaders {
		out.Header.Del(k)
	}
	if upgrade != "" {
		out.Header.Set("Connection", "Upgrade")
		out.Header.Set("Upgrade", upgrade)
	}
	rewrite(&httputil.ProxyRequest{In: in, Out: out})
	return out
}

// statusClientClosed is the status counted for a request whose client went
// away before its answer (nginx's 499): no one reads it, and it is not the
// upstream's failure.
const statusClientClosed = 499

// proxyError answers a failed upstream round trip with upstreamStatus's code.
func proxyError(w http.ResponseWriter, r *http.Request, err error) {
	code := upstreamStatus(r.Context(), err)
	http.Error(w, http.StatusText(code), code)
}

// upstreamStatus is the answer to a request whose round trip failed with err, on both HTTP paths:
// 400 when the client's request body could not be read (an invalid chunk, a body cut short: the
// client's error, not the upstream's), 499 when the client's connection closed first (ctx, the
// request's, was cancelled with it), 504 for a timeout, 502 for anything else.
func upstreamStatus(ctx context.Context, err error) int {
	var ne net.Error
	switch {
	case errors.As(err, new(clientBodyError)):
		return http.StatusBadRequest
	case errors.Is(ctx.Err(), context.Canceled) || err == errClientGone:
		// net/http cancels a request's context when its connection closes: which of the
		// body's read error and the cancelled round trip the Transport reports first is a race.
		return statusClientClosed
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// watchBody marks the errors of reading each request's body as the client's
// (clientBodyError), so that proxyError can tell them from the upstream's:
// either ends the round trip with an error. net/http's Transports return a
// request body's read error as the round trip's error.
func watchBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = watchedBody{r.Body}
		}
		next.ServeHTTP(w, r)
	})
}

// watchedBody is a request body whose read errors are clientBodyErrors.
type watchedBody struct{ io.ReadCloser }

func (b watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = clientBodyError{err}
	}
	return n, err
}

// clientBodyError is an error reading a client's request body.
type clientBodyError struct{ err error }

func (e clientBodyError) Error() string { return "sidecar: reading the request body: " + e.err.Error() }
func (e clientBodyError) Unwrap() error { return e.err }

// connectHandler turns an HTTP/1 CONNECT into a raw tunnel: the request,
// its headers rewritten as every other request's are, is sent on a fresh
// upstream connection, the upstream's answer relayed, and on 2xx both
// connections are joined byte for byte.
func connectHandler(next http.Handler, dial func(context.Context) (net.Conn, error), rewrite func(*httputil.ProxyRequest)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect || r.ProtoMajor != 1 {
			next.ServeHTTP(w, r)
			return
		}
		out := outRequest(r, rewrite)
		// A CONNECT has no content: a Content-Length would make the
		// application read the tunnel's first bytes as a body.
		out.Header.Del("Content-Length")
		up, err := dial(r.Context())
		if err != nil {
			proxyError(w, r, err)
			return
		}
		defer up.Close()
		bw := bufio.NewWriter(up)
		bw.WriteString("CONNECT " + r.RequestURI + " HTTP/1.1\r\nHost: " + r.Host + "\r\n")
		out.Header.Write(bw)
		bw.WriteString("\r\n")
		if err := bw.Flush(); err != nil {
			proxyError(w, r, err)
			return
		}
		br := bufio.NewReader(up)
		resp, err := http.ReadResponse(br, r)
		if err != nil {
			proxyError(w, r, err)
			return
		}
		if resp.StatusCode/100 != 2 {
			for k, v := range resp.Header {
				w.Header()[k] = v
			}
			w.WriteHeader(resp.StatusCode)
			io.Copy(w, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			return
		}
		// A 2xx to CONNECT has no body: what follows is the tunnel. (Closing
		// resp.Body would read the tunnel to its end: net/http sees a response
		// without a length.)
		// The 2xx is written by hand after the hijack: net/http would add
		// Transfer-Encoding: chunked, which RFC 9110 forbids on a 2xx to
		// CONNECT. WriteHeader afterwards only tells the metrics middleware
		// the status (net/http ignores it on a hijacked connection).
		conn, bufrw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(bufrw, "HTTP/1.1 %d %s\r\n", resp.StatusCode, http.StatusText(resp.StatusCode))
		resp.Header.Del("Transfer-Encoding")
		resp.Header.Del("Content-Length")
		resp.Header.Write(bufrw)
		io.WriteString(bufrw, "\r\n")
		if err := bufrw.Flush(); err != nil {
			return
		}
		w.WriteHeader(resp.StatusCode)
		splice.Join(r.Context(), withBuffered(conn, bufrw.Reader), withBuffered(up, br))
	})
}

// upgradeHandler serves HTTP/1.1 Upgrade requests (WebSockets) itself rather
// than through ReverseProxy, so that the 101 goes through WriteHeader and the
// metrics middleware counts it; the two sides then become one raw stream.
func upgradeHandler(next http.Handler, rt http.RoundTripper, rewrite func(*httputil.ProxyRequest)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 1 || r.Header.Get("Upgrade") == "" || !httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") {
			next.ServeHTTP(w, r)
			return
		}
		out := outRequest(r, rewrite)
		resp, err := rt.RoundTrip(out)
		if err != nil {
			proxyError(w, r, err)
			return
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		body, ok := resp.Body.(io.ReadWriteCloser)
		if resp.StatusCode != http.StatusSwitchingProtocols || !ok {
			w.WriteHeader(resp.StatusCode)
			io.Copy(w, resp.Body)
			resp.Body.Close()
			return
		}
		defer body.Close()
		stop := context.AfterFunc(r.Context(), func() { body.Close() })
		defer stop()
		w.WriteHeader(http.StatusSwitchingProtocols)
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		if err := brw.Flush(); err != nil {
			return
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			io.Copy(body, brw.Reader) // the client's bytes, buffered ones first
			if cw, ok := body.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
		}()
		io.Copy(conn, body)
		conn.Close()
		body.Close()
		<-done
	})
}

// countingConn counts the bytes of the accepted connection (on mc too, live),
// shows them to errs (nil: none) and reports its close.
type countingConn struct {
	net.Conn
	mc   metrics.Conn
	errs *serverErrors
	// io is held (shared) across each Read and Write with its count, so
	// totals taken under the exclusive lock include every finished call.
	io            sync.RWMutex
	read, written atomic.Int64
	once          sync.Once
	closed        chan struct{}
	// skip is how many of the first bytes read are not counted (the direct
	// path counted them before it handed the connection over); they are
	// still shown to errs. Only Read touches it, and net/http reads from
	// one goroutine at a time.
	skip int
}

func (c *countingConn) Read(b []byte) (int, error) {
	c.io.RLock()
	defer c.io.RUnlock()
	n, err := c.Conn.Read(b)
	counted := n
	if c.skip > 0 {
		d := min(c.skip, n)
		c.skip -= d
		counted -= d
	}
	c.read.Add(int64(counted))
	c.mc.AddRead(int64(counted))
	if c.errs != nil {
		c.errs.read(b[:n])
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			c.errs.readTimedOut()
		}
	}
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.io.RLock()
	defer c.io.RUnlock()
	if c.errs != nil {
		c.errs.write(b)
	}
	n, err := c.Conn.Write(b)
	c.written.Add(int64(n))
	c.mc.AddWritten(int64(n))
	return n, err
}

func (c *countingConn) Close() error {
	if c.errs != nil && c.errs.takeTimeout() {
		// net/http gives up on a request whose headers did not arrive in
		// time without a word; the client gets 408 (counted by errs).
		c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(c, requestTimeout)
	}
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}

func (c *countingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// oneConnListener hands out one connection, then blocks until closed.
type oneConnListener struct {
	mu   sync.Mutex
	c    net.Conn
	done chan struct{}
	once sync.Once
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.c
	l.c = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return oneAddr{} }

type oneAddr struct{}

func (oneAddr) Network() string { return "tcp" }
func (oneAddr) String() string  { return "sidecar" }

// withBuffered returns c with the bytes br has already read from it put back
// in front (c itself when there are none).
func withBuffered(c net.Conn, br *bufio.Reader) net.Conn {
	n := br.Buffered()
	if n == 0 {
		return c
	}
	b, _ := br.Peek(n)
	return detect.NewReplayConn(c, append([]byte(nil), b...))
}
