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
	dir = dir.norm()
	var s *histSeries
	es := r.detect.load()
	for i := range es {
		if e := &es[i]; e.k.dir == dir && e.k.reason == reason && e.k.protocol == protocol {
			s = e.v
			break
		}
	}
	if s == nil {
		k := detectKey{dir, protocol, reason}
		c := detectKey{dir, r.protocols.intern(protocol, r.maxValues()), r.reasons.intern(reason, r.maxValues())}
		s = r.detect.create(k, c, nil)
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
	dir = dir.norm()
	port = r.declaredPort(port)
	var s *counter
	es := r.decisions.load()
	for i := range es {
		if e := &es[i]; e.k.dir == dir && e.k.port == port && e.k.action == action {
			s = e.v
			break
		}
	}
	if s == nil {
		k := decisionKey{dir, action, port}
		c := decisionKey{dir, r.actions.intern(action, r.maxValues()), port}
		s = r.decisions.create(k, c, nil)
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
	dir = dir.norm()
	var s *handshakeSeries
	es := r.handshakes.load()
	for i := range es {
		if e := &es[i]; e.k.dir == dir && e.k.outcome == outcome && e.k.peer == peerID {
			s = e.v
			break
		}
	}
	if s == nil {
		k := handshakeKey{dir, outcome, peerID}
		c := handshakeKey{dir, r.outcomes.intern(outcome, r.maxValues()), peerID}
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
	if ev > HeaderRejected {
		ev = HeaderRejected
	}
	var s *counter
	es := r.headers.load()
	for i := range es {
		if e := &es[i]; e.k.event == ev && e.k.value == value {
			s = e.v
			break
		}
	}
	if s == nil {
		s = r.headers.create(headerKey{ev, value}, headerKey{ev, r.hdrValues.intern(value, r.maxValues())}, nil)
	}
	s.n.Add(1)
}

type muxKey struct {
	outcome  string
	protocol string
}

// ObserveMux counts one connection a one-port mux is done with
// (mux_connections_total): outcome says what it did ("routed", "unrouted",
// "refused", ...), protocol what was detected ("" is recorded as
// "unknown"). See MuxHook for the detect.Mux adapter.
func (r *Registry) ObserveMux(outcome, protocol string) {
	if r == nil {
		return
	}
	if protocol == "" {
		protocol = "unknown"
	}
	var s *counter
	es := r.mux.load()
	for i := range es {
		if e := &es[i]; e.k.outcome == outcome && e.k.protocol == protocol {
			s = e.v
			break
		}
	}
	if s == nil {
		c := muxKey{r.muxOut.intern(outcome, r.maxValues()), r.protocols.intern(protocol, r.maxValues())}
		s = r.mux.create(muxKey{outcome, protocol}, c, nil)
	}
	s.n.Add(1)
}
