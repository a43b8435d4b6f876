package proxy

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/spiffe"
)

// Parking: an HTTP/1.1 keep-alive connection idle past h1Linger (or at once,
// when h1MaxLingering connections linger already) waits for its next request
// in its listener's detect.Waiter, without a goroutine or a read buffer, so
// that an idle client costs its socket and one small object (issue 17). It
// needs the listener (ServeOutbound, ServeInbound: the connection came
// through the proxy's lifecycle) and a TCP connection, plain or under TLS
// (an inbound connection from a peer's pool: a TLS connection parks only
// after a read timed out with nothing read, see waitConn); otherwise the
// connection waits on its goroutine, as before.
//
// serveHTTP returns with Event.parked set when the connection parks; the
// handler that called it returns as for any connection, and its emit hands
// the event to parkEvent instead of OnEvent. parkEvent moves what the
// connection needs into one new parkedConn of 128 bytes (its h1Conn and its
// event, compactly: newParkedConn), so that the h1Server and the
// 1-KiB Event of the handler, allocated among the request's temporaries, go
// back to the heap. From then on the connection is carried by the Waiter's
// ready callbacks, each on an h1Server of its own built from the parkedConn,
// counted among the listener's handlers (a drain waits for a request in
// flight; the Waiter's close at the end of the listener ends the connections
// still parked), and its event is emitted when it ends, with the bytes and
// the time of its whole life.

// listenerKey is the context key under which a listener's connections find
// it (newListener).
type listenerKey struct{}

// parkedConn is a parked connection: all that it keeps between requests, 128
// bytes for a connection like most. What it shares with its listener (the
// proxy, the context of the listener's connections) is not kept, its
// event's destination is its target, its event's Protocol, Path and detected
// method are kept as indexes into tables of the usual values, and its last
// request's Host stands for the detected one when they are the same. What is
// rare (an error, a client identity, a value not in the tables, a detection
// result with a TLS part) is kept in x, allocated only then.
type parkedConn struct {
	wait          *listener
	t             *pooledTransport
	mc            metrics.Conn
	x             *parkedExtra
	read, written int64
	host          string         // the last request's Host; the detected one too unless noDetHost or x.ownDetHost
	dst           netip.AddrPort // the event's Dst and the connection's target
	start         int64          // when the connection began, in nanoseconds since procStart
	detDur        time.Duration
	detBytes      int32
	dir           opaque.Direction
	path          uint8 // index in parkedPaths
	proto         uint8 // index in parkedProtocols
	detProto      uint8 // index in parkedProtocols
	method        uint8 // index in parkedMethods
	detReason     detect.Reason
	proxyV        uint8
	noDetHost     bool // the detected Host is empty
}

// parkedExtra is what few parked connections have.
type parkedExtra struct {
	ctx        context.Context // when it is not the listener's connCtx
	target     netip.AddrPort  // when it is not the event's Dst
	idLine     string
	clientID   spiffe.ID
	peerID     spiffe.ID
	firstErr   error
	err        error
	detHost    string // the detected Host, when ownDetHost
	ownDetHost bool
	full       *Event   // the whole event, when it does not fit the compact fields
	c          net.Conn // a TLS connection: it waits as its tls.Conn (park)
}

// The tables a parked connection's event names its Path, its protocols and
// its detected method by. A value not in them sends the event to x.full.
var (
	parkedPaths     = [...]Path{"", PathDetect, PathDeclared, PathHeader, PathLearned, PathServerFirst, PathOpaque, PathSkip}
	parkedProtocols = [...]detect.Protocol{"", detect.HTTP1, detect.Unknown, detect.HTTP2, detect.GRPC, detect.TLS, detect.PROXY}
	parkedMethods   = [...]string{"", "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "QUERY"}
)

// indexIn returns the index of v in table, or false.
func indexIn[T comparable](table []T, v T) (uint8, bool) {
	for i, t := range table {
		if t == v {
			return uint8(i), true
		}
	}
	return 0, false
}

// procStart is what a parked connection's start is counted from (it carries
// the monotonic clock).
var procStart = time.Now()

// newParkedConn keeps what the connection of h needs to be carried again
// and the event ev (its Duration counted up to now). h is the connection's
// state as its h1Server leaves it.
func newParkedConn(h *h1Conn, ev *Event, now time.Time) *parkedConn {
	pk := &parkedConn{wait: h.wait, t: h.t, mc: h.mc, read: h.read, written: h.written, host: h.host, dst: ev.Dst, dir: h.dir}
	pk.start = int64(now.Sub(procStart) - ev.Duration)
	x := parkedExtra{target: h.target, idLine: h.idLine, clientID: h.clientID, peerID: ev.PeerID, firstErr: h.firstErr, err: ev.Err}
	if h.target == ev.Dst {
		x.target = netip.AddrPort{}
	}
	if h.ctx != h.wait.connCtx {
		x.ctx = h.ctx
	}
	d := &ev.Detect
	var ok [4]bool
	pk.path, ok[0] = indexIn(parkedPaths[:], ev.Path)
	pk.proto, ok[1] = indexIn(parkedProtocols[:], ev.Protocol)
	pk.detProto, ok[2] = indexIn(parkedProtocols[:], d.Protocol)
	pk.method, ok[3] = indexIn(parkedMethods[:], d.HTTP.Method)
	if ok != [4]bool{true, true, true, true} || d.TLS != (detect.TLSInfo{}) || d.Bytes != int(int32(d.Bytes)) || ev.Direction != h.dir {
		full := *ev
		full.parked = nil
		x.full = &full
	} else {
		pk.detBytes, pk.detDur, pk.detReason, pk.proxyV = int32(d.Bytes), d.Duration, d.Reason, d.PROXYVersion
		switch d.HTTP { // compared on the stack: Host() of more than 32 bytes would allocate
		case detect.NewHTTPInfo(d.HTTP.Method, h.host):
		case detect.NewHTTPInfo(d.HTTP.Method, ""):
			pk.noDetHost = true
		default:
			x.detHost, x.ownDetHost = d.HTTP.Host(), true
		}
	}
	if !x.isZero() {
		pk.x = new(parkedExtra)
		*pk.x = x
	}
	return pk
}

// conn is the connection's state again, its net.Conn c.
func (pk *parkedConn) conn(c net.Conn) h1Conn {
	h := h1Conn{ctx: pk.wait.connCtx, p: pk.wait.p, c: c, t: pk.t, dir: pk.dir, mc: pk.mc, read: pk.read, written: pk.written,
		host: pk.host, wait: pk.wait, target: pk.dst}
	if x := pk.x; x != nil {
		if x.ctx != nil {
			h.ctx = x.ctx
		}
		if x.target.IsValid() {
			h.target = x.target
		}
		h.idLine, h.clientID, h.firstErr = x.idLine, x.clientID, x.firstErr
	}
	return h
}

// update keeps what serving the connection again changed in h.
func (pk *parkedConn) update(h *h1Conn) {
	pk.read, pk.written = h.read, h.written
	if h.host != pk.host {
		if !pk.noDetHost && (pk.x == nil || pk.x.full == nil && !pk.x.ownDetHost) {
			pk.extra().detHost, pk.x.ownDetHost = pk.host, true // the detected Host stays
		}
		pk.host = h.host
	}
	if h.firstErr != nil && (pk.x == nil || pk.x.firstErr == nil) {
		pk.extra().firstErr = h.firstErr
	}
}

func (x *parkedExtra) isZero() bool {
	return x.ctx == nil && !x.target.IsValid() && x.idLine == "" && x.clientID.IsZero() && x.peerID.IsZero() &&
		x.firstErr == nil && x.err == nil && !x.ownDetHost && x.full == nil && x.c == nil
}

func (pk *parkedConn) extra() *parkedExtra {
	if pk.x == nil {
		pk.x = &parkedExtra{}
	}
	return pk.x
}

// event is the connection's Event again, its Duration up to now.
func (pk *parkedConn) event(now time.Time) Event {
	var ev Event
	x := pk.x
	if x == nil {
		x = &parkedExtra{} // on the stack
	}
	if x.full != nil {
		ev = *x.full
	} else {
		detHost := pk.host
		switch {
		case pk.noDetHost:
			detHost = ""
		case x.ownDetHost:
			detHost = x.detHost
		}
		ev = Event{Direction: pk.dir, Dst: pk.dst, Protocol: parkedProtocols[pk.proto], Path: parkedPaths[pk.path], PeerID: x.peerID, Err: x.err}
		ev.Detect = detect.Result{Protocol: parkedProtocols[pk.detProto], Reason: pk.detReason, Bytes: int(pk.detBytes), Duration: pk.detDur,
			HTTP: detect.NewHTTPInfo(parkedMethods[pk.method], detHost), PROXYVersion: pk.proxyV}
	}
	ev.Duration = now.Sub(procStart) - time.Duration(pk.start)
	ev.ClientBytes, ev.ServerBytes = pk.read, pk.written
	return ev
}

// parkEvent takes the event of a connection that has parked (from emit), and
// hands the connection to the Waiter.
func (s *h1Server) parkEvent(ev *Event) {
	ev.parked = nil
	pk := newParkedConn(&s.h1Conn, ev, time.Now())
	s.ev = nil
	pk.park(s.c)
}

// A plain TCP connection is handed to the Waiter's Park: once it has waited
// the Waiter's DetachAfter (a second), only its descriptor is kept, and it
// comes back to resume as a new *net.TCPConn on the same socket. A TLS
// connection is kept (its tls.Conn holds it) and waits on its socket.
func (pk *parkedConn) park(c net.Conn) {
	pk.wait.p.http.parks.Add(1)
	pk.wait.handlers.Add(1)
	if tc, ok := c.(*net.TCPConn); ok {
		if pk.x != nil {
			pk.x.c = nil
		}
		pk.wait.idle.Park(tc, httpIdleTimeout-h1Linger, pk.resume)
		return
	}
	pk.extra().c = c
	pk.wait.idle.Wait(waitConn(c), httpIdleTimeout-h1Linger, pk.resume)
}

// resume carries the connection again, on the Waiter's goroutine for it:
// when it has something to read, from its next request on; otherwise (idle
// timeout, shed, the listener closing, a detached connection that could not
// be made again) it ends. c is the connection the Waiter hands back: a new
// one on the socket of a plain TCP connection (nil when the Waiter closed
// it), the socket under a TLS one.
func (pk *parkedConn) resume(c net.Conn, err error) {
	defer pk.wait.handlers.Done()
	if pk.x != nil && pk.x.c != nil {
		c = pk.x.c
	}
	if err != nil {
		if c != nil {
			c.Close()
		}
		pk.end()
		return
	}
	s := &h1Server{h1Conn: pk.conn(c), handler: pk.wait.p.h1Handler(pk.dir)}
	st := s.serve(true)
	if st == h1Handoff {
		s.handoff()
	}
	pk.update(&s.h1Conn)
	if st == h1Parked {
		pk.park(s.c)
		return
	}
	pk.end()
}

// handoff serves the rest of the connection through net/http.
func (s *h1Server) handoff() {
	s.p.http.handoffs.Add(1)
	r, w := s.p.serveNetHTTP(s.ctx, s.c, s.rest(), s.target, s.t, s.dir, s.clientID, s.mc)
	s.read += r
	s.written += w
}

// end completes and emits the event of a connection that had parked.
func (pk *parkedConn) end() {
	ev := pk.event(time.Now())
	var firstErr error
	if pk.x != nil {
		firstErr = pk.x.firstErr
	}
	pk.wait.p.endHTTP(&ev, pk.t, pk.mc, firstErr)
	pk.wait.p.emit(&ev)
}
