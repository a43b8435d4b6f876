package metrics

import "time"

type detectKey struct {
	dir      Direction
	protocol string
	reason   string
}

// ObserveDetection counts one protocol detection (protocol_detect_total)
// and records how long it took (protocol_detect_duration_seconds). protocol
// is the detected protocol (e.g. "HTTP/1", "unknown"), reason the detection
// reason (e.g. "matched", "timeout"); see DetectHook for the detect adapter.
func (r *Registry) ObserveDetection(dir Direction, protocol, reason string, d time.Duration) {
	if r == nil {
		return
	}
	if protocol == "" {
		protocol = "unknown"
	}
	k := detectKey{dir, protocol, reason}
	s := r.detect.get(k)
	if s == nil {
		k.protocol = r.protocols.intern(k.protocol, r.maxValues())
		k.reason = r.reasons.intern(k.reason, r.maxValues())
		s = r.detect.getOrCreate(k)
	}
	s.observe(detectBounds, d)
}

type decisionKey struct {
	dir    Direction
	action string
	port   uint16 // 0: "other"
}

// ObserveDecision counts one policy decision (policy_decision_total) for a
// connection to port. action names what the policy decided ("detect",
// "skip", "opaque", "declared"); port is labelled by number only when it is
// in Config.Ports, else "other".
func (r *Registry) ObserveDecision(dir Direction, action string, port uint16) {
	if r == nil {
		return
	}
	k := decisionKey{dir, action, r.declaredPort(port)}
	s := r.decisions.get(k)
	if s == nil {
		k.action = r.actions.intern(k.action, r.maxValues())
		s = r.decisions.getOrCreate(k)
	}
	s.n.Add(1)
}

type handshakeKey struct {
	dir     Direction
	outcome string
	peer    string
}

// OutcomeSuccess is the outcome label value of a successful handshake.
const OutcomeSuccess = "success"

// ObserveHandshake counts one TLS handshake (tls_handshake_total) and its
// duration (tls_handshake_duration_seconds). dir is Inbound for the server
// side, Outbound for the client side; outcome is OutcomeSuccess or a short
// failure class (e.g. "unauthorized", "timeout", "error"). peerID (a SPIFFE
// ID) is recorded only when Config.PeerIdentities is set, and capped at
// Config.MaxPeerIdentities.
func (r *Registry) ObserveHandshake(dir Direction, outcome, peerID string, d time.Duration) {
	if r == nil {
		return
	}
	if !r.cfg.PeerIdentities {
		peerID = ""
	}
	k := handshakeKey{dir, outcome, peerID}
	s := r.handshakes.get(k)
	if s == nil {
		k.outcome = r.outcomes.intern(k.outcome, r.maxValues())
		if k.peer != "" {
			max := r.cfg.MaxPeerIdentities
			if max <= 0 {
				max = DefaultMaxPeerIdentities
			}
			k.peer = r.peerIDs.intern(k.peer, max)
		}
		s = r.handshakes.getOrCreate(k)
	}
	s.observe(handshakeBounds, d)
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
	event  HeaderEvent
	reason string
}

// ObserveTransportHeader counts one transport header event
// (transport_header_written_total, transport_header_read_total,
// transport_header_rejected_total{reason}). reason is used only for
// HeaderRejected (e.g. "malformed", "too_large", "eof"); it is capped.
func (r *Registry) ObserveTransportHeader(ev HeaderEvent, reason string) {
	if r == nil {
		return
	}
	if ev != HeaderRejected {
		reason = ""
	} else if reason == "" {
		reason = "unknown"
	}
	k := headerKey{ev, reason}
	s := r.headers.get(k)
	if s == nil {
		k.reason = r.hdrReason.intern(k.reason, r.maxValues())
		s = r.headers.getOrCreate(k)
	}
	s.n.Add(1)
}
