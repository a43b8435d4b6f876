package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/spiffe"
)

// ServeInbound accepts connections on the inbound port l until ctx ends. With
// dst nil every connection must be mutual TLS from a peer sidecar. With dst
// set (transparent.OriginalDst in transparent mode), a connection whose original
// destination is another port is an unmeshed client of that local port: it is
// given the local port policy and detection, without TLS.
//
// A transport header that names the port of l, or of any other listener the
// proxy serves (ServeOutbound, Start's admin and forward listeners), is
// refused (ErrLoop), and counted as transport_header_rejected_total with
// reason "proxy_port".
//
// A meshed client speaks first (its ClientHello): until it does, its
// connection waits in a detect.Waiter, without a goroutine, for at most the
// dial timeout.
func (p *Proxy) ServeInbound(ctx context.Context, l net.Listener, dst DstFunc) error {
	return p.serveInbound(ctx, ctx, l, dst)
}

// serveInbound is ServeInbound with the end of accepting (acceptCtx) apart
// from the end of the connections (connCtx), for Sidecar.Shutdown.
func (p *Proxy) serveInbound(acceptCtx, connCtx context.Context, l net.Listener, dst DstFunc) error {
	if err := p.init(); err != nil {
		return err
	}
	p.addOwnPort(l.Addr())
	self := 0
	if ta, ok := l.Addr().(*net.TCPAddr); ok {
		self = ta.Port
	}
	s := p.newListener(connCtx, opaque.Inbound)
	return s.serve(acceptCtx, l, func(c net.Conn) {
		if dst != nil {
			if orig, err := dst(c); err == nil && int(orig.Port()) != self {
				// An unmeshed client of a local port: its server may speak first.
				port := orig.Port()
				s.goHandle(func() { p.HandleLocal(s.connCtx, c, port) })
				return
			}
		}
		start := time.Now()
		s.waitThen(c, p.dialTimeout(), func(c net.Conn, err error) {
			if err != nil {
				// No ClientHello within the handshake timeout (or shed to make room).
				c.Close()
				p.notMeshed(start, err)
				return
			}
			p.HandleInbound(s.connCtx, c)
		})
	})
}

// notMeshed reports an inbound connection that sent no ClientHello in time. It is a frame of its
// own, not inlined, so that the Event it builds is not in the frame of the Waiter callback that
// every inbound connection is then served under (TestServingStackDepth).
//
//go:noinline
func (p *Proxy) notMeshed(start time.Time, err error) {
	p.emit(&Event{Protocol: detect.Unknown, Path: PathHeader, Duration: time.Since(start),
		Err: fmt.Errorf("%w: %w", ErrNotMeshed, err)})
}

// HandleInbound serves one meshed connection: mutual TLS, then the transport
// header, then the local application port it names. It closes c.
//
// A header announcing HTTP/1 or HTTP/2 is served at the HTTP layer. A header
// that announces no session protocol is given the local inbound policy of
// its port: declared opaque, the bytes go to the application untouched;
// declared HTTP, served at the HTTP layer; otherwise the proxy detects the
// protocol itself (raced against the application's first bytes) and serves
// HTTP at the HTTP layer. So HTTP reaches the application only through the
// HTTP layer, which sets l5d-client-id to the verified identity, unless the
// port is declared opaque or NoHTTP is set. A header naming one of the
// proxy's own listeners is refused (ErrLoop).
func (p *Proxy) HandleInbound(ctx context.Context, c net.Conn) {
	start := time.Now()
	ev := Event{Protocol: detect.Unknown, Path: PathHeader}
	ev.began = start
	defer func() {
		ev.Duration = time.Since(start)
		p.emit(&ev)
	}()
	if err := p.init(); err != nil {
		c.Close()
		ev.Err = err
		return
	}
	hctx, cancel := context.WithTimeout(ctx, p.dialTimeout())
	defer cancel()
	tc := tls.Server(c, p.serverTLS)
	id, err := mtls.Handshake(hctx, tc)
	ev.PeerID = id
	if err != nil {
		tc.Close()
		ev.Err = fmt.Errorf("%w: %w", ErrNotMeshed, err)
		return
	}
	if tc.ConnectionState().NegotiatedProtocol != opaque.ALPN {
		tc.Close()
		ev.Err = fmt.Errorf("%w: no %s", ErrNotMeshed, opaque.ALPN)
		return
	}
	h, _, err := p.codec.ReadContext(hctx, tc)
	if err != nil {
		tc.Close()
		ev.Err = err
		return
	}
	ev.Dst = netip.AddrPortFrom(p.appHost(), h.Port)
	if p.isOwnPort(h.Port) {
		// The proxy's own listeners are not applications: through them a
		// peer would reach the admin endpoints, or leave again through an
		// outbound listener with this proxy's identity.
		tc.Close()
		ev.Err = fmt.Errorf("%w: transport header names port %d", ErrLoop, h.Port)
		return
	}
	switch h.SessionProtocol {
	case opaque.SessionHTTP1:
		ev.Protocol = detect.HTTP1
	case opaque.SessionHTTP2:
		ev.Protocol = detect.HTTP2
	}
	if p.NoHTTP {
		p.dialApp(ctx, &ev, tc)
		return
	}
	if h.SessionProtocol != opaque.SessionNone {
		p.serveInboundHTTP(ctx, &ev, tc, h.SessionProtocol, id)
		return
	}
	dec := p.resolve(opaque.Inbound, h.Port)
	switch {
	case dec.Action == opaque.ActionOpaque:
		p.dialApp(ctx, &ev, tc)
		return
	case dec.Action == opaque.ActionDeclared && isHTTP(dec.Protocol):
		ev.Protocol = dec.Protocol
		p.serveInboundHTTP(ctx, &ev, tc, sessionFor(dec.Protocol), id)
		return
	case dec.Action == opaque.ActionDeclared:
		p.dialApp(ctx, &ev, tc)
		return
	}
	// Detect (skip-inbound ports too: a meshed peer reached the port
	// through the inbound listener, so the policy's bypass does not apply).
	// A sidecar A has already judged these bytes; if they left its detection
	// undecided, they must not wait a second full timeout here.
	dec.DetectTimeout = p.headerDetectTimeout(dec)
	app, err := p.dialPlain(ctx, ev.Dst.String())
	if err != nil {
		tc.Close()
		ev.Err = err
		return
	}
	// Always raced, NoRace or not: A has already waited for its client, and
	// a server-first application must not wait a second detection timeout.
	cc, ac, err := p.detectLocal(ctx, dec, tc, app, true, &ev.Detect)
	if err != nil {
		ev.Err = err
		return
	}
	if isHTTP(ev.Detect.Protocol) {
		ac.Close()
		ev.Protocol = ev.Detect.Protocol
		p.serveInboundHTTP(ctx, &ev, cc, sessionFor(ev.Protocol), id)
		return
	}
	// Anything else stays labelled as the header said (opaque, mutual TLS);
	// ev.Detect tells what detection saw.
	p.finish(ctx, &ev, cc, ac)
}

// maxHeaderDetect bounds detection on inbound connections whose transport
// header names no session protocol. Sidecar A forwards nothing before its
// own detection has decided (or the server spoke first), so its bytes arrive
// together and decide here at once, unless they left A's detection undecided
// too (A waited its detection timeout already).
const maxHeaderDetect = time.Second

// headerDetectTimeout is the detection timeout for an inbound connection
// with a transport header that names no session protocol: the port's, at
// most maxHeaderDetect.
func (p *Proxy) headerDetectTimeout(dec opaque.Decision) time.Duration {
	t := dec.DetectTimeout
	if t == 0 && p.Detector != nil {
		t = p.Detector.Timeout
	}
	if t <= 0 || t > maxHeaderDetect {
		t = maxHeaderDetect
	}
	return t
}

// dialApp joins the meshed connection c to the application at ev.Dst.
func (p *Proxy) dialApp(ctx context.Context, ev *Event, c net.Conn) {
	app, err := p.dialPlain(ctx, ev.Dst.String())
	if err != nil {
		c.Close()
		ev.Err = err
		return
	}
	p.finish(ctx, ev, c, app)
}

// detectLocal detects the protocol of c, an inbound client of the
// application connection app, raced against app's first bytes when race is
// set, and records the result in *res (the caller's Event: see detectInto);
// an unfinished HTTP request is refused (see checkUnfinished). On an error
// both connections are closed.
func (p *Proxy) detectLocal(ctx context.Context, dec opaque.Decision, c, app net.Conn, race bool, res *detect.Result) (net.Conn, net.Conn, error) {
	var up net.Conn
	if race {
		up = app
	}
	cc, ac, err := detectInto(ctx, res, p.detector(opaque.Inbound), c, up, timeoutOf(dec))
	if !race {
		ac = app
	}
	if err != nil {
		c.Close()
		app.Close()
		return nil, nil, err
	}
	if p.unfinished(res) {
		if cc, err = p.checkUnfinished(cc, res, opaque.Inbound); err != nil {
			ac.Close()
			return nil, nil, err
		}
	}
	return cc, ac, nil
}

// HandleLocal serves one unmeshed connection for the local port: the inbound
// port policy, then detection raced against the application's first bytes.
// It closes c.
func (p *Proxy) HandleLocal(ctx context.Context, c net.Conn, port uint16) {
	start := time.Now()
	ev := Event{Dst: netip.AddrPortFrom(p.appHost(), port), Protocol: detect.Unknown}
	ev.began = start
	defer func() {
		ev.Duration = time.Since(start)
		p.emit(&ev)
	}()
	dec := p.resolve(opaque.Inbound, port)
	switch dec.Action {
	case opaque.ActionSkip:
		ev.Path = PathSkip
	case opaque.ActionOpaque:
		ev.Path = PathOpaque
	case opaque.ActionDeclared:
		ev.Path, ev.Protocol = PathDeclared, dec.Protocol
	default:
		ev.Path = PathDetect
	}
	if ev.Path == PathDeclared && isHTTP(ev.Protocol) && !p.NoHTTP {
		p.serveInboundHTTP(ctx, &ev, c, sessionFor(ev.Protocol), spiffe.ID{})
		return
	}
	app, err := p.dialPlain(ctx, ev.Dst.String())
	if err != nil {
		c.Close()
		ev.Err = err
		return
	}
	if ev.Path != PathDetect {
		p.finish(ctx, &ev, c, app)
		return
	}
	cc, ac, err := p.detectLocal(ctx, dec, c, app, !p.NoRace, &ev.Detect)
	ev.Protocol = ev.Detect.Protocol
	if ev.Detect.Reason == detect.ReasonServerFirst {
		ev.Path = PathServerFirst
	}
	if err != nil {
		ev.Err = err
		return
	}
	if ev.Path == PathDetect && isHTTP(ev.Protocol) && !p.NoHTTP {
		ac.Close()
		p.serveInboundHTTP(ctx, &ev, cc, sessionFor(ev.Protocol), spiffe.ID{})
		return
	}
	p.finish(ctx, &ev, cc, ac)
}

// serveInboundHTTP serves c at the HTTP layer for the application at ev.Dst,
// counting it as one inbound connection; clientID is the meshed peer (zero
// for a local client).
func (p *Proxy) serveInboundHTTP(ctx context.Context, ev *Event, c net.Conn, sp opaque.SessionProtocol, clientID spiffe.ID) {
	t := p.inboundTransport(ev.Dst.Port(), sp)
	mc := p.Metrics.OpenConn(connLabels(ev))
	p.serveHTTP(ctx, ev, c, ev.Dst, t, opaque.Inbound, clientID, mc) // ends mc
}
