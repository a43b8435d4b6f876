package metrics

import (
	"slices"
	"strconv"

	"github.com/sniffsplice/sniff/detect"
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
	values func(dst []string, k K) []string // appends k's values, in the order of names
}

// emit adds the series of key k to w, with value v and, for a histogram, h.
func (ls labelSet[K]) emit(w *familyWriter, k K, v float64, h *Histogram) {
	w.buf = ls.values(w.buf, k)
	w.add(v, h)
}

var (
	connLabels = labelSet[ConnLabels]{
		names: []string{"direction", "protocol", "tls"},
		values: func(dst []string, l ConnLabels) []string {
			return append(dst, l.Direction.String(), l.Protocol, l.TLS.String())
		},
	}
	detectLabels = labelSet[detectKey]{
		names:  []string{"direction", "protocol", "reason"},
		values: func(dst []string, k detectKey) []string { return append(dst, k.dir.String(), k.protocol, k.reason) },
	}
	decisionLabels = labelSet[decisionKey]{
		names: []string{"direction", "action", "port"},
		values: func(dst []string, k decisionKey) []string {
			port := Other // 0: a port outside Config.Ports
			if k.port != 0 {
				port = strconv.Itoa(int(k.port))
			}
			return append(dst, k.dir.String(), k.action, port)
		},
	}
	// The duration histogram takes the first two (it is not split by peer identity).
	handshakeLabels = labelSet[handshakeKey]{
		names:  []string{"direction", "outcome", "peer_identity"},
		values: func(dst []string, k handshakeKey) []string { return append(dst, k.dir.String(), k.outcome, k.peer) },
	}
	muxLabels = labelSet[muxKey]{
		names:  []string{"outcome", "protocol"},
		values: func(dst []string, k muxKey) []string { return append(dst, k.outcome, k.protocol) },
	}
	requestLabels = labelSet[httpReqKey]{
		names:  []string{"direction", "authority", "route"},
		values: func(dst []string, k httpReqKey) []string { return append(dst, k.dir.String(), k.authority, k.route) },
	}
	responseLabels = labelSet[httpRespKey]{
		names: slices.Concat(requestLabels.names, []string{"classification", "status_code", "grpc_status"}),
		values: func(dst []string, k httpRespKey) []string {
			status := "" // no response
			if k.status != 0 {
				status = strconv.Itoa(int(k.status))
			}
			return append(requestLabels.values(dst, k.httpReqKey), classLabel(k.failure), status, grpcLabel(k.grpc))
		},
	}
)

// familyWriter collects the series of one family as they are read. Label values are appended to
// buf, one backing array for the family rather than a slice per series; add makes those appended
// since the last add the labels of a new series.
type familyWriter struct {
	buf    []string
	mark   int
	series []Series
}

// add adds a series with the labels appended since the last add, value v (a histogram's count) and,
// for a histogram, h.
func (w *familyWriter) add(v float64, h *Histogram) {
	se := Series{Labels: w.buf[w.mark:len(w.buf):len(w.buf)], Value: v}
	if h != nil {
		se.Histogram = *h
	}
	w.mark = len(w.buf)
	w.series = append(w.series, se)
}

// familyDecl declares one metric family: its name, kind, help and labels, and how its series are
// read from a Registry. Snapshot, and through it every exporter (metrics/prometheus), is driven by
// this table; doc.go lists the same families (TestDocTable checks it).
type familyDecl struct {
	name, help string
	kind       Kind
	labels     []string
	read       func(r *Registry, w *familyWriter)
}

func (f *familyDecl) desc() Desc {
	return Desc{Name: f.name, Kind: f.kind, Help: f.help, Labels: slices.Clone(f.labels)}
}

// headerFamily reads the transport headers of one event, labelled by their value.
func headerFamily(ev HeaderEvent) func(*Registry, *familyWriter) {
	return func(r *Registry, w *familyWriter) {
		r.headers.each(func(k headerKey, c *counter) {
			if k.event == ev {
				w.buf = append(w.buf, k.value)
				w.add(float64(c.n.Load()), nil)
			}
		})
	}
}

var families = [...]familyDecl{
	{
		name: "tcp_open_total", kind: KindCounter, labels: connLabels.names,
		help: "Total count of opened connections.",
		read: func(r *Registry, w *familyWriter) {
			r.tcp.each(func(l ConnLabels, s *tcpSeries) { connLabels.emit(w, l, float64(s.opened.Load()), nil) })
		},
	},
	{
		name: "tcp_open_connections", kind: KindGauge, labels: connLabels.names,
		help: "Number of currently open connections.",
		read: func(r *Registry, w *familyWriter) {
			r.tcp.each(func(l ConnLabels, s *tcpSeries) {
				var closed uint64
				for i := range s.closed {
					closed += s.closed[i].Load()
				}
				// Opens are read after closes: every close read has its open.
				connLabels.emit(w, l, float64(int64(s.opened.Load()-closed)), nil)
			})
		},
	},
	{
		name: "tcp_read_bytes_total", kind: KindCounter, labels: connLabels.names,
		help: "Total count of bytes read from peers.",
		read: func(r *Registry, w *familyWriter) {
			r.tcp.each(func(l ConnLabels, s *tcpSeries) { connLabels.emit(w, l, float64(s.read.Load()), nil) })
		},
	},
	{
		name: "tcp_write_bytes_total", kind: KindCounter, labels: connLabels.names,
		help: "Total count of bytes written to peers.",
		read: func(r *Registry, w *familyWriter) {
			r.tcp.each(func(l ConnLabels, s *tcpSeries) { connLabels.emit(w, l, float64(s.write.Load()), nil) })
		},
	},
	{
		name: "tcp_close_total", kind: KindCounter, labels: slices.Concat(connLabels.names, []string{"errno"}),
		help: "Total count of closed connections, by errno (empty for a clean close).",
		read: func(r *Registry, w *familyWriter) {
			r.tcp.each(func(l ConnLabels, s *tcpSeries) {
				for i := range s.closed {
					if n := s.closed[i].Load(); n > 0 {
						w.buf = append(connLabels.values(w.buf, l), r.errnos.name(i))
						w.add(float64(n), nil)
					}
				}
			})
		},
	},
	{
		name: "tcp_connection_duration_seconds", kind: KindHistogram, labels: connLabels.names,
		help: "Lifetime of closed connections (those closed with their splice statistics).",
		read: func(r *Registry, w *familyWriter) {
			r.tcp.each(func(l ConnLabels, s *tcpSeries) {
				if s.dur.count() > 0 { // connections ended without a duration have none
					h := s.dur.snapshot(connDurationBuckets)
					connLabels.emit(w, l, float64(h.Count), &h)
				}
			})
		},
	},
	{
		name: "protocol_detect_total", kind: KindCounter, labels: detectLabels.names,
		help: "Total count of protocol detections, by detected protocol and reason.",
		read: func(r *Registry, w *familyWriter) {
			r.detect.each(func(k detectKey, s *histSeries) { detectLabels.emit(w, k, float64(s.count()), nil) })
		},
	},
	{
		name: "protocol_detect_duration_seconds", kind: KindHistogram, labels: detectLabels.names,
		help: "Time spent detecting a connection's protocol.",
		read: func(r *Registry, w *familyWriter) {
			r.detect.each(func(k detectKey, s *histSeries) {
				h := s.snapshot(detectBuckets)
				detectLabels.emit(w, k, float64(h.Count), &h)
			})
		},
	},
	{
		name: "policy_decision_total", kind: KindCounter, labels: decisionLabels.names,
		help: "Total count of port policy decisions, by action and port.",
		read: func(r *Registry, w *familyWriter) {
			r.decisions.each(func(k decisionKey, c *counter) { decisionLabels.emit(w, k, float64(c.n.Load()), nil) })
		},
	},
	{
		name: "tls_handshake_total", kind: KindCounter, labels: handshakeLabels.names,
		help: "Total count of mTLS handshakes, by outcome (and peer identity when enabled).",
		read: func(r *Registry, w *familyWriter) {
			r.handshakes.each(func(k handshakeKey, s *handshakeSeries) {
				handshakeLabels.emit(w, k, float64(s.n.n.Load()), nil)
			})
		},
	},
	{
		name: "tls_handshake_duration_seconds", kind: KindHistogram, labels: handshakeLabels.names[:2],
		help: "Duration of mTLS handshakes.",
		read: func(r *Registry, w *familyWriter) {
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
				n := len(w.buf) // the first two labels: direction, outcome
				w.buf = handshakeLabels.values(w.buf, handshakeKey{dir: k.dir, outcome: k.outcome})[:n+2]
				w.add(float64(merged[k].Count), merged[k])
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
		read: func(r *Registry, w *familyWriter) {
			r.mux.each(func(k muxKey, c *counter) { muxLabels.emit(w, k, float64(c.n.Load()), nil) })
		},
	},
	{
		name: "waiter_waiting_connections", kind: KindGauge, labels: []string{"waiter"},
		help: "Number of connections waiting in a detect.Waiter now, without a goroutine each.",
		read: waiterFamily(func(st detect.WaitStats) float64 { return float64(st.Waiting) }),
	},
	{
		name: "waiter_connections_total", kind: KindCounter, labels: []string{"waiter", "outcome"},
		help: "Total count of waits in a detect.Waiter ended, by outcome.",
		read: func(r *Registry, w *familyWriter) {
			r.eachWaiter(func(name string, st detect.WaitStats) {
				for _, o := range waiterOutcomes {
					w.buf = append(w.buf, name, o.name)
					w.add(float64(o.count(st)), nil)
				}
			})
		},
	},
	{
		name: "waiter_detached_total", kind: KindCounter, labels: []string{"waiter"},
		help: "Total count of waits in a detect.Waiter that went on as a bare descriptor.",
		read: waiterFamily(func(st detect.WaitStats) float64 { return float64(st.Detached) }),
	},
	{
		name: "waiter_reduced_total", kind: KindCounter, labels: []string{"waiter"},
		help: "Total count of waits in a detect.Waiter whose timeout was shortened under pressure.",
		read: waiterFamily(func(st detect.WaitStats) float64 { return float64(st.Reduced) }),
	},
	{
		name: "request_total", kind: KindCounter, labels: requestLabels.names,
		help: "Total count of HTTP requests.",
		read: func(r *Registry, w *familyWriter) {
			r.httpReqs.each(func(k httpReqKey, c *counter) { requestLabels.emit(w, k, float64(c.n.Load()), nil) })
		},
	},
	{
		name: "response_total", kind: KindCounter, labels: responseLabels.names,
		help: "Total count of HTTP responses, by classification, status code and gRPC status.",
		read: func(r *Registry, w *familyWriter) {
			r.httpResps.each(func(k httpRespKey, s *histSeries) { responseLabels.emit(w, k, float64(s.count()), nil) })
		},
	},
	{
		name: "response_latency_seconds", kind: KindHistogram, labels: responseLabels.names,
		help: "Time from an HTTP request to its response headers.",
		read: func(r *Registry, w *familyWriter) {
			r.httpResps.each(func(k httpRespKey, s *histSeries) {
				h := s.snapshot(latencyBuckets)
				responseLabels.emit(w, k, float64(h.Count), &h)
			})
		},
	},
}
