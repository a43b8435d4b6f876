package metrics

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/splice"
)

func TestConnCounters(t *testing.T) {
	var r Registry // zero value is usable
	l := ConnLabels{Direction: opaque.Inbound, Protocol: "HTTP/1", TLS: TLSTrue}
	a := r.OpenConn(l)
	b := r.OpenConn(l)
	a.AddRead(100)
	a.AddWritten(7)
	b.AddRead(1)
	b.AddWritten(-5) // ignored
	s := r.Snapshot()
	in := []string{"direction", "inbound", "protocol", "HTTP/1", "tls", "true"}
	assert.Equal(t, 2.0, s.Value("tcp_open_total", in...))
	assert.Equal(t, 2.0, s.Value("tcp_open_connections", in...))
	assert.Equal(t, 101.0, s.Value("tcp_read_bytes_total", in...))
	assert.Equal(t, 7.0, s.Value("tcp_write_bytes_total", in...))
	assert.Zero(t, s.Value("tcp_close_total", in...))

	a.End(splice.Stats{})
	b.End(splice.Stats{Err: syscall.ECONNRESET})
	s = r.Snapshot()
	assert.Equal(t, 0.0, s.Value("tcp_open_connections", in...))
	assert.Equal(t, 2.0, s.Value("tcp_open_total", in...))
	assert.Equal(t, []string{`inbound HTTP/1 true "" = 1`, "inbound HTTP/1 true ECONNRESET = 1"}, Rows(s, "tcp_close_total"))
	assert.Empty(t, Rows(s, "tcp_connection_duration_seconds"), "no lifetime without a duration")

	// Other label sets are separate series.
	o := ConnLabels{Direction: opaque.Outbound, Protocol: "", TLS: TLSOpaque}
	r.OpenConn(o).End(splice.Stats{Err: syscall.EPIPE, Duration: 2 * time.Second})
	s = r.Snapshot()
	assert.Equal(t, []string{"inbound HTTP/1 true = 2", "outbound unknown opaque = 1"}, Rows(s, "tcp_open_total"),
		"empty protocol is recorded as unknown")
	assert.Equal(t, 1.0, s.Value("tcp_close_total", "direction", "outbound", "errno", "EPIPE"))
	h := s.Histogram("tcp_connection_duration_seconds", "direction", "outbound")
	assert.Equal(t, uint64(1), h.Count)
	assert.InDelta(t, 2.0, h.Sum, 1e-9)
}

func TestNilRegistryIsOff(t *testing.T) {
	var r *Registry
	c := r.OpenConn(ConnLabels{Protocol: "x"})
	assert.Nil(t, c.Observer())
	c.AddRead(1)
	c.AddWritten(1)
	c.End(splice.Stats{Err: syscall.EPIPE})
	r.ObserveDetection(opaque.Inbound, "HTTP/1", "matched", time.Millisecond)
	r.ObserveDecision(opaque.Inbound, "opaque", 3306)
	r.ObserveHandshake(opaque.Inbound, OutcomeSuccess, "spiffe://x/y", time.Millisecond)
	r.ObserveTransportHeader(HeaderRejected, "malformed")
	assert.Equal(t, Snapshot{}, r.Snapshot())
}

func TestErrnoCap(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs 100 named errnos: splice.Errno names them all on Linux only")
	}
	r := New(Config{})
	l := ConnLabels{Protocol: "p"}
	for i := range 100 {
		r.OpenConn(l).End(splice.Stats{Err: syscall.Errno(i + 1)})
	}
	s := r.Snapshot()
	f, ok := s.Family("tcp_close_total")
	require.True(t, ok)
	assert.Equal(t, 100.0, s.Value("tcp_close_total"))
	names := map[string]bool{}
	for _, se := range f.Series {
		names[se.Labels[3]] = true
	}
	assert.Len(t, f.Series, maxErrnos-1, "30 named errnos + other: %v", names)
	assert.True(t, names[Other])
	assert.True(t, names["EPERM"], "errno 1 is named")
	assert.Equal(t, 1.0, s.Value("tcp_close_total", "errno", "EPERM"))
	assert.Zero(t, s.Value("tcp_open_connections"))
}

func TestProtocolCap(t *testing.T) {
	r := New(Config{MaxLabelValues: 3})
	for i := range 10 {
		r.OpenConn(ConnLabels{Protocol: fmt.Sprintf("p%d", i)}).End(splice.Stats{})
		r.ObserveDetection(opaque.Inbound, fmt.Sprintf("p%d", i), "matched", 0)
	}
	snap := r.Snapshot()
	assert.Len(t, Rows(snap, "tcp_open_total"), 4)
	assert.Equal(t, 7.0, snap.Value("tcp_open_total", "protocol", Other))
	assert.Equal(t, 7.0, snap.Value("protocol_detect_total", "direction", "inbound", "protocol", Other, "reason", "matched"))
	assert.Equal(t, 1.0, snap.Value("protocol_detect_total", "direction", "inbound", "protocol", "p0", "reason", "matched"))
}

func TestDetectionHistogram(t *testing.T) {
	var r Registry
	r.ObserveDetection(opaque.Outbound, "TLS", "matched", 50*time.Microsecond)
	r.ObserveDetection(opaque.Outbound, "TLS", "matched", 3*time.Millisecond)
	r.ObserveDetection(opaque.Outbound, "unknown", "timeout", time.Minute)
	snap := r.Snapshot()
	assert.Equal(t, []string{"outbound TLS matched = 2", "outbound unknown timeout = 1"}, Rows(snap, "protocol_detect_total"))
	f, _ := snap.Family("protocol_detect_duration_seconds")
	require.Len(t, f.Series, 2)
	d := f.Series[0].Histogram
	assert.Equal(t, uint64(2), d.Count)
	assert.Equal(t, detectBuckets, d.Bounds)
	assert.Equal(t, uint64(1), d.Counts[0], "50µs <= 100µs")
	assert.Equal(t, uint64(1), d.Counts[3], "1ms bucket")
	assert.Equal(t, uint64(2), d.Counts[5], "5ms bucket")
	assert.InDelta(t, 0.00305, d.Sum, 1e-9)
	to := f.Series[1]
	assert.Equal(t, "timeout", to.Labels[2])
	assert.Equal(t, uint64(0), to.Histogram.Counts[len(to.Histogram.Counts)-1], "1m is above the last bound")
	assert.Equal(t, uint64(1), to.Histogram.Count)
}

func TestDecisionPorts(t *testing.T) {
	r := New(Config{Ports: opaque.NewPortSet(3306, 443)})
	r.ObserveDecision(opaque.Inbound, "opaque", 3306)
	r.ObserveDecision(opaque.Inbound, "opaque", 3306)
	r.ObserveDecision(opaque.Inbound, "detect", 8080)
	r.ObserveDecision(opaque.Inbound, "detect", 9090)
	r.ObserveDecision(opaque.Outbound, "skip", 443)
	assert.Equal(t, []string{
		"inbound detect other = 2",
		"inbound opaque 3306 = 2",
		"outbound skip 443 = 1",
	}, Rows(r.Snapshot(), "policy_decision_total"))
}

func TestHandshakePeerIdentities(t *testing.T) {
	off := New(Config{})
	off.ObserveHandshake(opaque.Inbound, OutcomeSuccess, "spiffe://td/a", time.Millisecond)
	assert.Equal(t, []string{`inbound success "" = 1`}, Rows(off.Snapshot(), "tls_handshake_total"), "identities are opt-in")

	on := New(Config{PeerIdentities: true, MaxPeerIdentities: 2})
	for _, id := range []string{"spiffe://td/a", "spiffe://td/b", "spiffe://td/c", "spiffe://td/a"} {
		on.ObserveHandshake(opaque.Inbound, OutcomeSuccess, id, time.Millisecond)
	}
	on.ObserveHandshake(opaque.Outbound, "unauthorized", "", 2*time.Millisecond)
	on.ObserveHandshake(opaque.Outbound, "unauthorized", "", -1) // counted, not timed
	s := on.Snapshot()
	assert.Equal(t, []string{
		"inbound success other = 1", // the third identity is beyond the cap
		"inbound success spiffe://td/a = 2",
		"inbound success spiffe://td/b = 1",
		`outbound unauthorized "" = 2`,
	}, Rows(s, "tls_handshake_total"))
	// The duration histogram is not split by identity, and holds the timed handshakes only.
	assert.Equal(t, []string{"inbound success = 4", "outbound unauthorized = 1"}, Rows(s, "tls_handshake_duration_seconds"))
}

func TestTransportHeaders(t *testing.T) {
	var r Registry
	r.ObserveTransportHeader(HeaderWritten, "HTTP/2")
	r.ObserveTransportHeader(HeaderWritten, "none")
	r.ObserveTransportHeader(HeaderRead, "HTTP/2")
	r.ObserveTransportHeader(HeaderRejected, "malformed")
	r.ObserveTransportHeader(HeaderRejected, "malformed")
	r.ObserveTransportHeader(HeaderRejected, "")
	s := r.Snapshot()
	assert.Equal(t, []string{"HTTP/2 = 1", "none = 1"}, Rows(s, "transport_header_written_total"))
	assert.Equal(t, []string{"HTTP/2 = 1"}, Rows(s, "transport_header_read_total"))
	assert.Equal(t, []string{"malformed = 2", "unknown = 1"}, Rows(s, "transport_header_rejected_total"))
}

func TestConcurrentExact(t *testing.T) {
	var r Registry
	const workers, conns = 8, 500
	labels := []ConnLabels{{Protocol: "a"}, {Protocol: "b", TLS: TLSTrue}, {Direction: opaque.Outbound, Protocol: "a"}}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range conns {
				l := labels[(w+i)%len(labels)]
				c := r.OpenConn(l)
				c.AddRead(3)
				c.AddWritten(5)
				c.End(splice.Stats{Err: []error{nil, syscall.ECONNRESET}[i%2]})
				r.ObserveDetection(l.Direction, l.Protocol, "matched", time.Duration(i)*time.Microsecond)
				_ = r.Snapshot() // snapshots race with updates
			}
		})
	}
	wg.Wait()
	snap := r.Snapshot()
	assert.Equal(t, float64(workers*conns), snap.Value("tcp_open_total"))
	assert.Equal(t, float64(workers*conns), snap.Value("tcp_close_total"))
	assert.Equal(t, float64(3*workers*conns), snap.Value("tcp_read_bytes_total"))
	assert.Equal(t, float64(5*workers*conns), snap.Value("tcp_write_bytes_total"))
	assert.Equal(t, float64(workers*conns), snap.Value("protocol_detect_total"))
	assert.Equal(t, []string{"inbound a false = 0", "inbound b true = 0", "outbound a false = 0"}, Rows(snap, "tcp_open_connections"))
}

func TestZeroAllocUpdates(t *testing.T) {
	r := New(Config{Ports: opaque.NewPortSet(80)})
	l := ConnLabels{Direction: opaque.Inbound, Protocol: "HTTP/2", TLS: TLSTrue}
	// A clean end: an error's errno is named by splice.Errno, whose errors.As allocates 8 bytes.
	st := splice.Stats{Duration: time.Second}
	r.OpenConn(l).End(st) // create the series once
	r.ObserveDetection(opaque.Inbound, "HTTP/2", "matched", time.Millisecond)
	r.ObserveDecision(opaque.Inbound, "detect", 80)
	r.ObserveHandshake(opaque.Inbound, OutcomeSuccess, "", time.Millisecond)
	r.ObserveTransportHeader(HeaderRejected, "malformed")
	allocs := testing.AllocsPerRun(1000, func() {
		c := r.OpenConn(l)
		c.AddRead(10)
		c.AddWritten(10)
		c.Observer().Transferred(splice.AToB, 10)
		c.End(st)
		r.ObserveDetection(opaque.Inbound, "HTTP/2", "matched", time.Millisecond)
		r.ObserveDecision(opaque.Inbound, "detect", 80)
		r.ObserveHandshake(opaque.Inbound, OutcomeSuccess, "", time.Millisecond)
		r.ObserveTransportHeader(HeaderRejected, "malformed")
	})
	assert.Zero(t, allocs)
}

func TestHistogramMerge(t *testing.T) {
	var h histSeries
	h.observe(handshakeBounds, time.Millisecond)
	a := h.snapshot(handshakeBuckets)
	var m Histogram
	m.merge(a)
	m.merge(a)
	assert.Equal(t, uint64(2), m.Count)
	assert.Equal(t, uint64(2), m.Counts[1])
	assert.Equal(t, uint64(0), m.Counts[0])
	assert.InDelta(t, 0.002, m.Sum, 1e-12)
}

// TestFullCapsTakeNoLock: once a label cap is full, a new value is counted
// as Other without taking the set's lock (an HTTP authority label beyond
// its cap would otherwise lock once per request).
func TestFullCapsTakeNoLock(t *testing.T) {
	var set cappedSet
	require.Equal(t, "a", set.intern("a", 1))
	var tbl errnoTable
	for i := range maxErrnos - 2 {
		require.Equal(t, i+1, tbl.index(fmt.Sprintf("E%d", i)))
	}
	set.mu.Lock()
	defer set.mu.Unlock()
	tbl.mu.Lock()
	defer tbl.mu.Unlock()
	done := make(chan struct{})
	var v string
	var i int
	go func() {
		defer close(done)
		v, i = set.intern("b", 1), tbl.index("ENEW")
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a value beyond a full cap waited for the lock")
	}
	assert.Equal(t, Other, v)
	assert.Equal(t, maxErrnos-1, i)
}

// TestDirectionOutOfRange: every entry point records a direction other than Outbound as Inbound,
// and Outbound as itself.
func TestDirectionOutOfRange(t *testing.T) {
	for _, tc := range []struct {
		in   opaque.Direction
		want string
	}{{opaque.Direction(7), "inbound"}, {opaque.Outbound, "outbound"}} {
		r := New(Config{})
		r.OpenConn(ConnLabels{Direction: tc.in, Protocol: "p"}).End(splice.Stats{})
		r.ObserveDetection(tc.in, "HTTP/1", "matched", time.Millisecond)
		r.ObserveDecision(tc.in, "opaque", 3306)
		r.ObserveHandshake(tc.in, OutcomeSuccess, "", time.Millisecond)
		r.ObserveHTTPError(tc.in, 400, time.Millisecond)
		r.HTTPHandler(http.NotFoundHandler(), HTTPOptions{Direction: tc.in}).
			ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
		s := r.Snapshot()
		for _, name := range []string{"tcp_open_total", "protocol_detect_total", "policy_decision_total",
			"tls_handshake_total", "request_total", "response_total"} {
			f, _ := s.Family(name)
			require.NotEmpty(t, f.Series, name)
			for _, se := range f.Series {
				assert.Equal(t, tc.want, se.Labels[0], name)
			}
			assert.Equal(t, s.Value(name), s.Value(name, "direction", tc.want), name)
		}
	}
}
