package metrics

import (
	"cmp"
	"slices"
	"strconv"
)

// Histogram is a snapshot of a duration histogram.
type Histogram struct {
	// Bounds are the bucket upper bounds in seconds, ascending (+Inf is
	// implied).
	Bounds []float64
	// Counts[i] is the number of observations <= Bounds[i] (cumulative).
	Counts []uint64
	// Count is the number of observations (the +Inf bucket).
	Count uint64
	// Sum is the sum of all observations, in seconds.
	Sum float64
}

// TCPSample is the state of one connection label set.
type TCPSample struct {
	ConnLabels
	Opened     uint64       // tcp_open_total
	Open       int64        // tcp_open_connections: opened minus closed
	ReadBytes  uint64       // tcp_read_bytes_total
	WriteBytes uint64       // tcp_write_bytes_total
	Closed     []ErrnoCount // tcp_close_total by errno, sorted, non-zero only
	// Duration holds the lifetimes of the connections closed with
	// Conn.CloseStats (tcp_connection_duration_seconds).
	Duration Histogram
}

// ClosedTotal returns the number of closed connections, whatever the errno.
func (s TCPSample) ClosedTotal() uint64 {
	var n uint64
	for _, c := range s.Closed {
		n += c.Count
	}
	return n
}

// ClosedWith returns the number of connections closed with errno.
func (s TCPSample) ClosedWith(errno string) uint64 {
	for _, c := range s.Closed {
		if c.Errno == errno {
			return c.Count
		}
	}
	return 0
}

// ErrnoCount is the number of connections closed with one errno ("" for a
// clean close).
type ErrnoCount struct {
	Errno string
	Count uint64
}

// DetectionSample counts the detections of one protocol and reason.
type DetectionSample struct {
	Direction Direction
	Protocol  string
	Reason    string
	Count     uint64    // protocol_detect_total
	Duration  Histogram // protocol_detect_duration_seconds
}

// DecisionSample counts policy decisions of one action and port label.
type DecisionSample struct {
	Direction Direction
	Action    string
	Port      string // a port of Config.Ports, or "other"
	Count     uint64
}

// HandshakeSample counts TLS handshakes of one outcome (and peer identity,
// when Config.PeerIdentities is set).
type HandshakeSample struct {
	Direction    Direction
	Outcome      string
	PeerIdentity string // "" unless Config.PeerIdentities
	Count        uint64
	// Duration holds the timed handshakes only (Count may be larger).
	Duration Histogram
}

// TransportHeaderSample counts transport header events of one kind.
type TransportHeaderSample struct {
	Event HeaderEvent
	// SessionProtocol is the announced session protocol ("none", "HTTP/1",
	// "HTTP/2") of a written or read header; "" for HeaderRejected.
	SessionProtocol string
	// Reason is why a header was rejected; "" unless HeaderRejected.
	Reason string
	Count  uint64
}

// MuxSample counts the connections a mux handled with one outcome and
// detected protocol.
type MuxSample struct {
	Outcome  string
	Protocol string
	Count    uint64
}

// RequestSample counts HTTP requests of one label set (request_total).
type RequestSample struct {
	Direction Direction
	Authority string
	Route     string
	Count     uint64
}

// ResponseSample counts HTTP responses of one label set (response_total)
// and holds their latency histogram (response_latency_seconds).
type ResponseSample struct {
	Direction Direction
	Authority string
	Route     string
	// StatusCode is the HTTP status; 0 when no response was received or
	// the connection was hijacked before one was written.
	StatusCode int
	// GRPCStatus is the grpc-status value ("0".."63" or "other"), "" for
	// a response without one.
	GRPCStatus string
	// Classification is "success" or "failure".
	Classification string
	Count          uint64
	Latency        Histogram
}

// Snapshot is a point-in-time copy of every counter of a Registry, sorted by
// labels. It is what exporters (metrics/prometheus) and tests read.
type Snapshot struct {
	TCP              []TCPSample
	Detections       []DetectionSample
	Decisions        []DecisionSample
	Handshakes       []HandshakeSample
	TransportHeaders []TransportHeaderSample
	Mux              []MuxSample
	Requests         []RequestSample
	Responses        []ResponseSample
}

// Snapshot copies the current value of every counter. Counters keep moving
// while it runs; each value is read atomically.
func (r *Registry) Snapshot() Snapshot {
	var s Snapshot
	if r == nil {
		return s
	}
	r.tcp.each(func(l ConnLabels, t *tcpSeries) {
		ts := TCPSample{ConnLabels: l}
		var closed uint64
		for i := range t.closed {
			if n := t.closed[i].Load(); n > 0 {
				ts.Closed = append(ts.Closed, ErrnoCount{Errno: r.errnos.name(i), Count: n})
				closed += n
			}
		}
		// Opens are read after closes: every close read has its open.
		ts.Opened = t.opened.Load()
		ts.Open = int64(ts.Opened - closed)
		ts.ReadBytes = t.read.Load()
		ts.WriteBytes = t.write.Load()
		ts.Duration = t.dur.snapshot(connDurationBuckets)
		slices.SortFunc(ts.Closed, func(a, b ErrnoCount) int { return cmp.Compare(a.Errno, b.Errno) })
		s.TCP = append(s.TCP, ts)
	})
	slices.SortFunc(s.TCP, func(a, b TCPSample) int {
		return cmp.Or(cmp.Compare(a.Direction, b.Direction), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.TLS, b.TLS))
	})

	r.detect.each(func(k detectKey, h *histSeries) {
		hs := h.snapshot(detectBuckets)
		s.Detections = append(s.Detections, DetectionSample{Direction: k.dir, Protocol: k.protocol, Reason: k.reason, Count: hs.Count, Duration: hs})
	})
	slices.SortFunc(s.Detections, func(a, b DetectionSample) int {
		return cmp.Or(cmp.Compare(a.Direction, b.Direction), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Reason, b.Reason))
	})

	r.decisions.each(func(k decisionKey, c *counter) {
		port := Other
		if k.port != 0 {
			port = strconv.Itoa(int(k.port))
		}
		s.Decisions = append(s.Decisions, DecisionSample{Direction: k.dir, Action: k.action, Port: port, Count: c.n.Load()})
	})
	slices.SortFunc(s.Decisions, func(a, b DecisionSample) int {
		return cmp.Or(cmp.Compare(a.Direction, b.Direction), cmp.Compare(a.Action, b.Action), cmp.Compare(a.Port, b.Port))
	})

	r.handshakes.each(func(k handshakeKey, h *handshakeSeries) {
		hs := h.h.snapshot(handshakeBuckets)
		s.Handshakes = append(s.Handshakes, HandshakeSample{Direction: k.dir, Outcome: k.outcome, PeerIdentity: k.peer, Count: h.n.n.Load(), Duration: hs})
	})
	slices.SortFunc(s.Handshakes, func(a, b HandshakeSample) int {
		return cmp.Or(cmp.Compare(a.Direction, b.Direction), cmp.Compare(a.Outcome, b.Outcome), cmp.Compare(a.PeerIdentity, b.PeerIdentity))
	})

	r.headers.each(func(k headerKey, c *counter) {
		ts := TransportHeaderSample{Event: k.event, Count: c.n.Load()}
		if k.event == HeaderRejected {
			ts.Reason = k.value
		} else {
			ts.SessionProtocol = k.value
		}
		s.TransportHeaders = append(s.TransportHeaders, ts)
	})
	slices.SortFunc(s.TransportHeaders, func(a, b TransportHeaderSample) int {
		return cmp.Or(cmp.Compare(a.Event, b.Event), cmp.Compare(a.SessionProtocol, b.SessionProtocol), cmp.Compare(a.Reason, b.Reason))
	})

	r.mux.each(func(k muxKey, c *counter) {
		s.Mux = append(s.Mux, MuxSample{Outcome: k.outcome, Protocol: k.protocol, Count: c.n.Load()})
	})
	slices.SortFunc(s.Mux, func(a, b MuxSample) int {
		return cmp.Or(cmp.Compare(a.Outcome, b.Outcome), cmp.Compare(a.Protocol, b.Protocol))
	})

	r.httpReqs.each(func(k httpReqKey, c *counter) {
		s.Requests = append(s.Requests, RequestSample{Direction: k.dir, Authority: k.authority, Route: k.route, Count: c.n.Load()})
	})
	slices.SortFunc(s.Requests, func(a, b RequestSample) int {
		return cmp.Or(cmp.Compare(a.Direction, b.Direction), cmp.Compare(a.Authority, b.Authority), cmp.Compare(a.Route, b.Route))
	})

	r.httpResps.each(func(k httpRespKey, h *histSeries) {
		hs := h.snapshot(latencyBuckets)
		s.Responses = append(s.Responses, ResponseSample{
			Direction: k.dir, Authority: k.authority, Route: k.route,
			StatusCode: int(k.status), GRPCStatus: grpcLabel(k.grpc),
			Classification: classLabel(k.failure), Count: hs.Count, Latency: hs,
		})
	})
	slices.SortFunc(s.Responses, func(a, b ResponseSample) int {
		return cmp.Or(cmp.Compare(a.Direction, b.Direction), cmp.Compare(a.Authority, b.Authority),
			cmp.Compare(a.Route, b.Route), cmp.Compare(a.StatusCode, b.StatusCode),
			cmp.Compare(a.GRPCStatus, b.GRPCStatus), cmp.Compare(a.Classification, b.Classification))
	})
	return s
}

// TCPFor returns the sample of one label set (zero counts if none).
func (s Snapshot) TCPFor(l ConnLabels) TCPSample {
	if l.Protocol == "" {
		l.Protocol = "unknown"
	}
	for _, t := range s.TCP {
		if t.ConnLabels == l {
			return t
		}
	}
	return TCPSample{ConnLabels: l}
}

// DetectionCount returns how many detections of protocol ended with reason.
func (s Snapshot) DetectionCount(dir Direction, protocol, reason string) uint64 {
	for _, d := range s.Detections {
		if d.Direction == dir && d.Protocol == protocol && d.Reason == reason {
			return d.Count
		}
	}
	return 0
}

// ResponseCount returns the number of responses with the given status code
// and grpc-status label ("" for none), summed over authorities and routes.
func (s Snapshot) ResponseCount(dir Direction, statusCode int, grpcStatus string) uint64 {
	var n uint64
	for _, r := range s.Responses {
		if r.Direction == dir && r.StatusCode == statusCode && r.GRPCStatus == grpcStatus {
			n += r.Count
		}
	}
	return n
}

// RequestCount returns the number of requests in direction dir, summed over
// authorities and routes.
func (s Snapshot) RequestCount(dir Direction) uint64 {
	var n uint64
	for _, r := range s.Requests {
		if r.Direction == dir {
			n += r.Count
		}
	}
	return n
}
