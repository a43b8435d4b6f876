package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/spiffe"
	"github.com/sniffsplice/sniff/splice"
)

// ServeOutbound accepts the application's outgoing connections on l until ctx
// ends, learning each one's destination with dst (transparent.OriginalDst in
// transparent mode). It closes l and waits for every connection before it returns.
//
// Each connection goes through the proxy's lifecycle: accepted (running out of
// descriptors is waited out, never fatal); on a port left to detection, it
// waits for its first bytes in a detect.Waiter, without a goroutine, for the
// race's grace; a client that speaks is detected without any dial; one still
// silent is raced against its server (Proxy.Race: capped, and not at all on a
// port whose clients speak first), or else waits on, still without a goroutine,
// until its detection timeout makes it opaque.
func (p *Proxy) ServeOutbound(ctx context.Context, l net.Listener, dst DstFunc) error {
	return p.serveOutbound(ctx, ctx, l, dst)
}

// serveOutbound is ServeOutbound with the end of accepting (acceptCtx) apart
// from the end of the connections (connCtx), for Sidecar.Shutdown.
func (p *Proxy) serveOutbound(acceptCtx, connCtx context.Context, l net.Listener, dst DstFunc) error {
	if err := p.init(); err != nil {
		return err
	}
	if dst == nil {
		return fmt.Errorf("%w: ServeOutbound needs a DstFunc", ErrNoOriginalDst)
	}
	p.addOwnPort(l.Addr())
	s := p.newListener(connCtx, opaque.Outbound)
	return s.serve(acceptCtx, l, func(c net.Conn) {
		d, err := dst(c)
		if err != nil {
			c.Close()
			p.emit(&Event{Direction: opaque.Outbound, Err: err})
			return
		}
		p.admitOutbound(s, c, d)
	})
}

// How handleOutbound goes about a connection on a port left to detection.
type outboundMode uint8

const (
	modeAuto     outboundMode = iota // HandleOutbound: race at once unless NoRace (no Waiter)
	modeSpoke                        // the client has spoken: detect, no race
	modeRace                         // silent past its grace, a race slot taken: race
	modeTimedOut                     // silent until its detection timeout (or shed): opaque
)

// admitOutbound starts the lifecycle of one outgoing connection, on the accept
// goroutine: it must not block.
func (p *Proxy) admitOutbound(s *listener, c net.Conn, dst netip.AddrPort) {
	start := time.Now()
	ctx := s.connCtx
	dec, ok := p.outboundDecision(c, dst, start)
	if !ok {
		return
	}
	port := dst.Port()
	if dec.Action != opaque.ActionDetect || p.NoRace || p.race.Learner.Learned(port) {
		s.goHandle(func() { p.handleOutbound(ctx, c, dst, dec, start, modeAuto) })
		return
	}
	timeout := p.detectTimeout(opaque.Outbound, dec)
	grace, race := p.race.Plan(port)
	if !race {
		p.race.Skipped()
		grace = timeout
	}
	s.waitThen(c, grace, func(c net.Conn, err error) {
		switch {
		case err == nil:
			p.handleOutbound(ctx, c, dst, dec, start, modeSpoke)
		case !race:
			p.handleOutbound(ctx, c, dst, dec, start, modeTimedOut)
		case p.race.TryStart():
			defer p.race.Done()
			p.handleOutbound(ctx, c, dst, dec, start, modeRace)
		default:
			// MaxRaces are running: wait on for the client, still without a
			// goroutine, for the rest of its detection timeout.
			rest := timeout // <= 0: no detection timeout
			if timeout > 0 {
				rest = max(timeout-time.Since(start), time.Millisecond)
			}
			s.waitThen(c, rest, func(c net.Conn, err error) {
				if err == nil {
					p.handleOutbound(ctx, c, dst, dec, start, modeSpoke)
				} else {
					p.handleOutbound(ctx, c, dst, dec, start, modeTimedOut)
				}
			})
		}
	})
}

// outboundDecision refuses a connection to the proxy itself (ErrLoop) and
// resolves the port's policy; it reports false, having closed c and emitted
// its event, when c goes no further.
func (p *Proxy) outboundDecision(c net.Conn, dst netip.AddrPort, start time.Time) (opaque.Decision, bool) {
	fail := func(err error) (opaque.Decision, bool) {
		c.Close()
		p.emit(&Event{Direction: opaque.Outbound, Dst: dst, Protocol: detect.Unknown, Err: err, Duration: time.Since(start)})
		return opaque.Decision{}, false
	}
	if err := p.init(); err != nil {
		return fail(err)
	}
	if la, ok := c.LocalAddr().(*net.TCPAddr); ok && la.AddrPort() == dst {
		return fail(fmt.Errorf("%w: %s", ErrLoop, dst))
	}
	return p.resolve(opaque.Outbound, dst.Port()), true
}

// HandleOutbound carries one outgoing connection to dst and closes it. On a
// port left to detection it races the client against its server at once
// (unless NoRace): ServeOutbound's lifecycle, with its grace and caps, needs
// the accept loop.
func (p *Proxy) HandleOutbound(ctx context.Context, c net.Conn, dst netip.AddrPort) {
	start := time.Now()
	if dec, ok := p.outboundDecision(c, dst, start); ok {
		p.handleOutbound(ctx, c, dst, dec, start, modeAuto)
	}
}

// handleOutbound carries one outgoing connection whose policy is dec, and
// closes it.
func (p *Proxy) handleOutbound(ctx context.Context, c net.Conn, dst netip.AddrPort, dec opaque.Decision, start time.Time, mode outboundMode) {
	ev := Event{Direction: opaque.Outbound, Dst: dst, Protocol: detect.Unknown}
	ev.began = start
	defer func() {
		ev.Duration = time.Since(start)
		p.emit(&ev)
	}()
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

	det := p.detector(opaque.Outbound)
	ev.Path = PathDetect
	if mode == modeAuto && !p.NoRace && p.race.Learner.Learned(dst.Port()) {
		// The port keeps turning out server-first or opaque: splice at once.
		ev.Path = PathLearned
		p.dialAndFinish(ctx, &ev, c, dst, opaque.SessionNone)
		return
	}
	if mode == modeTimedOut {
		// Silent until its detection timeout (or shed to make room): opaque, as
		// detection would have decided.
		ev.Detect = detect.Result{Protocol: detect.Unknown, Reason: detect.ReasonTimeout, Duration: time.Since(start)}
		if det.OnResult != nil {
			det.OnResult(&ev.Detect)
		}
		p.learn(dst.Port(), &ev.Detect)
		p.dialAndFinish(ctx, &ev, c, dst, opaque.SessionNone)
		return
	}
	if mode == modeSpoke || (mode == modeAuto && p.NoRace) {
		p.detectThenDial(ctx, &ev, det, c, dst, p.detectTimeout(opaque.Outbound, dec), start)
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
		cc, _, derr := detectInto(ctx, &ev.Detect, det, c, nil, timeoutOf(dec))
		ev.Protocol = ev.Detect.Protocol
		if derr == nil && p.unfinished(&ev.Detect) {
			if cc, derr = p.checkUnfinished(cc, &ev.Detect, opaque.Outbound); derr != nil {
				ev.Err = derr // answered and closed
				return
			}
		}
		if derr != nil || !p.serveOutboundHTTP(ctx, &ev, cc, dst) {
			c.Close()
		}
		return
	}
	// DetectUpstream tells a greeting from an HTTP/2 server's SETTINGS (sent before it reads the
	// client's preface) on this TLS upstream too, and from an upstream that closed without a byte
	// (the peer could not reach the application): then the client decides, and an HTTP client
	// gets a 502 rather than a silent close.
	cc, uc, err := detectInto(ctx, &ev.Detect, det, c, up, timeoutOf(dec))
	ev.Protocol = ev.Detect.Protocol
	if ev.Detect.Reason == detect.ReasonServerFirst {
		ev.Path = PathServerFirst
	}
	if err != nil {
		c.Close()
		up.Close()
		ev.Err = err
		return
	}
	p.learn(dst.Port(), &ev.Detect)
	if p.unfinished(&ev.Detect) {
		if cc, ev.Err = p.checkUnfinished(cc, &ev.Detect, opaque.Outbound); ev.Err != nil {
			uc.Close()
			return
		}
	}
	if ev.Path == PathDetect && isHTTP(ev.Protocol) && !p.NoHTTP {
		// The client speaks HTTP: the early upstream (opaque) is not needed;
		// requests go through the pool to the peer.
		uc.Close()
		ev.PeerID = spiffe.ID{}
		p.serveOutboundHTTP(ctx, &ev, cc, dst)
		return
	}
	p.finish(ctx, &ev, cc, uc)
}

// detectThenDial detects a client that has spoken (or, with NoRace, will),
// then serves it at the HTTP layer or dials its upstream: no connection is made
// before the protocol is known.
func (p *Proxy) detectThenDial(ctx context.Context, ev *Event, det *detect.Detector, c net.Conn, dst netip.AddrPort, timeout time.Duration, start time.Time) {
	// The detection timeout counts from accept: the wait for the first bytes was part of it.
	if timeout > 0 {
		timeout = max(timeout-time.Since(start), time.Millisecond)
	}
	cc, _, err := detectInto(ctx, &ev.Detect, det, c, nil, detect.WithTimeout(timeout))
	ev.Protocol = ev.Detect.Protocol
	if err != nil {
		c.Close()
		ev.Err = err
		return
	}
	if res := &ev.Detect; res.Reason == detect.ReasonClosed && res.Bytes == 0 {
		// The client went away without a byte: there is nothing to carry, and dialling the peer
		// for it would let a flood of connections that connect and close cost a handshake each.
		c.Close()
		return
	}
	p.learn(dst.Port(), &ev.Detect)
	if p.unfinished(&ev.Detect) {
		if cc, ev.Err = p.checkUnfinished(cc, &ev.Detect, opaque.Outbound); ev.Err != nil {
			return
		}
	}
	if p.serveOutboundHTTP(ctx, ev, cc, dst) {
		return
	}
	p.dialAndFinish(ctx, ev, cc, dst, sessionFor(ev.Detect.Protocol))
}

// detectInto detects c's protocol into *res: with det.Detect, or, when up is
// not nil, with det.DetectUpstream raced against up's first bytes (uc is then
// up as DetectUpstream hands it back; otherwise nil). It stays out of line: a
// detect.Result is 864 bytes, and a copy of it in the frame of a function
// that goes on to serve the connection would sit on the connection's
// goroutine stack for as long as it is served; the stacks of those
// goroutines are what Go sizes every new goroutine's stack by, and what the
// runtime keeps cached when they exit (TestServingStackDepth).
//
//go:noinline
func detectInto(ctx context.Context, res *detect.Result, det *detect.Detector, c, up net.Conn, opts ...detect.Option) (cc, uc net.Conn, err error) {
	if up == nil {
		*res, cc, err = det.Detect(ctx, c, opts...)
		return cc, nil, err
	}
	*res, cc, uc, err = det.DetectUpstream(ctx, c, up, opts...)
	return cc, uc, err
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
	p.serveHTTP(ctx, ev, c, dst, t, opaque.Outbound, spiffe.ID{}, mc) // ends mc
	return true
}

// dialUpstream connects to the peer sidecar in front of dst (mutual TLS and a
// transport header naming dst's port), or straight to dst when it is not meshed.
func (p *Proxy) dialUpstream(ctx context.Context, dst netip.AddrPort, sp opaque.SessionProtocol) (net.Conn, spiffe.ID, error) {
	peer, err := p.peer(dst)
	if err != nil {
		return nil, spiffe.ID{}, err
	}
	if peer.Addr == "" {
		c, err := p.dialPlain(ctx, dst.String())
		return c, spiffe.ID{}, err
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
//
// A connection of one of the proxy's listeners (ctx is its connCtx) is
// joined on a goroutine of its own, counted as the listener's handler, and
// finish returns at once: the connection's goroutine, whose stack everything
// before the join grew to 8 KiB (detection, dials, the frames of the
// handler's callers), ends instead of holding that stack for the
// connection's life; the join's goroutines start small (about 4 KiB less per
// connection and sidecar). ev is marked so that the handler's own emit leaves
// it; when something consumes events (OnEvent), that goroutine emits a copy
// of ev when the join ends (without a consumer no copy is kept: an Event is
// about 1 KiB). Called directly (HandleInbound and the like, no listener),
// finish joins on the caller's goroutine.
func (p *Proxy) finish(ctx context.Context, ev *Event, client, up net.Conn) {
	mc := p.Metrics.OpenConn(connLabels(ev))
	s, ok := ctx.Value(listenerKey{}).(*listener)
	if !ok || ev.began.IsZero() {
		ev.record(p.joinCounted(ctx, mc, client, up))
		return
	}
	var e *Event
	if p.OnEvent != nil {
		e = new(Event)
		*e = *ev
	}
	ev.joined = true
	s.handlers.Add(1) // the caller's handler still counts: no Wait can have returned
	go func() {
		defer s.handlers.Done()
		st, err := p.joinCounted(ctx, mc, client, up)
		if e != nil {
			e.record(st, err)
			e.Duration = time.Since(e.began)
			p.emit(e)
		}
	}()
}

// joinCounted joins client and up, counting the connection's bytes in mc.
func (p *Proxy) joinCounted(ctx context.Context, mc metrics.Conn, client, up net.Conn) (splice.Stats, error) {
	st, err := p.join(ctx, client, up, mc.Observer())
	mc.End(st)
	return st, err
}

// record puts a join's byte counts and error into ev (an earlier error stays).
func (ev *Event) record(st splice.Stats, err error) {
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
