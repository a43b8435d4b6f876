package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/splice"
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
	p.addOwnPort(l.Addr())
	return serve(ctx, l, func(ctx context.Context, c net.Conn) {
		d, err := dst(c)
		if err != nil {
			c.Close()
			p.emit(Event{Direction: opaque.Outbound, Err: err})
			return
		}
		p.HandleOutbound(ctx, c, d)
	})
}

// HandleOutbound carries one outgoing connection to dst and closes it.
func (p *Proxy) HandleOutbound(ctx context.Context, c net.Conn, dst netip.AddrPort) {
	start := time.Now()
	ev := Event{Direction: opaque.Outbound, Dst: dst, Protocol: detect.Unknown}
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
		p.dialAndFinish(ctx, &ev, c, dst, opaque.SessionNone)
		return
	case opaque.ActionDeclared:
		ev.Path = PathDeclared
		ev.Protocol = dec.Protocol
		if p.serveOutboundHTTP(ctx, &ev, c, dst) {
			return
		}
		p.dialAndFinish(ctx, &ev, c, dst, sessionFor(dec.Protocol))
		return
	}

	det := p.detector(opaque.Outbound, dec)
	ev.Path = PathDetect
	if p.NoRace || (p.LearnHTTP > 0 && int(p.httpRun(dst.Port()).Load()) >= p.LearnHTTP) {
		res, cc, err := det.Detect(ctx, c)
		ev.Detect, ev.Protocol = res, res.Protocol
		p.learn(dst.Port(), res.Protocol)
		if err != nil {
			c.Close()
			ev.Err = err
			return
		}
		if p.unfinished(res) {
			if cc, ev.Err = p.checkUnfinished(cc, res, opaque.Outbound); ev.Err != nil {
				return
			}
		}
		if p.serveOutboundHTTP(ctx, &ev, cc, dst) {
			return
		}
		p.dialAndFinish(ctx, &ev, cc, dst, sessionFor(res.Protocol))
		return
	}
	// Race: open the upstream first (it costs a dial, not a wait), then let
	// whichever side speaks first decide.
	up, id, err := p.dialUpstream(ctx, dst, opaque.SessionNone)
	ev.PeerID = id
	if err != nil {
		// No upstream to race: an HTTP client still gets an HTTP answer
		// (502 from the pool's own dial), anything else is closed.
		ev.Err = err
		res, cc, derr := det.Detect(ctx, c)
		ev.Detect, ev.Protocol = res, res.Protocol
		if derr == nil && p.unfinished(res) {
			if cc, derr = p.checkUnfinished(cc, res, opaque.Outbound); derr != nil {
				ev.Err = derr // answered and closed
				return
			}
		}
		if derr != nil || !p.serveOutboundHTTP(ctx, &ev, cc, dst) {
			c.Close()
		}
		return
	}
	res, cc, uc, err := det.DetectUpstream(ctx, c, up)
	if err == nil && res.Reason == detect.ReasonServerFirst {
		// HTTP/2 servers send their SETTINGS before reading the client's
		// preface. DetectUpstream recognises that on a peekable upstream; ours
		// is TLS, so look at the first frame here and, if it is one, wait for
		// the client as detection would.
		//
		// An upstream that closed without a byte (the peer could not reach the
		// application) is not a server speaking first either: detect the
		// client, so that an HTTP client gets a 502 rather than a silent close.
		var pre, gone bool
		if uc, pre, gone = h2ServerPreface(uc); pre || gone {
			res, cc, err = det.Detect(ctx, cc)
		}
	}
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
	p.learn(dst.Port(), res.Protocol)
	if p.unfinished(res) {
		if cc, ev.Err = p.checkUnfinished(cc, res, opaque.Outbound); ev.Err != nil {
			uc.Close()
			return
		}
	}
	if ev.Path == PathDetect && isHTTP(res.Protocol) && !p.NoHTTP {
		// The client speaks HTTP: the early upstream (opaque) is not needed;
		// requests go through the pool to the peer.
		uc.Close()
		ev.PeerID = spiffeid.ID{}
		p.serveOutboundHTTP(ctx, &ev, cc, dst)
		return
	}
	p.finish(ctx, &ev, cc, uc)
}

// serveOutboundHTTP serves c at the HTTP layer when its protocol is HTTP and
// HTTP serving is on; it reports whether it did.
func (p *Proxy) serveOutboundHTTP(ctx context.Context, ev *Event, c net.Conn, dst netip.AddrPort) bool {
	if p.NoHTTP || !isHTTP(ev.Protocol) {
		return false
	}
	t := p.outboundTransport(dst, sessionFor(ev.Protocol))
	l := connLabels(ev)
	if peer, err := p.peer(dst); err == nil && peer.Addr != "" {
		l.TLS = metrics.TLSTrue // requests leave in mutual TLS
	}
	mc := p.Metrics.OpenConn(l)
	p.serveHTTP(ctx, ev, c, dst, t, opaque.Outbound, spiffeid.ID{}, mc)
	mc.End(splice.Stats{})
	return true
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

// dialAndFinish dials the upstream for dst (recording the peer identity it
// proved) and joins client to it; a failed dial closes client.
func (p *Proxy) dialAndFinish(ctx context.Context, ev *Event, client net.Conn, dst netip.AddrPort, session opaque.SessionProtocol) {
	up, id, err := p.dialUpstream(ctx, dst, session)
	ev.PeerID = id
	if err != nil {
		client.Close()
		ev.Err = err
		return
	}
	p.finish(ctx, ev, client, up)
}

// finish joins the client and the upstream and records the byte counts.
func (p *Proxy) finish(ctx context.Context, ev *Event, client, up net.Conn) {
	mc := p.Metrics.OpenConn(connLabels(ev))
	st, err := p.join(ctx, client, up, mc.Observer())
	mc.End(st)
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

// connLabels resolves a connection's metric labels once, when it is decided: the hop is meshed when
// the peer sidecar proved an identity in mutual TLS.
func connLabels(ev *Event) metrics.ConnLabels {
	proto := ev.Protocol
	switch {
	case ev.Path == PathOpaque, ev.Path == PathServerFirst, ev.Path == PathSkip,
		ev.Path == PathHeader && ev.Protocol == detect.Unknown:
		proto = "opaque"
	}
	return metrics.ConnLabelsFor(ev.Direction, proto, !ev.PeerID.IsZero())
}

// h2ServerPreface reads the upstream's first bytes (what is there within a
// few milliseconds, at most 9) and reports whether they begin an HTTP/2
// SETTINGS frame, or whether the upstream ended without a byte (gone); the
// bytes are handed back in front of the connection.
func h2ServerPreface(up net.Conn) (c net.Conn, preface, gone bool) {
	var h [9]byte
	n := 0
	up.SetReadDeadline(time.Now().Add(prefaceWait))
	var rerr error
	for n < len(h) {
		m, err := up.Read(h[n:])
		n += m
		if err != nil {
			rerr = err
			break
		}
	}
	up.SetReadDeadline(time.Time{})
	if n == 0 {
		return up, false, rerr != nil && !errors.Is(rerr, os.ErrDeadlineExceeded)
	}
	length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	ok := n == len(h) && h[3] == 0x4 && h[4] == 0 && h[5]&0x7f == 0 && h[6] == 0 && h[7] == 0 && h[8] == 0 && length%6 == 0
	return detect.NewReplayConn(up, append([]byte(nil), h[:n]...)), ok, false
}

// prefaceWait bounds the wait for the rest of a frame header after the
// upstream's first byte (a greeting shorter than 9 bytes pays it once).
const prefaceWait = 20 * time.Millisecond
