package metrics

import (
	"sync/atomic"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/splice"
)

// This file adapts the registry to the hooks of the other packages. They
// never import metrics; metrics imports them for their hook types only.

// DetectHook returns a function for detect.Detector.OnResult that counts
// every result as a detection in direction dir (protocol_detect_total,
// protocol_detect_duration_seconds). A nil Registry returns nil, which
// turns the hook off.
//
//	d := detect.Detector{OnResult: reg.DetectHook(metrics.Inbound)}
func (r *Registry) DetectHook(dir Direction) func(*detect.Result) {
	if r == nil {
		return nil
	}
	dir = dir.norm()
	h := &detectHook{r: r, dir: dir}
	return h.observe
}

// detectHook is DetectHook's state: for each Reason, the lookup entry of
// the series it last counted (a pointer into the family's published slice,
// which is never modified in place). A hit skips the scan of the family: it
// runs right after Detect's system calls, on a cold cache, where each
// dependent load of that scan (registry, slice, entry) costs more than the
// counting itself. Storing a pointer allocates nothing.
type detectHook struct {
	r    *Registry
	dir  Direction // Inbound or Outbound
	last [8]atomic.Pointer[entry[detectKey, histSeries]]
}

func (h *detectHook) observe(res *detect.Result) {
	p := string(res.Protocol)
	if p == "" {
		p = "unknown"
	}
	i := int(res.Reason)
	if i >= len(h.last) {
		h.r.ObserveDetection(h.dir, p, res.Reason.String(), res.Duration)
		return
	}
	if e := h.last[i].Load(); e != nil && e.k.protocol == p {
		e.v.observe(detectBounds, res.Duration)
		return
	}
	// Miss: count through the registry (which creates the series if
	// needed), then remember its entry for the next result.
	k := detectKey{h.dir, p, res.Reason.String()}
	h.r.ObserveDetection(k.dir, k.protocol, k.reason, res.Duration)
	es := h.r.detect.load()
	for j := range es {
		if es[j].k == k {
			h.last[i].Store(&es[j])
			return
		}
	}
}

// MuxHook returns a function for detect.MuxConfig.OnConn that counts what
// the mux did with each accepted connection (mux_connections_total). A
// connection the mux shed to make room (decided early as a timeout and
// routed to its Default listener) is counted with outcome "shed". A nil
// Registry returns nil.
func (r *Registry) MuxHook() func(detect.MuxEvent) {
	if r == nil {
		return nil
	}
	return func(ev detect.MuxEvent) {
		outcome := ev.Outcome.String()
		if ev.Shed && ev.Outcome == detect.MuxRouted {
			outcome = "shed"
		}
		r.ObserveMux(outcome, string(ev.Result.Protocol))
	}
}

// ConnLabelsFor returns the connection labels for a detected protocol p
// (detect.Result.Protocol): TLSOpaque when p is detect.TLS (the
// application's own TLS, not terminated by the proxy), else TLSFalse.
func ConnLabelsFor(dir Direction, p detect.Protocol) ConnLabels {
	l := ConnLabels{Direction: dir, Protocol: string(p)}
	if p == detect.TLS {
		l.TLS = TLSOpaque
	}
	return l
}

// Transferred implements splice.Observer for a connection joined as side a
// (the accepted connection): bytes of splice.AToB were read from it
// (tcp_read_bytes_total), bytes of splice.BToA written to it
// (tcp_write_bytes_total). Use Reversed when the connection is side b.
func (c Conn) Transferred(d splice.Direction, n int64) {
	if d == splice.AToB {
		c.Read(n)
	} else {
		c.Write(n)
	}
}

// Observer returns c as a splice.Observer, or nil for the zero Conn, so a
// disabled registry costs splice nothing.
//
//	st, err := j.Join(ctx, accepted, upstream, mc.Observer())
//	mc.CloseErr(err)
func (c Conn) Observer() splice.Observer {
	if c.s == nil {
		return nil
	}
	return c
}

// Reversed returns a splice.Observer for a connection joined as side b:
// splice.BToA counts as read, splice.AToB as written. nil for the zero Conn.
func (c Conn) Reversed() splice.Observer {
	if c.s == nil {
		return nil
	}
	return reversedConn(c)
}

type reversedConn Conn

// Transferred counts BToA as read and AToB as written.
func (c reversedConn) Transferred(d splice.Direction, n int64) {
	if d == splice.BToA {
		Conn(c).Read(n)
	} else {
		Conn(c).Write(n)
	}
}

// CloseErr counts the connection's end with the errno of err, as
// splice.Errno classifies it ("" for nil or io.EOF).
func (c Conn) CloseErr(err error) {
	if c.s != nil {
		c.Close(splice.Errno(err))
	}
}

// CloseStats counts the connection's end like CloseErr and records the
// lifetime of the join (st.Duration) in tcp_connection_duration_seconds.
//
//	st, err := j.Join(ctx, accepted, upstream, mc.Observer())
//	mc.CloseStats(st, err)
func (c Conn) CloseStats(st splice.Stats, err error) {
	if c.s != nil {
		c.s.dur.observe(connDurationBounds, st.Duration)
		c.Close(splice.Errno(err))
	}
}

// HandshakeHook returns a function for mtls.Config.OnHandshake that counts
// every handshake (tls_handshake_total) and its duration
// (tls_handshake_duration_seconds): server handshakes as Inbound, client
// ones as Outbound; outcome "success" for mtls.ReasonOK, else the reason's
// name ("unauthorized", "untrusted", ...); the peer identity when
// Config.PeerIdentities is set. Events without a duration (mtls reports
// none on the client side) are counted but not timed. A nil Registry
// returns nil.
func (r *Registry) HandshakeHook() func(mtls.HandshakeEvent) {
	if r == nil {
		return nil
	}
	return func(ev mtls.HandshakeEvent) {
		dir := Outbound
		if ev.Server {
			dir = Inbound
		}
		outcome := OutcomeSuccess
		if ev.Reason != mtls.ReasonOK {
			outcome = ev.Reason.String()
		}
		var peer string
		if r.cfg.PeerIdentities && !ev.PeerID.IsZero() {
			peer = ev.PeerID.String()
		}
		d := ev.Duration
		if d == 0 {
			d = -1
		}
		r.ObserveHandshake(dir, outcome, peer, d)
	}
}

// HandshakeOutcome returns the outcome label of a handshake error:
// "success" for nil, else the name of mtls.Classify(err). Use it with
// ObserveHandshake for failures that OnHandshake does not see (I/O errors,
// timeouts, the peer refusing our certificate).
func HandshakeOutcome(err error) string {
	if err == nil {
		return OutcomeSuccess
	}
	return mtls.Classify(err).String()
}

// HeaderObserver returns an opaque.HeaderObserver (for
// opaque.HeaderCodec.Observer) that counts transport headers written, read
// and rejected. A nil Registry returns nil.
func (r *Registry) HeaderObserver() opaque.HeaderObserver {
	if r == nil {
		return nil
	}
	return headerObserver{r}
}

type headerObserver struct{ r *Registry }

// HeaderWritten counts a written header by its session protocol.
func (o headerObserver) HeaderWritten(h opaque.Header, _ int) {
	o.r.ObserveTransportHeader(HeaderWritten, h.SessionProtocol.String())
}

// HeaderRead counts an accepted header by its session protocol.
func (o headerObserver) HeaderRead(h opaque.Header, _ int) {
	o.r.ObserveTransportHeader(HeaderRead, h.SessionProtocol.String())
}

// HeaderRejected counts a rejected header by reason.
func (o headerObserver) HeaderRejected(reason opaque.RejectReason) {
	o.r.ObserveTransportHeader(HeaderRejected, reason.String())
}

// ObservePolicy counts the decision an opaque.Resolver (or Table) made for
// a connection to port (policy_decision_total).
//
//	dec := resolver.Resolve(opaque.Inbound, port)
//	reg.ObservePolicy(opaque.Inbound, port, dec)
func (r *Registry) ObservePolicy(dir opaque.Direction, port uint16, d opaque.Decision) {
	if r == nil {
		return
	}
	r.ObserveDecision(DirectionOf(dir), d.Action.String(), port)
}

// DirectionOf converts an opaque.Direction.
func DirectionOf(d opaque.Direction) Direction {
	if d == opaque.Outbound {
		return Outbound
	}
	return Inbound
}
