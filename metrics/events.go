package metrics

import (
	"time"

	"github.com/sniffsplice/sniff/opaque"
)

type detectKey struct {
	dir      opaque.Direction
	protocol string
	reason   string
}

// ObserveDetection counts one protocol detection (protocol_detect_total) and records how long it
// took (protocol_detect_duration_seconds). protocol is the detected protocol (e.g. "HTTP/1",
// "unknown"), reason the detection reason (e.g. "matched", "timeout"); see DetectHook for the
// detect adapter.
func (r *Registry) ObserveDetection(dir opaque.Direction, protocol, reason string, d time.Duration) {
	if r == nil {
		return
	}
	if protocol == "" {
		protocol = "unknown"
	}
	k := detectKey{norm(dir), protocol, reason}
	var s *histSeries
	es := r.detect.load()
	for i := range es {
		if es[i].k == k {
			s = es[i].v
			break
		}
	}
	if s == nil {
		c := k
		c.protocol, c.reason = r.protocols.intern(protocol, r.maxValues()), r.reasons.intern(reason, r.maxValues())
		s = r.detect.create(k, c, nil)
	}
	s.observe(detectBounds, d)
}

type decisionKey struct {
	dir    opaque.Direction
	action string
	port   uint16 // 0: "other"
}

// ObserveDecision counts one policy decision (policy_decision_total) for a connection to port.
// action names what the policy decided ("detect", "skip", "opaque", "declared"); port is labelled
// by number only when it is in Config.Ports, else "other".
func (r *Registry) ObserveDecision(dir opaque.Direction, action string, port uint16) {
	if r == nil {
		return
	}
	k := decisionKey{norm(dir), action, r.declaredPort(port)}
	var s *counter
	es := r.decisions.load()
	for i := range es {
		if es[i].k == k {
			s = es[i].v
			break
		}
	}
	if s == nil {
		c := k
		c.action = r.actions.intern(action, r.maxValues())
		s = r.decisions.create(k, c, nil)
	}
	s.n.Add(1)
}

type handshakeKey struct {
	dir     opaque.Direction
	outcome string
	peer    string
}

type handshakeSeries struct {
	n counter
	h histSeries
}

// OutcomeSuccess is the outcome label value of a successful handshake.
const OutcomeSuccess = "success"

// ObserveHandshake counts one TLS handshake (tls_handshake_total) and its duration
// (tls_handshake_duration_seconds). dir is Inbound for the server side, Outbound for the client
// side; outcome is OutcomeSuccess or a short failure class (e.g. "unauthorized", "timeout",
// "error"). peerID (a SPIFFE ID) is recorded only when Config.PeerIdentities is set, and capped at
// Config.MaxPeerIdentities. A negative d counts the handshake without timing it.
func (r *Registry) ObserveHandshake(dir opaque.Direction, outcome, peerID string, d time.Duration) {
	if r == nil {
		return
	}
	if !r.cfg.PeerIdentities {
		peerID = ""
	}
	k := handshakeKey{norm(dir), outcome, peerID}
	var s *handshakeSeries
	es := r.handshakes.load()
	for i := range es {
		if es[i].k == k {
			s = es[i].v
			break
		}
	}
	if s == nil {
		c := k
		c.outcome = r.outcomes.intern(outcome, r.maxValues())
		if peerID != "" {
			max := r.cfg.MaxPeerIdentities
			if max <= 0 {
				max = DefaultMaxPeerIdentities
			}
			c.peer = r.peerIDs.intern(peerID, max)
		}
		s = r.handshakes.create(k, c, nil)
	}
	s.n.n.Add(1)
	if d >= 0 {
		s.h.observe(handshakeBounds, d)
	}
}

// HeaderEvent is what happened to an opaque transport header.
type HeaderEvent uint8

const (
	// HeaderWritten: a transport header was written (outbound).
	HeaderWritten HeaderEvent = iota
	// HeaderRead: a transport header was read and accepted (inbound).
	HeaderRead
	// HeaderRejected: a transport header was read and rejected (inbound).
	HeaderRejected
)

// String returns "written", "read" or "rejected".
func (e HeaderEvent) String() string {
	switch e {
	case HeaderRead:
		return "read"
	case HeaderRejected:
		return "rejected"
	}
	return "written"
}

type headerKey struct {
	event HeaderEvent
	value string
}

// ObserveTransportHeader counts one transport header event:
// transport_header_written_total{session_protocol} and
// transport_header_read_total{session_protocol}, where value is the session protocol the header
// announces ("none", "HTTP/1", "HTTP/2"), or transport_header_rejected_total{reason}, where value
// is the reason ("no_preface", "too_long", "timeout", ...). Values are capped; "" is recorded as
// "unknown".
func (r *Registry) ObserveTransportHeader(ev HeaderEvent, value string) {
	if r == nil {
		return
	}
	if value == "" {
		value = "unknown"
	}
	if ev > HeaderRejected {
		ev = HeaderRejected
	}
	k := headerKey{ev, value}
	var s *counter
	es := r.headers.load()
	for i := range es {
		if es[i].k == k {
			s = es[i].v
			break
		}
	}
	if s == nil {
		c := k
		c.value = r.hdrValues.intern(value, r.maxValues())
		s = r.headers.create(k, c, nil)
	}
	s.n.Add(1)
}

type muxKey struct {
	outcome  string
	protocol string
}

// ObserveMux counts one connection a one-port mux is done with (mux_connections_total): outcome
// says what it did ("routed", "unrouted", "refused", ...), protocol what was detected ("" is
// recorded as "unknown"). See MuxHook for the detect.Mux adapter.
func (r *Registry) ObserveMux(outcome, protocol string) {
	if r == nil {
		return
	}
	if protocol == "" {
		protocol = "unknown"
	}
	k := muxKey{outcome, protocol}
	var s *counter
	es := r.mux.load()
	for i := range es {
		if es[i].k == k {
			s = es[i].v
			break
		}
	}
	if s == nil {
		c := muxKey{r.muxOut.intern(outcome, r.maxValues()), r.protocols.intern(protocol, r.maxValues())}
		s = r.mux.create(k, c, nil)
	}
	s.n.Add(1)
}
