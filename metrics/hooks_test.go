package metrics_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/opaque"
)

// TestHandshakeHook runs real mTLS handshakes over loopback with
// reg.HandshakeHook on both sides: one authorized client, one refused.
func TestHandshakeHook(t *testing.T) {
	reg := metrics.New(metrics.Config{PeerIdentities: true})
	ca := mtlstest.MustNew("example.org")
	srvSrc := ca.Source("/ns/prod/sa/db")
	serverTLS, err := (&mtls.Config{
		SVID: srvSrc, Bundle: srvSrc,
		Authorize:   mtls.AuthorizeID(ca.ID("/ns/prod/sa/web")),
		OnHandshake: reg.HandshakeHook(),
	}).ServerTLS()
	require.NoError(t, err)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	serverErrs := make(chan error, 2)
	go func() {
		for range 2 {
			raw, err := ln.Accept()
			if err != nil {
				serverErrs <- err
				return
			}
			c := tls.Server(raw, serverTLS)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err = mtls.Handshake(ctx, c)
			cancel()
			c.Close()
			serverErrs <- err
		}
	}()

	dial := func(id string) {
		src := ca.Source(id)
		clientTLS, err := (&mtls.Config{
			SVID: src, Bundle: src,
			Authorize:   mtls.AuthorizeID(ca.ID("/ns/prod/sa/db")),
			OnHandshake: reg.HandshakeHook(),
		}).ClientTLS()
		require.NoError(t, err)
		raw, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		c := tls.Client(raw, clientTLS)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = mtls.Handshake(ctx, c)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Read(make([]byte, 1)) // the server's refusal, or its close
	}
	dial("/ns/prod/sa/web")
	require.NoError(t, <-serverErrs)
	dial("/ns/prod/sa/intruder")
	refusal := <-serverErrs
	require.ErrorIs(t, refusal, mtls.ErrUnauthorized)

	hs := reg.Snapshot().Handshakes
	byKey := map[string]metrics.HandshakeSample{}
	for _, h := range hs {
		byKey[h.Direction.String()+" "+h.Outcome+" "+h.PeerIdentity] = h
	}
	web := byKey["inbound success spiffe://example.org/ns/prod/sa/web"]
	assert.Equal(t, uint64(1), web.Count, "%+v", hs)
	assert.Equal(t, uint64(1), web.Duration.Count, "server handshakes are timed")
	assert.Equal(t, uint64(1), byKey["inbound unauthorized spiffe://example.org/ns/prod/sa/intruder"].Count, "%+v", hs)
	db := byKey["outbound success spiffe://example.org/ns/prod/sa/db"]
	assert.Equal(t, uint64(2), db.Count, "both clients verified the server: %+v", hs)
	assert.Equal(t, uint64(0), db.Duration.Count, "mtls reports no client duration: counted, not timed")
	assert.Len(t, hs, 3)

	assert.Equal(t, metrics.OutcomeSuccess, metrics.HandshakeOutcome(nil))
	assert.Equal(t, "unauthorized", metrics.HandshakeOutcome(refusal))
}

// TestHeaderObserver writes and reads real transport headers through an
// opaque.HeaderCodec observed by the registry, and rejects a bad one.
func TestHeaderObserver(t *testing.T) {
	reg := metrics.New(metrics.Config{})
	codec := opaque.HeaderCodec{Observer: reg.HeaderObserver()}
	var buf bytes.Buffer
	_, err := codec.Write(&buf, opaque.Header{Port: 8080, SessionProtocol: opaque.SessionHTTP2})
	require.NoError(t, err)
	_, err = codec.Write(&buf, opaque.Header{Port: 3306})
	require.NoError(t, err)
	h, _, err := codec.Read(&buf)
	require.NoError(t, err)
	require.Equal(t, uint16(8080), uint16(h.Port))
	_, _, err = codec.Read(&buf)
	require.NoError(t, err)
	_, _, err = codec.Read(strings.NewReader("GET / HTTP/1.1\r\n\r\n"))
	require.Error(t, err)
	_, err = codec.Write(&buf, opaque.Header{Port: 0}) // invalid: rejected on write
	require.Error(t, err)

	assert.Equal(t, []metrics.TransportHeaderSample{
		{Event: metrics.HeaderWritten, SessionProtocol: "HTTP/2", Count: 1},
		{Event: metrics.HeaderWritten, SessionProtocol: "none", Count: 1},
		{Event: metrics.HeaderRead, SessionProtocol: "HTTP/2", Count: 1},
		{Event: metrics.HeaderRead, SessionProtocol: "none", Count: 1},
		{Event: metrics.HeaderRejected, Reason: "bad_port", Count: 1},
		{Event: metrics.HeaderRejected, Reason: "no_preface", Count: 1},
	}, reg.Snapshot().TransportHeaders)
}

// TestObservePolicy counts the decisions of the default opaque policy.
func TestObservePolicy(t *testing.T) {
	reg := metrics.New(metrics.Config{Ports: []uint16{3306, 8080}})
	var res opaque.Resolver // zero value: the default table
	for _, p := range []uint16{3306, 8080, 8080, 9999, 5432} {
		reg.ObservePolicy(opaque.Inbound, p, res.Resolve(opaque.Inbound, p))
	}
	reg.ObservePolicy(opaque.Outbound, 3306, res.Resolve(opaque.Outbound, 3306))
	assert.Equal(t, []metrics.DecisionSample{
		{Direction: metrics.Inbound, Action: "detect", Port: "8080", Count: 2},
		{Direction: metrics.Inbound, Action: "detect", Port: metrics.Other, Count: 1},
		{Direction: metrics.Inbound, Action: "opaque", Port: "3306", Count: 1},
		{Direction: metrics.Inbound, Action: "opaque", Port: metrics.Other, Count: 1}, // 5432 is opaque by default
		{Direction: metrics.Outbound, Action: "opaque", Port: "3306", Count: 1},
	}, reg.Snapshot().Decisions)
}

func TestNilRegistryHooks(t *testing.T) {
	var reg *metrics.Registry
	assert.Nil(t, reg.DetectHook(metrics.Inbound))
	assert.Nil(t, reg.HandshakeHook())
	assert.Nil(t, reg.HeaderObserver())
	mc := reg.OpenConn(metrics.ConnLabels{})
	assert.Nil(t, mc.Observer())
	assert.Nil(t, mc.Reversed())
	mc.CloseErr(nil)
	reg.ObservePolicy(opaque.Inbound, 80, opaque.Decision{})
}

// TestMuxHook serves HTTP/1 through a real detect.Mux with no default
// listener: an HTTP request is routed, a binary client is unrouted.
func TestMuxHook(t *testing.T) {
	reg := metrics.New(metrics.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	d := &detect.Detector{OnResult: reg.DetectHook(metrics.Inbound)}
	m := detect.NewMux(ln, d, detect.MuxConfig{OnConn: reg.MuxHook()})
	web := m.Match(detect.HTTP1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(web) }()
	muxDone := make(chan struct{})
	go func() { defer close(muxDone); m.Serve() }()
	defer func() { m.Close(); srv.Close(); <-served; <-muxDone }()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + ln.Addr().String() + "/")
	require.NoError(t, err)
	resp.Body.Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	_, err = c.Write([]byte{0, 1, 2, 3})
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err, "the mux closes an unrouted connection")
	c.Close()

	require.Eventually(t, func() bool { return len(reg.Snapshot().Mux) == 2 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, []metrics.MuxSample{
		{Outcome: "routed", Protocol: "HTTP/1", Count: 1},
		{Outcome: "unrouted", Protocol: "unknown", Count: 1},
	}, reg.Snapshot().Mux)
}

// TestDetectHookCounts feeds DetectHook results that alternate protocols
// and reasons (so its per-reason cache of the last series both hits and
// misses), an empty protocol and a Reason beyond the known ones, and checks
// every count against ObserveDetection's, and that a hit or a miss on
// existing series allocates nothing.
func TestDetectHookCounts(t *testing.T) {
	reg := metrics.New(metrics.Config{})
	hook := reg.DetectHook(metrics.Direction(99)) // normalised to Inbound like ObserveDetection
	results := []detect.Result{
		{Protocol: detect.HTTP1, Reason: detect.ReasonMatched, Duration: time.Millisecond},
		{Protocol: detect.HTTP1, Reason: detect.ReasonMatched, Duration: time.Millisecond},
		{Protocol: detect.TLS, Reason: detect.ReasonMatched, Duration: time.Millisecond},
		{Protocol: detect.HTTP1, Reason: detect.ReasonMatched, Duration: time.Millisecond},
		{Protocol: detect.Unknown, Reason: detect.ReasonTimeout, Duration: 20 * time.Second},
		{Protocol: "", Reason: detect.ReasonClosed},
		{Protocol: detect.Unknown, Reason: detect.Reason(200)},
	}
	for range 3 {
		for i := range results {
			hook(&results[i])
		}
	}
	s := reg.Snapshot()
	assert.Equal(t, uint64(9), s.DetectionCount(metrics.Inbound, "HTTP/1", "matched"))
	assert.Equal(t, uint64(3), s.DetectionCount(metrics.Inbound, "TLS", "matched"))
	assert.Equal(t, uint64(3), s.DetectionCount(metrics.Inbound, "unknown", "timeout"))
	assert.Equal(t, uint64(3), s.DetectionCount(metrics.Inbound, "unknown", "closed"))
	assert.Equal(t, uint64(3), s.DetectionCount(metrics.Inbound, "unknown", "unknown"))
	var total uint64
	for _, d := range s.Detections {
		assert.Equal(t, metrics.Inbound, d.Direction)
		total += d.Count
	}
	assert.Equal(t, uint64(3*len(results)), total)

	allocs := testing.AllocsPerRun(1000, func() {
		for i := range results {
			hook(&results[i])
		}
	})
	assert.Zero(t, allocs)
}
