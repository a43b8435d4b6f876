package prometheus

import (
	"strings"
	"syscall"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/splice"
)

// populated returns a registry with one value in every family.
func populated() *metrics.Registry {
	r := metrics.New(metrics.Config{Ports: opaque.NewPortSet(3306), PeerIdentities: true})
	in := metrics.ConnLabels{Direction: opaque.Inbound, Protocol: "HTTP/1", TLS: metrics.TLSTrue}
	a := r.OpenConn(in)
	a.AddRead(120)
	a.AddWritten(4096)
	a.End(splice.Stats{Duration: 3 * time.Second})
	b := r.OpenConn(in)
	b.AddRead(3)
	b.End(splice.Stats{Err: syscall.ECONNRESET})
	r.OpenConn(in) // still open
	r.ObserveDetection(opaque.Inbound, "HTTP/1", "matched", 300*time.Microsecond)
	r.ObserveDecision(opaque.Inbound, "opaque", 3306)
	r.ObserveDecision(opaque.Inbound, "detect", 8080)
	r.ObserveHandshake(opaque.Inbound, metrics.OutcomeSuccess, "spiffe://td/ns/a", 2*time.Millisecond)
	r.ObserveHandshake(opaque.Inbound, metrics.OutcomeSuccess, "spiffe://td/ns/b", 20*time.Millisecond)
	r.ObserveTransportHeader(metrics.HeaderWritten, "HTTP/2")
	r.ObserveTransportHeader(metrics.HeaderRejected, "malformed")
	r.ObserveMux("routed", "HTTP/1")
	return r
}

func TestCollectAndCompare(t *testing.T) {
	c := NewCollector(populated(), Options{})
	const want = `
# HELP tcp_open_total Total count of opened connections.
# TYPE tcp_open_total counter
tcp_open_total{direction="inbound",protocol="HTTP/1",tls="true"} 3
# HELP tcp_open_connections Number of currently open connections.
# TYPE tcp_open_connections gauge
tcp_open_connections{direction="inbound",protocol="HTTP/1",tls="true"} 1
# HELP tcp_read_bytes_total Total count of bytes read from peers.
# TYPE tcp_read_bytes_total counter
tcp_read_bytes_total{direction="inbound",protocol="HTTP/1",tls="true"} 123
# HELP tcp_write_bytes_total Total count of bytes written to peers.
# TYPE tcp_write_bytes_total counter
tcp_write_bytes_total{direction="inbound",protocol="HTTP/1",tls="true"} 4096
# HELP tcp_close_total Total count of closed connections, by errno (empty for a clean close).
# TYPE tcp_close_total counter
tcp_close_total{direction="inbound",errno="",protocol="HTTP/1",tls="true"} 1
tcp_close_total{direction="inbound",errno="ECONNRESET",protocol="HTTP/1",tls="true"} 1
# HELP protocol_detect_total Total count of protocol detections, by detected protocol and reason.
# TYPE protocol_detect_total counter
protocol_detect_total{direction="inbound",protocol="HTTP/1",reason="matched"} 1
# HELP policy_decision_total Total count of port policy decisions, by action and port.
# TYPE policy_decision_total counter
policy_decision_total{action="detect",direction="inbound",port="other"} 1
policy_decision_total{action="opaque",direction="inbound",port="3306"} 1
# HELP tls_handshake_total Total count of mTLS handshakes, by outcome (and peer identity when enabled).
# TYPE tls_handshake_total counter
tls_handshake_total{direction="inbound",outcome="success",peer_identity="spiffe://td/ns/a"} 1
tls_handshake_total{direction="inbound",outcome="success",peer_identity="spiffe://td/ns/b"} 1
# HELP tls_handshake_duration_seconds Duration of mTLS handshakes.
# TYPE tls_handshake_duration_seconds histogram
tls_handshake_duration_seconds_bucket{direction="inbound",outcome="success",le="0.0005"} 0
tls_handshake_duration_seconds_bucket{direction="inbound",outcome="success",le="0.001"} 0
tls_handshake_duration_seconds_bucket{direction="inbound",outcome="success",le="0.0025"} 1
tls_handshake_duration_seconds_bucket{direction="inbound",outcome="success",le="0.005"} 1
tls_handshake_duration_seconds_bucket{direction="inbound",outcome="success",le="0.01"} 1
tls_handshake_duration_seconds_bucket{direction="inbound",outcome="success",le="0.025"} 2
tls_handshake_duration_seconds_bucket{direction="inbound",outcome="success",le="0.05"} 2
tls_handshake_duration_seconds_bucket{direction="inbound",outcome="success",le="0.1"} 2
tls_handshake_duration_seconds_bucket{direction="inbound",outcome="success",le="0.25"} 2
tls_handshake_duration_seconds_bucket{direction="inbound",outcome="success",le="0.5"} 2
tls_handshake_duration_seconds_bucket{direction="inbound",outcome="success",le="1"} 2
tls_handshake_duration_seconds_bucket{direction="inbound",outcome="success",le="2.5"} 2
tls_handshake_duration_seconds_bucket{direction="inbound",outcome="success",le="5"} 2
tls_handshake_duration_seconds_bucket{direction="inbound",outcome="success",le="10"} 2
tls_handshake_duration_seconds_bucket{direction="inbound",outcome="success",le="+Inf"} 2
tls_handshake_duration_seconds_sum{direction="inbound",outcome="success"} 0.022
tls_handshake_duration_seconds_count{direction="inbound",outcome="success"} 2
# HELP transport_header_written_total Total count of opaque transport headers written, by announced session protocol.
# TYPE transport_header_written_total counter
transport_header_written_total{session_protocol="HTTP/2"} 1
# HELP transport_header_rejected_total Total count of opaque transport headers rejected, by reason.
# TYPE transport_header_rejected_total counter
transport_header_rejected_total{reason="malformed"} 1
# HELP mux_connections_total Total count of connections a one-port mux handled, by outcome and detected protocol.
# TYPE mux_connections_total counter
mux_connections_total{outcome="routed",protocol="HTTP/1"} 1
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want),
		"tcp_open_total", "tcp_open_connections", "tcp_read_bytes_total", "tcp_write_bytes_total",
		"tcp_close_total", "protocol_detect_total", "policy_decision_total", "tls_handshake_total",
		"tls_handshake_duration_seconds", "transport_header_written_total", "transport_header_rejected_total",
		"mux_connections_total"))

	// Families with no sample yet are not exported.
	assert.Equal(t, 0, testutil.CollectAndCount(c, "transport_header_read_total", "request_total"))
	// protocol_detect_duration_seconds: one histogram series.
	assert.Equal(t, 1, testutil.CollectAndCount(c, "protocol_detect_duration_seconds"))
	// tcp_connection_duration_seconds: the one connection ended with a duration.
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(`
# HELP tcp_connection_duration_seconds Lifetime of closed connections (those closed with their splice statistics).
# TYPE tcp_connection_duration_seconds histogram
tcp_connection_duration_seconds_bucket{direction="inbound",protocol="HTTP/1",tls="true",le="0.001"} 0
tcp_connection_duration_seconds_bucket{direction="inbound",protocol="HTTP/1",tls="true",le="0.005"} 0
tcp_connection_duration_seconds_bucket{direction="inbound",protocol="HTTP/1",tls="true",le="0.01"} 0
tcp_connection_duration_seconds_bucket{direction="inbound",protocol="HTTP/1",tls="true",le="0.05"} 0
tcp_connection_duration_seconds_bucket{direction="inbound",protocol="HTTP/1",tls="true",le="0.1"} 0
tcp_connection_duration_seconds_bucket{direction="inbound",protocol="HTTP/1",tls="true",le="0.5"} 0
tcp_connection_duration_seconds_bucket{direction="inbound",protocol="HTTP/1",tls="true",le="1"} 0
tcp_connection_duration_seconds_bucket{direction="inbound",protocol="HTTP/1",tls="true",le="5"} 1
tcp_connection_duration_seconds_bucket{direction="inbound",protocol="HTTP/1",tls="true",le="10"} 1
tcp_connection_duration_seconds_bucket{direction="inbound",protocol="HTTP/1",tls="true",le="30"} 1
tcp_connection_duration_seconds_bucket{direction="inbound",protocol="HTTP/1",tls="true",le="60"} 1
tcp_connection_duration_seconds_bucket{direction="inbound",protocol="HTTP/1",tls="true",le="300"} 1
tcp_connection_duration_seconds_bucket{direction="inbound",protocol="HTTP/1",tls="true",le="900"} 1
tcp_connection_duration_seconds_bucket{direction="inbound",protocol="HTTP/1",tls="true",le="3600"} 1
tcp_connection_duration_seconds_bucket{direction="inbound",protocol="HTTP/1",tls="true",le="+Inf"} 1
tcp_connection_duration_seconds_sum{direction="inbound",protocol="HTTP/1",tls="true"} 3
tcp_connection_duration_seconds_count{direction="inbound",protocol="HTTP/1",tls="true"} 1
`), "tcp_connection_duration_seconds"))
}

func TestCollectAndLint(t *testing.T) {
	r := populated()
	r.ObserveTransportHeader(metrics.HeaderRead, "none")
	c := NewCollector(r, Options{})
	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

func TestRegistersWithNamespace(t *testing.T) {
	reg := prom.NewPedanticRegistry()
	require.NoError(t, reg.Register(NewCollector(populated(), Options{Namespace: "sniff", ConstLabels: prom.Labels{"pod": "p1"}})))
	n, err := testutil.GatherAndCount(reg, "sniff_tcp_open_total")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		assert.True(t, strings.HasPrefix(mf.GetName(), "sniff_"), mf.GetName())
		for _, m := range mf.GetMetric() {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || (lp.GetName() == "pod" && lp.GetValue() == "p1")
			}
			assert.True(t, found, "const label on %s", mf.GetName())
		}
	}
}

func TestNilRegistry(t *testing.T) {
	c := NewCollector(nil, Options{})
	assert.Equal(t, 0, testutil.CollectAndCount(c))
	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

func TestConstLabelClashIsAnError(t *testing.T) {
	reg := prom.NewRegistry()
	// Registration checks descriptors and refuses the clash up front.
	err := reg.Register(NewCollector(populated(), Options{ConstLabels: prom.Labels{"direction": "x"}}))
	require.Error(t, err)
	// Collecting directly does not panic either: the metric is invalid.
	c := NewCollector(populated(), Options{ConstLabels: prom.Labels{"direction": "x"}})
	ch := make(chan prom.Metric, 256)
	assert.NotPanics(t, func() { c.Collect(ch) })
	close(ch)
	var bad int
	for m := range ch {
		var out dto.Metric
		if m.Write(&out) != nil {
			bad++
		}
	}
	assert.Positive(t, bad)
}
