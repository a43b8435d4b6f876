package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/opaque"
)

// ServeInbound accepts connections on the inbound port l until ctx ends. With
// dst nil every connection must be mutual TLS from a peer sidecar. With dst
// set (OriginalDst in transparent mode), a connection whose original
// destination is another port is an unmeshed client of that local port: it is
// given the local port policy and detection, without TLS.
func (p *Proxy) ServeInbound(ctx context.Context, l net.Listener, dst DstFunc) error {
	if err := p.init(); err != nil {
		return err
	}
	self := 0
	if ta, ok := l.Addr().(*net.TCPAddr); ok {
		self = ta.Port
	}
	return serve(ctx, l, func(ctx context.Context, c net.Conn) {
		if dst != nil {
			if orig, err := dst(c); err == nil && int(orig.Port()) != self {
				p.HandleLocal(ctx, c, orig.Port())
				return
			}
		}
		p.HandleInbound(ctx, c)
	})
}

// HandleInbound serves one meshed connection: mutual TLS, then the transport
// header (or, without one, detection for the app port the header would name),
// then the local application. It closes c.
func (p *Proxy) HandleInbound(ctx context.Context, c net.Conn) {
	start := time.Now()
	ev := Event{Protocol: detect.Unknown, Path: PathHeader}
	defer func() {
		ev.Duration = time.Since(start)
		p.emit(ev)
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
	ev.Dst = netip.AddrPortFrom(p.appHost(), uint16(h.Port))
	switch h.SessionProtocol {
	case opaque.SessionHTTP1:
		ev.Protocol = detect.HTTP1
	case opaque.SessionHTTP2:
		ev.Protocol = detect.HTTP2
	}
	if h.SessionProtocol != opaque.SessionNone && !p.NoHTTP {
		p.serveInboundHTTP(ctx, &ev, tc, h.SessionProtocol, id)
		return
	}
	app, err := p.dialPlain(ctx, ev.Dst.String())
	if err != nil {
		tc.Close()
		ev.Err = err
		return
	}
	p.finish(ctx, &ev, tc, app)
}

// HandleLocal serves one unmeshed connection for the local port: the inbound
// port policy, then detection raced against the application's first bytes.
// It closes c.
func (p *Proxy) HandleLocal(ctx context.Context, c net.Conn, port uint16) {
	start := time.Now()
	ev := Event{Dst: netip.AddrPortFrom(p.appHost(), port), Protocol: detect.Unknown}
	defer func() {
		ev.Duration = time.Since(start)
		p.emit(ev)
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
		p.serveInboundHTTP(ctx, &ev, c, sessionFor(ev.Protocol), spiffeid.ID{})
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
	det := p.detector(opaque.Inbound, dec)
	if p.NoRace {
		res, cc, err := det.Detect(ctx, c)
		ev.Detect, ev.Protocol = res, res.Protocol
		if err != nil {
			c.Close()
			app.Close()
			ev.Err = err
			return
		}
		p.finish(ctx, &ev, cc, app)
		return
	}
	res, cc, ac, err := det.DetectUpstream(ctx, c, app)
	ev.Detect, ev.Protocol = res, res.Protocol
	if res.Reason == detect.ReasonServerFirst {
		ev.Path = PathServerFirst
	}
	if err != nil {
		c.Close()
		app.Close()
		ev.Err = err
		return
	}
	if ev.Path == PathDetect && isHTTP(res.Protocol) && !p.NoHTTP {
		ac.Close()
		p.serveInboundHTTP(ctx, &ev, cc, sessionFor(res.Protocol), spiffeid.ID{})
		return
	}
	p.finish(ctx, &ev, cc, ac)
}

// serveInboundHTTP serves c at the HTTP layer for the application at ev.Dst,
// counting it as one inbound connection; clientID is the meshed peer (zero
// for a local client).
func (p *Proxy) serveInboundHTTP(ctx context.Context, ev *Event, c net.Conn, sp opaque.SessionProtocol, clientID spiffeid.ID) {
	t := p.inboundTransport(ev.Dst.Port(), sp)
	mc := p.Metrics.OpenConn(connLabels(ev))
	p.serveHTTP(ctx, ev, c, ev.Dst, t, metrics.Inbound, clientID, mc)
	mc.CloseErr(nil)
}
