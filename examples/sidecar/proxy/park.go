package proxy

import (
	"net"
	"net/netip"
	"time"

	"github.com/sniffsplice/sniff/detect"
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
// connection needs into one new parkedConn (its h1Conn and its event, without
// the detection result's empty TLS part), so that the h1Server and the
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

// parkedConn is a parked connection: all that it keeps between requests.
type parkedConn struct {
	h1Conn
	ev parkedEvent
}

// parkedEvent is an Event kept compactly while its connection is parked:
// every field but ClientBytes and ServerBytes (the h1Conn counts them), its
// Duration as the connection's start, and of its detection result the parts
// an HTTP/1 connection has, the HTTPInfo as its two strings rather than its
// 272 inline bytes (full holds the whole Event in the rare case that the
// result's TLS part is set).
type parkedEvent struct {
	start     time.Time
	dst       netip.AddrPort
	peerID    spiffe.ID
	err       error
	full      *Event
	method    string
	host      string
	detBytes  int
	detDur    time.Duration
	dir       opaque.Direction
	path      Path
	proto     detect.Protocol
	detProto  detect.Protocol
	detReason detect.Reason
	proxyV    uint8
}

// compactEvent keeps ev as a parkedEvent. host is the Host of the
// connection's last request: the detected Host shares its string when they
// are the same, as they usually are (else it costs one small allocation).
func compactEvent(ev *Event, now time.Time, host string) parkedEvent {
	pe := parkedEvent{start: now.Add(-ev.Duration)}
	if ev.Detect.TLS != (detect.TLSInfo{}) {
		full := *ev
		pe.full = &full
		return pe
	}
	d := &ev.Detect
	pe.dst, pe.peerID, pe.err = ev.Dst, ev.PeerID, ev.Err
	pe.method, pe.host = d.HTTP.Method, host
	if d.HTTP != detect.NewHTTPInfo(d.HTTP.Method, host) { // compared on the stack: Host() of more than 32 bytes would allocate
		pe.host = d.HTTP.Host()
	}
	pe.detBytes, pe.detDur = d.Bytes, d.Duration
	pe.dir, pe.path, pe.proto = ev.Direction, ev.Path, ev.Protocol
	pe.detProto, pe.detReason, pe.proxyV = d.Protocol, d.Reason, d.PROXYVersion
	return pe
}

// event is the Event again, its Duration up to now.
func (pe *parkedEvent) event(now time.Time) Event {
	var ev Event
	if pe.full != nil {
		ev = *pe.full
	} else {
		ev = Event{Direction: pe.dir, Dst: pe.dst, Protocol: pe.proto, Path: pe.path, PeerID: pe.peerID, Err: pe.err}
		ev.Detect = detect.Result{Protocol: pe.detProto, Reason: pe.detReason, Bytes: pe.detBytes, Duration: pe.detDur, HTTP: detect.NewHTTPInfo(pe.method, pe.host), PROXYVersion: pe.proxyV}
	}
	ev.Duration = now.Sub(pe.start)
	return ev
}

// parkEvent takes the event of a connection that has parked (from emit), and
// hands the connection to the Waiter.
func (s *h1Server) parkEvent(ev *Event) {
	ev.parked = nil
	pk := &parkedConn{h1Conn: s.h1Conn, ev: compactEvent(ev, time.Now(), s.host)}
	s.ev = nil
	pk.park()
}

// A plain TCP connection is handed to the Waiter's Park: once it has waited
// the Waiter's DetachAfter (a second), only its descriptor is kept, and it
// comes back to resume as a new *net.TCPConn on the same socket. A TLS
// connection keeps its net.Conn (its tls.Conn holds it).
func (pk *parkedConn) park() {
	pk.p.http.parks.Add(1)
	pk.wait.handlers.Add(1)
	if tc, ok := pk.c.(*net.TCPConn); ok {
		pk.c = nil // the Waiter's alone until resume
		pk.wait.idle.Park(tc, httpIdleTimeout-h1Linger, pk.resume)
		return
	}
	pk.wait.idle.Wait(waitConn(pk.c), httpIdleTimeout-h1Linger, pk.resume)
}

// resume carries the connection again, on the Waiter's goroutine for it:
// when it has something to read, from its next request on; otherwise (idle
// timeout, shed, the listener closing, a detached connection that could not
// be made again) it ends.
func (pk *parkedConn) resume(c net.Conn, err error) {
	defer pk.wait.handlers.Done()
	if pk.c == nil {
		pk.c = c // nil when the Waiter closed a detached connection
	}
	if err != nil {
		if pk.c != nil {
			pk.c.Close()
		}
		pk.end()
		return
	}
	s := &h1Server{h1Conn: pk.h1Conn, handler: pk.p.h1Handler(pk.dir)}
	st := s.serve(true)
	if st == h1Handoff {
		s.handoff()
	}
	pk.h1Conn = s.h1Conn
	if st == h1Parked {
		pk.park()
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
	ev := pk.ev.event(time.Now())
	ev.ClientBytes, ev.ServerBytes = pk.read, pk.written
	pk.p.endHTTP(&ev, pk.t, pk.mc, pk.firstErr)
	pk.p.emit(&ev)
}
