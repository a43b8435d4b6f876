package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/opaque"
)

// ServeOutbound accepts the application's outgoing connections on l until ctx
// ends, learning each one's destination with dst (OriginalDst in transparent
// mode). It closes l and waits for every connection before it returns.
func (p *Proxy) ServeOutbound(ctx context.Context, l net.Listener, dst DstFunc) error {
	if err := p.init(); err != nil {
		return err
	}
	if dst == nil {
		return fmt.Errorf("%w: ServeOutbound needs a DstFunc", ErrNoOriginalDst)
	}
	return serve(ctx, l, func(ctx context.Context, c net.Conn) {
		d, err := dst(c)
		if err != nil {
			c.Close()
			p.emit(Event{Outbound: true, Err: err})
			return
		}
		p.HandleOutbound(ctx, c, d)
	})
}

// HandleOutbound carries one outgoing connection to dst and closes it.
func (p *Proxy) HandleOutbound(ctx context.Context, c net.Conn, dst netip.AddrPort) {
	start := time.Now()
	ev := Event{Outbound: true, Dst: dst, Protocol: detect.Unknown}
	defer func() {
		ev.Duration = time.Since(start)
		p.emit(ev)
	}()
	if err := p.init(); err != nil {
		c.Close()
		ev.Err = err
		return
	}
	if la, ok := c.LocalAddr().(*net.TCPAddr); ok && la.AddrPort() == dst {
		c.Close()
		ev.Err = fmt.Errorf("%w: %s", ErrLoop, dst)
		return
	}
	dec := p.resolve(opaque.Outbound, dst.Port())
	switch dec.Action {
	case opaque.ActionSkip:
		ev.Path = PathSkip
		up, err := p.dialPlain(ctx, dst.String())
		if err != nil {
			c.Close()
			ev.Err = err
			return
		}
		p.finish(ctx, &ev, c, up)
		return
	case opaque.ActionOpaque:
		ev.Path = PathOpaque
		up, id, err := p.dialUpstream(ctx, dst, opaque.SessionNone)
		ev.PeerID = id
		if err != nil {
			c.Close()
			ev.Err = err
			return
		}
		p.finish(ctx, &ev, c, up)
		return
	case opaque.ActionDeclared:
		ev.Path = PathDeclared
		ev.Protocol = dec.Protocol
		up, id, err := p.dialUpstream(ctx, dst, sessionFor(dec.Protocol))
		ev.PeerID = id
		if err != nil {
			c.Close()
			ev.Err = err
			return
		}
		p.finish(ctx, &ev, c, up)
		return
	}

	det := p.detector(opaque.Outbound, dec)
	ev.Path = PathDetect
	if p.NoRace {
		res, cc, err := det.Detect(ctx, c)
		ev.Detect, ev.Protocol = res, res.Protocol
		if err != nil {
			c.Close()
			ev.Err = err
			return
		}
		up, id, err := p.dialUpstream(ctx, dst, sessionFor(res.Protocol))
		ev.PeerID = id
		if err != nil {
			cc.Close()
			ev.Err = err
			return
		}
		p.finish(ctx, &ev, cc, up)
		return
	}
	// Race: open the upstream first (it costs a dial, not a wait), then let
	// whichever side speaks first decide.
	up, id, err := p.dialUpstream(ctx, dst, opaque.SessionNone)
	ev.PeerID = id
	if err != nil {
		c.Close()
		ev.Err = err
		return
	}
	res, cc, uc, err := det.DetectUpstream(ctx, c, up)
	ev.Detect, ev.Protocol = res, res.Protocol
	if res.Reason == detect.ReasonServerFirst {
		ev.Path = PathServerFirst
	}
	if err != nil {
		c.Close()
		up.Close()
		ev.Err = err
		return
	}
	p.finish(ctx, &ev, cc, uc)
}

// dialUpstream connects to the peer sidecar in front of dst (mutual TLS and a
// transport header naming dst's port), or straight to dst when it is not meshed.
func (p *Proxy) dialUpstream(ctx context.Context, dst netip.AddrPort, sp opaque.SessionProtocol) (net.Conn, spiffeid.ID, error) {
	peer, err := p.peer(dst)
	if err != nil {
		return nil, spiffeid.ID{}, err
	}
	if peer.Addr == "" {
		c, err := p.dialPlain(ctx, dst.String())
		return c, spiffeid.ID{}, err
	}
	tc, id, err := p.dialMesh(ctx, peer, opaque.Header{Port: dst.Port(), SessionProtocol: sp})
	if err != nil {
		return nil, id, err
	}
	return tc, id, nil
}

// finish joins the client and the upstream and records the byte counts.
func (p *Proxy) finish(ctx context.Context, ev *Event, client, up net.Conn) {
	mc := p.Metrics.OpenConn(connLabels(ev))
	st, err := p.join(ctx, client, up, mc.Observer())
	mc.CloseErr(err)
	ev.ClientBytes, ev.ServerBytes = st.AToB, st.BToA
	if err != nil && ev.Err == nil {
		ev.Err = err
	}
}

// sessionFor names the transport header's session protocol for a protocol.
func sessionFor(proto detect.Protocol) opaque.SessionProtocol {
	switch proto {
	case detect.HTTP1:
		return opaque.SessionHTTP1
	case detect.HTTP2, detect.GRPC:
		return opaque.SessionHTTP2
	}
	return opaque.SessionNone
}

// connLabels resolves a connection's metric labels once, when it is decided.
func connLabels(ev *Event) metrics.ConnLabels {
	l := metrics.ConnLabels{Direction: metrics.Inbound, Protocol: string(ev.Protocol)}
	if ev.Outbound {
		l.Direction = metrics.Outbound
	}
	switch {
	case ev.Path == PathOpaque, ev.Path == PathServerFirst, ev.Path == PathSkip,
		ev.Path == PathHeader && ev.Protocol == detect.Unknown:
		l.Protocol = "opaque"
	}
	switch {
	case ev.Protocol == detect.TLS:
		l.TLS = metrics.TLSOpaque
	case !ev.PeerID.IsZero():
		l.TLS = metrics.TLSTrue
	}
	return l
}
