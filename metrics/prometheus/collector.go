// Package prometheus exposes a metrics.Registry to Prometheus through
// client_golang: a Collector reads the registry's counters at scrape time
// and turns them into constant metrics, with HELP text and the names,
// types and labels listed in the metrics package documentation.
//
// It is the only package of sniff that imports client_golang. The package
// name clashes with client_golang's own; import it under another name, e.g.
//
//	import sniffprom "github.com/sniffsplice/sniff/metrics/prometheus"
package prometheus

import (
	"strconv"

	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/sniffsplice/sniff/metrics"
)

// Options configures a Collector. The zero value exports the metric names
// unprefixed, as Linkerd's proxy does.
type Options struct {
	// Namespace, if set, prefixes every metric name ("sniff" gives
	// sniff_tcp_open_total).
	Namespace string
	// ConstLabels are added to every metric (e.g. the pod name). Their
	// names must differ from the metrics' own label names; a clash makes
	// Gather fail with an error.
	ConstLabels prom.Labels
}

// Collector is a prometheus.Collector reading a metrics.Registry. Register
// it with a prometheus.Registerer; every scrape takes one Snapshot.
type Collector struct {
	reg *metrics.Registry

	tcpOpen, tcpOpenConns, tcpRead, tcpWrite, tcpClose *prom.Desc
	tcpDuration                                        *prom.Desc
	detect, detectDur                                  *prom.Desc
	decision                                           *prom.Desc
	handshake, handshakeDur                            *prom.Desc
	hdrWritten, hdrRead, hdrRejected                   *prom.Desc
	mux                                                *prom.Desc
	request, response, latency                         *prom.Desc
}

var _ prom.Collector = (*Collector)(nil)

// NewCollector returns a Collector for reg. A nil reg yields a collector
// that exports nothing but still describes its metrics.
func NewCollector(reg *metrics.Registry, o Options) *Collector {
	d := func(name, help string, labels ...string) *prom.Desc {
		return prom.NewDesc(prom.BuildFQName(o.Namespace, "", name), help, labels, o.ConstLabels)
	}
	conn := []string{"direction", "protocol", "tls"}
	resp := []string{"direction", "authority", "route", "classification", "status_code", "grpc_status"}
	return &Collector{
		reg:          reg,
		tcpOpen:      d("tcp_open_total", "Total count of opened connections.", conn...),
		tcpOpenConns: d("tcp_open_connections", "Number of currently open connections.", conn...),
		tcpRead:      d("tcp_read_bytes_total", "Total count of bytes read from peers.", conn...),
		tcpWrite:     d("tcp_write_bytes_total", "Total count of bytes written to peers.", conn...),
		tcpClose:     d("tcp_close_total", "Total count of closed connections, by errno (empty for a clean close).", append(conn, "errno")...),
		tcpDuration:  d("tcp_connection_duration_seconds", "Lifetime of closed connections (those closed with their splice statistics).", conn...),
		detect:       d("protocol_detect_total", "Total count of protocol detections, by detected protocol and reason.", "direction", "protocol", "reason"),
		detectDur:    d("protocol_detect_duration_seconds", "Time spent detecting a connection's protocol.", "direction", "protocol", "reason"),
		decision:     d("policy_decision_total", "Total count of port policy decisions, by action and port.", "direction", "action", "port"),
		handshake:    d("tls_handshake_total", "Total count of mTLS handshakes, by outcome (and peer identity when enabled).", "direction", "outcome", "peer_identity"),
		handshakeDur: d("tls_handshake_duration_seconds", "Duration of mTLS handshakes.", "direction", "outcome"),
		hdrWritten:   d("transport_header_written_total", "Total count of opaque transport headers written, by announced session protocol.", "session_protocol"),
		hdrRead:      d("transport_header_read_total", "Total count of opaque transport headers read and accepted, by announced session protocol.", "session_protocol"),
		hdrRejected:  d("transport_header_rejected_total", "Total count of opaque transport headers rejected, by reason.", "reason"),
		mux:          d("mux_connections_total", "Total count of connections a one-port mux handled, by outcome and detected protocol.", "outcome", "protocol"),
		request:      d("request_total", "Total count of HTTP requests.", "direction", "authority", "route"),
		response:     d("response_total", "Total count of HTTP responses, by classification, status code and gRPC status.", resp...),
		latency:      d("response_latency_seconds", "Time from an HTTP request to its response headers.", resp...),
	}
}

// Describe sends the descriptors of every metric the collector may export.
func (c *Collector) Describe(ch chan<- *prom.Desc) {
	for _, d := range []*prom.Desc{
		c.tcpOpen, c.tcpOpenConns, c.tcpRead, c.tcpWrite, c.tcpClose, c.tcpDuration,
		c.detect, c.detectDur, c.decision, c.handshake, c.handshakeDur,
		c.hdrWritten, c.hdrRead, c.hdrRejected, c.mux, c.request, c.response, c.latency,
	} {
		ch <- d
	}
}

// Collect takes a snapshot of the registry and sends it as const metrics.
func (c *Collector) Collect(ch chan<- prom.Metric) {
	s := c.reg.Snapshot()
	// A bad descriptor (e.g. a ConstLabels name that clashes with a label)
	// becomes an invalid metric, which the registry reports as a Gather
	// error, instead of a panic.
	send := func(d *prom.Desc, m prom.Metric, err error) {
		if err != nil {
			m = prom.NewInvalidMetric(d, err)
		}
		ch <- m
	}
	value := func(d *prom.Desc, t prom.ValueType, v float64, lv ...string) {
		m, err := prom.NewConstMetric(d, t, v, lv...)
		send(d, m, err)
	}
	counter := func(d *prom.Desc, v uint64, lv ...string) {
		value(d, prom.CounterValue, float64(v), lv...)
	}
	hist := func(d *prom.Desc, h metrics.Histogram, lv ...string) {
		b := make(map[float64]uint64, len(h.Bounds))
		for i, ub := range h.Bounds {
			b[ub] = h.Counts[i]
		}
		m, err := prom.NewConstHistogram(d, h.Count, h.Sum, b, lv...)
		send(d, m, err)
	}

	for _, t := range s.TCP {
		lv := []string{t.Direction.String(), t.Protocol, t.TLS.String()}
		counter(c.tcpOpen, t.Opened, lv...)
		value(c.tcpOpenConns, prom.GaugeValue, float64(t.Open), lv...)
		counter(c.tcpRead, t.ReadBytes, lv...)
		counter(c.tcpWrite, t.WriteBytes, lv...)
		for _, e := range t.Closed {
			counter(c.tcpClose, e.Count, append(lv[:3:3], e.Errno)...)
		}
		if t.Duration.Count > 0 {
			hist(c.tcpDuration, t.Duration, lv...)
		}
	}
	for _, d := range s.Detections {
		lv := []string{d.Direction.String(), d.Protocol, d.Reason}
		counter(c.detect, d.Count, lv...)
		hist(c.detectDur, d.Duration, lv...)
	}
	for _, d := range s.Decisions {
		counter(c.decision, d.Count, d.Direction.String(), d.Action, d.Port)
	}
	// The duration histogram is not split by peer identity: merge.
	type hk struct {
		dir     metrics.Direction
		outcome string
	}
	var order []hk
	merged := map[hk]*metrics.Histogram{}
	for _, h := range s.Handshakes {
		counter(c.handshake, h.Count, h.Direction.String(), h.Outcome, h.PeerIdentity)
		k := hk{h.Direction, h.Outcome}
		m := merged[k]
		if m == nil {
			m = new(metrics.Histogram)
			merged[k] = m
			order = append(order, k)
		}
		m.Merge(h.Duration)
	}
	for _, k := range order {
		hist(c.handshakeDur, *merged[k], k.dir.String(), k.outcome)
	}
	for _, h := range s.TransportHeaders {
		switch h.Event {
		case metrics.HeaderWritten:
			counter(c.hdrWritten, h.Count, h.SessionProtocol)
		case metrics.HeaderRead:
			counter(c.hdrRead, h.Count, h.SessionProtocol)
		case metrics.HeaderRejected:
			counter(c.hdrRejected, h.Count, h.Reason)
		}
	}
	for _, m := range s.Mux {
		counter(c.mux, m.Count, m.Outcome, m.Protocol)
	}
	for _, r := range s.Requests {
		counter(c.request, r.Count, r.Direction.String(), r.Authority, r.Route)
	}
	for _, r := range s.Responses {
		status := ""
		if r.StatusCode != 0 {
			status = strconv.Itoa(r.StatusCode)
		}
		lv := []string{r.Direction.String(), r.Authority, r.Route, r.Classification, status, r.GRPCStatus}
		counter(c.response, r.Count, lv...)
		hist(c.latency, r.Latency, lv...)
	}
}
