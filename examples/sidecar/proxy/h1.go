package proxy

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/spiffe"
)

// The direct HTTP/1.1 path (issue 17). net/http's server and
// httputil.ReverseProxy cost a sidecar about three goroutine hand-offs and a
// dozen allocations per request (the server's handler goroutine, the
// Transport's write and read loops, the header maps, the request and
// response structures). Most HTTP/1.1 requests need none of that: the head
// can be forwarded with a few header lines dropped (hop-by-hop ones, and
// inbound a client's l5d-client-id) or added (the verified l5d-client-id),
// and the body copied as it is framed. The direct path does that on the
// connection's own goroutine: read the request head into a pooled buffer,
// write it to a pooled upstream connection, read the response head, write it
// with the body bytes already read in one write, copy the rest of the body.
//
// What it does not carry it hands over, with the bytes it has read put
// back, to the net/http path for the rest of the connection: upgrades,
// CONNECT, Expect, chunked or otherwise encoded request bodies, HTTP/1.0,
// absolute-form targets, obs-fold, a missing or repeated Host, heads that do
// not fit the buffer, anything malformed (net/http answers those as before,
// counted by serverErrors). Requests are counted by the same metrics
// middleware (metrics.Registry.HTTPHandler), bytes on the connection's
// metrics.Conn, as on the net/http path.

// Sizes of the direct path.
const (
	h1BufSize   = 4 << 10  // a connection's read buffer, from a pool
	h1MaxHead   = 64 << 10 // the largest request head carried (the buffer grows to it); past it net/http answers 431
	h1BodyInOne = 16 << 10 // a body at most this long, already read, goes out with its head in one write
	h1IdleConns = 256      // idle upstream connections kept per pool
	h1MinIdle   = 4        // idle upstream connections the purge leaves (until h1IdleTime)
)

// h1IdleTime is how long an upstream connection may stay idle in its pool, and h1PurgeDelay
// how often the pool closes half of those idle for at least that long, least recently used
// first, down to h1MinIdle (as HAProxy's pool-purge-delay does): a burst that opened many
// connections to the peer does not keep them, and the peer's state for each, once it is over.
// Variables for the tests.
var (
	h1IdleTime   = 90 * time.Second
	h1PurgeDelay = 5 * time.Second
)

var h1Bufs = sync.Pool{New: func() any { b := make([]byte, h1BufSize); return &b }}

// h1Scratch is what a request needs while it is carried and not after: the
// parsed heads and the buffer the outgoing heads are built in.
type h1Scratch struct {
	req  reqHead
	resp respHead
	out  []byte
	// What the metrics middleware sees of the request (Host, Method) and
	// the writer it wraps.
	hreq http.Request
	rw   h1Writer
}

var h1Scratches = sync.Pool{New: func() any { return &h1Scratch{out: make([]byte, 0, h1BufSize)} }}

// upConn is an upstream connection of the direct path.
type upConn struct {
	net.Conn
	br   *bufio.Reader // nil while idle in its pool with nothing buffered (h1UpReaders); reads through Read
	idle time.Time     // when it was put back
	w    responseWatch // while a response is read
	// deadline: a read deadline is set on Conn (arm); it may outlive the
	// response that set it, until the next one's watch.
	deadline bool
}

// h1UpReaders are the read buffers of upstream connections in use: one put back in its pool with
// nothing buffered gives its reader back, and takes one again when it is next used, so that an
// idle pooled connection holds no buffer (issue 17: the pool's idle connections are a share of
// every proxy's memory).
var h1UpReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, h1BufSize) }}

func newUpConn(c net.Conn) *upConn {
	uc := &upConn{Conn: c}
	uc.takeReader()
	return uc
}

func (uc *upConn) takeReader() {
	if uc.br == nil {
		uc.br = h1UpReaders.Get().(*bufio.Reader)
		uc.br.Reset(uc)
	}
}

func (uc *upConn) giveReader() {
	if uc.br != nil && uc.br.Buffered() == 0 {
		uc.br.Reset(nil)
		h1UpReaders.Put(uc.br)
		uc.br = nil
	}
}

// h1Pool holds the idle upstream connections of one pooledTransport for the
// direct path, most recently used first out.
type h1Pool struct {
	mu    sync.Mutex
	idle  []*upConn   // least recently used first
	purge *time.Timer // armed while there are idle connections
}

func (p *h1Pool) get() *upConn {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.idle) > 0 {
		uc := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(uc.idle) < h1IdleTime {
			uc.takeReader()
			return uc
		}
		uc.Close()
	}
	return nil
}

func (p *h1Pool) put(uc *upConn) {
	uc.giveReader()
	uc.idle = time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) >= h1IdleConns {
		p.idle[0].Close() // the least recently used
		p.idle = append(p.idle[:0], p.idle[1:]...)
	}
	p.idle = append(p.idle, uc)
	if p.purge == nil {
		p.purge = time.AfterFunc(h1PurgeDelay, p.purgeIdle)
	}
}

// purgeIdle closes the connections idle past h1IdleTime, and half of those idle for at least
// h1PurgeDelay while more than h1MinIdle are left; it runs again every h1PurgeDelay while
// connections are idle.
func (p *h1Pool) purgeIdle() {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.purge == nil { // closeIdle ran
		return
	}
	expired, old := 0, 0
	for _, uc := range p.idle {
		switch d := now.Sub(uc.idle); {
		case d >= h1IdleTime:
			expired++
			old++
		case d >= h1PurgeDelay:
			old++
		}
	}
	n := max(expired, min((old+1)/2, len(p.idle)-h1MinIdle))
	for i, uc := range p.idle[:n] {
		uc.Close()
		p.idle[i] = nil
	}
	p.idle = append(p.idle[:0], p.idle[n:]...)
	clear(p.idle[len(p.idle):cap(p.idle)])
	if len(p.idle) == 0 {
		p.purge = nil
		return
	}
	p.purge.Reset(h1PurgeDelay)
}

func (p *h1Pool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, uc := range p.idle {
		uc.Close()
	}
	p.idle = nil
	if p.purge != nil {
		p.purge.Stop()
		p.purge = nil
	}
}

// h1Conn is what the direct path keeps of a client connection for its whole
// life: in its h1Server while requests are carried, and kept compactly in
// its parkedConn while it waits in the Waiter between them.
type h1Conn struct {
	ctx    context.Context
	p      *Proxy
	c      net.Conn
	t      *pooledTransport
	dir    opaque.Direction
	idLine string // inbound: the l5d-client-id line to add; "" for none
	mc     metrics.Conn

	read, written int64
	firstErr      error  // the first upstream error, for the Event
	host          string // the last request's Host, kept so that the next one with the same Host allocates none

	// wait is the listener whose Waiter an idle connection waits in (nil:
	// it never parks; park.go).
	wait *listener
	// What net/http needs if the connection goes there.
	target   netip.AddrPort
	clientID spiffe.ID
}

// h1Server carries the HTTP/1.1 requests of one client connection.
type h1Server struct {
	h1Conn
	ev      *Event       // the handler's event; nil once the connection has parked (pk holds it)
	handler http.Handler // the metrics middleware around serveRequest

	buf      []byte // read buffer: buf[r:w] is read and not yet used
	r, w     int
	sc       *h1Scratch // while a request is carried
	headLen  int        // of the current request head, at buf[r:]
	head     bool       // the current request is a HEAD
	keep     bool       // the connection goes on after this request
	lingered bool       // counted in the proxy's lingering connections (readHead)

	mu      sync.Mutex
	up      *upConn // the upstream connection in use
	aborted bool
}

// h1Writer is the http.ResponseWriter the metrics middleware wraps: it only
// records the status (the direct path writes the response itself) and holds
// grpc-status for the middleware to read. It leads the middleware's shared
// handler back to the request's connection.
type h1Writer struct {
	hdr    http.Header
	status int
	s      *h1Server
}

func (w *h1Writer) Header() http.Header {
	if w.hdr == nil {
		w.hdr = http.Header{}
	}
	return w.hdr
}
func (w *h1Writer) Write(b []byte) (int, error) { return len(b), nil }
func (w *h1Writer) WriteHeader(code int)        { w.status = code }

// h1State is how a stretch of a connection on the direct path ended.
type h1State uint8

const (
	h1Ended   h1State = iota // the connection is closed
	h1Handoff                // a request must go to net/http: buf[r:w] goes back in front of c
	h1Parked                 // idle past h1Linger: the connection is to wait in the Waiter
)

// h1Linger is how long an idle keep-alive connection keeps its goroutine
// and read buffer, waiting for its next request, before it waits in the
// listener's Waiter with neither (a connection whose client sends requests
// back to back never pays the Waiter's system calls). At most
// h1MaxLingering connections of a proxy linger at once; beyond, an idle
// connection parks as soon as its answer is written, so that a burst of
// connections that go idle does not leave a goroutine each behind (Go keeps
// every goroutine's descriptor once it has existed, about 0.5 KiB, and the
// stacks of a burst take a while to go back). Variables for the tests.
var (
	h1Linger       = time.Second
	h1MaxLingering = int64(256)
)

// newH1Server prepares the direct path for c.
func (p *Proxy) newH1Server(ctx context.Context, ev *Event, c net.Conn, t *pooledTransport, dir opaque.Direction, clientID spiffe.ID, mc metrics.Conn) *h1Server {
	s := &h1Server{h1Conn: h1Conn{ctx: ctx, p: p, c: c, t: t, dir: dir, mc: mc}, ev: ev}
	if dir == opaque.Inbound && !clientID.IsZero() {
		s.idLine = clientIDKey + ": " + clientID.String() + "\r\n"
	}
	if waitConn(c) != nil {
		s.wait, _ = ctx.Value(listenerKey{}).(*listener)
	}
	s.handler = p.h1Handler(dir)
	return s
}

// waitConn returns the socket that c waits on in a Waiter: c itself for a
// plain TCP connection, the TCP connection under it for TLS (which parks
// only after a read timed out with nothing read, so that crypto/tls holds
// no whole record the socket no longer shows: readHead); nil when c cannot
// park.
func waitConn(c net.Conn) *net.TCPConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	tcp, _ := c.(*net.TCPConn)
	return tcp
}

// h1Handler returns the proxy's direct-path handler for dir: the metrics
// middleware around h1Serve, built once (its label caps are the proxy's,
// not a connection's).
func (p *Proxy) h1Handler(dir opaque.Direction) http.Handler {
	i := 0
	if dir == opaque.Outbound {
		i = 1
	}
	p.http.h1Once[i].Do(func() {
		p.http.h1Handlers[i] = p.Metrics.HTTPHandler(http.HandlerFunc(h1Serve), metrics.HTTPOptions{Direction: dir})
	})
	return p.http.h1Handlers[i]
}

// h1Serve is the direct path's handler: it finds the request's connection
// through its writer (the middleware's wraps it) and carries the request.
func h1Serve(w http.ResponseWriter, _ *http.Request) {
	hw, ok := w.(*h1Writer)
	if !ok {
		hw = w.(interface{ Unwrap() http.ResponseWriter }).Unwrap().(*h1Writer)
	}
	hw.s.serveRequest(w)
}

// serve carries requests on the calling goroutine until the connection ends,
// must go to net/http, or is idle past h1Linger (with a Waiter to wait in).
// first: a request is expected now (the connection's first, or the Waiter
// found it readable), so its head is timed from the start.
func (s *h1Server) serve(first bool) h1State {
	stop := context.AfterFunc(s.ctx, s.abort)
	defer stop()
	st := s.run(first)
	if st != h1Handoff {
		s.release()
	}
	return st
}

// abort ends the connection and the request in flight (the proxy is
// closing).
func (s *h1Server) abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.aborted = true
	s.c.Close()
	if s.up != nil {
		s.up.Close()
	}
}

func (s *h1Server) release() {
	if s.buf != nil && cap(s.buf) == h1BufSize {
		b := s.buf[:h1BufSize]
		h1Bufs.Put(&b)
	}
	s.buf = nil
	s.r, s.w = 0, 0
}

// rest returns the bytes read and not used, for net/http, and releases the
// buffer.
func (s *h1Server) rest() []byte {
	b := append([]byte(nil), s.buf[s.r:s.w]...)
	s.release()
	return b
}

// run serves requests until the connection ends, one must go to net/http,
// or the connection is idle past h1Linger.
func (s *h1Server) run(first bool) h1State {
	for ; ; first = false {
		if st := s.readHead(first); st != h1Running {
			return st
		}
		s.sc = h1Scratches.Get().(*h1Scratch)
		h := &s.sc.req
		b := s.buf[s.r : s.r+s.headLen]
		if !parseRequest(b, h, s.dir == opaque.Inbound) {
			s.putScratch()
			return h1Handoff
		}
		s.head = string(h.method.of(b)) == http.MethodHead
		if host := h.host.of(b); string(host) != s.host {
			s.host = string(host)
		}
		sc := s.sc
		sc.hreq.Method, sc.hreq.Host = method(h.method.of(b)), s.host
		sc.rw.status, sc.rw.s = 0, s
		clear(sc.rw.hdr)
		s.keep = !h.close && !s.draining()
		s.p.http.direct.Add(1)
		s.handler.ServeHTTP(&sc.rw, &sc.hreq)
		sc.rw.s, sc.hreq.Host = nil, ""
		s.putScratch()
		if !s.keep {
			s.closeClient()
			return h1Ended
		}
		if s.r == s.w {
			s.r, s.w = 0, 0
		}
	}
}

// draining reports whether the connection's listener has stopped accepting: then the answer in
// flight says Connection: close and the connection ends after it, as with net/http's Shutdown.
func (s *h1Server) draining() bool { return s.wait != nil && s.wait.draining.Load() }

// h1Running: readHead found a whole request head.
const h1Running h1State = 255

func (s *h1Server) putScratch() {
	s.sc.out = s.sc.out[:0]
	h1Scratches.Put(s.sc)
	s.sc = nil
}

// method returns the method's string without allocating for the common
// ones.
func method(b []byte) string {
	for _, m := range [...]string{http.MethodGet, http.MethodPost, http.MethodHead, http.MethodPut,
		http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		if string(b) == m {
			return m
		}
	}
	return string(b)
}

// readHead reads until buf[r:] holds a whole request head and sets headLen
// (h1Running). Otherwise the connection has ended (closed, or answered 408),
// must go to net/http, or has been idle past h1Linger with a Waiter to wait
// in (parked: nothing read, buffer released).
func (s *h1Server) readHead(first bool) h1State {
	headerTimeout := cmp.Or(s.p.HeaderTimeout, 30*time.Second)
	var start time.Time
	switch {
	case s.w > s.r || first:
		start = time.Now()
		s.c.SetReadDeadline(start.Add(headerTimeout))
	case s.wait != nil:
		if s.p.http.lingering.Add(1) > h1MaxLingering {
			// Too many linger: a read that times out at once (no system
			// call) parks the connection, unless a TLS connection holds a
			// record already read.
			s.p.http.lingering.Add(-1)
			s.c.SetReadDeadline(time.Now())
			break
		}
		s.lingered = true
		defer s.endLinger()
		s.c.SetReadDeadline(time.Now().Add(h1Linger))
	default:
		s.c.SetReadDeadline(time.Now().Add(httpIdleTimeout))
	}
	for {
		if s.w > s.r {
			switch n := headEnd(s.buf[s.r:s.w]); {
			case n > 0:
				s.headLen = n
				return h1Running
			case n < 0:
				return h1Handoff
			}
		}
		if s.buf == nil {
			s.buf = *h1Bufs.Get().(*[]byte)
		}
		if s.w == len(s.buf) { // full: make room
			if s.r > 0 {
				s.w = copy(s.buf, s.buf[s.r:s.w])
				s.r = 0
			} else {
				if len(s.buf) >= h1MaxHead {
					return h1Handoff // net/http answers 431
				}
				nb := make([]byte, 2*len(s.buf))
				n := copy(nb, s.buf[s.r:s.w])
				s.release()
				s.buf, s.w = nb, n
			}
		}
		n, err := s.c.Read(s.buf[s.w:])
		s.w += n
		s.count(n)
		if n > 0 {
			s.endLinger()
		}
		if n > 0 && start.IsZero() {
			start = time.Now()
			if headEnd(s.buf[s.r:s.w]) == 0 {
				s.c.SetReadDeadline(start.Add(headerTimeout))
			}
		}
		if err != nil {
			timeout := errors.Is(err, os.ErrDeadlineExceeded)
			switch {
			case s.w > s.r && timeout && !start.IsZero():
				// A request begun whose head did not arrive in time: the
				// answer net/http owes and does not write (see serverErrors).
				s.write([]byte(requestTimeout))
				s.p.Metrics.ObserveHTTPError(s.dir, http.StatusRequestTimeout, time.Since(start))
				s.closeClient()
				return h1Ended
			case s.w > s.r && !timeout && !errors.Is(err, net.ErrClosed):
				return h1Handoff // part of a request, then an end: net/http answers it
			case s.w == s.r && timeout && s.wait != nil && s.ctx.Err() == nil:
				s.c.SetReadDeadline(time.Time{})
				return h1Parked
			}
			s.c.Close()
			return h1Ended
		}
	}
}

// endLinger leaves the proxy's count of lingering connections.
func (s *h1Server) endLinger() {
	if s.lingered {
		s.lingered = false
		s.p.http.lingering.Add(-1)
	}
}

// httpIdleTimeout closes a keep-alive client connection idle this long.
const httpIdleTimeout = 5 * time.Minute

func (s *h1Server) count(n int) {
	if n > 0 {
		s.read += int64(n)
		s.mc.AddRead(int64(n))
	}
}

// write writes b to the client.
func (s *h1Server) write(b []byte) error {
	n, err := s.c.Write(b)
	if n > 0 {
		s.written += int64(n)
		s.mc.AddWritten(int64(n))
	}
	return err
}

// closeClient closes the client connection after an answer: the write side
// first, so that the answer is not lost to a reset.
func (s *h1Server) closeClient() {
	if cw, ok := s.c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	s.c.Close()
}

// serveRequest carries the parsed request at buf[r:] (the metrics
// middleware's handler). It consumes the head and the body from buf, and
// clears keep when the connection must end after it.
func (s *h1Server) serveRequest(w http.ResponseWriter) {
	h := &s.sc.req
	b := s.buf[s.r : s.r+s.headLen]
	out := s.sc.out[:0]
	out = append(out, b[:h.target.e]...)
	out = append(out, " HTTP/1.1\r\n"...)
	for i := range h.lines[:h.n] {
		if l := &h.lines[i]; !l.drop {
			out = append(out, l.line.of(b)...)
		}
	}
	out = append(out, s.idLine...)
	out = append(out, "\r\n"...)
	s.r += s.headLen
	// The body: what is already read goes out with the head when it is the
	// whole body and small; the rest is copied from the client.
	left := max(h.contentLength, 0)
	if left > 0 && left <= h1BodyInOne && int64(s.w-s.r) >= left {
		out = append(out, s.buf[s.r:s.r+int(left)]...)
		s.r += int(left)
		left = 0
	}
	s.sc.out = out
	replayable := left == 0 // the whole request is in out
	for attempt := 0; ; attempt++ {
		uc, reused, err := s.upstream()
		if err != nil {
			s.fail(w, err, left)
			return
		}
		if _, err = uc.Write(out); err == nil && left > 0 {
			var clientErr bool
			clientErr, err = s.copyBody(uc, left)
			left = 0
			if clientErr {
				s.drop(uc)
				s.answer(w, http.StatusBadRequest, false)
				return
			}
		}
		if err == nil {
			var got bool // response bytes arrived
			if got, err = s.relayResponse(w, uc); err == nil {
				return
			}
			if got {
				s.drop(uc)
				s.keep = false
				s.fail(w, err, 0)
				return
			}
		}
		s.drop(uc)
		// A pooled connection the upstream had closed: once more on a new
		// one, when the whole request is still at hand.
		if reused && attempt == 0 && replayable && !errors.Is(err, os.ErrDeadlineExceeded) && err != errClientGone {
			continue
		}
		s.fail(w, err, left)
		return
	}
}

// upstream takes an idle pooled connection or dials a new one.
func (s *h1Server) upstream() (uc *upConn, reused bool, err error) {
	if uc = s.t.h1.get(); uc != nil {
		reused = true
	} else {
		c, err := s.t.dial(s.ctx)
		if err != nil {
			return nil, false, err
		}
		uc = newUpConn(c)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aborted {
		uc.Close()
		return nil, false, net.ErrClosed
	}
	s.up = uc
	return uc, reused, nil
}

// done puts uc back in the pool; drop closes it.
func (s *h1Server) done(uc *upConn) {
	s.mu.Lock()
	s.up = nil
	s.mu.Unlock()
	s.t.h1.put(uc)
}

func (s *h1Server) drop(uc *upConn) {
	s.mu.Lock()
	s.up = nil
	s.mu.Unlock()
	uc.Close()
}

// copyBody copies the remaining left bytes of the request body from the
// client to uc. clientErr tells a failed client read (the client's error)
// from a failed upstream write.
func (s *h1Server) copyBody(uc *upConn, left int64) (clientErr bool, err error) {
	deadline := false
	for left > 0 {
		if s.w == s.r {
			if !deadline { // the head's deadline was for the head
				s.c.SetReadDeadline(time.Now().Add(httpIdleTimeout))
				deadline = true
			}
			s.r, s.w = 0, 0
			n, err := s.c.Read(s.buf)
			s.w = n
			s.count(n)
			if n == 0 && err != nil {
				return true, err
			}
		}
		n := int(min(int64(s.w-s.r), left))
		if _, err := uc.Write(s.buf[s.r : s.r+n]); err != nil {
			s.keep = false // the rest of the body is not read
			return false, err
		}
		s.r += n
		left -= int64(n)
	}
	return false, nil
}

// errNoResponse: the upstream sent a head the proxy cannot carry.
var errNoResponse = errors.New("sidecar: malformed HTTP response from upstream")

// relayResponse reads the response to the request just written to uc and
// writes it to the client. got reports whether any response bytes arrived
// (so that the request cannot be tried again).
func (s *h1Server) relayResponse(w http.ResponseWriter, uc *upConn) (got bool, err error) {
	s.watch(uc) // an error return leaves it set: the caller closes uc
	hd := &s.sc.resp
	for {
		b, err := s.responseHead(uc)
		if len(b) > 0 || uc.br.Buffered() > 0 {
			got = true
		}
		if err != nil {
			return got, err
		}
		if !parseResponse(b, hd) || hd.status == http.StatusSwitchingProtocols {
			return true, errNoResponse
		}
		if hd.status >= 200 && hd.grpcStatus.e > 0 {
			w.Header()["Grpc-Status"] = []string{string(hd.grpcStatus.of(b))}
		}
		out := s.responseHeadOut(b, hd)
		uc.br.Discard(len(b))
		if hd.status >= 200 {
			break
		}
		if err := s.write(out); err != nil { // an informational answer: the final one follows
			s.keep = false
			s.drop(uc)
			return true, nil
		}
	}
	uc.headDone()
	w.WriteHeader(hd.status)
	out := s.sc.out
	reuse := !hd.close
	var werr error
	switch {
	case bodiless(s.head, hd.status):
		werr = s.write(out)
	case hd.contentLength >= 0:
		left := hd.contentLength
		if n := int(min(int64(uc.br.Buffered()), left)); n > 0 && n <= h1BodyInOne {
			p, _ := uc.br.Peek(n)
			out = append(out, p...)
			uc.br.Discard(n)
			left -= int64(n)
		}
		s.sc.out = out
		if werr = s.write(out); werr == nil && left > 0 {
			var rerr error
			werr, rerr = s.copyResponse(uc, left)
			if rerr != nil {
				reuse, s.keep = false, false
			}
		}
	case hd.chunked:
		var rerr error
		werr, rerr = s.relayChunked(uc, out)
		if rerr != nil {
			reuse, s.keep = false, false
		}
	default: // until the upstream closes
		reuse, s.keep = false, false
		if werr = s.write(out); werr == nil {
			werr, _ = s.copyResponse(uc, -1)
		}
	}
	if werr != nil {
		s.keep = false
		if reuse && (hd.contentLength >= 0 || hd.chunked) {
			reuse = false // the rest of the body is not read
		}
	}
	uc.endWatch() // before uc can be someone else's (done)
	if reuse {
		s.done(uc)
	} else {
		s.drop(uc)
	}
	return true, nil
}

// clientWatch is how often the direct path looks at its client while it
// reads a response (its head, then its body): a client that has gone (its
// connection closed or reset, with no more bytes sent) ends the read, and the
// upstream connection is closed, so that the request ends upstream too (as
// net/http's server cancels a request whose connection closes, and
// ReverseProxy the upstream round trip with it). An attacker who sends
// requests to a slow endpoint, or to a stream, and leaves holds nothing for
// longer. A variable for the tests.
var clientWatch = time.Second

// errClientGone: the client's connection closed while the answer to its
// request was read (counted as statusClientClosed when no answer had begun).
var errClientGone = errors.New("sidecar: the client closed its connection before the answer")

// responseWatch times the reads of one response on its upstream connection
// (upConn.Read): ResponseTimeout for the head, and a look at the client every
// clientWatch.
type responseWatch struct {
	end    time.Time    // the proxy's ResponseTimeout for the head; zero: none
	client *net.TCPConn // the client's socket to look at; nil: none
	tls    bool         // the client speaks TLS over client
}

// watch starts uc's watch for the response to the request just written. A
// client with bytes already read after this request (pipelined) is not
// watched: like net/http, the proxy sees its end when it reads them.
func (s *h1Server) watch(uc *upConn) {
	uc.w = responseWatch{}
	if s.w == s.r {
		uc.w.client = waitConn(s.c)
		uc.w.tls = uc.w.client != nil && s.c != net.Conn(uc.w.client)
	}
	if rt := s.p.ResponseTimeout; rt > 0 {
		uc.w.end = time.Now().Add(rt)
	}
	uc.arm()
}

// arm sets uc's read deadline to the watch's next look or its end, whichever
// comes first; with neither, it clears one an earlier response left.
func (uc *upConn) arm() {
	d := uc.w.end
	if uc.w.client != nil {
		if next := time.Now().Add(clientWatch); d.IsZero() || next.Before(d) {
			d = next
		}
	}
	if d.IsZero() && !uc.deadline {
		return
	}
	uc.Conn.SetReadDeadline(d)
	uc.deadline = !d.IsZero()
}

// headDone ends ResponseTimeout's part: the body has no limit.
func (uc *upConn) headDone() {
	if !uc.w.end.IsZero() {
		uc.w.end = time.Time{}
		uc.arm()
	}
}

// endWatch ends the watch. Its deadline stays set: nothing reads uc until its
// next response, whose watch replaces or clears it (one deadline update per
// response, not two).
func (uc *upConn) endWatch() { uc.w = responseWatch{} }

// Read reads the upstream connection (its bufio.Reader's source). When the
// watch's deadline passes with nothing read, it looks at the client:
// errClientGone when the client has gone, the timeout past ResponseTimeout,
// and otherwise it reads on until the next look.
func (uc *upConn) Read(p []byte) (int, error) {
	n, err := uc.Conn.Read(p)
	for n == 0 && err != nil && uc.w.client != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		if !uc.w.end.IsZero() && !time.Now().Before(uc.w.end) {
			break // ResponseTimeout
		}
		if clientGone(uc.w.client, uc.w.tls) {
			return 0, errClientGone
		}
		uc.arm()
		n, err = uc.Conn.Read(p)
	}
	return n, err
}

// responseHead returns the next response head at the front of uc.br.
func (s *h1Server) responseHead(uc *upConn) ([]byte, error) {
	for {
		b, _ := uc.br.Peek(uc.br.Buffered())
		switch n := headEnd(b); {
		case n > 0:
			return b[:n], nil
		case n < 0:
			return nil, errNoResponse
		}
		if len(b) == uc.br.Size() {
			return nil, errNoResponse // a head larger than the buffer
		}
		if _, err := uc.br.Peek(len(b) + 1); err != nil {
			if err == io.EOF && len(b) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// responseHeadOut builds in sc.out the head sent to the client for the
// response head b: the status line, the lines kept, and Connection: close
// when the client connection ends after it.
func (s *h1Server) responseHeadOut(b []byte, hd *respHead) []byte {
	out := s.sc.out[:0]
	out = append(out, "HTTP/1.1 "...)
	out = append(out, b[9:12]...)
	out = append(out, ' ')
	out = append(out, hd.reason.of(b)...)
	out = append(out, "\r\n"...)
	for i := range hd.lines[:hd.n] {
		if l := &hd.lines[i]; !l.drop {
			out = append(out, l.line.of(b)...)
		}
	}
	untilClose := hd.status >= 200 && !bodiless(s.head, hd.status) && hd.contentLength < 0 && !hd.chunked
	if hd.status >= 200 && s.draining() {
		s.keep = false
	}
	if hd.status >= 200 && (!s.keep || untilClose) {
		out = append(out, "Connection: close\r\n"...)
	}
	out = append(out, "\r\n"...)
	s.sc.out = out
	return out
}

// copyResponse copies left bytes (-1: until the upstream ends) of a response
// body from uc to the client. It returns the client's write error and the
// upstream's read error apart.
func (s *h1Server) copyResponse(uc *upConn, left int64) (werr, rerr error) {
	for left != 0 {
		if uc.br.Buffered() == 0 {
			if _, err := uc.br.Peek(1); err != nil {
				if left < 0 && err == io.EOF {
					return nil, nil
				}
				return nil, err
			}
		}
		n := uc.br.Buffered()
		if left > 0 {
			n = int(min(int64(n), left))
			left -= int64(n)
		}
		p, _ := uc.br.Peek(n)
		if err := s.write(p); err != nil {
			return err, nil
		}
		uc.br.Discard(n)
	}
	return nil, nil
}

// relayChunked relays a chunked body from uc to the client as it is
// framed, head first (out). Chunks are collected in out and written
// whenever the upstream has nothing more buffered.
func (s *h1Server) relayChunked(uc *upConn, out []byte) (werr, rerr error) {
	flush := func() error {
		if len(out) == 0 {
			return nil
		}
		err := s.write(out)
		out = out[:0]
		return err
	}
	defer func() { s.sc.out = out[:0] }()
	line := func() ([]byte, error) {
		if uc.br.Buffered() == 0 {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		l, err := uc.br.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull || err == io.EOF {
				err = errNoResponse
			}
			return nil, err
		}
		if len(l) < 2 || l[len(l)-2] != '\r' {
			return nil, errNoResponse
		}
		return l, nil
	}
	for {
		l, err := line()
		if err != nil {
			return nil, err
		}
		size, ok := chunkSize(l[:len(l)-2])
		if !ok {
			return nil, errNoResponse
		}
		out = append(out, l...)
		if size == 0 { // the last chunk: trailer lines, then CRLF
			for {
				l, err := line()
				if err != nil {
					return nil, err
				}
				out = append(out, l...)
				if len(l) == 2 {
					return flush(), nil
				}
			}
		}
		for left := size; left > 0; {
			if uc.br.Buffered() == 0 {
				if err := flush(); err != nil {
					return err, nil
				}
				if _, err := uc.br.Peek(1); err != nil {
					return nil, err
				}
			}
			n := int(min(int64(uc.br.Buffered()), left))
			p, _ := uc.br.Peek(n)
			if len(out)+n > h1BodyInOne {
				if err := flush(); err != nil {
					return err, nil
				}
				if err := s.write(p); err != nil {
					return err, nil
				}
			} else {
				out = append(out, p...)
			}
			uc.br.Discard(n)
			left -= int64(n)
		}
		crlf, err := line()
		if err != nil {
			return nil, err
		}
		if len(crlf) != 2 {
			return nil, errNoResponse
		}
		out = append(out, crlf...)
	}
}

// fail answers a request whose upstream failed with upstreamStatus's code
// (the net/http path's). left is the request body not read: the connection
// cannot go on past it.
func (s *h1Server) fail(w http.ResponseWriter, err error, left int64) {
	if s.firstErr == nil {
		s.firstErr = err
	}
	s.answer(w, upstreamStatus(s.ctx, err), left == 0 && s.keep)
}

// answer writes an error response as http.Error does and counts it; the
// connection ends after it unless keep.
func (s *h1Server) answer(w http.ResponseWriter, code int, keep bool) {
	s.keep = keep && !s.draining()
	w.WriteHeader(code)
	text := http.StatusText(code) + "\n"
	out := append(s.sc.out[:0], "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(code), 10)
	out = append(out, ' ')
	out = append(out, http.StatusText(code)...)
	out = append(out, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(len(text)), 10)
	if !keep {
		out = append(out, "\r\nConnection: close"...)
	}
	out = append(out, "\r\n\r\n"...)
	out = append(out, text...)
	s.sc.out = out
	if s.write(out) != nil {
		s.keep = false
	}
}
