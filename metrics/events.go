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

type handshakeSeries struct {
	n counter
	h histSeries
}

// OutcomeSuccess is the outcome label value of a successful handshake.
const OutcomeSuccess = "success"

// ObserveHandshake counts one TLS handshake (tls_handshake_total) and its
// duration (tls_handshake_duration_seconds). dir is Inbound for the server
// side, Outbound for the client side; outcome is OutcomeSuccess or a short
// failure class (e.g. "unauthorized", "timeout", "error"). peerID (a SPIFFE
// ID) is recorded only when Config.PeerIdentities is set, and capped at
// Config.MaxPeerIdentities. A negative d counts the handshake without
// timing it.
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
// transport_header_read_total{session_protocol}, where value is the session
// protocol the header announces ("none", "HTTP/1", "HTTP/2"), or
// transport_header_rejected_total{reason}, where value is the reason
// ("no_preface", "too_long", "timeout", ...). Values are capped; "" is
// recorded as "unknown".
func (r *Registry) ObserveTransportHeader(ev HeaderEvent, value string) {
	if r == nil {
		return
	}
	if value == "" {
		value = "unknown"
	}
	k := headerKey{ev, value}
	s := r.headers.get(k)
	if s == nil {
		k.value = r.hdrValues.intern(k.value, r.maxValues())
		s = r.headers.getOrCreate(k)
	}
	s.n.Add(1)
}
