package metrics

import (
	"slices"
	"strconv"

	"github.com/sniffsplice/sniff/opaque"
)

// Kind is the type of a metric family.
type Kind uint8

// The kinds of metric families.
const (
	KindCounter   Kind = iota // a count that only grows
	KindGauge                 // a value that goes up and down
	KindHistogram             // a distribution of durations, in seconds
)

// String returns "counter", "gauge" or "histogram".
func (k Kind) String() string {
	switch k {
	case KindCounter:
		return "counter"
	case KindGauge:
		return "gauge"
	case KindHistogram:
		return "histogram"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Desc describes one metric family: what an exporter declares before any sample.
type Desc struct {
	Name   string // e.g. "tcp_open_total"
	Kind   Kind
	Help   string   // one sentence
	Labels []string // label names, in the order of Series.Labels
}

// Descs returns the description of every metric family of the package, in the order of
// Snapshot.Families.
func Descs() []Desc {
	out := make([]Desc, len(families))
	for i, f := range families {
		out[i] = f.desc()
	}
	return out
}

// A labelSet declares the labels of a series key once: their names and, for a key, their values in
// the same order. Every family keyed by it takes both from here, so a new label is a field of the
// key, a name and a value here, and the caller that sets it.
type labelSet[K any] struct {
	names  []string
	values func(K) []string
}

var (
	connLabels = labelSet[ConnLabels]{
		names:  []string{"direction", "protocol", "tls"},
		values: func(l ConnLabels) []string { return []string{l.Direction.String(), l.Protocol, l.TLS.String()} },
	}
	detectLabels = labelSet[detectKey]{
		names:  []string{"direction", "protocol", "reason"},
		values: func(k detectKey) []string { return []string{k.dir.String(), k.protocol, k.reason} },
	}
	decisionLabels = labelSet[decisionKey]{
		names: []string{"direction", "action", "port"},
		values: func(k decisionKey) []string {
			port := Other // 0: a port outside Config.Ports
			if k.port != 0 {
				port = strconv.Itoa(int(k.port))
			}
			return []string{k.dir.String(), k.action, port}
		},
	}
	// The duration histogram takes the first two (it is not split by peer identity).
	handshakeLabels = labelSet[handshakeKey]{
		names:  []string{"direction", "outcome", "peer_identity"},
		values: func(k handshakeKey) []string { return []string{k.dir.String(), k.outcome, k.peer} },
	}
	muxLabels = labelSet[muxKey]{
		names:  []string{"outcome", "protocol"},
		values: func(k muxKey) []string { return []string{k.outcome, k.protocol} },
	}
	requestLabels = labelSet[httpReqKey]{
		names:  []string{"direction", "authority", "route"},
		values: func(k httpReqKey) []string { return []string{k.dir.String(), k.authority, k.route} },
	}
	responseLabels = labelSet[httpRespKey]{
		names: slices.Concat(requestLabels.names, []string{"classification", "status_code", "grpc_status"}),
		values: func(k httpRespKey) []string {
			status := "" // no response
			if k.status != 0 {
				status = strconv.Itoa(int(k.status))
			}
			return append(requestLabels.values(k.httpReqKey), classLabel(k.failure), status, grpcLabel(k.grpc))
		},
	}
)

// emitFunc receives one series of a family as it is read: its label values, its value (a
// histogram's count) and, for a histogram, the histogram.
type emitFunc func(labels []string, v float64, h *Histogram)

// familyDecl declares one metric family: its name, kind, help and labels, and how its series are
// read from a Registry. Snapshot, and through it every exporter (metrics/prometheus), is driven by
// this table; doc.go lists the same families (TestDocTable checks it).
type familyDecl struct {
	name, help string
	kind       Kind
	labels     []string
	read       func(r *Registry, emit emitFunc)
}

func (f *familyDecl) desc() Desc {
	return Desc{Name: f.name, Kind: f.kind, Help: f.help, Labels: slices.Clone(f.labels)}
}

// headerFamily reads the transport headers of one event, labelled by their value.
func headerFamily(ev HeaderEvent) func(*Registry, emitFunc) {
	return func(r *Registry, emit emitFunc) {
		r.headers.each(func(k headerKey, c *counter) {
			if k.event == ev {
				emit([]string{k.value}, float64(c.n.Load()), nil)
			}
		})
	}
}

var families = [...]familyDecl{
	{
		name: "tcp_open_total", kind: KindCounter, labels: connLabels.names,
		help: "Total count of opened connections.",
		read: func(r *Registry, emit emitFunc) {
			r.tcp.each(func(l ConnLabels, s *tcpSeries) { emit(connLabels.values(l), float64(s.opened.Load()), nil) })
		},
	},
	{
		name: "tcp_open_connections", kind: KindGauge, labels: connLabels.names,
		help: "Number of currently open connections.",
		read: func(r *Registry, emit emitFunc) {
			r.tcp.each(func(l ConnLabels, s *tcpSeries) {
				var closed uint64
				for i := range s.closed {
					closed += s.closed[i].Load()
				}
				// Opens are read after closes: every close read has its open.
				emit(connLabels.values(l), float64(int64(s.opened.Load()-closed)), nil)
			})
		},
	},
	{
		name: "tcp_read_bytes_total", kind: KindCounter, labels: connLabels.names,
		help: "Total count of bytes read from peers.",
		read: func(r *Registry, emit emitFunc) {
			r.tcp.each(func(l ConnLabels, s *tcpSeries) { emit(connLabels.values(l), float64(s.read.Load()), nil) })
		},
	},
	{
		name: "tcp_write_bytes_total", kind: KindCounter, labels: connLabels.names,
		help: "Total count of bytes written to peers.",
		read: func(r *Registry, emit emitFunc) {
			r.tcp.each(func(l ConnLabels, s *tcpSeries) { emit(connLabels.values(l), float64(s.write.Load()), nil) })
		},
	},
	{
		name: "tcp_close_total", kind: KindCounter, labels: slices.Concat(connLabels.names, []string{"errno"}),
		help: "Total count of closed connections, by errno (empty for a clean close).",
		read: func(r *Registry, emit emitFunc) {
			r.tcp.each(func(l ConnLabels, s *tcpSeries) {
				for i := range s.closed {
					if n := s.closed[i].Load(); n > 0 {
						emit(append(connLabels.values(l), r.errnos.name(i)), float64(n), nil)
					}
				}
			})
		},
	},
	{
		name: "tcp_connection_duration_seconds", kind: KindHistogram, labels: connLabels.names,
		help: "Lifetime of closed connections (those closed with their splice statistics).",
		read: func(r *Registry, emit emitFunc) {
			r.tcp.each(func(l ConnLabels, s *tcpSeries) {
				if h := s.dur.snapshot(connDurationBuckets); h.Count > 0 {
					emit(connLabels.values(l), float64(h.Count), &h)
				}
			})
		},
	},
	{
		name: "protocol_detect_total", kind: KindCounter, labels: detectLabels.names,
		help: "Total count of protocol detections, by detected protocol and reason.",
		read: func(r *Registry, emit emitFunc) {
			r.detect.each(func(k detectKey, s *histSeries) { emit(detectLabels.values(k), float64(s.count()), nil) })
		},
	},
	{
		name: "protocol_detect_duration_seconds", kind: KindHistogram, labels: detectLabels.names,
		help: "Time spent detecting a connection's protocol.",
		read: func(r *Registry, emit emitFunc) {
			r.detect.each(func(k detectKey, s *histSeries) {
				h := s.snapshot(detectBuckets)
				emit(detectLabels.values(k), float64(h.Count), &h)
			})
		},
	},
	{
		name: "policy_decision_total", kind: KindCounter, labels: decisionLabels.names,
		help: "Total count of port policy decisions, by action and port.",
		read: func(r *Registry, emit emitFunc) {
			r.decisions.each(func(k decisionKey, c *counter) { emit(decisionLabels.values(k), float64(c.n.Load()), nil) })
		},
	},
	{
		name: "tls_handshake_total", kind: KindCounter, labels: handshakeLabels.names,
		help: "Total count of mTLS handshakes, by outcome (and peer identity when enabled).",
		read: func(r *Registry, emit emitFunc) {
			r.handshakes.each(func(k handshakeKey, s *handshakeSeries) {
				emit(handshakeLabels.values(k), float64(s.n.n.Load()), nil)
			})
		},
	},
	{
		name: "tls_handshake_duration_seconds", kind: KindHistogram, labels: handshakeLabels.names[:2],
		help: "Duration of mTLS handshakes.",
		read: func(r *Registry, emit emitFunc) {
			// Not split by peer identity: the series of one direction and outcome are merged.
			type key struct {
				dir     opaque.Direction
				outcome string
			}
			var order []key
			merged := map[key]*Histogram{}
			r.handshakes.each(func(k handshakeKey, s *handshakeSeries) {
				mk := key{k.dir, k.outcome}
				m := merged[mk]
				if m == nil {
					m = new(Histogram)
					merged[mk] = m
					order = append(order, mk)
				}
				m.merge(s.h.snapshot(handshakeBuckets))
			})
			for _, k := range order {
				emit(handshakeLabels.values(handshakeKey{dir: k.dir, outcome: k.outcome})[:2], float64(merged[k].Count), merged[k])
			}
		},
	},
	{
		name: "transport_header_written_total", kind: KindCounter, labels: []string{"session_protocol"},
		help: "Total count of opaque transport headers written, by announced session protocol.",
		read: headerFamily(HeaderWritten),
	},
	{
		name: "transport_header_read_total", kind: KindCounter, labels: []string{"session_protocol"},
		help: "Total count of opaque transport headers read and accepted, by announced session protocol.",
		read: headerFamily(HeaderRead),
	},
	{
		name: "transport_header_rejected_total", kind: KindCounter, labels: []string{"reason"},
		help: "Total count of opaque transport headers rejected, by reason.",
		read: headerFamily(HeaderRejected),
	},
	{
		name: "mux_connections_total", kind: KindCounter, labels: muxLabels.names,
		help: "Total count of connections a one-port mux handled, by outcome and detected protocol.",
		read: func(r *Registry, emit emitFunc) {
			r.mux.each(func(k muxKey, c *counter) { emit(muxLabels.values(k), float64(c.n.Load()), nil) })
		},
	},
	{
		name: "request_total", kind: KindCounter, labels: requestLabels.names,
		help: "Total count of HTTP requests.",
		read: func(r *Registry, emit emitFunc) {
			r.httpReqs.each(func(k httpReqKey, c *counter) { emit(requestLabels.values(k), float64(c.n.Load()), nil) })
		},
	},
	{
		name: "response_total", kind: KindCounter, labels: responseLabels.names,
		help: "Total count of HTTP responses, by classification, status code and gRPC status.",
		read: func(r *Registry, emit emitFunc) {
			r.httpResps.each(func(k httpRespKey, s *histSeries) { emit(responseLabels.values(k), float64(s.count()), nil) })
		},
	},
	{
		name: "response_latency_seconds", kind: KindHistogram, labels: responseLabels.names,
		help: "Time from an HTTP request to its response headers.",
		read: func(r *Registry, emit emitFunc) {
			r.httpResps.each(func(k httpRespKey, s *histSeries) {
				h := s.snapshot(latencyBuckets)
				emit(responseLabels.values(k), float64(h.Count), &h)
			})
		},
	},
}
