package metrics

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConnCounters(t *testing.T) {
	var r Registry // zero value is usable
	l := ConnLabels{Direction: Inbound, Protocol: "HTTP/1", TLS: TLSTrue}
	a := r.OpenConn(l)
	b := r.OpenConn(l)
	a.Read(100)
	a.Write(7)
	b.Read(1)
	b.Write(-5) // ignored
	s := r.Snapshot().TCPFor(l)
	assert.Equal(t, uint64(2), s.Opened)
	assert.Equal(t, int64(2), s.Open)
	assert.Equal(t, uint64(101), s.ReadBytes)
	assert.Equal(t, uint64(7), s.WriteBytes)
	assert.Zero(t, s.ClosedTotal())

	a.Close("")
	b.Close("ECONNRESET")
	s = r.Snapshot().TCPFor(l)
	assert.Equal(t, int64(0), s.Open)
	assert.Equal(t, uint64(2), s.Opened)
	assert.Equal(t, []ErrnoCount{{"", 1}, {"ECONNRESET", 1}}, s.Closed)
	assert.Equal(t, uint64(1), s.ClosedWith("ECONNRESET"))

	// Other label sets are separate series.
	o := ConnLabels{Direction: Outbound, Protocol: "", TLS: TLSOpaque}
	r.OpenConn(o).Close("EPIPE")
	snap := r.Snapshot()
	require.Len(t, snap.TCP, 2)
	assert.Equal(t, "unknown", snap.TCP[1].Protocol, "empty protocol is recorded as unknown")
	assert.Equal(t, uint64(1), snap.TCPFor(o).ClosedWith("EPIPE"))
}

func TestNilRegistryIsOff(t *testing.T) {
	var r *Registry
	c := r.OpenConn(ConnLabels{Protocol: "x"})
	assert.False(t, c.Valid())
	c.Read(1)
	c.Write(1)
	c.Close("EPIPE")
	r.ObserveDetection(Inbound, "HTTP/1", "matched", time.Millisecond)
	r.ObserveDecision(Inbound, "opaque", 3306)
	r.ObserveHandshake(Inbound, OutcomeSuccess, "spiffe://x/y", time.Millisecond)
	r.ObserveTransportHeader(HeaderRejected, "malformed")
	assert.Equal(t, Snapshot{}, r.Snapshot())
}

func TestErrnoCap(t *testing.T) {
	r := New(Config{})
	l := ConnLabels{Protocol: "p"}
	for i := range 100 {
		r.OpenConn(l).Close(fmt.Sprintf("E%d", i))
	}
	s := r.Snapshot().TCPFor(l)
	assert.Equal(t, uint64(100), s.ClosedTotal())
	assert.Len(t, s.Closed, maxErrnos-1, "30 named errnos + other")
	assert.Equal(t, uint64(100-(maxErrnos-2)), s.ClosedWith(Other))
	assert.Equal(t, uint64(1), s.ClosedWith("E0"))
	assert.Zero(t, s.Open)
}

func TestProtocolCap(t *testing.T) {
	r := New(Config{MaxLabelValues: 3})
	for i := range 10 {
		r.OpenConn(ConnLabels{Protocol: fmt.Sprintf("p%d", i)}).Close("")
		r.ObserveDetection(Inbound, fmt.Sprintf("p%d", i), "matched", 0)
	}
	snap := r.Snapshot()
	require.Len(t, snap.TCP, 4)
	assert.Equal(t, uint64(7), snap.TCPFor(ConnLabels{Protocol: Other}).Opened)
	assert.Equal(t, uint64(7), snap.DetectionCount(Inbound, Other, "matched"))
	assert.Equal(t, uint64(1), snap.DetectionCount(Inbound, "p0", "matched"))
}

func TestDetectionHistogram(t *testing.T) {
	var r Registry
	r.ObserveDetection(Outbound, "TLS", "matched", 50*time.Microsecond)
	r.ObserveDetection(Outbound, "TLS", "matched", 3*time.Millisecond)
	r.ObserveDetection(Outbound, "unknown", "timeout", time.Minute)
	snap := r.Snapshot()
	require.Len(t, snap.Detections, 2)
	d := snap.Detections[0]
	assert.Equal(t, "TLS", d.Protocol)
	assert.Equal(t, uint64(2), d.Count)
	assert.Equal(t, detectBuckets, d.Duration.Bounds)
	assert.Equal(t, uint64(1), d.Duration.Counts[0], "50µs <= 100µs")
	assert.Equal(t, uint64(1), d.Duration.Counts[3], "1ms bucket")
	assert.Equal(t, uint64(2), d.Duration.Counts[5], "5ms bucket")
	assert.InDelta(t, 0.00305, d.Duration.Sum, 1e-9)
	to := snap.Detections[1]
	assert.Equal(t, "timeout", to.Reason)
	assert.Equal(t, uint64(0), to.Duration.Counts[len(to.Duration.Counts)-1], "1m is above the last bound")
	assert.Equal(t, uint64(1), to.Duration.Count)
}

func TestDecisionPorts(t *testing.T) {
	r := New(Config{Ports: []uint16{3306, 443}})
	r.ObserveDecision(Inbound, "opaque", 3306)
	r.ObserveDecision(Inbound, "opaque", 3306)
	r.ObserveDecision(Inbound, "detect", 8080)
	r.ObserveDecision(Inbound, "detect", 9090)
	r.ObserveDecision(Outbound, "skip", 443)
	assert.Equal(t, []DecisionSample{
		{Inbound, "detect", Other, 2},
		{Inbound, "opaque", "3306", 2},
		{Outbound, "skip", "443", 1},
	}, r.Snapshot().Decisions)
}

func TestHandshakePeerIdentities(t *testing.T) {
	off := New(Config{})
	off.ObserveHandshake(Inbound, OutcomeSuccess, "spiffe://td/a", time.Millisecond)
	require.Len(t, off.Snapshot().Handshakes, 1)
	assert.Equal(t, "", off.Snapshot().Handshakes[0].PeerIdentity, "identities are opt-in")

	on := New(Config{PeerIdentities: true, MaxPeerIdentities: 2})
	for _, id := range []string{"spiffe://td/a", "spiffe://td/b", "spiffe://td/c", "spiffe://td/a"} {
		on.ObserveHandshake(Inbound, OutcomeSuccess, id, time.Millisecond)
	}
	on.ObserveHandshake(Outbound, "unauthorized", "", 2*time.Millisecond)
	on.ObserveHandshake(Outbound, "unauthorized", "", -1) // counted, not timed
	hs := on.Snapshot().Handshakes
	require.Len(t, hs, 4)
	assert.Equal(t, Other, hs[0].PeerIdentity, "the third identity is beyond the cap")
	assert.Equal(t, uint64(1), hs[0].Count)
	assert.Equal(t, "spiffe://td/a", hs[1].PeerIdentity)
	assert.Equal(t, uint64(2), hs[1].Count)
	assert.Equal(t, "spiffe://td/b", hs[2].PeerIdentity)
	assert.Equal(t, "unauthorized", hs[3].Outcome)
	assert.Equal(t, uint64(2), hs[3].Count)
	assert.Equal(t, uint64(1), hs[3].Duration.Count)
	assert.Equal(t, Outbound, hs[3].Direction)
}

func TestTransportHeaders(t *testing.T) {
	var r Registry
	r.ObserveTransportHeader(HeaderWritten, "HTTP/2")
	r.ObserveTransportHeader(HeaderWritten, "none")
	r.ObserveTransportHeader(HeaderRead, "HTTP/2")
	r.ObserveTransportHeader(HeaderRejected, "malformed")
	r.ObserveTransportHeader(HeaderRejected, "malformed")
	r.ObserveTransportHeader(HeaderRejected, "")
	assert.Equal(t, []TransportHeaderSample{
		{HeaderWritten, "HTTP/2", "", 1},
		{HeaderWritten, "none", "", 1},
		{HeaderRead, "HTTP/2", "", 1},
		{HeaderRejected, "", "malformed", 2},
		{HeaderRejected, "", "unknown", 1},
	}, r.Snapshot().TransportHeaders)
}

func TestConcurrentExact(t *testing.T) {
	var r Registry
	const workers, conns = 8, 500
	labels := []ConnLabels{{Protocol: "a"}, {Protocol: "b", TLS: TLSTrue}, {Direction: Outbound, Protocol: "a"}}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range conns {
				l := labels[(w+i)%len(labels)]
				c := r.OpenConn(l)
				c.Read(3)
				c.Write(5)
				c.Close([]string{"", "ECONNRESET"}[i%2])
				r.ObserveDetection(l.Direction, l.Protocol, "matched", time.Duration(i)*time.Microsecond)
				_ = r.Snapshot() // snapshots race with updates
			}
		})
	}
	wg.Wait()
	snap := r.Snapshot()
	var opened, read, write, closed, det uint64
	for _, s := range snap.TCP {
		opened += s.Opened
		read += s.ReadBytes
		write += s.WriteBytes
		closed += s.ClosedTotal()
		assert.Zero(t, s.Open)
	}
	for _, d := range snap.Detections {
		det += d.Count
	}
	assert.Equal(t, uint64(workers*conns), opened)
	assert.Equal(t, uint64(workers*conns), closed)
	assert.Equal(t, uint64(3*workers*conns), read)
	assert.Equal(t, uint64(5*workers*conns), write)
	assert.Equal(t, uint64(workers*conns), det)
}

func TestZeroAllocUpdates(t *testing.T) {
	r := New(Config{Ports: []uint16{80}})
	l := ConnLabels{Direction: Inbound, Protocol: "HTTP/2", TLS: TLSTrue}
	r.OpenConn(l).Close("ECONNRESET") // create the series and errno once
	r.ObserveDetection(Inbound, "HTTP/2", "matched", time.Millisecond)
	r.ObserveDecision(Inbound, "detect", 80)
	r.ObserveHandshake(Inbound, OutcomeSuccess, "", time.Millisecond)
	r.ObserveTransportHeader(HeaderRejected, "malformed")
	allocs := testing.AllocsPerRun(1000, func() {
		c := r.OpenConn(l)
		c.Read(10)
		c.Write(10)
		c.Close("ECONNRESET")
		r.ObserveDetection(Inbound, "HTTP/2", "matched", time.Millisecond)
		r.ObserveDecision(Inbound, "detect", 80)
		r.ObserveHandshake(Inbound, OutcomeSuccess, "", time.Millisecond)
		r.ObserveTransportHeader(HeaderRejected, "malformed")
	})
	assert.Zero(t, allocs)
}

func TestHistogramMerge(t *testing.T) {
	var h histSeries
	h.observe(handshakeBounds, time.Millisecond)
	a := h.snapshot(handshakeBuckets)
	var m Histogram
	m.Merge(a)
	m.Merge(a)
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

// TestDirectionOutOfRange: every entry point records a Direction other
// than Outbound as Inbound, and Outbound as itself.
func TestDirectionOutOfRange(t *testing.T) {
	for _, tc := range []struct{ in, want Direction }{{Direction(7), Inbound}, {Outbound, Outbound}} {
		r := New(Config{})
		r.OpenConn(ConnLabels{Direction: tc.in, Protocol: "p"}).Close("")
		r.ObserveDetection(tc.in, "HTTP/1", "matched", time.Millisecond)
		r.ObserveDecision(tc.in, "opaque", 3306)
		r.ObserveHandshake(tc.in, OutcomeSuccess, "", time.Millisecond)
		r.ObserveHTTPError(tc.in, 400, time.Millisecond)
		s := r.Snapshot()
		require.Len(t, s.TCP, 1)
		require.Len(t, s.Detections, 1)
		require.Len(t, s.Decisions, 1)
		require.Len(t, s.Handshakes, 1)
		require.Len(t, s.Requests, 1)
		require.Len(t, s.Responses, 1)
		assert.Equal(t, tc.want, s.TCP[0].Direction, "OpenConn")
		assert.Equal(t, tc.want, s.Detections[0].Direction, "ObserveDetection")
		assert.Equal(t, tc.want, s.Decisions[0].Direction, "ObserveDecision")
		assert.Equal(t, tc.want, s.Handshakes[0].Direction, "ObserveHandshake")
		assert.Equal(t, tc.want, s.Requests[0].Direction, "ObserveHTTPError request")
		assert.Equal(t, tc.want, s.Responses[0].Direction, "ObserveHTTPError response")
	}
}
