package metrics

import (
	"sync/atomic"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/opaque"
)

// This file adapts the registry to the hooks of the other packages. They never import metrics;
// metrics imports them for their hook types only.

// DetectHook returns a function for detect.Detector.OnResult that counts every result as a
// detection in direction dir (protocol_detect_total, protocol_detect_duration_seconds). A nil
// Registry returns nil, which turns the hook off. The hook keeps a cache of the series it counted
// last: build it once with the Detector and share both across connections.
//
//	d := &detect.Detector{OnResult: reg.DetectHook(opaque.Inbound)} // once
func (r *Registry) DetectHook(dir opaque.Direction) func(*detect.Result) {
	if r == nil {
		return nil
	}
	h := &detectHook{r: r, dir: norm(dir)}
	return h.observe
}

// detectHook is DetectHook's state: for each Reason, the lookup entry of the series it last counted
// (a pointer into the family's published slice, which is never modified in place). A hit skips the
// scan of the family: it runs right after Detect's system calls, on a cold cache, where each
// dependent load of that scan (registry, slice, entry) costs more than the counting itself. Storing
// a pointer allocates nothing.
type detectHook struct {
	r    *Registry
	dir  opaque.Direction // Inbound or Outbound
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
	// Miss: count through the registry (which creates the series if needed), then remember its
	// entry for the next result.
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

// MuxHook returns a function for detect.MuxConfig.OnConn that counts what the mux did with each
// accepted connection (mux_connections_total). A connection the mux shed to make room (decided
// early as a timeout and routed to its Default listener) is counted with outcome "shed". A nil
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

// ConnLabelsFor returns the labels of a connection in direction dir whose protocol is p (detected
// or declared; detect.Unknown for one forwarded as opaque bytes). meshed says that the proxy
// terminates (inbound) or originates (outbound) mutual TLS on the connection's hop: the tls label
// is then "true", whatever the connection carries. Otherwise it is "opaque" when p is detect.TLS
// (the application's own TLS, passed through) and "false" for plaintext.
func ConnLabelsFor(dir opaque.Direction, p detect.Protocol, meshed bool) ConnLabels {
	l := ConnLabels{Direction: dir, Protocol: string(p)}
	switch {
	case meshed:
		l.TLS = TLSTrue
	case p == detect.TLS:
		l.TLS = TLSOpaque
	}
	return l
}

// HandshakeHook returns a function for mtls.Config.OnHandshake that counts every handshake
// (tls_handshake_total) and its duration (tls_handshake_duration_seconds): handshakes this side
// accepted (the TLS server, a mesh's inbound proxy) as opaque.Inbound, those it originated as
// opaque.Outbound; outcome "success" for mtls.ReasonOK, else the reason's name ("unauthorized",
// "untrusted", ...); the peer identity when Config.PeerIdentities is set. Events without a duration
// (mtls reports none on the client side) are counted but not timed. A nil Registry returns nil.
func (r *Registry) HandshakeHook() func(mtls.HandshakeEvent) {
	if r == nil {
		return nil
	}
	return func(ev mtls.HandshakeEvent) {
		dir := opaque.Outbound
		if ev.Server {
			dir = opaque.Inbound
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

// HandshakeOutcome returns the outcome label of a handshake error: "success" for nil, else the name
// of mtls.Classify(err). Use it with ObserveHandshake for failures that OnHandshake does not see
// (I/O errors, timeouts, the peer refusing our certificate).
func HandshakeOutcome(err error) string {
	if err == nil {
		return OutcomeSuccess
	}
	return mtls.Classify(err).String()
}

// HeaderObserver returns an opaque.HeaderObserver (for opaque.HeaderCodec.Observer) that counts
// transport headers written, read and rejected. A nil Registry returns nil.
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

// ObservePolicy counts the decision an opaque.Resolver (or Table) made for a connection to port
// (policy_decision_total).
//
//	dec := resolver.Resolve(opaque.Inbound, port)
//	reg.ObservePolicy(opaque.Inbound, port, dec)
func (r *Registry) ObservePolicy(dir opaque.Direction, port uint16, d opaque.Decision) {
	r.ObserveDecision(dir, d.Action.String(), port)
}
